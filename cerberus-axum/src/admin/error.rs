//! One error type for the admin API, mapped to HTTP statuses and a JSON body that never carries
//! database details: `{"error": {"status": 422, "message": "…", "field": "name"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cerberus_core::store::StoreError;
use serde_json::json;

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The body is not JSON, or a query parameter is not of its type.
    #[error("{0}")]
    BadRequest(String),
    /// No valid credential, or the credential has expired.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The caller's role does not allow this.
    #[error("your role does not allow this")]
    Forbidden,
    /// Nothing with that id in the caller's organisation (another tenant's ids land here too).
    #[error("not found")]
    NotFound,
    /// A live row already has that unique value.
    #[error("{0} already exists")]
    Conflict(String),
    /// What the request was based on has changed since (a definition reviewed before the server
    /// listed another).
    #[error("{0}")]
    Outdated(String),
    /// A field is missing or has a value that cannot be used.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, as a path into the body (`document.guardrails[2].limit`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The body needs `Content-Type: application/json`.
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    /// The body exceeds the limit.
    #[error("the body is too large")]
    PayloadTooLarge,
    /// The database failed; the cause is logged, not shown.
    #[error("storage unavailable")]
    Unavailable(String),
    /// Too many failed logins for the account or from the address; try again after the wait.
    #[error("too many failed logins: try again later")]
    TooManyLogins(std::time::Duration),
}

/// The body of every error response, for the OpenAPI document.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status.
    pub status: u16,
    /// A human message.
    pub message: String,
    /// The field at fault, for 422.
    pub field: Option<String>,
}

impl ApiError {
    /// A field that cannot be used.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) | Self::Outdated(_) => StatusCode::CONFLICT,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyLogins(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(what) => Self::Conflict(what),
            StoreError::LastOwner => {
                Self::invalid("role", "an organisation keeps at least one owner")
            }
            // The database cannot hold a value the request carried: the request's fault, and trying
            // again will not help. The database's words stay in the log.
            StoreError::Rejected(cause) => {
                tracing::warn!(error = %cause, "the database refused a value an admin request carried");
                Self::BadRequest("the request holds a value that cannot be stored".into())
            }
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Self::Unavailable(cause) = &self {
            tracing::error!(%cause, "admin request failed on storage");
        }
        let mut error = json!({"status": status.as_u16(), "message": self.to_string()});
        if let (Self::Invalid { field, message }, Some(object)) = (&self, error.as_object_mut()) {
            object.insert("field".into(), json!(field));
            object.insert("message".into(), json!(message));
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"cerberus-admin\""),
            );
        }
        if let Self::TooManyLogins(wait) = self {
            // Whole seconds, rounded up.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
