//! The admin API's one error type: each variant answers with its own status and a JSON
//! `{"detail": …}`. An internal failure answers an opaque 500; its cause goes to the log, never
//! to the client.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request itself is wrong; the text says what.
    #[error("{0}")]
    BadRequest(String),
    /// 401: a mutation without the configured bearer token.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// 403: mutations are disabled because no `ADMIN_TOKEN` is configured.
    #[error("mutations are disabled: set ADMIN_TOKEN to enable them")]
    MutationsDisabled,
    /// 403: the caller may read but not do this (the read-only token, a cross-site request).
    #[error("{0}")]
    Forbidden(String),
    /// 404: what was asked for is not there.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request cannot be carried out in the current state; the text says why.
    #[error("{0}")]
    Conflict(String),
    /// 409 for a bulk action that could not do all of it: the body says job by job what was done
    /// and what failed (and carries a `detail`).
    #[error("some of the jobs failed")]
    Partial(serde_json::Value),
    /// 500: Redis, PostgreSQL or a bug; logged with its whole chain, answered without it.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::MutationsDisabled | ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::Partial(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::explore::ExploreError> for ApiError {
    fn from(e: crate::explore::ExploreError) -> Self {
        use crate::explore::ExploreError;
        match e {
            ExploreError::Filter(f) => ApiError::BadRequest(f.to_string()),
            ExploreError::NeedsStore(why) => ApiError::Conflict(why.to_string()),
            ExploreError::Redis(e) => e.into(),
            ExploreError::Store(e) => e.into(),
        }
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        ApiError::Internal(anyhow::Error::new(e).context("Redis"))
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(anyhow::Error::new(e).context("PostgreSQL"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = format!("{cause:#}"), "admin request failed");
        }
        if let ApiError::Partial(body) = self {
            return (StatusCode::CONFLICT, Json(body)).into_response();
        }
        (self.status(), Json(json!({"detail": self.to_string()}))).into_response()
    }
}
