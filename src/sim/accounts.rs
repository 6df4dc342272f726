//! Several accounts (`--accounts a,b,c`), each held to `--max-rps` on its own, and Kite's session
//! routes.
//!
//! A history request names its account: `account_id` on `GET /history` (none: the first account;
//! one not listed: 400), the API key on Kite's route. Account `NAME`'s Kite app has the API key
//! `kite_NAME` and the secret `secret_NAME`. Its sessions:
//! - `POST /sim/login?api_key=K` stands in for a person logging in at Kite: it answers a fresh
//!   `request_token` (Kite would redirect the browser with it);
//! - `POST /session/token` (form `api_key`, `request_token`, `checksum` = hex SHA-256 of key,
//!   request token and secret) exchanges a request token once for an access token;
//! - `GET /user/profile` answers for a live session;
//! - a session ends at `--session-expires-at` or on `POST /sim/expire?account=NAME`, after which
//!   Kite's routes answer 403 `TokenException` for it.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Form, Json,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{kite::kite_error, Shared};

/// One account's figures, as `/stats` shows them under `by_account`.
#[derive(Default)]
struct Figures {
    history_requests: u64,
    throttled: u64,
    recent: VecDeque<Instant>,
    peak_rps: usize,
}

/// The accounts and their sessions.
#[derive(Default)]
pub(super) struct Accounts {
    names: Vec<String>,
    figures: Mutex<HashMap<String, Figures>>,
    sessions: Mutex<Sessions>,
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct Sessions {
    /// Request tokens handed out and not yet exchanged, with their account.
    request_tokens: HashMap<String, String>,
    /// Live access tokens, with their account.
    live: HashMap<String, String>,
    issued: u64,
}

/// A random token of 32 letters and digits.
fn random_token() -> String {
    use rand::Rng;
    rand::rng().sample_iter(rand::distr::Alphanumeric).take(32).map(char::from).collect()
}

impl Accounts {
    pub(super) fn new(names: Vec<String>, expires_at: Option<DateTime<Utc>>) -> Self {
        Accounts { names, expires_at, ..Default::default() }
    }

    pub(super) fn configured(&self) -> bool {
        !self.names.is_empty()
    }

    /// The account of a ticker-service request: its `account_id`, or the first; `Err` names an
    /// account the simulator does not have.
    pub(super) fn of_ticker_request(&self, account_id: Option<&str>) -> Result<Option<String>, String> {
        if !self.configured() {
            return Ok(None);
        }
        match account_id.map(str::trim).filter(|a| !a.is_empty()) {
            None => Ok(Some(self.names[0].clone())),
            Some(a) if self.names.iter().any(|n| n == a) => Ok(Some(a.to_string())),
            Some(a) => Err(format!("unknown account_id {a:?}")),
        }
    }

    /// The account whose Kite app has `api_key`.
    fn of_key(&self, api_key: &str) -> Option<String> {
        api_key.strip_prefix("kite_").filter(|n| self.names.iter().any(|a| a == n)).map(str::to_string)
    }

    fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| Utc::now() >= at)
    }

    /// The account of a Kite request's `Authorization: token KEY:ACCESS`, if that is a live
    /// session of that app.
    pub(super) fn of_kite_session(&self, key: &str, access: &str) -> Option<String> {
        let account = self.of_key(key)?;
        if self.expired() {
            return None;
        }
        let sessions = self.sessions.lock().expect("sessions lock");
        (sessions.live.get(access) == Some(&account)).then_some(account)
    }

    /// Counts a request of `account`; returns how many it sent in the last second.
    pub(super) fn note_request(&self, account: &str) -> usize {
        let mut all = self.figures.lock().expect("figures lock");
        let f = all.entry(account.to_string()).or_default();
        let now = Instant::now();
        f.history_requests += 1;
        while f.recent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
            f.recent.pop_front();
        }
        f.recent.push_back(now);
        f.peak_rps = f.peak_rps.max(f.recent.len());
        f.recent.len()
    }

    pub(super) fn note_throttled(&self, account: &str) {
        self.figures.lock().expect("figures lock").entry(account.to_string()).or_default().throttled += 1;
    }

    /// `by_account` of `/stats`: every account, with its requests, 429s and peak.
    pub(super) fn json(&self) -> Value {
        let all = self.figures.lock().expect("figures lock");
        let map: BTreeMap<&str, Value> = self
            .names
            .iter()
            .map(|n| {
                let f = all.get(n);
                let v = json!({
                    "history_requests": f.map_or(0, |f| f.history_requests),
                    "throttled": f.map_or(0, |f| f.throttled),
                    "peak_rps": f.map_or(0, |f| f.peak_rps),
                });
                (n.as_str(), v)
            })
            .collect();
        json!(map)
    }
}

#[derive(Deserialize)]
pub(super) struct KeyQuery {
    api_key: Option<String>,
}

/// `POST /sim/login?api_key=K`: a fresh request token for that app.
pub(super) async fn login(State(sim): State<Shared>, Query(q): Query<KeyQuery>) -> Response {
    let Some(account) = q.api_key.as_deref().and_then(|k| sim.accounts.of_key(k)) else {
        return kite_error(StatusCode::BAD_REQUEST, "InputException", "unknown api_key");
    };
    let token = random_token();
    sim.accounts.sessions.lock().expect("sessions lock").request_tokens.insert(token.clone(), account);
    Json(json!({"request_token": token})).into_response()
}

#[derive(Deserialize)]
pub(super) struct ExchangeForm {
    api_key: Option<String>,
    request_token: Option<String>,
    checksum: Option<String>,
}

/// `POST /session/token`: a request token, once, with the app's checksum, for a session.
pub(super) async fn session_token(State(sim): State<Shared>, Form(f): Form<ExchangeForm>) -> Response {
    let (Some(key), Some(rt), Some(checksum)) = (f.api_key, f.request_token, f.checksum) else {
        return kite_error(
            StatusCode::BAD_REQUEST,
            "InputException",
            "api_key, request_token and checksum are required",
        );
    };
    let Some(account) = sim.accounts.of_key(&key) else {
        return kite_error(StatusCode::FORBIDDEN, "TokenException", "Invalid `api_key`.");
    };
    let want = hex::encode(Sha256::digest(format!("{key}{rt}secret_{account}").as_bytes()));
    let mut sessions = sim.accounts.sessions.lock().expect("sessions lock");
    if sessions.request_tokens.get(&rt) != Some(&account) {
        return kite_error(StatusCode::FORBIDDEN, "TokenException", "Token is invalid or has expired.");
    }
    if checksum != want {
        return kite_error(StatusCode::FORBIDDEN, "TokenException", "Invalid `checksum`.");
    }
    sessions.request_tokens.remove(&rt);
    let access = random_token();
    sessions.live.insert(access.clone(), account.clone());
    sessions.issued += 1;
    Json(json!({"status": "success", "data": {
        "user_id": format!("SIM_{}", account.to_uppercase()), "api_key": key, "access_token": access,
        "login_time": Utc::now().to_rfc3339(),
    }}))
    .into_response()
}

/// `GET /user/profile` for a live session.
pub(super) async fn profile(State(sim): State<Shared>, headers: HeaderMap) -> Response {
    let session = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("token "))
        .and_then(|c| c.split_once(':'));
    let account = session.and_then(|(key, access)| {
        if sim.accounts.configured() {
            sim.accounts.of_kite_session(key, access)
        } else {
            let wanted = sim.opts.kite_access_token.as_deref();
            (!key.is_empty() && !access.is_empty() && wanted.is_none_or(|w| w == access)).then(|| "default".to_string())
        }
    });
    match account {
        Some(a) => {
            Json(json!({"status": "success", "data": {"user_id": format!("SIM_{}", a.to_uppercase())}})).into_response()
        }
        None => kite_error(StatusCode::FORBIDDEN, "TokenException", "Incorrect `api_key` or `access_token`."),
    }
}

#[derive(Deserialize)]
pub(super) struct ExpireQuery {
    account: Option<String>,
}

/// `POST /sim/expire?account=NAME`: ends that account's sessions now (all accounts' without it).
pub(super) async fn expire(State(sim): State<Shared>, Query(q): Query<ExpireQuery>) -> Response {
    let mut sessions = sim.accounts.sessions.lock().expect("sessions lock");
    let before = sessions.live.len();
    sessions.live.retain(|_, a| q.account.as_deref().is_some_and(|x| x != a));
    Json(json!({"ended": before - sessions.live.len()})).into_response()
}
