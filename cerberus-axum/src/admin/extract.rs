//! What admin handlers take from a request: the authenticated caller, a JSON body whose errors name
//! the field, ids that are 404 when malformed, and a page of a list.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use cerberus_core::OrganisationId;
use cerberus_core::store::{Page, StoreError, User};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::AdminState;
use super::error::ApiError;

/// The largest admin request body.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The authenticated user behind a request, as the store has it now (a removed user, or one of a
/// deleted organisation, is refused even with an unexpired token, and a role change applies at once).
#[derive(Clone, Debug)]
pub struct AdminCaller {
    /// The user.
    pub user: User,
}

impl AdminCaller {
    /// The caller's organisation: the scope of every query it makes.
    pub fn organisation(&self) -> OrganisationId {
        self.user.organisation
    }

    /// Refuses callers that may not change workspaces, agent accesses and policies.
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.user.role.can_write() {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    /// Refuses callers that may not change workspaces, agent accesses and policies, once `lookup`
    /// (the resource the path names, in the caller's organisation) says the resource is there: a
    /// resource that is not (another tenant's, say) is 404 whatever the caller's role, as for readers.
    /// Writers pass without the lookup.
    pub async fn require_write_on<T>(
        &self,
        lookup: impl Future<Output = Result<Option<T>, StoreError>>,
    ) -> Result<(), ApiError> {
        if self.user.role.can_write() {
            return Ok(());
        }
        match lookup.await? {
            Some(_) => Err(ApiError::Forbidden),
            None => Err(ApiError::NotFound),
        }
    }

    /// Refuses callers that may not change the organisation and its users.
    pub fn require_owner(&self) -> Result<(), ApiError> {
        if self.user.role.can_manage() {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    /// The organisation named in a path, if it is the caller's (another is not found).
    pub fn own(&self, organisation: Id) -> Result<OrganisationId, ApiError> {
        if organisation.0 == self.organisation().0 {
            Ok(self.organisation())
        } else {
            Err(ApiError::NotFound)
        }
    }
}

impl FromRequestParts<AdminState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(ApiError::Unauthorized("a bearer access token is required"));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(crate::auth::bearer_token)
            .ok_or(ApiError::Unauthorized("a bearer access token is required"))?;
        let claims = state.tokens.verify(token)?;
        let user = state
            .store
            .user(claims.organisation(), claims.user())
            .await?
            .ok_or(ApiError::Unauthorized("the token's user no longer exists"))?;
        if state.store.organisation(user.organisation).await?.is_none() {
            return Err(ApiError::Unauthorized(
                "the token's organisation no longer exists",
            ));
        }
        Ok(Self { user })
    }
}

/// A JSON body, read within a size limit; a syntax error is 400, a field of the wrong type or a
/// missing one is 422 with the field's path.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let _ = state;
        let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        parse(&bytes).map(Body)
    }
}

/// An optional JSON body: none at all, or JSON `null`, is `None`.
impl<S: Send + Sync, T: DeserializeOwned> axum::extract::OptionalFromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        if bytes.trim_ascii().is_empty() || bytes.trim_ascii() == b"null" {
            return Ok(None);
        }
        let request = Request::from_parts(parts, axum::body::Body::from(bytes));
        <Self as FromRequest<S>>::from_request(request, state)
            .await
            .map(Some)
    }
}

/// Reads a JSON body, naming the field of a data error.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            ApiError::invalid(
                if path == "." { "body".to_owned() } else { path },
                inner.to_string(),
            )
        } else {
            ApiError::BadRequest(format!("the body is not valid JSON: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// An id from the path; one that is not a UUID names nothing, so it is not found either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Id(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        Uuid::parse_str(&text)
            .map(Id)
            .map_err(|_| ApiError::NotFound)
    }
}

/// Two ids from the path (`/organisations/{id}/…/{id}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ids(pub Uuid, pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for Ids {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((a, b)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        match (Uuid::parse_str(&a), Uuid::parse_str(&b)) {
            (Ok(a), Ok(b)) => Ok(Ids(a, b)),
            _ => Err(ApiError::NotFound),
        }
    }
}

/// `?limit=&offset=` on a list: at most 200 items a page, 50 unless asked; an offset up to
/// `i64::MAX`.
#[derive(Clone, Copy, Debug)]
pub struct Pagination(pub Page);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<u32>,
    offset: Option<u64>,
}

impl<S: Send + Sync> FromRequestParts<S> for Pagination {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(query) = Query::<PageQuery>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid("query", e.body_text()))?;
        Self::of(query.limit, query.offset)
    }
}

impl Pagination {
    /// The page `?limit=&offset=` ask for, checked.
    pub fn of(limit: Option<u32>, offset: Option<u64>) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(ApiError::invalid("limit", "must be from 1 to 200"));
        }
        // The databases count rows in signed 64 bits.
        let offset = offset.unwrap_or(0);
        if i64::try_from(offset).is_err() {
            return Err(ApiError::invalid(
                "offset",
                format!("must be at most {}", i64::MAX),
            ));
        }
        Ok(Self(Page { limit, offset }))
    }
}

/// A page of a list, with where the next one starts (`null` at the end).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Listing<T> {
    /// The items.
    pub items: Vec<T>,
    /// The `offset` of the next page, if there may be one.
    pub next_offset: Option<u64>,
}

impl<T> Listing<T> {
    /// The listing of one page of items.
    pub fn of(items: Vec<T>, page: Page) -> Self {
        let full = items.len() == usize::try_from(page.limit).unwrap_or(usize::MAX);
        Self {
            next_offset: full.then(|| page.offset + u64::from(page.limit)),
            items,
        }
    }
}
