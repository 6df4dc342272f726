//! The checks every mutation passes: `Authorization: Bearer $ADMIN_TOKEN` ([`Authorized`]), and
//! no input it does not read ([`NoQuery`], [`NoBody`]): a misspelt parameter is refused, never
//! ignored into a default that acts on everything.

use std::sync::Arc;

use axum::{extract::FromRequestParts, http::request::Parts};

use super::{error::ApiError, AdminState};

/// Proof that the request carried the configured bearer token.
pub struct Authorized;

impl FromRequestParts<Arc<AdminState>> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AdminState>) -> Result<Self, ApiError> {
        let Some(token) = &state.settings.admin_token else { return Err(ApiError::MutationsDisabled) };
        let given = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given == Some(token.expose()) {
            Ok(Authorized)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// Proof that the request carries no query string (for mutations that take no parameters).
pub struct NoQuery;

impl<S: Send + Sync> FromRequestParts<S> for NoQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.uri.query().filter(|q| !q.is_empty()) {
            None => Ok(NoQuery),
            Some(q) => {
                let shown: String = q.chars().take(100).collect();
                Err(ApiError::BadRequest(format!("this endpoint takes no query parameters, got {shown:?}")))
            }
        }
    }
}

/// Proof that the request carries no body (mutations here take none).
pub struct NoBody;

impl<S: Send + Sync> FromRequestParts<S> for NoBody {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let h = &parts.headers;
        let length = h.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).map(str::trim);
        let chunked = h.contains_key(axum::http::header::TRANSFER_ENCODING);
        if chunked || length.is_some_and(|l| l != "0") {
            return Err(ApiError::BadRequest("this endpoint takes no body".into()));
        }
        Ok(NoBody)
    }
}
