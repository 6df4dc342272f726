//! Subscription events as the ticker service publishes them: parsing one message into a
//! [`SubscriptionEvent`], liberal in what it accepts, and the reasons a message is refused.

use serde_json::Value;
use tickfill_jobs::{EventType, InstrumentToken, Job, SubscriptionEvent};

/// Messages above this size are rejected unparsed.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Why a message was refused, as a stable label for counters and the rejected list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    MalformedJson,
    NotAnObject,
    MissingEventType,
    BadEventType,
    UnknownEventType,
    MissingToken,
    BadToken,
    BadTimestamp,
    BadMetadata,
    Oversize,
}

impl RejectReason {
    /// Every reason, in a stable order (the metrics' label sets start from it).
    pub const ALL: [RejectReason; 10] = [
        RejectReason::MalformedJson,
        RejectReason::NotAnObject,
        RejectReason::MissingEventType,
        RejectReason::BadEventType,
        RejectReason::UnknownEventType,
        RejectReason::MissingToken,
        RejectReason::BadToken,
        RejectReason::BadTimestamp,
        RejectReason::BadMetadata,
        RejectReason::Oversize,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::MissingEventType => "missing_event_type",
            RejectReason::BadEventType => "bad_event_type",
            RejectReason::UnknownEventType => "unknown_event_type",
            RejectReason::MissingToken => "missing_token",
            RejectReason::BadToken => "bad_token",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::BadMetadata => "bad_metadata",
            RejectReason::Oversize => "oversize",
        }
    }
}

impl PartialEq<&str> for RejectReason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: RejectReason,
    /// What was wrong, naming the field.
    pub reason: String,
}

fn reject(code: RejectReason, reason: impl Into<String>) -> Rejection {
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

/// How far an event's timestamp may run ahead of the bridge's clock.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// The longest metadata string accepted, in characters (not bytes: 256 `€` are fine).
pub const MAX_FIELD_CHARS: usize = 256;

fn optional_string(meta: &serde_json::Map<String, Value>, field: &str) -> Result<Option<String>, Rejection> {
    text_field(meta, "metadata.", field)
}

/// A string field of `obj` (named `{path}{field}` in a refusal): absent, null or blank is `None`.
fn text_field(obj: &serde_json::Map<String, Value>, path: &str, field: &str) -> Result<Option<String>, Rejection> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > MAX_FIELD_CHARS => {
            Err(reject(RejectReason::BadMetadata, format!("{path}{field} is longer than {MAX_FIELD_CHARS} characters")))
        }
        // A NUL or another control character cannot be stored (PostgreSQL refuses NUL in text)
        // and is never part of a symbol: refused here, not by the job that would die of it.
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            Err(reject(RejectReason::BadMetadata, format!("{path}{field} holds a control character (such as NUL)")))
        }
        Some(Value::String(s)) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
        Some(other) => {
            Err(reject(RejectReason::BadMetadata, format!("{path}{field} must be a string, got {}", kind(other))))
        }
    }
}

/// One entry of the ticker service's subscription list (`GET /subscriptions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSubscription {
    pub instrument_token: InstrumentToken,
    pub tradingsymbol: Option<String>,
    pub segment: Option<String>,
    pub requested_mode: Option<String>,
    pub account_id: Option<String>,
}

/// Checks one entry of the subscription list as the bridge checks an event: a token of
/// 1 … 4294967295 (a number or a string of digits), string fields without control characters and
/// within [`MAX_FIELD_CHARS`]. One bad entry is refused alone; the rest of the list stands.
pub fn parse_listed(entry: &Value) -> Result<ListedSubscription, Rejection> {
    let Value::Object(obj) = entry else {
        return Err(reject(RejectReason::NotAnObject, format!("expected a JSON object, got {}", kind(entry))));
    };
    Ok(ListedSubscription {
        instrument_token: token_of(obj)?,
        tradingsymbol: text_field(obj, "", "tradingsymbol")?,
        segment: text_field(obj, "", "segment")?.map(|s| s.to_ascii_uppercase()),
        requested_mode: text_field(obj, "", "requested_mode")?,
        account_id: text_field(obj, "", "account_id")?,
    })
}

/// The token a refused list entry still names, when it names a valid one.
pub fn listed_token(entry: &Value) -> Option<InstrumentToken> {
    token_of(entry.as_object()?).ok()
}

/// The `instrument_token` of an event or a list entry: 1 … 4294967295, a number or digits.
fn token_of(obj: &serde_json::Map<String, Value>) -> Result<InstrumentToken, Rejection> {
    match obj.get("instrument_token").and_then(integer) {
        None => Err(reject(RejectReason::MissingToken, "instrument_token is missing")),
        Some(Err(())) => Err(reject(
            RejectReason::BadToken,
            format!("instrument_token must be an integer 1 … 4294967295, got {}", obj["instrument_token"]),
        )),
        Some(Ok(t)) => InstrumentToken::new(t).map_err(|e| reject(RejectReason::BadToken, e.to_string())),
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
        return Err(reject(
            RejectReason::Oversize,
            format!("message of {} bytes exceeds {MAX_MESSAGE_BYTES}", payload.len()),
        ));
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| reject(RejectReason::MalformedJson, format!("not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(reject(RejectReason::NotAnObject, format!("expected a JSON object, got {}", kind(&value))));
    };
    let event_type = match obj.get("event_type") {
        Some(Value::String(s)) => EventType::parse(s.trim())
            .ok_or_else(|| reject(RejectReason::UnknownEventType, format!("unknown event_type {s:?}")))?,
        None | Some(Value::Null) => return Err(reject(RejectReason::MissingEventType, "event_type is missing")),
        Some(other) => {
            return Err(reject(RejectReason::BadEventType, format!("event_type must be a string, got {}", kind(other))))
        }
    };
    let token = token_of(&obj)?;
    let published_at = match obj.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_f64().is_some_and(|f| (0.0..1.0e11).contains(&f)) => {
            Some(n.as_f64().unwrap() as i64)
        }
        Some(v) => match integer(v) {
            Some(Ok(t)) if t < 100_000_000_000 => Some(t as i64),
            _ => return Err(reject(RejectReason::BadTimestamp, format!("timestamp must be epoch seconds, got {v}"))),
        },
    };
    // The timestamp orders a token's events (the later wins), so one from the future would
    // outrank every real event after it: beyond a clock's plausible skew it is refused.
    if let Some(t) = published_at {
        if t.saturating_mul(1000) > received_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(reject(
                RejectReason::BadTimestamp,
                format!("timestamp {t} is more than {} s after the bridge received it", MAX_CLOCK_SKEW_MS / 1000),
            ));
        }
    }
    let empty = serde_json::Map::new();
    let meta = match obj.get("metadata") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(reject(RejectReason::BadMetadata, format!("metadata must be an object, got {}", kind(other))))
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A receipt time a minute after the samples' timestamp.
    const RECEIVED: i64 = 1_730_462_460_000;

    #[test]
    fn a_timestamp_beyond_the_clock_skew_is_refused() {
        let at = |ts: i64| format!(r#"{{"event_type":"subscription_created","instrument_token":1,"timestamp":{ts}}}"#);
        assert!(parse_event(at(1_730_462_460 + 300).as_bytes(), RECEIVED).is_ok());
        let e = parse_event(at(1_730_462_460 + 301).as_bytes(), RECEIVED).unwrap_err();
        assert_eq!(e.code, RejectReason::BadTimestamp);
        assert!(e.reason.contains("more than 300 s after the bridge received it"), "{}", e.reason);
    }

    #[test]
    fn the_documented_event_parses() {
        let e = parse_event(
            br#"{"event_type":"subscription_created","instrument_token":256265,"metadata":{"tradingsymbol":"NIFTY 50","segment":"INDICES"},"timestamp":1730462400}"#,
            RECEIVED,
        )
        .unwrap();
        assert_eq!(e.instrument_token.get(), 256265);
        assert_eq!(e.tradingsymbol.as_deref(), Some("NIFTY 50"));
        assert_eq!(e.published_at, Some(1730462400));
        assert_eq!(e.received_ms, RECEIVED);
    }

    #[test]
    fn strings_of_digits_and_missing_metadata_are_accepted() {
        let e = parse_event(
            br#"{"event_type":"subscription_removed","instrument_token":"408065","timestamp":"1730462400"}"#,
            RECEIVED,
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

    #[test]
    fn metadata_is_limited_in_characters_and_refuses_control_characters() {
        let ev = |sym: &str| {
            let msg = serde_json::json!({"event_type": "subscription_created", "instrument_token": 5,
                                         "metadata": {"tradingsymbol": sym}});
            parse_event(msg.to_string().as_bytes(), 0)
        };
        assert_eq!(ev(&"€".repeat(256)).unwrap().tradingsymbol.unwrap().chars().count(), 256);
        assert_eq!(ev(&"€".repeat(257)).unwrap_err().code, "bad_metadata");
        for bad in ["NIFTY\0", "A\nB", "\u{1b}[31m"] {
            let r = ev(bad).unwrap_err();
            assert_eq!(r.code, "bad_metadata", "{bad}");
            assert!(r.reason.contains("tradingsymbol"), "{}", r.reason);
        }
    }

    #[test]
    fn a_listed_subscription_is_checked_on_its_own() {
        let ok = parse_listed(&serde_json::json!({"instrument_token": "256265", "tradingsymbol": " NIFTY 50 ",
            "segment": "indices", "status": "active"}))
        .unwrap();
        assert_eq!((ok.instrument_token.get(), ok.tradingsymbol.as_deref()), (256265, Some("NIFTY 50")));
        assert_eq!(ok.segment.as_deref(), Some("INDICES"));
        for (entry, code) in [
            (serde_json::json!({"instrument_token": 0}), RejectReason::BadToken),
            (serde_json::json!({"instrument_token": 4294967296u64}), RejectReason::BadToken),
            (serde_json::json!({"instrument_token": -1}), RejectReason::BadToken),
            (serde_json::json!({"tradingsymbol": "X"}), RejectReason::MissingToken),
            (serde_json::json!({"instrument_token": 1, "tradingsymbol": "BAD\u{0}NUL"}), RejectReason::BadMetadata),
            (serde_json::json!({"instrument_token": 1, "segment": 7}), RejectReason::BadMetadata),
            (serde_json::json!([1]), RejectReason::NotAnObject),
        ] {
            assert_eq!(parse_listed(&entry).unwrap_err().code, code, "{entry}");
        }
        let nul = parse_listed(&serde_json::json!({"instrument_token": 1, "tradingsymbol": "A\u{0}"})).unwrap_err();
        assert_eq!(nul.reason, "tradingsymbol holds a control character (such as NUL)");
    }
}
