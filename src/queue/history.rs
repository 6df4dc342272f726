//! Counts over time without Grafana: per-minute buckets kept 8 hours and per-hour buckets kept
//! 90 days, in Redis hashes trimmed by their TTL (`{ns}:history:m:{minute}`,
//! `{ns}:history:h:{hour}`; one field per series, `series` for the total and
//! `series|lane|kind` per lane and kind where a series has them).
//!
//! Each process adds to its own tally in memory and writes it out once a second in one pipeline
//! ([`History::spawn_flusher`]), so counting costs the hot paths no round trip; a process that
//! dies loses at most its last second of counts.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::queue::RedisConn;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::shutdown::Shutdown;

/// Every series kept.
pub const SERIES: [&str; 8] = [
    "events_accepted",
    "events_rejected",
    "jobs_done",
    "jobs_failed",
    "jobs_dead",
    "rows_stored",
    "history_requests",
    "throttled",
];

/// A bucket size: its length and how long it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Step {
    #[serde(rename = "1m")]
    Minute,
    #[serde(rename = "1h")]
    Hour,
}

impl Step {
    pub fn parse(s: &str) -> Option<Step> {
        match s {
            "1m" => Some(Step::Minute),
            "1h" => Some(Step::Hour),
            _ => None,
        }
    }

    pub fn seconds(self) -> i64 {
        match self {
            Step::Minute => 60,
            Step::Hour => 3600,
        }
    }

    /// How long a bucket is kept.
    pub fn retention(self) -> Duration {
        match self {
            Step::Minute => Duration::from_secs(8 * 3600),
            Step::Hour => Duration::from_secs(90 * 86_400),
        }
    }

    fn key(self, ns: &str, bucket: i64) -> String {
        match self {
            Step::Minute => format!("{ns}:history:m:{bucket}"),
            Step::Hour => format!("{ns}:history:h:{bucket}"),
        }
    }
}

/// How often a process writes its tally out.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// One process's tally of one namespace, not yet written.
pub struct History {
    ns: String,
    tally: Mutex<HashMap<String, u64>>,
}

impl History {
    pub fn new(ns: &str) -> Arc<History> {
        Arc::new(History { ns: ns.to_string(), tally: Mutex::new(HashMap::new()) })
    }

    /// Adds `n` to `series` (one of [`SERIES`]).
    pub fn add(&self, series: &'static str, n: u64) {
        if n > 0 {
            *self.tally.lock().expect("history tally").entry(series.to_string()).or_default() += n;
        }
    }

    /// Adds `n` to `series`, in total and for `lane` and `kind`.
    pub fn add_for(&self, series: &'static str, lane: &str, kind: &str, n: u64) {
        if n > 0 {
            let mut t = self.tally.lock().expect("history tally");
            *t.entry(series.to_string()).or_default() += n;
            *t.entry(format!("{series}|{lane}|{kind}")).or_default() += n;
        }
    }

    /// Writes the tally into the current buckets; on failure it is kept for the next try.
    pub async fn flush(&self, conn: &mut RedisConn) -> redis::RedisResult<()> {
        let tally: HashMap<String, u64> = std::mem::take(&mut *self.tally.lock().expect("history tally"));
        if tally.is_empty() {
            return Ok(());
        }
        let now = Utc::now().timestamp();
        let mut pipe = redis::pipe();
        for step in [Step::Minute, Step::Hour] {
            let key = step.key(&self.ns, now.div_euclid(step.seconds()) * step.seconds());
            for (field, n) in &tally {
                pipe.hincr(&key, field, *n).ignore();
            }
            pipe.expire(&key, step.retention().as_secs() as i64 + step.seconds()).ignore();
        }
        if let Err(e) = pipe.query_async::<()>(conn).await {
            let mut t = self.tally.lock().expect("history tally");
            for (field, n) in tally {
                *t.entry(field).or_default() += n;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Writes the tally out every second until `shutdown`, and once more then.
    pub fn spawn_flusher(self: &Arc<Self>, conn: RedisConn, shutdown: Shutdown) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut conn = conn;
            loop {
                let stop = tokio::select! {
                    _ = tokio::time::sleep(FLUSH_EVERY) => false,
                    _ = shutdown.wait() => true,
                };
                if let Err(e) = me.flush(&mut conn).await {
                    tracing::debug!(error = %e, "history counts not written yet");
                }
                if stop {
                    return;
                }
            }
        });
    }
}

/// One series over time: a point per bucket from `since` to now (0 where nothing was counted).
#[derive(Debug, Clone, Serialize)]
pub struct Points {
    pub series: String,
    pub step: Step,
    pub points: Vec<(DateTime<Utc>, u64)>,
}

/// Reads `field` (a series, or `series|lane|kind`) at `step` from `since`.
pub async fn read(
    conn: &mut RedisConn,
    ns: &str,
    field: &str,
    step: Step,
    since: DateTime<Utc>,
) -> redis::RedisResult<Points> {
    let s = step.seconds();
    let oldest = (Utc::now() - chrono::Duration::from_std(step.retention()).unwrap_or_default()).timestamp();
    let first = since.timestamp().max(oldest).div_euclid(s) * s;
    let last = Utc::now().timestamp().div_euclid(s) * s;
    let buckets: Vec<i64> = (first..=last).step_by(s as usize).collect();
    let mut pipe = redis::pipe();
    for b in &buckets {
        pipe.hget(step.key(ns, *b), field);
    }
    let values: Vec<Option<u64>> = pipe.query_async(conn).await?;
    let points = buckets
        .into_iter()
        .zip(values)
        .filter_map(|(b, v)| Some((DateTime::from_timestamp(b, 0)?, v.unwrap_or(0))))
        .collect();
    Ok(Points { series: field.to_string(), step, points })
}
