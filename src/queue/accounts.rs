//! What a deployment keeps in Redis of each account beside its budget: its Kite session, its
//! breaker, and the figures `tickfill accounts` shows (grants of the last minute, callers
//! waiting).
//!
//! A session is stored by `tickfill kite login` (through the admin server's callback) or
//! `tickfill kite session set`, and read by the budget's script with every grant, so every worker
//! uses a new token at its next request. A session Kite refuses is ended only if it is still the
//! one that was refused: a token stored meanwhile is never thrown away by a late refusal.

use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::{AsyncCommands, Script};

use crate::queue::RedisConn;
use serde::Serialize;

use super::keys::AccountKeys;
use crate::config::Secret;

/// How long a session's record outlives its end, so that `tickfill accounts` can say when and
/// why it ended.
const ENDED_KEPT: Duration = Duration::from_secs(7 * 86_400);

/// Stores `token` as `account`'s session until `expires`; `via` says how it came (`login`,
/// `cli`), `user` whose it is (Kite's `user_id`, when known).
pub async fn set_session(
    conn: &mut RedisConn,
    ns: &str,
    account: &str,
    token: &Secret,
    expires: DateTime<Utc>,
    via: &str,
    user: &str,
) -> redis::RedisResult<()> {
    let key = AccountKeys::new(ns, account).session();
    let keep_until = expires.timestamp() + ENDED_KEPT.as_secs() as i64;
    redis::pipe()
        .atomic()
        .del(&key)
        .ignore()
        .hset_multiple(
            &key,
            &[
                ("token", token.expose().to_string()),
                ("expires_us", (expires.timestamp_micros()).to_string()),
                ("set_at", Utc::now().to_rfc3339()),
                ("via", via.to_string()),
                ("user", user.to_string()),
            ],
        )
        .ignore()
        .expire_at(&key, keep_until)
        .ignore()
        .query_async(conn)
        .await
}

/// Ends `account`'s session if it is still `used` (Kite refused it): returns whether it did.
const END: &str = r"
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'token')
redis.call('HSET', KEYS[1], 'ended', ARGV[2], 'ended_at', ARGV[3])
return 1";

pub async fn end_session(
    conn: &mut RedisConn,
    ns: &str,
    account: &str,
    used: &Secret,
    reason: &str,
) -> redis::RedisResult<bool> {
    let n: i64 = Script::new(END)
        .key(AccountKeys::new(ns, account).session())
        .arg(used.expose())
        .arg(reason)
        .arg(Utc::now().to_rfc3339())
        .invoke_async(conn)
        .await?;
    Ok(n == 1)
}

/// Counts one login redirect of `account`; returns whether it is within `per_minute` (a flood
/// of redirects, which need no bearer token, neither reaches Kite nor fills Redis).
pub async fn callback_allowed(
    conn: &mut RedisConn,
    ns: &str,
    account: &str,
    per_minute: u32,
) -> redis::RedisResult<bool> {
    let key = AccountKeys::new(ns, account).callbacks(Utc::now().timestamp().div_euclid(60));
    let (n,): (u32,) = redis::pipe().atomic().incr(&key, 1).expire(&key, 120).ignore().query_async(conn).await?;
    Ok(n <= per_minute)
}

/// Marks a login's `request_token` (by its digest) as presented; returns false when it was
/// already, so that a replayed redirect stores nothing.
pub async fn first_presentation(
    conn: &mut RedisConn,
    ns: &str,
    account: &str,
    digest: &str,
) -> redis::RedisResult<bool> {
    let set: Option<String> = redis::cmd("SET")
        .arg(AccountKeys::new(ns, account).request_token(digest))
        .arg(1)
        .arg("NX")
        .arg("EX")
        .arg(3600)
        .query_async(conn)
        .await?;
    Ok(set.is_some())
}

/// How an account's breaker reacts to 429s.
#[derive(Debug, Clone, Copy)]
pub struct BreakerPolicy {
    /// This many 429s within `within` open the breaker, when they are at least `share_pct` % of
    /// the account's grants in that time.
    pub threshold: u32,
    pub share_pct: u32,
    pub within: Duration,
    /// The first opening lasts `base`; each one that follows within `memory` of the last lasts
    /// twice as long, up to `max`.
    pub base: Duration,
    pub max: Duration,
    pub memory: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            threshold: 3,
            share_pct: 50,
            within: Duration::from_secs(10),
            base: Duration::from_secs(5),
            max: Duration::from_secs(300),
            memory: Duration::from_secs(600),
        }
    }
}

/// Counts one 429 of the account; opens its breaker when they repeat. Returns how long it opened
/// for, when this 429 opened it.
const THROTTLED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first = tonumber(redis.call('HGET', KEYS[1], 'first') or '0')
local count = tonumber(redis.call('HGET', KEYS[1], 'count') or '0')
if now - first > tonumber(ARGV[2]) then first, count = now, 0 end
count = count + 1
local opened = 0
-- Only a run of 429s opens it: at least ARGV[6] % of the account's grants since the window began
-- (a source that throttles one request in ten at the allowed rate is not hammered).
local granted = redis.call('ZCOUNT', KEYS[3], first * 1000, '+inf')
if count >= tonumber(ARGV[1]) and count * 100 >= granted * tonumber(ARGV[6])
    and redis.call('EXISTS', KEYS[2]) == 0 then
  local level = tonumber(redis.call('HGET', KEYS[1], 'level') or '0') + 1
  opened = math.min(tonumber(ARGV[3]) * 2 ^ (level - 1), tonumber(ARGV[4]))
  redis.call('SET', KEYS[2], level, 'PX', opened)
  redis.call('HSET', KEYS[1], 'level', level, 'opened_at', now)
  first, count = now, 0
end
redis.call('HSET', KEYS[1], 'first', first, 'count', count)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return opened";

pub async fn throttled(
    conn: &mut RedisConn,
    ns: &str,
    account: &str,
    policy: BreakerPolicy,
) -> redis::RedisResult<Option<Duration>> {
    let k = AccountKeys::new(ns, account);
    let opened: i64 = Script::new(THROTTLED)
        .key(k.throttles())
        .key(k.breaker())
        .key(k.recent())
        .arg(policy.threshold)
        .arg(policy.within.as_millis() as i64)
        .arg(policy.base.as_millis() as i64)
        .arg(policy.max.as_millis() as i64)
        .arg(policy.memory.as_millis() as i64)
        .arg(policy.share_pct)
        .invoke_async(conn)
        .await?;
    Ok((opened > 0).then(|| Duration::from_millis(opened as u64)))
}

/// An account's session as shown: never its token.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SessionState {
    /// Requests go without a session (the ticker service).
    NotNeeded,
    /// From `KITE_ACCESS_TOKEN`: valid as far as tickfill knows, until Kite refuses it.
    FromSettings,
    /// Stored in Redis and not yet ended.
    Valid { expires_at: DateTime<Utc>, expires_in_s: i64, set_at: String, via: String, user: String },
    /// Ended: refused by Kite, or past its end.
    Expired { reason: String, at: String },
    /// Never set (or its record is gone).
    Missing,
}

impl SessionState {
    pub fn label(&self) -> &'static str {
        match self {
            SessionState::NotNeeded => "not needed",
            SessionState::FromSettings => "from settings",
            SessionState::Valid { .. } => "valid",
            SessionState::Expired { .. } => "expired",
            SessionState::Missing => "missing",
        }
    }
}

/// What Redis holds of one account now.
#[derive(Debug, Clone, Serialize)]
pub struct AccountFigures {
    /// The session as stored (`Missing` when none): the caller says whether one is needed.
    pub session: SessionState,
    /// Grants of the last 60 seconds, all workers together.
    pub grants_last_minute: u64,
    /// Callers waiting for a grant that prefer this account.
    pub waiting: u64,
    /// How long the breaker stays open, if it is.
    pub breaker_open_ms: Option<u64>,
    /// How many times the breaker opened in a row (0 when it has rested).
    pub breaker_level: u32,
}

/// Reads the figures of `accounts`, in one round trip.
pub async fn figures(conn: &mut RedisConn, ns: &str, accounts: &[&str]) -> redis::RedisResult<Vec<AccountFigures>> {
    let now = Utc::now();
    let now_us = now.timestamp_micros();
    let mut pipe = redis::pipe();
    for a in accounts {
        let k = AccountKeys::new(ns, a);
        pipe.cmd("HMGET").arg(k.session()).arg(&["token", "expires_us", "set_at", "via", "user", "ended", "ended_at"]);
        pipe.zcount(k.recent(), now_us - 60_000_000, "+inf");
        pipe.zcount(k.waiting(), now_us, "+inf");
        pipe.pttl(k.breaker());
        pipe.hget(k.throttles(), "level");
    }
    type Row = (Vec<Option<String>>, u64, u64, i64, Option<u32>);
    let rows: Vec<Row> = pipe.query_async(conn).await?;
    Ok(rows
        .into_iter()
        .map(|(s, grants, waiting, pttl, level)| {
            let field = |i: usize| s.get(i).cloned().flatten();
            let expires = field(1).and_then(|v| v.parse::<i64>().ok()).and_then(DateTime::from_timestamp_micros);
            let session = match (field(0), expires) {
                (Some(_), Some(at)) if at > now => SessionState::Valid {
                    expires_at: at,
                    expires_in_s: (at - now).num_seconds(),
                    set_at: field(2).unwrap_or_default(),
                    via: field(3).unwrap_or_default(),
                    user: field(4).unwrap_or_default(),
                },
                (Some(_), Some(at)) => SessionState::Expired {
                    reason: "past Kite's daily end of sessions (06:00 IST)".into(),
                    at: at.to_rfc3339(),
                },
                _ => match field(5) {
                    Some(reason) => SessionState::Expired { reason, at: field(6).unwrap_or_default() },
                    None => SessionState::Missing,
                },
            };
            AccountFigures {
                session,
                grants_last_minute: grants,
                waiting,
                breaker_open_ms: (pttl > 0).then_some(pttl as u64),
                breaker_level: if pttl > 0 { level.unwrap_or(1) } else { level.unwrap_or(0) },
            }
        })
        .collect())
}

/// Reads one account's session token (for the CLI's checks); `None` if it has none valid.
pub async fn session_token(conn: &mut RedisConn, ns: &str, account: &str) -> redis::RedisResult<Option<Secret>> {
    let v: Option<String> = conn.hget(AccountKeys::new(ns, account).session(), "token").await?;
    Ok(v.map(Secret::new))
}
