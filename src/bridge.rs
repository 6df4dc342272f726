//! The bridge: SUBSCRIBE to `{REDIS_CHANNEL_PREFIX}:events` and turn each subscription event into
//! a persisted job. It never stops on bad input: a message it cannot accept is counted, logged
//! with the reason and kept in `{TICKFILL_QUEUE}:rejected` (newest 1,000) for `tickfill events
//! rejected`. It reconnects forever with backoff when Redis goes away.

use std::time::Duration;

use crate::shutdown::Shutdown;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use redis::AsyncCommands;
use serde_json::Value;
use tickfill_jobs::{EventType, InstrumentToken, Job, SubscriptionEvent};

use crate::{
    config::Settings,
    metrics,
    queue::{self, Producer},
};

/// Messages above this size are rejected unparsed.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How many rejected messages are kept.
pub const REJECTED_KEEP: isize = 1000;
/// How much of a rejected oversize message is kept.
pub const OVERSIZE_KEEP: usize = 256;
/// How much of any other rejected message is kept.
pub const REJECTED_BODY_KEEP: usize = 8 * 1024;

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Stable label for counters (`oversize`, `malformed_json`, `bad_token`, …).
    pub code: &'static str,
    pub reason: String,
}

fn reject(code: &'static str, reason: impl Into<String>) -> Rejection {
    Rejection { code, reason: reason.into() }
}

/// Reads an unsigned integer given as a JSON number or as a string of digits.
fn integer(v: &Value) -> Option<Result<u64, ()>> {
    match v {
        Value::Null => None,
        Value::Number(n) => Some(n.as_u64().ok_or(())),
        Value::String(s) if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) => {
            Some(s.parse::<u64>().map_err(|_| ()))
        }
        _ => Some(Err(())),
    }
}

fn optional_string(meta: &serde_json::Map<String, Value>, field: &str) -> Result<Option<String>, Rejection> {
    match meta.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 256 => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
        Some(Value::String(_)) => {
            Err(reject("bad_metadata", format!("metadata.{field} is longer than 256 characters")))
        }
        Some(other) => Err(reject("bad_metadata", format!("metadata.{field} must be a string, got {}", kind(other)))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses one pub/sub message, liberal in what it accepts: the token and timestamp may be
/// strings of digits, `metadata` may be missing or partial; other wrong types are refused.
pub fn parse_event(payload: &[u8], received_ms: i64) -> Result<SubscriptionEvent, Rejection> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(reject("oversize", format!("message of {} bytes exceeds {MAX_MESSAGE_BYTES}", payload.len())));
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| reject("malformed_json", format!("not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(reject("not_an_object", format!("expected a JSON object, got {}", kind(&value))));
    };
    let event_type = match obj.get("event_type") {
        Some(Value::String(s)) => EventType::parse(s.trim())
            .ok_or_else(|| reject("unknown_event_type", format!("unknown event_type {s:?}")))?,
        None | Some(Value::Null) => return Err(reject("missing_event_type", "event_type is missing")),
        Some(other) => {
            return Err(reject("bad_event_type", format!("event_type must be a string, got {}", kind(other))))
        }
    };
    let token = match obj.get("instrument_token").and_then(integer) {
        None => return Err(reject("missing_token", "instrument_token is missing")),
        Some(Err(())) => {
            return Err(reject(
                "bad_token",
                format!("instrument_token must be an integer 1 … 4294967295, got {}", obj["instrument_token"]),
            ))
        }
        Some(Ok(t)) => InstrumentToken::new(t).map_err(|e| reject("bad_token", e.to_string()))?,
    };
    let published_at = match obj.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_f64().is_some_and(|f| (0.0..1.0e11).contains(&f)) => {
            Some(n.as_f64().unwrap() as i64)
        }
        Some(v) => match integer(v) {
            Some(Ok(t)) if t < 100_000_000_000 => Some(t as i64),
            _ => return Err(reject("bad_timestamp", format!("timestamp must be epoch seconds, got {v}"))),
        },
    };
    let empty = serde_json::Map::new();
    let meta = match obj.get("metadata") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(other) => return Err(reject("bad_metadata", format!("metadata must be an object, got {}", kind(other)))),
    };
    Ok(SubscriptionEvent {
        event_type,
        instrument_token: token,
        tradingsymbol: optional_string(meta, "tradingsymbol")?,
        segment: optional_string(meta, "segment")?.map(|s| s.to_ascii_uppercase()),
        requested_mode: optional_string(meta, "requested_mode")?,
        account_id: optional_string(meta, "account_id")?,
        published_at,
        received_ms,
    })
}

/// The job an accepted event becomes.
pub fn job_for(event: SubscriptionEvent) -> Job {
    match event.event_type {
        EventType::SubscriptionCreated => Job::Subscribed { event },
        EventType::SubscriptionRemoved | EventType::SubscriptionDeleted => Job::Unsubscribed { event },
    }
}

/// Keeps a rejected message for inspection: reason, size, and the first bytes of the body.
pub async fn keep_rejected(conn: &mut redis::aio::ConnectionManager, ns: &str, payload: &[u8], why: &Rejection) {
    let keep = if why.code == "oversize" { OVERSIZE_KEEP } else { REJECTED_BODY_KEEP };
    let entry = serde_json::json!({
        "at": Utc::now().to_rfc3339(),
        "code": why.code,
        "reason": why.reason,
        "bytes": payload.len(),
        "truncated": payload.len() > keep,
        "message": String::from_utf8_lossy(&payload[..payload.len().min(keep)]),
    });
    let key = queue::keys::rejected(ns);
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
    queue::count(conn, ns, &format!("events_rejected:{}", why.code)).await;
}

/// The newest rejected messages, newest first.
pub async fn list_rejected(
    conn: &mut redis::aio::ConnectionManager,
    ns: &str,
    limit: isize,
) -> anyhow::Result<Vec<Value>> {
    let raw: Vec<String> = conn.lrange(queue::keys::rejected(ns), 0, limit.max(1) - 1).await?;
    Ok(raw.iter().filter_map(|s| serde_json::from_str(s).ok()).collect())
}

/// Handles one message: a job on success, a kept rejection otherwise. Never fails the bridge;
/// a push that fails (Redis down) is returned so the caller can retry it.
pub async fn handle_message(
    producer: &mut Producer,
    conn: &mut redis::aio::ConnectionManager,
    settings: &Settings,
    payload: &[u8],
) -> anyhow::Result<()> {
    let received_ms = Utc::now().timestamp_millis();
    match parse_event(payload, received_ms) {
        Ok(event) => {
            let token = event.instrument_token.get();
            let kind = metrics::l1("type", event.event_type.as_str());
            metrics::get().events_received.get_or_create(&kind).inc();
            let job = job_for(event);
            if matches!(job, Job::Subscribed { .. }) {
                queue::note_subscribing(conn, &settings.queue, token, received_ms).await;
            }
            producer.push(&job).await?;
            tracing::debug!(token, kind = job.kind(), "event queued");
            queue::count(conn, &settings.queue, "events_accepted").await;
            metrics::get().events_accepted.get_or_create(&kind).inc();
        }
        Err(why) => {
            metrics::get().events_received.get_or_create(&metrics::l1("type", "unreadable")).inc();
            metrics::get().events_rejected.get_or_create(&metrics::l1("reason", why.code)).inc();
            tracing::warn!(code = why.code, reason = %why.reason, bytes = payload.len(), "event rejected");
            keep_rejected(conn, &settings.queue, payload, &why).await;
        }
    }
    Ok(())
}

/// Runs the bridge until `shutdown` fires. Reconnects with capped exponential backoff.
pub async fn run(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let channel = queue::keys::events_channel(&settings.channel_prefix);
    if !settings.subscription_events_enabled {
        tracing::warn!("SUBSCRIPTION_EVENTS_ENABLED=false: the bridge idles and queues nothing");
        shutdown.wait().await;
        return Ok(());
    }
    let client = redis::Client::open(settings.redis_url.expose())?;
    if let Ok(mut conn) = queue::connect(settings.redis_url.expose()).await {
        queue::warn_without_persistence(&mut conn).await;
    }
    let mut backoff = Duration::from_millis(100);
    let mut reconnects = 0u64;
    loop {
        let session = async {
            let mut conn = queue::connect(settings.redis_url.expose()).await?;
            let mut producer = Producer::new(conn.clone(), &settings);
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            tracing::info!(channel = %channel, queue = %settings.queue, "bridge subscribed");
            if reconnects > 0 {
                // Pub/sub forgot whatever was published while we were away: a sweep makes it good.
                let tick = DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("valid instant");
                producer.push(&Job::Sweep { tick }).await?;
                queue::count(&mut conn, &settings.queue, "bridge_catch_up_sweeps").await;
                tracing::info!(%tick, "catch-up sweep pushed after reconnecting");
            }
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let payload = msg.get_payload_bytes().to_vec();
                // A push that fails is retried until it lands: the event is not lost while
                // this connection lives.
                let mut wait = Duration::from_millis(50);
                while let Err(e) = handle_message(&mut producer, &mut conn, &settings, &payload).await {
                    tracing::warn!(error = %e, "failed to queue an event; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
            anyhow::Ok(())
        };
        tokio::select! {
            r = session => match r {
                Ok(()) => tracing::warn!("bridge lost its subscription; reconnecting"),
                Err(e) => tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "bridge cannot reach Redis; reconnecting"),
            },
            _ = shutdown.wait() => {
                tracing::info!("bridge stopped");
                return Ok(());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait() => return Ok(()),
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
        reconnects += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_event_parses() {
        let e = parse_event(
            br#"{"event_type":"subscription_created","instrument_token":256265,"metadata":{"tradingsymbol":"NIFTY 50","segment":"INDICES"},"timestamp":1730462400}"#,
            7,
        )
        .unwrap();
        assert_eq!(e.instrument_token.get(), 256265);
        assert_eq!(e.tradingsymbol.as_deref(), Some("NIFTY 50"));
        assert_eq!(e.published_at, Some(1730462400));
        assert_eq!(e.received_ms, 7);
    }

    #[test]
    fn strings_of_digits_and_missing_metadata_are_accepted() {
        let e = parse_event(
            br#"{"event_type":"subscription_removed","instrument_token":"408065","timestamp":"1730462400"}"#,
            0,
        )
        .unwrap();
        assert_eq!(
            (e.instrument_token.get(), e.published_at, e.event_type),
            (408065, Some(1730462400), EventType::SubscriptionRemoved)
        );
        assert!(parse_event(
            br#"{"event_type":"subscription_deleted","instrument_token":1,"metadata":{"segment":"nfo-opt"}}"#,
            0
        )
        .is_ok());
    }

    #[test]
    fn each_bad_input_has_its_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"{not json", "malformed_json"),
            (b"[1,2]", "not_an_object"),
            (br#"{"event_type":"subscription_paused","instrument_token":1}"#, "unknown_event_type"),
            (br#"{"event_type":7,"instrument_token":1}"#, "bad_event_type"),
            (br#"{"instrument_token":1}"#, "missing_event_type"),
            (br#"{"event_type":"subscription_created","instrument_token":0}"#, "bad_token"),
            (br#"{"event_type":"subscription_created","instrument_token":-5}"#, "bad_token"),
            (br#"{"event_type":"subscription_created","instrument_token":4294967296}"#, "bad_token"),
            (br#"{"event_type":"subscription_created","instrument_token":"12a"}"#, "bad_token"),
            (br#"{"event_type":"subscription_created","instrument_token":1.5}"#, "bad_token"),
            (br#"{"event_type":"subscription_created"}"#, "missing_token"),
            (br#"{"event_type":"subscription_created","instrument_token":1,"timestamp":"soon"}"#, "bad_timestamp"),
            (br#"{"event_type":"subscription_created","instrument_token":1,"metadata":"x"}"#, "bad_metadata"),
            (br#"{"event_type":"subscription_created","instrument_token":1,"metadata":{"segment":5}}"#, "bad_metadata"),
        ];
        for (msg, code) in cases {
            let r = parse_event(msg, 0).unwrap_err();
            assert_eq!(r.code, *code, "{}", String::from_utf8_lossy(msg));
        }
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(parse_event(&big, 0).unwrap_err().code, "oversize");
        assert_eq!(parse_event(b"\xff\xfe\x00", 0).unwrap_err().code, "malformed_json");
    }

    #[test]
    fn the_largest_token_is_accepted() {
        let e = parse_event(br#"{"event_type":"subscription_created","instrument_token":4294967295}"#, 0).unwrap();
        assert_eq!(e.instrument_token.get(), u32::MAX);
    }
}
