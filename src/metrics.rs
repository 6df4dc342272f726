//! Prometheus metrics: one registry per process, served at `GET /metrics` by the admin API.
//!
//! Counters and histograms count what this process did (Prometheus sums them over processes).
//! Gauges of shared state — queue depths, the dead set, subscription freshness — are read from
//! Redis and PostgreSQL at scrape time, so every process reports the same value: aggregate them
//! with `max`, not `sum`. Names are prefixed `tickfill_`; counters end in `_total`.

use std::sync::{atomic::AtomicU64, LazyLock};

use tickfill_jobs::{EventType, JobKind};

use crate::domain::{chain::STRIKE_TABLE, event::RejectReason, market::BarTarget};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram, info::Info},
    registry::Registry,
};

/// One label.
pub type L1 = [(&'static str, String); 1];
/// Two labels.
pub type L2 = [(&'static str, String); 2];

type Hist = Family<L1, Histogram>;
type GaugeF = Gauge<f64, AtomicU64>;

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    pub events_received: Family<L1, Counter>,
    pub events_accepted: Family<L1, Counter>,
    pub events_rejected: Family<L1, Counter>,
    /// Events the bridge pushed again after reconnecting (its replay window).
    pub events_replayed: Counter,
    /// Times a process's Redis connection moved to a (new) primary.
    pub redis_switches: Counter,
    pub event_to_commit: Histogram,
    pub jobs_pushed: Family<L1, Counter>,
    pub jobs_started: Family<L1, Counter>,
    pub jobs_succeeded: Family<L1, Counter>,
    pub jobs_retried: Family<L1, Counter>,
    pub jobs_put_off: Family<L1, Counter>,
    pub jobs_dead: Family<L1, Counter>,
    pub job_duration: Hist,
    pub rows_upserted: Family<L1, Counter>,
    pub history_requests: Family<L1, Counter>,
    pub ticker_oversize: Counter,
    pub rate_limit_wait: Histogram,
    pub queue_depth: Family<L2, Gauge>,
    pub queue_oldest_pending: Family<L1, GaugeF>,
    pub dead_jobs: Family<L1, Gauge>,
    pub paused: Gauge,
    pub up: Family<L1, Gauge>,
    pub subscriptions_active: Gauge,
    pub freshness_max_age: GaugeF,
    pub freshness_stale: Gauge,
    pub suspect_minutes: Gauge,
    pub days: Family<L1, Gauge>,
    pub rate_limit: Gauge,
    pub account_requests: Family<L1, Counter>,
    pub account_throttled: Family<L1, Counter>,
    pub account_breaker_opened: Family<L1, Counter>,
    pub account_sessions_ended: Family<L1, Counter>,
    pub account_rate_limit: Family<L1, Gauge>,
    pub account_grants_last_minute: Family<L1, Gauge>,
    pub account_waiting: Family<L1, Gauge>,
    pub account_breaker_open: Family<L1, Gauge>,
    pub account_session_valid: Family<L1, Gauge>,
    pub account_session_expires_in: Family<L1, Gauge>,
}

/// The tables rows are upserted into: the bar tables and the chain's strike distribution.
fn tables() -> impl Iterator<Item = &'static str> {
    BarTarget::TABLES.into_iter().chain([STRIKE_TABLE])
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 1 ms … ~65 s.
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 17)
}

impl Metrics {
    fn new() -> Metrics {
        let mut root = Registry::default();
        let r = root.sub_registry_with_prefix("tickfill");
        let m = Metrics {
            registry: Registry::default(),
            events_received: Family::default(),
            events_accepted: Family::default(),
            events_rejected: Family::default(),
            events_replayed: Counter::default(),
            redis_switches: Counter::default(),
            event_to_commit: Histogram::new(seconds_buckets()),
            jobs_pushed: Family::default(),
            jobs_started: Family::default(),
            jobs_succeeded: Family::default(),
            jobs_retried: Family::default(),
            jobs_put_off: Family::default(),
            jobs_dead: Family::default(),
            job_duration: Family::new_with_constructor(|| Histogram::new(seconds_buckets())),
            rows_upserted: Family::default(),
            history_requests: Family::default(),
            ticker_oversize: Counter::default(),
            rate_limit_wait: Histogram::new(seconds_buckets()),
            queue_depth: Family::default(),
            queue_oldest_pending: Family::default(),
            dead_jobs: Family::default(),
            paused: Gauge::default(),
            up: Family::default(),
            subscriptions_active: Gauge::default(),
            freshness_max_age: GaugeF::default(),
            freshness_stale: Gauge::default(),
            suspect_minutes: Gauge::default(),
            days: Family::default(),
            rate_limit: Gauge::default(),
            account_requests: Family::default(),
            account_throttled: Family::default(),
            account_breaker_opened: Family::default(),
            account_sessions_ended: Family::default(),
            account_rate_limit: Family::default(),
            account_grants_last_minute: Family::default(),
            account_waiting: Family::default(),
            account_breaker_open: Family::default(),
            account_session_valid: Family::default(),
            account_session_expires_in: Family::default(),
        };
        // Job kinds, event types, rejection reasons, statuses and tables known in advance get their
        // series at 0 from the start, so rates and alerts see them before the first occurrence.
        for kind in JobKind::ALL.map(|k| l1("kind", k.as_str())) {
            for f in
                [&m.jobs_pushed, &m.jobs_started, &m.jobs_succeeded, &m.jobs_retried, &m.jobs_put_off, &m.jobs_dead]
            {
                let _ = f.get_or_create(&kind);
            }
            let _ = m.job_duration.get_or_create(&kind);
        }
        for t in EventType::ALL.map(|t| l1("type", t.as_str())) {
            let _ = m.events_received.get_or_create(&t);
            let _ = m.events_accepted.get_or_create(&t);
        }
        for r in RejectReason::ALL {
            let _ = m.events_rejected.get_or_create(&l1("reason", r.as_str()));
        }
        for status in ["200", "429", "error"] {
            let _ = m.history_requests.get_or_create(&l1("status", status));
        }
        for t in tables() {
            let _ = m.rows_upserted.get_or_create(&l1("table", t));
        }
        for d in crate::domain::days::DayState::ALL {
            let _ = m.days.get_or_create(&l1("state", d.as_str()));
        }
        r.register("events_received", "Subscription events received by the bridge, by type", m.events_received.clone());
        r.register("events_accepted", "Events turned into jobs, by type", m.events_accepted.clone());
        r.register("events_rejected", "Events refused, by reason", m.events_rejected.clone());
        r.register(
            "events_replayed",
            "Events the bridge pushed again after reconnecting (a failover can lose a push)",
            m.events_replayed.clone(),
        );
        r.register("redis_switches", "Times the Redis connection moved to a primary again", m.redis_switches.clone());
        r.register(
            "event_to_commit_seconds",
            "From the bridge receiving a subscription event to its backfill committed",
            m.event_to_commit.clone(),
        );
        r.register("jobs_pushed", "Jobs pushed onto the queues, by kind", m.jobs_pushed.clone());
        r.register("jobs_started", "Job runs started, by kind", m.jobs_started.clone());
        r.register("jobs_succeeded", "Job runs that completed, by kind", m.jobs_succeeded.clone());
        r.register("jobs_retried", "Job runs that failed and were scheduled again, by kind", m.jobs_retried.clone());
        r.register(
            "jobs_put_off",
            "Job runs put off without spending an attempt (ticker unreachable), by kind",
            m.jobs_put_off.clone(),
        );
        r.register("jobs_dead", "Jobs sent to the dead set, by kind", m.jobs_dead.clone());
        r.register("job_duration_seconds", "Duration of job runs, by kind", m.job_duration.clone());
        r.register("rows_upserted", "Rows written, by table", m.rows_upserted.clone());
        r.register(
            "history_requests",
            "History requests to the ticker, by HTTP status (or error)",
            m.history_requests.clone(),
        );
        r.register(
            "ticker_oversize_answers",
            "Ticker answers refused unread for being larger than any answer to their request (TICKER_MAX_BODY)",
            m.ticker_oversize.clone(),
        );
        r.register(
            "rate_limit_wait_seconds",
            "Time history requests waited for the fleet-wide rate budget",
            m.rate_limit_wait.clone(),
        );
        r.register("queue_depth", "Jobs per lane and state (pending, scheduled, running)", m.queue_depth.clone());
        r.register(
            "queue_oldest_pending_seconds",
            "Age of the oldest job due to run, per lane",
            m.queue_oldest_pending.clone(),
        );
        r.register("dead_jobs", "Jobs in the dead set, per lane", m.dead_jobs.clone());
        r.register(
            "paused",
            "1 while history requests are halted (the one account's Kite session expired)",
            m.paused.clone(),
        );
        r.register("up", "Whether a dependency answers (redis, postgres, ticker)", m.up.clone());
        r.register("subscriptions_active", "Active subscriptions", m.subscriptions_active.clone());
        r.register(
            "freshness_max_age_seconds",
            "The largest age, over active subscriptions, of the newest stored minute, in trading seconds (TICKFILL_CALENDAR)",
            m.freshness_max_age.clone(),
        );
        r.register(
            "freshness_stale",
            "Active subscriptions whose newest stored minute is more than BACKFILL_SETTLE + BACKFILL_GAP_THRESHOLD + SWEEP_INTERVAL of trading time old",
            m.freshness_stale.clone(),
        );
        r.register(
            "suspect_minutes",
            "Trading minutes answers lacked, not yet found or confirmed empty (asked again by sweeps)",
            m.suspect_minutes.clone(),
        );
        r.register(
            "days",
            "Active subscriptions' days in the lookback, by state (open, complete, partial, empty, closed, final)",
            m.days.clone(),
        );
        r.register(
            "rate_limit_per_second",
            "TICKER_RATE_LIMIT: history requests per second allowed to the whole fleet (0 = unlimited)",
            m.rate_limit.clone(),
        );
        r.register("account_requests", "History requests sent as each account", m.account_requests.clone());
        r.register("account_throttled", "429s (or Kite's throttle envelope) per account", m.account_throttled.clone());
        r.register(
            "account_breaker_opened",
            "Times an account's breaker opened after repeated 429s",
            m.account_breaker_opened.clone(),
        );
        r.register(
            "account_sessions_ended",
            "Kite sessions of an account ended because Kite refused them (TokenException)",
            m.account_sessions_ended.clone(),
        );
        r.register(
            "account_rate_limit_per_second",
            "Each account's limit of history requests per second, all workers together (0 = unlimited)",
            m.account_rate_limit.clone(),
        );
        r.register(
            "account_grants_last_minute",
            "Grants of each account's budget in the last 60 seconds, all workers together",
            m.account_grants_last_minute.clone(),
        );
        r.register(
            "account_waiting",
            "Requests waiting for a grant, by the account they prefer",
            m.account_waiting.clone(),
        );
        r.register(
            "account_breaker_open",
            "1 while an account backs off as a whole after repeated 429s",
            m.account_breaker_open.clone(),
        );
        r.register(
            "account_session_valid",
            "1 while an account can send requests (a session is needed and valid, or none is needed)",
            m.account_session_valid.clone(),
        );
        r.register(
            "account_session_expires_in_seconds",
            "Seconds until a Kite session stored in Redis ends (06:00 IST); absent without one",
            m.account_session_expires_in.clone(),
        );
        r.register("build", "The tickfill build", Info::new([("version", env!("CARGO_PKG_VERSION").to_string())]));
        Metrics { registry: root, ..m }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// A one-label label set.
pub fn l1(key: &'static str, value: impl Into<String>) -> L1 {
    [(key, value.into())]
}

/// Marks `dependency` up (1) or down (0).
pub fn set_up(dependency: &'static str, up: bool) {
    get().up.get_or_create(&l1("dependency", dependency)).set(up as i64);
}

/// Records a history request's outcome: its HTTP status, or `error` when none came back.
pub fn history_request(status: Option<u16>) {
    let label = status.map(|s| s.to_string()).unwrap_or_else(|| "error".into());
    get().history_requests.get_or_create(&l1("status", label)).inc();
    set_up("ticker", status.is_some());
}
