//! Who may do what: a mutation needs the admin token ([`Authorized`]: a bearer, or the page's
//! session cookie sent from the page itself), a read needs either token once `ADMIN_READ_TOKEN` is
//! set ([`CanRead`]). And the checks every mutation passes:
//! no input it does not read ([`NoQuery`], [`NoBody`]): a misspelt parameter is refused, never
//! ignored into a default that acts on everything.

use std::sync::Arc;

use axum::{extract::FromRequestParts, http::request::Parts};

use super::{error::ApiError, AdminState};

/// What a caller may do: the admin token acts, the read-only token (`ADMIN_READ_TOKEN`) looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Read,
}

impl Role {
    /// The token's name, as the audit records it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Read => "read",
        }
    }
}

/// The name of the page's session cookie.
pub const SESSION_COOKIE: &str = "tickfill_session";

/// How long a page session lasts.
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// The role of a bearer token, if it is one of the configured two.
pub fn role_of_token(state: &AdminState, given: &str) -> Option<Role> {
    let s = &state.settings;
    if s.admin.token.as_ref().is_some_and(|t| !given.is_empty() && t.expose() == given) {
        return Some(Role::Admin);
    }
    if s.admin.read_token.as_ref().is_some_and(|t| !given.is_empty() && t.expose() == given) {
        return Some(Role::Read);
    }
    None
}

/// The digest a session is kept under (the cookie itself is never stored).
pub fn session_digest(cookie: &str) -> String {
    crate::domain::session::digest(&[cookie])
}

/// The token of a request's `Authorization` header: `Some("")` for one that is not a bearer token
/// (it is still a credential, and a wrong one), `None` without the header.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    Some(v.strip_prefix("Bearer ").unwrap_or(""))
}

/// The page's session cookie a request carries, if any (at most 128 characters).
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|c| !c.is_empty() && c.len() <= 128)
}

/// How a request shows who it is: a bearer token, or the page's session cookie.
enum Credential {
    Bearer(Option<Role>),
    Cookie(Option<Role>),
    Nothing,
}

async fn credential(h: &axum::http::HeaderMap, state: &AdminState) -> Credential {
    if let Some(given) = bearer(h) {
        return Credential::Bearer(role_of_token(state, given));
    }
    let Some(cookie) = session_cookie(h) else { return Credential::Nothing };
    let digest = session_digest(&cookie);
    let role = crate::queue::state::admin_session(&mut state.redis.clone(), &state.settings.queue.name, &digest)
        .await
        .ok()
        .flatten();
    Credential::Cookie(match role.as_deref() {
        Some("admin") => Some(Role::Admin),
        Some("read") => Some(Role::Read),
        _ => None,
    })
}

/// The role of the page's session a request carries (a bearer header is not the page's).
pub async fn page_role(headers: &axum::http::HeaderMap, state: &AdminState) -> Option<Role> {
    match credential(headers, state).await {
        Credential::Cookie(role) => role,
        _ => None,
    }
}

/// Whether a request comes from the admin server's own page: its `Origin` names this host, or
/// the browser says `Sec-Fetch-Site: same-origin`. A cookie alone proves nothing about who sent
/// the request (a cross-site form post carries it too).
fn same_origin(parts: &Parts) -> bool {
    let h = &parts.headers;
    if h.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|v| v != "same-origin") {
        return false;
    }
    let host = h.get(axum::http::header::HOST).and_then(|v| v.to_str().ok());
    let origin = h.get(axum::http::header::ORIGIN).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(o), Some(host)) => o.strip_prefix("http://").or_else(|| o.strip_prefix("https://")) == Some(host),
        _ => false,
    }
}

/// Proof that the request may change something: the admin token (as a bearer, or as the page's
/// session from the page itself). Carries the token's name for the audit.
pub struct Authorized {
    pub actor: &'static str,
}

impl FromRequestParts<Arc<AdminState>> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AdminState>) -> Result<Self, ApiError> {
        if state.settings.admin.token.is_none() {
            return Err(ApiError::MutationsDisabled);
        }
        let read_only = || ApiError::Forbidden("the read-only token cannot change anything".into());
        match credential(&parts.headers, state).await {
            Credential::Bearer(Some(Role::Admin)) => Ok(Authorized { actor: Role::Admin.name() }),
            Credential::Cookie(Some(Role::Admin)) if same_origin(parts) => Ok(Authorized { actor: Role::Admin.name() }),
            Credential::Cookie(Some(_)) if !same_origin(parts) => {
                Err(ApiError::Forbidden("a change must come from the admin page itself or carry a bearer token".into()))
            }
            Credential::Bearer(Some(Role::Read)) | Credential::Cookie(Some(Role::Read)) => Err(read_only()),
            _ => Err(ApiError::Unauthorized),
        }
    }
}

/// Proof that the request may read: always, unless `ADMIN_READ_TOKEN` is set; then one of the
/// two tokens (bearer or the page's session).
pub struct CanRead;

impl FromRequestParts<Arc<AdminState>> for CanRead {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AdminState>) -> Result<Self, ApiError> {
        if state.settings.admin.read_token.is_none() {
            return Ok(CanRead);
        }
        match credential(&parts.headers, state).await {
            Credential::Bearer(Some(_)) | Credential::Cookie(Some(_)) => Ok(CanRead),
            _ => Err(ApiError::Unauthorized),
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
