//! What a deployment keeps in Redis beside its queues: the halt of history requests (the one
//! account's Kite session expired; not an operator's pause of a lane or kind), the shared
//! counters, and the notes of subscription events on their way to the store.
//!
//! The notes: the bridge notes each queued subscription event in `{ns}:subscribing` (scored by
//! receipt). Reconcile leaves a token noted there to its own job; once the job has recorded the
//! subscription the store knows it anyway, so notes are not removed one by one but dropped when
//! older than the grace (see [`queued_subscriptions`]): no extra round trip per job.

use redis::AsyncCommands;
use tickfill_jobs::InstrumentToken;

use crate::queue::RedisConn;

use super::keys;

/// Halts history requests, keeping the first reason given; returns whether this call halted them.
pub async fn halt_requests(conn: &mut RedisConn, ns: &str, reason: &str) -> redis::RedisResult<bool> {
    let value = serde_json::json!({"reason": reason, "since": chrono::Utc::now().to_rfc3339()}).to_string();
    redis::cmd("SET")
        .arg(keys::halted(ns))
        .arg(value)
        .arg("NX")
        .query_async::<Option<String>>(conn)
        .await
        .map(|r| r.is_some())
}

/// Why history requests are halted (`{"reason":…,"since":…}`), or `None`.
pub async fn requests_halted(conn: &mut RedisConn, ns: &str) -> redis::RedisResult<Option<serde_json::Value>> {
    let v: Option<String> = conn.get(keys::halted(ns)).await?;
    Ok(v.map(|s| serde_json::from_str(&s).unwrap_or(serde_json::Value::String(s))))
}

/// Lifts a halt; returns whether there was one.
pub async fn lift_halt(conn: &mut RedisConn, ns: &str) -> redis::RedisResult<bool> {
    let n: i64 = conn.del(keys::halted(ns)).await?;
    Ok(n > 0)
}

/// Whether Redis answers `PING` (the error says why not).
pub async fn ping(conn: &mut RedisConn) -> redis::RedisResult<()> {
    redis::cmd("PING").query_async::<String>(conn).await.map(drop)
}

/// The role (`admin`, `read`) of the admin page's session kept under `digest`, if it lives.
pub async fn admin_session(conn: &mut RedisConn, ns: &str, digest: &str) -> redis::RedisResult<Option<String>> {
    conn.get(keys::admin_session(ns, digest)).await
}

/// Keeps an admin page's session (its cookie's digest) with its role for `ttl`.
pub async fn open_admin_session(
    conn: &mut RedisConn,
    ns: &str,
    digest: &str,
    role: &str,
    ttl: std::time::Duration,
) -> redis::RedisResult<()> {
    conn.set_ex(keys::admin_session(ns, digest), role, ttl.as_secs()).await
}

/// Forgets an admin page's session.
pub async fn close_admin_session(conn: &mut RedisConn, ns: &str, digest: &str) -> redis::RedisResult<()> {
    conn.del::<_, i64>(keys::admin_session(ns, digest)).await.map(drop)
}

/// Notes that a subscription event of `token` is on its way to the store.
pub async fn note_subscribing(conn: &mut RedisConn, ns: &str, token: InstrumentToken, received_ms: i64) {
    let r: redis::RedisResult<i64> = conn.zadd(keys::subscribing(ns), token.get(), received_ms).await;
    if let Err(e) = r {
        tracing::debug!(error = %e, "could not note a queued subscription");
    }
}

/// Tokens whose subscription event was received after `since_ms` (queued, running or done);
/// older notes are dropped: if their job died or was lost, reconcile takes over.
pub async fn queued_subscriptions(
    conn: &mut RedisConn,
    ns: &str,
    since_ms: i64,
) -> redis::RedisResult<Vec<InstrumentToken>> {
    let key = keys::subscribing(ns);
    let _: i64 = conn.zrembyscore(&key, "-inf", format!("({since_ms}")).await?;
    let tokens: Vec<u64> = conn.zrangebyscore(&key, since_ms, "+inf").await?;
    // Written by the bridge from parsed events only: anything else is not a token and is skipped.
    Ok(tokens.into_iter().filter_map(|t| InstrumentToken::new(t).ok()).collect())
}

/// Adds one to a named counter of the namespace (kept in Redis so every process and the CLI see
/// the same figures).
pub async fn count(conn: &mut RedisConn, ns: &str, name: &str) {
    count_by(conn, ns, name, 1).await
}

/// Adds `n` to a shared counter (logged, never failing the caller).
pub async fn count_by(conn: &mut RedisConn, ns: &str, name: &str, n: u64) {
    let r: redis::RedisResult<i64> = conn.hincr(keys::counters(ns), name, n).await;
    if let Err(e) = r {
        tracing::warn!(counter = name, error = %e, "failed to count");
    }
}

/// Reads every counter of the namespace.
pub async fn counters(conn: &mut RedisConn, ns: &str) -> redis::RedisResult<Vec<(String, i64)>> {
    let mut all: Vec<(String, i64)> = conn.hgetall(keys::counters(ns)).await?;
    all.sort();
    Ok(all)
}
