//! The queue section: where jobs are kept (`TICKFILL_QUEUE`), how often a failed one is tried
//! again, how a worker proves it is alive, how long finished jobs are kept, and how many jobs one
//! worker process runs at once.

use std::time::Duration;

use super::values::{parse_namespace, ConfigError, Reader};

/// `TICKFILL_QUEUE` when unset: the namespace of every Redis key of the deployment.
pub const DEFAULT_QUEUE: &str = "tickfill";
/// `TICKFILL_MAX_ATTEMPTS` when unset.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// `TICKFILL_RETRY_BASE` when unset: the first retry's delay, doubled each attempt.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(2);
/// `TICKFILL_RETRY_MAX` when unset: the longest delay between two attempts.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(300);
/// `TICKFILL_HEARTBEAT` when unset.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// `TICKFILL_ORPHAN_AFTER` when unset.
pub const DEFAULT_ORPHAN_AFTER: Duration = Duration::from_secs(30);
/// `TICKFILL_RETENTION` when unset.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(86_400);
/// `TICKFILL_SHUTDOWN_TIMEOUT` when unset.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// `TICKFILL_CONCURRENCY` when unset.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// The most jobs one worker process runs at once.
pub const MAX_CONCURRENCY: usize = 1024;

/// How jobs are kept, tried and run.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// `TICKFILL_QUEUE`: the namespace of the deployment's Redis keys.
    pub name: String,
    /// `TICKFILL_MAX_ATTEMPTS`: a job that failed this often goes to the dead set.
    pub max_attempts: u32,
    /// `TICKFILL_RETRY_BASE`, `TICKFILL_RETRY_MAX`: the backoff between attempts.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// `TICKFILL_HEARTBEAT`: how often a worker says it is alive.
    pub heartbeat: Duration,
    /// `TICKFILL_ORPHAN_AFTER`: a job whose worker has been silent this long is handed back.
    pub orphan_after: Duration,
    /// `TICKFILL_RETENTION`: how long finished jobs are kept.
    pub retention: Duration,
    /// `TICKFILL_SHUTDOWN_TIMEOUT`: how long a stopping process lets its running jobs finish.
    pub shutdown_timeout: Duration,
    /// `TICKFILL_CONCURRENCY`: jobs one worker process runs at once.
    pub concurrency: usize,
}

pub(super) fn read(r: &Reader<'_>) -> Result<QueueSettings, ConfigError> {
    let queue = QueueSettings {
        name: r.get("TICKFILL_QUEUE", DEFAULT_QUEUE.into(), parse_namespace)?,
        max_attempts: r.get("TICKFILL_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, |s| match s.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err("expected a whole number of at least 1".into()),
        })?,
        retry_base: r.duration("TICKFILL_RETRY_BASE", DEFAULT_RETRY_BASE)?,
        retry_max: r.duration("TICKFILL_RETRY_MAX", DEFAULT_RETRY_MAX)?,
        heartbeat: r.duration("TICKFILL_HEARTBEAT", DEFAULT_HEARTBEAT)?,
        orphan_after: r.duration("TICKFILL_ORPHAN_AFTER", DEFAULT_ORPHAN_AFTER)?,
        retention: r.duration("TICKFILL_RETENTION", DEFAULT_RETENTION)?,
        shutdown_timeout: r.duration("TICKFILL_SHUTDOWN_TIMEOUT", DEFAULT_SHUTDOWN_TIMEOUT)?,
        concurrency: r.get("TICKFILL_CONCURRENCY", DEFAULT_CONCURRENCY, |s| match s.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
            _ => Err(format!("expected a whole number between 1 and {MAX_CONCURRENCY}")),
        })?,
    };
    if queue.heartbeat.is_zero() {
        return Err(ConfigError {
            var: "TICKFILL_HEARTBEAT".into(),
            value: "0".into(),
            reason: "must be more than zero".into(),
        });
    }
    if queue.orphan_after < queue.heartbeat {
        return Err(ConfigError {
            var: "TICKFILL_ORPHAN_AFTER".into(),
            value: format!("{:?}", queue.orphan_after),
            reason: "must be at least TICKFILL_HEARTBEAT".into(),
        });
    }
    Ok(queue)
}
