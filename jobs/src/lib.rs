//! tickfill's queue contract: what a producer (bridge, scheduler, CLI) puts on the queue and what a
//! worker takes off it.
//!
//! Layout:
//! - [`Envelope`]: the wire form every queue entry has, `{"v": SCHEMA_VERSION, "job": {...}}`.
//! - [`Job`]: the payloads, one variant per kind of work.
//! - [`SubscriptionEvent`]: a validated subscription announcement from the ticker service.
//! - [`Job::idempotency_key`]: the key derived from a job's content, so two producers push it once.
//! - [`InstrumentToken`]: a validated instrument token.
//! - [`queue_name`]: Redis queue names, always under the deployment's namespace.
//!
//! A worker that meets a schema version it does not know refuses the job with
//! [`ContractError::UnknownVersion`]; it never guesses.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Version of the payload format. Bump it when a change would be misread by an older worker.
pub const SCHEMA_VERSION: u32 = 1;

/// The queue a job goes to. Subscription events are urgent; sweeps and hand backfills are bulk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    Urgent,
    Bulk,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Urgent, Lane::Bulk];

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Urgent => "urgent",
            Lane::Bulk => "bulk",
        }
    }

    /// The lane named `s` (`urgent`, `bulk`).
    pub fn parse(s: &str) -> Option<Lane> {
        Lane::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

impl std::fmt::Display for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The Redis queue name of one lane inside a deployment's namespace (`TICKFILL_QUEUE`).
pub fn queue_name(namespace: &str, lane: Lane) -> String {
    format!("{namespace}:{}", lane.as_str())
}

/// An instrument token: 1 … 2³²−1, as the ticker service and Kite number instruments. It is a
/// bare number on the wire (serde transparent), so payloads read the same as before it existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u32")]
pub struct InstrumentToken(u32);

/// Why a value is not an instrument token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("instrument token {0} is outside 1 … 4294967295")]
    OutOfRange(u64),
    #[error("instrument token {0:?} is not a whole number 1 … 4294967295")]
    NotANumber(String),
}

impl InstrumentToken {
    /// The token `n`, if it is one (0 and anything above 2³²−1 are not).
    pub fn new(n: u64) -> Result<Self, TokenError> {
        match u32::try_from(n) {
            Ok(t) if t > 0 => Ok(InstrumentToken(t)),
            _ => Err(TokenError::OutOfRange(n)),
        }
    }

    /// Parses a string of ASCII digits (surrounding blanks allowed).
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        let t = s.trim();
        if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TokenError::NotANumber(s.chars().take(40).collect()));
        }
        t.parse::<u64>().map_err(|_| TokenError::OutOfRange(u64::MAX)).and_then(Self::new)
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u64> for InstrumentToken {
    type Error = TokenError;
    fn try_from(n: u64) -> Result<Self, TokenError> {
        Self::new(n)
    }
}

impl TryFrom<i64> for InstrumentToken {
    type Error = TokenError;
    fn try_from(n: i64) -> Result<Self, TokenError> {
        u64::try_from(n).map_err(|_| TokenError::NotANumber(n.to_string())).and_then(Self::new)
    }
}

impl From<InstrumentToken> for i64 {
    fn from(t: InstrumentToken) -> i64 {
        i64::from(t.0)
    }
}

/// A token equals its number (for tests and checks that hold plain numbers).
impl PartialEq<u32> for InstrumentToken {
    fn eq(&self, other: &u32) -> bool {
        self.0 == *other
    }
}

impl From<InstrumentToken> for u32 {
    fn from(t: InstrumentToken) -> u32 {
        t.0
    }
}

impl std::str::FromStr for InstrumentToken {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, TokenError> {
        Self::parse(s)
    }
}

impl std::fmt::Display for InstrumentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What a subscription event announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    SubscriptionCreated,
    SubscriptionRemoved,
    SubscriptionDeleted,
}

impl EventType {
    /// Every event type, in a stable order.
    pub const ALL: [EventType; 3] =
        [EventType::SubscriptionCreated, EventType::SubscriptionRemoved, EventType::SubscriptionDeleted];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "subscription_created" => Some(Self::SubscriptionCreated),
            "subscription_removed" => Some(Self::SubscriptionRemoved),
            "subscription_deleted" => Some(Self::SubscriptionDeleted),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SubscriptionCreated => "subscription_created",
            Self::SubscriptionRemoved => "subscription_removed",
            Self::SubscriptionDeleted => "subscription_deleted",
        }
    }
}

/// A subscription event after validation by the bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionEvent {
    pub event_type: EventType,
    pub instrument_token: InstrumentToken,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tradingsymbol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Epoch seconds at publish, as the ticker service stamped it (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<i64>,
    /// Epoch milliseconds at which the bridge received the message.
    pub received_ms: i64,
}

/// Why a backfill was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Subscribe,
    Sweep,
    Manual,
    Reconcile,
    /// The check after a session: the settled days of the window are fetched again whole and
    /// compared with the store (a revision, an adjustment), and accepted as final.
    Verify,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Subscribe => "subscribe",
            Reason::Sweep => "sweep",
            Reason::Manual => "manual",
            Reason::Reconcile => "reconcile",
            Reason::Verify => "verify",
        }
    }

    /// The lane a backfill for this reason runs on: a desk is waiting for subscription windows.
    pub fn lane(self) -> Lane {
        match self {
            Reason::Subscribe | Reason::Reconcile => Lane::Urgent,
            Reason::Sweep | Reason::Manual | Reason::Verify => Lane::Bulk,
        }
    }
}

/// The kinds of job, as the `kind` tag of a payload names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Subscribed,
    Unsubscribed,
    Backfill,
    Sweep,
    ChainMetrics,
}

impl JobKind {
    /// Every kind, in a stable order (the metrics' label sets start from it).
    pub const ALL: [JobKind; 5] =
        [JobKind::Subscribed, JobKind::Unsubscribed, JobKind::Backfill, JobKind::Sweep, JobKind::ChainMetrics];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Subscribed => "subscribed",
            JobKind::Unsubscribed => "unsubscribed",
            JobKind::Backfill => "backfill",
            JobKind::Sweep => "sweep",
            JobKind::ChainMetrics => "chain_metrics",
        }
    }

    /// The kind named `s` (`subscribed`, `backfill`, …).
    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::str::FromStr for JobKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        JobKind::parse(s.trim()).ok_or_else(|| {
            let all: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
            format!("unknown job kind {s:?}: one of {}", all.join(", "))
        })
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One unit of work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    Subscribed {
        event: SubscriptionEvent,
    },
    Unsubscribed {
        event: SubscriptionEvent,
    },
    Backfill {
        token: InstrumentToken,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        reason: Reason,
        #[serde(default)]
        force: bool,
    },
    Sweep {
        tick: DateTime<Utc>,
    },
    ChainMetrics {
        underlying: String,
        expiry: NaiveDate,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}

impl Job {
    /// The kind of job this is.
    pub fn job_kind(&self) -> JobKind {
        match self {
            Job::Subscribed { .. } => JobKind::Subscribed,
            Job::Unsubscribed { .. } => JobKind::Unsubscribed,
            Job::Backfill { .. } => JobKind::Backfill,
            Job::Sweep { .. } => JobKind::Sweep,
            Job::ChainMetrics { .. } => JobKind::ChainMetrics,
        }
    }

    /// Short name of the variant, as logged and stored in `backfill_runs.kind`.
    pub fn kind(&self) -> &'static str {
        self.job_kind().as_str()
    }

    /// The lane a job runs in: what a desk waits for is urgent, everything else bulk.
    pub fn lane(&self) -> Lane {
        match self {
            Job::Subscribed { .. } | Job::Unsubscribed { .. } => Lane::Urgent,
            Job::Backfill { reason, .. } => reason.lane(),
            Job::ChainMetrics { .. } => Lane::Urgent,
            _ => Lane::Bulk,
        }
    }

    /// The instrument a job is about, where it is about one.
    pub fn token(&self) -> Option<InstrumentToken> {
        match self {
            Job::Subscribed { event } | Job::Unsubscribed { event } => Some(event.instrument_token),
            Job::Backfill { token, .. } => Some(*token),
            _ => None,
        }
    }

    /// Key derived from the content, so that the same job pushed by two producers is stored once.
    ///
    /// An event is identified by its type, token, account and publish time: two bridges
    /// receiving one message derive one key, while a later re-subscription (another publish
    /// second) derives another. An event without a publish time falls back to the minute the
    /// bridge received it, which two bridges share almost always.
    pub fn idempotency_key(&self) -> String {
        match self {
            Job::Subscribed { event } | Job::Unsubscribed { event } => {
                let when = match event.published_at {
                    Some(ts) => format!("t{ts}"),
                    None => format!("r{}", event.received_ms / 60_000),
                };
                format!(
                    "ev:{}:{}:{}:{}",
                    event.event_type.as_str(),
                    event.instrument_token,
                    event.account_id.as_deref().unwrap_or("-"),
                    when
                )
            }
            Job::Backfill { token, from, to, force, reason } => {
                let tag = match (force, reason) {
                    (_, Reason::Verify) => ":verify",
                    (true, _) => ":force",
                    (false, _) => "",
                };
                format!("bf:{token}:{}:{}{tag}", from.timestamp(), to.timestamp())
            }
            Job::Sweep { tick } => format!("sweep:{}", tick.timestamp()),
            Job::ChainMetrics { underlying, expiry, from, to } => {
                format!("chain:{underlying}:{expiry}:{}:{}", from.timestamp(), to.timestamp())
            }
        }
    }
}

/// The wire form of a queue entry: the schema version next to the job, kept as raw JSON so
/// that a worker can read the version even when it cannot read the job; and, for a job that is
/// being retried, the errors of its earlier attempts and the id of its first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    pub job: serde_json::Value,
    /// The idempotency key the job was first pushed under; retries derive theirs from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The id of the first attempt (what `backfill_runs.job_id` says for every attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The errors of the earlier attempts, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
    /// How often this attempt was put off (a dependency was unreachable, or its lane or kind was
    /// paused): no attempt spent. Named `pauses` in the JSON, as jobs already queued spell it.
    #[serde(default, rename = "pauses", skip_serializing_if = "is_zero")]
    pub put_offs: u32,
    /// The W3C `traceparent` of the event (or sweep) the job came from: its attempts, retries and
    /// put-offs continue that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// When this envelope was pushed, in epoch milliseconds (its wait in the queue starts there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_ms: Option<i64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One failed attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub at: DateTime<Utc>,
    pub error: String,
}

/// Why a queue entry cannot be turned into a [`Job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractError {
    UnknownVersion(u32),
    Malformed(String),
}

impl std::fmt::Display for ContractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContractError::UnknownVersion(v) => {
                write!(f, "unknown job schema version {v} (this worker reads version {SCHEMA_VERSION})")
            }
            ContractError::Malformed(e) => write!(f, "malformed job payload: {e}"),
        }
    }
}

impl std::error::Error for ContractError {}

impl Envelope {
    /// Wraps a job at the current schema version.
    pub fn new(job: &Job) -> Self {
        // Serialising a `Job` cannot fail: every field is a plain value.
        let job = serde_json::to_value(job).expect("Job serialises to JSON");
        Envelope {
            v: SCHEMA_VERSION,
            job,
            key: None,
            origin: None,
            failures: Vec::new(),
            put_offs: 0,
            trace: None,
            pushed_ms: None,
        }
    }

    /// This attempt's number, counting from 1.
    pub fn attempt(&self) -> u32 {
        self.failures.len() as u32 + 1
    }

    /// The envelope of the next attempt: this one's failure appended, the first attempt's id kept.
    pub fn next_attempt(&self, this_id: &str, error: String, at: DateTime<Utc>) -> Envelope {
        let mut next = self.clone();
        next.origin.get_or_insert_with(|| this_id.to_string());
        next.failures.push(Failure { at, error });
        next
    }

    /// The same attempt put off once more (a dependency was unreachable, or its lane or kind was
    /// paused), with its key.
    pub fn put_off(&self, this_id: &str, fallback: &str) -> (Envelope, String) {
        let mut next = self.clone();
        next.origin.get_or_insert_with(|| this_id.to_string());
        next.put_offs += 1;
        let key =
            format!("{}#attempt-{}-put-off-{}", self.key.as_deref().unwrap_or(fallback), self.attempt(), next.put_offs);
        (next, key)
    }

    /// The key of the next attempt, derived from the first push's: the original key is never
    /// freed early, so a retry under it would be dropped.
    pub fn next_key(&self, fallback: &str) -> String {
        format!("{}#attempt-{}", self.key.as_deref().unwrap_or(fallback), self.attempt() + 1)
    }

    /// Reads the job back, refusing versions this build does not know.
    pub fn decode(&self) -> Result<Job, ContractError> {
        if self.v != SCHEMA_VERSION {
            return Err(ContractError::UnknownVersion(self.v));
        }
        serde_json::from_value(self.job.clone()).map_err(|e| ContractError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts: Option<i64>, received_ms: i64) -> SubscriptionEvent {
        SubscriptionEvent {
            event_type: EventType::SubscriptionCreated,
            instrument_token: InstrumentToken(256265),
            tradingsymbol: Some("NIFTY 50".into()),
            segment: Some("INDICES".into()),
            requested_mode: None,
            account_id: None,
            published_at: ts,
            received_ms,
        }
    }

    #[test]
    fn envelope_round_trips_every_job() {
        let t = DateTime::from_timestamp(1_730_462_400, 0).unwrap();
        let jobs = vec![
            Job::Subscribed { event: event(Some(1), 2) },
            Job::Unsubscribed { event: event(None, 2) },
            Job::Backfill { token: InstrumentToken(5), from: t, to: t, reason: Reason::Sweep, force: true },
            Job::Sweep { tick: t },
            Job::ChainMetrics {
                underlying: "NIFTY".into(),
                expiry: NaiveDate::from_ymd_opt(2025, 11, 25).unwrap(),
                from: t,
                to: t,
            },
        ];
        for job in jobs {
            let wire = serde_json::to_string(&Envelope::new(&job)).unwrap();
            let back: Envelope = serde_json::from_str(&wire).unwrap();
            assert_eq!(back.decode().unwrap(), job);
        }
    }

    #[test]
    fn unknown_version_is_refused_with_the_version() {
        let env = Envelope { v: 99, ..Envelope::new(&Job::Sweep { tick: Utc::now() }) };
        assert_eq!(env.decode(), Err(ContractError::UnknownVersion(99)));
        assert!(env.decode().unwrap_err().to_string().contains("99"));
    }

    #[test]
    fn unknown_kind_is_malformed() {
        let env =
            Envelope { job: serde_json::json!({"kind": "launch"}), ..Envelope::new(&Job::Sweep { tick: Utc::now() }) };
        assert!(matches!(env.decode(), Err(ContractError::Malformed(_))));
    }

    #[test]
    fn same_event_seen_twice_has_one_key_and_a_resubscribe_another() {
        let a = Job::Subscribed { event: event(Some(1_730_462_400), 10) };
        let b = Job::Subscribed { event: event(Some(1_730_462_400), 99_999) };
        let c = Job::Subscribed { event: event(Some(1_730_462_460), 10) };
        assert_eq!(a.idempotency_key(), b.idempotency_key());
        assert_ne!(a.idempotency_key(), c.idempotency_key());
    }

    #[test]
    fn retries_keep_the_first_id_every_error_and_derive_their_keys() {
        let mut env = Envelope::new(&Job::Sweep { tick: Utc::now() });
        env.key = Some("sweep:1".into());
        assert_eq!(env.attempt(), 1);
        let second = env.next_attempt("A", "502".into(), Utc::now());
        let third = second.next_attempt("B", "timeout".into(), Utc::now());
        assert_eq!((third.attempt(), third.origin.as_deref()), (3, Some("A")));
        assert_eq!(third.failures.iter().map(|f| f.error.as_str()).collect::<Vec<_>>(), ["502", "timeout"]);
        assert_eq!(env.next_key("x"), "sweep:1#attempt-2");
        assert_eq!(second.next_key("x"), "sweep:1#attempt-3");
        // An envelope of the first format still reads.
        let old: Envelope =
            serde_json::from_str(r#"{"v":1,"job":{"kind":"sweep","tick":"2025-11-04T00:00:00Z"}}"#).unwrap();
        assert!(old.failures.is_empty() && old.decode().is_ok());
    }

    #[test]
    fn a_pause_keeps_the_attempt_and_derives_a_fresh_key() {
        let env = Envelope { key: Some("k".into()), ..Envelope::new(&Job::Sweep { tick: Utc::now() }) };
        let (p1, k1) = env.put_off("A", "x");
        let (p2, k2) = p1.put_off("B", "x");
        assert_eq!((p2.attempt(), p2.put_offs, p2.origin.as_deref()), (1, 2, Some("A")));
        assert_ne!(k1, k2);
        assert_eq!(k2, "k#attempt-1-put-off-2");
    }

    #[test]
    fn queues_live_under_the_namespace() {
        assert_eq!(queue_name("desk1", Lane::Urgent), "desk1:urgent");
        assert_eq!(queue_name("desk1", Lane::Bulk), "desk1:bulk");
    }

    #[test]
    fn a_token_is_1_to_2_pow_32_minus_1_on_the_wire_and_in_text() {
        assert_eq!(InstrumentToken::parse(" 256265 ").map(InstrumentToken::get), Ok(256265));
        assert_eq!(InstrumentToken::parse("4294967295").map(InstrumentToken::get), Ok(u32::MAX));
        assert_eq!(InstrumentToken::parse("4294967296"), Err(TokenError::OutOfRange(4294967296)));
        assert_eq!(InstrumentToken::parse("0"), Err(TokenError::OutOfRange(0)));
        for bad in ["", "-1", "1e3", "12a", "99999999999999999999999"] {
            assert!(InstrumentToken::parse(bad).is_err(), "{bad:?}");
        }
        let job = Job::Backfill {
            token: InstrumentToken(7),
            from: Utc::now(),
            to: Utc::now(),
            reason: Reason::Manual,
            force: false,
        };
        let wire = serde_json::to_value(&job).unwrap();
        assert_eq!(wire["token"], serde_json::json!(7), "a bare number, as before the type existed");
        let mut zero = wire.clone();
        zero["token"] = serde_json::json!(0);
        assert!(serde_json::from_value::<Job>(zero).is_err(), "token 0 is refused");
    }

    #[test]
    fn every_job_kind_is_listed_and_parses_back() {
        for k in JobKind::ALL {
            assert_eq!(JobKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(JobKind::parse("nope"), None);
    }
}
