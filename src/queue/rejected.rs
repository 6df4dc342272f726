//! The rejected list, `{TICKFILL_QUEUE}:rejected`: the newest refused inputs (events the bridge
//! could not accept, entries of the ticker's subscription list that reconcile could not), each with
//! its reason and first bytes, for `tickfill events rejected` and the admin API.

use chrono::Utc;
use redis::AsyncCommands;
use serde_json::Value;

use super::keys;
use crate::domain::event::{RejectReason, Rejection};

/// How many rejected messages are kept.
pub const REJECTED_KEEP: isize = 1000;
/// How much of a rejected oversize message is kept.
pub const OVERSIZE_KEEP: usize = 256;
/// How much of any other rejected message is kept.
pub const REJECTED_BODY_KEEP: usize = 8 * 1024;

/// Keeps a rejected message for inspection: reason, size, and the first bytes of the body.
pub async fn keep_rejected(conn: &mut crate::queue::RedisConn, ns: &str, payload: &[u8], why: &Rejection) {
    let keep = if why.code == RejectReason::Oversize { OVERSIZE_KEEP } else { REJECTED_BODY_KEEP };
    let entry = serde_json::json!({
        "at": Utc::now().to_rfc3339(),
        "code": why.code.as_str(),
        "reason": why.reason,
        "bytes": payload.len(),
        "truncated": payload.len() > keep,
        "message": String::from_utf8_lossy(&payload[..payload.len().min(keep)]),
    });
    let key = keys::rejected(ns);
    let r: redis::RedisResult<()> = redis::pipe()
        .lpush(&key, entry.to_string())
        .ignore()
        .ltrim(&key, 0, REJECTED_KEEP - 1)
        .ignore()
        .query_async(conn)
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "failed to keep a rejected event");
    }
    super::count(conn, ns, &format!("events_rejected:{}", why.code)).await;
}

/// The newest rejected messages, newest first.
pub async fn list_rejected(conn: &mut crate::queue::RedisConn, ns: &str, limit: isize) -> anyhow::Result<Vec<Value>> {
    let raw: Vec<String> = conn.lrange(keys::rejected(ns), 0, limit.max(1) - 1).await?;
    Ok(raw.iter().filter_map(|s| serde_json::from_str(s).ok()).collect())
}

/// [`keep_rejected`] for each of `refused` (input, reason) unless an entry of the same input and
/// reason is among the kept ones already: a bad entry of the ticker's list is met again at every
/// reconcile, and must not push the bridge's rejections out of the list. Counted once too. The
/// kept list is read once, whatever the number refused. Returns the reasons newly kept.
pub async fn keep_new_rejections<'a>(
    conn: &mut crate::queue::RedisConn,
    ns: &str,
    refused: &'a [(Vec<u8>, Rejection)],
) -> Vec<&'a Rejection> {
    let mut new = Vec::new();
    if refused.is_empty() {
        return new;
    }
    let kept = list_rejected(conn, ns, REJECTED_KEEP).await.unwrap_or_default();
    let seen: std::collections::HashSet<(String, String)> = kept
        .iter()
        .map(|e| {
            (e["code"].as_str().unwrap_or_default().to_string(), e["message"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    for (payload, why) in refused {
        let message = String::from_utf8_lossy(&payload[..payload.len().min(REJECTED_BODY_KEEP)]).into_owned();
        if !seen.contains(&(why.code.as_str().to_string(), message)) {
            keep_rejected(conn, ns, payload, why).await;
            new.push(why);
        }
    }
    new
}
