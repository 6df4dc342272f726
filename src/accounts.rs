//! The accounts as operators see and renew them: the report of `tickfill accounts` and
//! `GET /api/accounts` (and the per-account gauges), and Kite sessions set without a restart:
//! the login redirect every admin server answers (`GET /kite/callback/{account}`) and
//! `tickfill kite session set`.
//!
//! A session is stored only once Kite has vouched for it: a login's `request_token` is exchanged
//! at `POST /session/token` with the app's checksum, and every token is then tried on
//! `GET /user/profile`. A `request_token` is accepted once; a replay stores nothing. Tokens never
//! reach a log line, an error or an answer.

use crate::queue::RedisConn;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::{
    config::{Account, Secret, Settings, TickerApi},
    domain::session::{kite_checksum, kite_session_end, plausible_token},
    metrics,
    queue::accounts::{self as stored, SessionState},
    ticker::{kite::KiteUser, TickerClient, TickerError},
};

/// The most login redirects one account takes a minute; more are refused unread (429).
pub const CALLBACKS_PER_MINUTE: u32 = 20;

/// Where a Kite user logs in to an app (Kite then redirects to the app's redirect URL).
pub const KITE_LOGIN_URL: &str = "https://kite.zerodha.com/connect/login";

/// One account as `tickfill accounts --json` and `GET /api/accounts` show it.
#[derive(Debug, Clone, Serialize)]
pub struct AccountReport {
    pub account: String,
    /// History requests per second, all workers together (0 = unlimited).
    pub limit: u32,
    /// Serves subscriptions that name no account, or one not configured.
    pub default: bool,
    pub grants_last_minute: u64,
    /// Requests waiting for a grant that prefer this account.
    pub waiting: u64,
    pub session: SessionState,
    pub breaker: Breaker,
}

/// An account's breaker: closed, or open for a while after repeated 429s.
#[derive(Debug, Clone, Serialize)]
pub struct Breaker {
    pub state: &'static str,
    pub open_for_s: Option<f64>,
    /// How many times in a row it opened (each opening lasts twice the one before).
    pub level: u32,
}

/// Every configured account with what Redis holds of it now.
pub async fn report(settings: &Settings, conn: &mut RedisConn) -> redis::RedisResult<Vec<AccountReport>> {
    let accounts = settings.account_list();
    let names: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
    let figures = stored::figures(conn, &settings.queue.name, &names).await?;
    let kite = settings.ticker.api == TickerApi::Kite;
    Ok(accounts
        .iter()
        .zip(figures)
        .enumerate()
        .map(|(i, (a, f))| AccountReport {
            account: a.name.clone(),
            limit: a.rate_limit,
            default: i == 0,
            grants_last_minute: f.grants_last_minute,
            waiting: f.waiting,
            session: match (kite, &a.env_session) {
                (false, _) => SessionState::NotNeeded,
                (true, Some(_)) => SessionState::FromSettings,
                (true, None) => f.session,
            },
            breaker: Breaker {
                state: if f.breaker_open_ms.is_some() { "open" } else { "closed" },
                open_for_s: f.breaker_open_ms.map(|ms| ms as f64 / 1000.0),
                level: f.breaker_level,
            },
        })
        .collect())
}

/// Sets the per-account gauges from a report.
pub fn export_gauges(reports: &[AccountReport]) {
    let m = metrics::get();
    for r in reports {
        let l = metrics::l1("account", &r.account);
        m.account_rate_limit.get_or_create(&l).set(r.limit as i64);
        m.account_grants_last_minute.get_or_create(&l).set(r.grants_last_minute as i64);
        m.account_waiting.get_or_create(&l).set(r.waiting as i64);
        m.account_breaker_open.get_or_create(&l).set(i64::from(r.breaker.open_for_s.is_some()));
        let usable =
            matches!(r.session, SessionState::NotNeeded | SessionState::FromSettings | SessionState::Valid { .. });
        m.account_session_valid.get_or_create(&l).set(i64::from(usable));
        match &r.session {
            SessionState::Valid { expires_in_s, .. } => {
                m.account_session_expires_in.get_or_create(&l).set(*expires_in_s);
            }
            _ => {
                m.account_session_expires_in.remove(&l);
            }
        }
    }
}

/// Why a session was not stored. Each names what was wrong, never a token or secret.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no account {0:?} is configured (TICKFILL_ACCOUNTS)")]
    UnknownAccount(String),
    #[error("sessions are set in Kite mode only (TICKER_API=kite)")]
    NotKite,
    #[error("account {0} takes its session from KITE_ACCESS_TOKEN; name accounts with TICKFILL_ACCOUNTS to keep sessions in Redis")]
    FromSettings(String),
    #[error("the login redirect lacks {0}")]
    Missing(&'static str),
    #[error("the login did not succeed (status {0:?})")]
    NotSuccess(String),
    #[error("the login redirect is not a login (action {0:?})")]
    NotLogin(String),
    #[error("{0} is not a Kite token (1-128 letters and digits)")]
    Malformed(&'static str),
    #[error("this request_token was presented before; nothing stored (log in again)")]
    Replayed,
    #[error("more than {CALLBACKS_PER_MINUTE} login redirects for this account this minute; try again in a minute")]
    TooMany,
    #[error("account {0} has no Kite API secret ({1}): the login cannot be completed")]
    NoSecret(String, String),
    #[error("Kite refused: {0}")]
    Refused(String),
    #[error("Kite could not be asked: {0}")]
    Unavailable(String),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl SessionError {
    /// The HTTP status the login callback answers with.
    pub fn status(&self) -> u16 {
        match self {
            SessionError::UnknownAccount(_) => 404,
            SessionError::NotKite | SessionError::FromSettings(_) | SessionError::NoSecret(..) => 409,
            SessionError::Missing(_)
            | SessionError::NotSuccess(_)
            | SessionError::NotLogin(_)
            | SessionError::Malformed(_) => 400,
            SessionError::Replayed => 409,
            SessionError::TooMany => 429,
            SessionError::Refused(_) => 403,
            SessionError::Unavailable(_) | SessionError::Redis(_) => 502,
        }
    }
}

fn from_kite(e: TickerError) -> SessionError {
    match e {
        TickerError::Permanent(m) | TickerError::SessionExpired(m) => SessionError::Refused(m),
        e @ TickerError::Throttled { .. } => SessionError::Unavailable(e.to_string()),
        TickerError::Transient(m) | TickerError::Unreachable(m) => SessionError::Unavailable(m),
    }
}

/// The account named `name`, if it keeps its session in Redis.
fn session_account(settings: &Settings, name: &str) -> Result<Account, SessionError> {
    if settings.ticker.api != TickerApi::Kite {
        return Err(SessionError::NotKite);
    }
    let a = settings
        .account_list()
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| SessionError::UnknownAccount(crate::domain::text::inert(name, 64)))?;
    if a.env_session.is_some() {
        return Err(SessionError::FromSettings(a.name));
    }
    Ok(a)
}

/// The URL a person opens to log `account` in to Kite.
pub fn login_url(settings: &Settings, account: &str) -> Result<String, SessionError> {
    let a = session_account(settings, account)?;
    let mut url = reqwest::Url::parse(KITE_LOGIN_URL).expect("a URL");
    url.query_pairs_mut().append_pair("v", "3").append_pair("api_key", a.kite_api_key.expose());
    Ok(url.to_string())
}

/// What Kite's redirect carries.
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    pub request_token: Option<String>,
    pub action: Option<String>,
    pub status: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// Completes a login from Kite's redirect: checks it, exchanges the `request_token` (once),
/// checks the new session and stores it.
pub async fn complete_login(
    settings: &Settings,
    conn: &mut RedisConn,
    kite: &TickerClient,
    account: &str,
    cb: &Callback,
) -> Result<KiteUser, SessionError> {
    let a = session_account(settings, account)?;
    if !stored::callback_allowed(conn, &settings.queue.name, &a.name, CALLBACKS_PER_MINUTE).await? {
        return Err(SessionError::TooMany);
    }
    match cb.status.as_deref() {
        Some("success") => {}
        Some(other) => return Err(SessionError::NotSuccess(crate::domain::text::inert(other, 40))),
        None => return Err(SessionError::Missing("status")),
    }
    match cb.action.as_deref() {
        Some("login") => {}
        Some(other) => return Err(SessionError::NotLogin(crate::domain::text::inert(other, 40))),
        None => return Err(SessionError::Missing("action")),
    }
    let request_token = cb.request_token.as_deref().ok_or(SessionError::Missing("request_token"))?;
    if !plausible_token(request_token) {
        return Err(SessionError::Malformed("request_token"));
    }
    if a.kite_api_secret.is_empty() {
        let var = crate::config::accounts::variable(&a.name, "KITE_API_SECRET");
        return Err(SessionError::NoSecret(a.name, var));
    }
    // Presented once: a replay (the same redirect again, from a browser's history or a thief)
    // stores nothing, even before Kite says so.
    let digest = crate::domain::session::digest(&[request_token]);
    if !stored::first_presentation(conn, &settings.queue.name, &a.name, &digest).await? {
        return Err(SessionError::Replayed);
    }
    let checksum = kite_checksum(a.kite_api_key.expose(), request_token, a.kite_api_secret.expose());
    let (token, user) = kite.kite_session_token(&a.kite_api_key, request_token, &checksum).await.map_err(from_kite)?;
    store_checked(settings, conn, kite, &a, &token, "login").await.map(|u| if u.user_id.is_empty() { user } else { u })
}

/// Stores `token` as `account`'s session once Kite's profile route accepts it (`tickfill kite
/// session set`).
pub async fn set_session(
    settings: &Settings,
    conn: &mut RedisConn,
    kite: &TickerClient,
    account: &str,
    token: &Secret,
) -> Result<KiteUser, SessionError> {
    let a = session_account(settings, account)?;
    if !plausible_token(token.expose()) {
        return Err(SessionError::Malformed("the access token"));
    }
    store_checked(settings, conn, kite, &a, token, "cli").await
}

async fn store_checked(
    settings: &Settings,
    conn: &mut RedisConn,
    kite: &TickerClient,
    a: &Account,
    token: &Secret,
    via: &str,
) -> Result<KiteUser, SessionError> {
    let user = kite.kite_profile(&a.kite_api_key, token).await.map_err(from_kite)?;
    let now = Utc::now();
    stored::set_session(conn, &settings.queue.name, &a.name, token, kite_session_end(now), via, &user.user_id).await?;
    tracing::info!(account = %a.name, via, user = %user.user_id, "Kite session stored; every worker uses it at its next request");
    Ok(user)
}
