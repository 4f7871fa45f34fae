//! `POST /api/v1/auth/login`, `/refresh` and `/logout`: access tokens for a password, new ones for a
//! refresh token (which is spent, and replaced, on every use).

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use cerberus_core::store::{RefreshOutcome, RefreshTokenRecord, User};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AdminState;
use super::credentials::{RefreshToken, verify_password};
use super::error::{ApiError, ErrorBody};
use super::extract::Body;

/// A login.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    email: String,
    password: String,
}

/// A refresh or logout.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    refresh_token: String,
}

/// Tokens for a client.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Tokens {
    access_token: String,
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
    refresh_token: String,
    user: User,
}

/// Issues an access token and a refresh token of `family` for `user`.
async fn issue(state: &AdminState, user: User, family: Uuid) -> Result<Tokens, ApiError> {
    let now = SystemTime::now();
    let refresh = RefreshToken::generate();
    state
        .store
        .insert_refresh_token(
            refresh.hash,
            &RefreshTokenRecord {
                user: user.id,
                family,
                expires_at: now + state.tokens.refresh_ttl,
                revoked_at: None,
            },
        )
        .await?;
    Ok(Tokens {
        access_token: state.tokens.access_token(&user, now)?,
        token_type: "Bearer",
        expires_in: state.tokens.access_ttl.as_secs(),
        refresh_token: refresh.secret,
        user,
    })
}

/// Logs in with an email and a password.
#[utoipa::path(post, operation_id = "login", path = "/api/v1/auth/login", tag = "auth", request_body = Login, responses((status = 200, body = Tokens), (status = 401, description = "wrong email or password", body = ErrorBody), (status = 429, description = "too many failed logins for the account or from the address; `Retry-After` says when to try again", body = ErrorBody)))]
pub async fn login(
    State(state): State<AdminState>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    Body(login): Body<Login>,
) -> Result<Json<Tokens>, ApiError> {
    let address = client.map(|Extension(ConnectInfo(peer))| peer.ip().to_canonical());
    let email = login.email.trim();
    // Before the password is hashed: a client past its limit costs no hashing either.
    state
        .logins
        .check(email, address)
        .await
        .map_err(ApiError::TooManyLogins)?;
    let credentials = state.store.credentials(email).await?;
    let hash = credentials.as_ref().map(|c| c.password_hash.clone());
    // Same answer, and about the same time, whether the email is unknown or the password wrong; both
    // count as failures.
    let verified = verify_password(login.password, hash).await;
    let Some(credentials) = credentials.filter(|_| verified) else {
        state.logins.failed(email, address).await;
        return Err(ApiError::Unauthorized("wrong email or password"));
    };
    state.logins.succeeded(email).await;
    issue(&state, credentials.user, Uuid::new_v4())
        .await
        .map(Json)
}

/// Trades a refresh token for new tokens; the old refresh token is spent.
#[utoipa::path(post, operation_id = "refresh", path = "/api/v1/auth/refresh", tag = "auth", request_body = Refresh, responses((status = 200, body = Tokens), (status = 401, description = "no valid access token", body = ErrorBody)))]
pub async fn refresh(
    State(state): State<AdminState>,
    Body(refresh): Body<Refresh>,
) -> Result<Json<Tokens>, ApiError> {
    let hash = RefreshToken::hash_of(&refresh.refresh_token);
    let record = match state
        .store
        .spend_refresh_token(hash, SystemTime::now())
        .await?
    {
        RefreshOutcome::Spent(record) => record,
        RefreshOutcome::Reused => {
            tracing::warn!("a spent refresh token was used again: its family is revoked");
            return Err(ApiError::Unauthorized("invalid refresh token"));
        }
        RefreshOutcome::Invalid => return Err(ApiError::Unauthorized("invalid refresh token")),
    };
    let user = state
        .store
        .user_by_id(record.user)
        .await?
        .ok_or(ApiError::Unauthorized("the token's user no longer exists"))?;
    issue(&state, user, record.family).await.map(Json)
}

/// Ends a login: the refresh token and every token rotated from it stop working.
#[utoipa::path(post, operation_id = "logout", path = "/api/v1/auth/logout", tag = "auth", request_body = Refresh, responses((status = 204), (status = 401, description = "no valid access token", body = ErrorBody)))]
pub async fn logout(
    State(state): State<AdminState>,
    Body(refresh): Body<Refresh>,
) -> Result<StatusCode, ApiError> {
    let hash = RefreshToken::hash_of(&refresh.refresh_token);
    if let RefreshOutcome::Spent(record) = state
        .store
        .spend_refresh_token(hash, SystemTime::now())
        .await?
    {
        state.store.revoke_refresh_family(record.family).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
