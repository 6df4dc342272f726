//! The one check every mutation passes: `Authorization: Bearer $ADMIN_TOKEN`. A handler that
//! takes an [`Authorized`] argument cannot run without it.

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
