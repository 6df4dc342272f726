//! Everything Redis holds for a deployment: the apalis-redis storages of the two lanes, pushing
//! jobs with their idempotency keys, and beside them the scripts and figures apalis-redis 1.0
//! does not provide.
//!
//! Layout:
//! - `keys`: every key and channel name of a deployment.
//! - `conn`: the one connection that follows the primary through a failover.
//! - this file: connecting, the lanes' storages, the [`Producer`].
//! - `state`: the pause, the shared counters, the notes of queued subscriptions.
//! - `housekeeping`: promoting due jobs, pruning finished ones, handing jobs back, scans.
//! - `stats`: what waits, runs and finished in each lane.
//! - `dead`: dead letters (list, show, retry, purge), each entry claimed by one caller.
//! - `rejected`: the refused inputs kept for inspection (events, ticker list entries).
//! - `cancel`: dropping the pending backfills of a token.
//! - `lua/`: the scripts, one file each.

pub mod accounts;
pub mod budget;
pub mod bulk;
pub mod cancel;
pub mod chain;
pub mod controls;
pub mod dead;
pub mod explore;
pub mod history;
pub mod housekeeping;
pub mod keys;
pub mod rejected;
pub mod state;
pub mod stats;
pub mod timeline;

pub use crate::redis_conn::{connect, connect_url, RedisConn};
pub use housekeeping::{
    delete_namespace, hand_back, promote_due, prune_done, scan_keys, subscribers, warn_without_persistence,
};
pub use state::{
    count, count_by, counters, halt_requests, lift_halt, note_subscribing, queued_subscriptions, requests_halted,
};

use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_redis::{Config, RedisStorage};
use redis::AsyncCommands;
use tickfill_jobs::{queue_name, Envelope, Job, Lane};

use crate::config::Settings;

/// How long an idempotency key keeps a second push of the same job out. apalis-redis never frees
/// a key before this, so deliberate re-pushes derive a new key (see `Producer::push_as`).
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// The apalis-redis configuration of one lane.
pub fn storage_config(settings: &Settings, lane: Lane) -> Config {
    // A dead worker is noticed `heartbeat × missed` after its last beat, by a live worker at its
    // next beat (up to one heartbeat later): so `missed` leaves one heartbeat of the budget.
    let missed = ((settings.queue.orphan_after.as_secs_f64() / settings.queue.heartbeat.as_secs_f64()).floor()
        as usize)
        .saturating_sub(1)
        .max(1);
    Config::default()
        .queue(queue_name(&settings.queue.name, lane))
        .idempotency_ttl(Some(IDEMPOTENCY_TTL))
        .heartbeat_interval(settings.queue.heartbeat)
        .missed_heartbeats(missed)
        // One job per fetch: a worker never holds buffered jobs it is not running, so its
        // heartbeat keeps going and nobody steals them (APALIS-NOTES §7).
        .batch_size(1)
        // Locks cost O(backlog) per job and orphan recovery does not need them (§8).
        .lock_tasks(false)
        .emit_events(false)
}

/// Pushes jobs onto the lanes of one namespace.
#[derive(Clone)]
pub struct Producer {
    urgent: RedisStorage<Envelope, RedisConn>,
    bulk: RedisStorage<Envelope, RedisConn>,
    conn: RedisConn,
    /// The lanes' wake channels, by `Lane as usize`: named once, pinged after every push.
    wake: [String; 2],
}

impl Producer {
    /// The producer's Redis connection.
    pub fn conn(&mut self) -> &mut RedisConn {
        &mut self.conn
    }

    pub fn new(conn: RedisConn, settings: &Settings) -> Self {
        let storage = |lane| RedisStorage::new(conn.clone()).with_config(storage_config(settings, lane));
        let wake = Lane::ALL.map(|l| keys::LaneKeys::new(&settings.queue.name, l).wake());
        Producer { urgent: storage(Lane::Urgent), bulk: storage(Lane::Bulk), conn, wake }
    }

    /// Pushes a job under the idempotency key derived from its content; a second push of the same
    /// job within [`IDEMPOTENCY_TTL`] is dropped by Redis.
    pub async fn push(&mut self, job: &Job) -> anyhow::Result<()> {
        self.push_as(job, &job.idempotency_key(), None).await.map(drop)
    }

    /// Pushes a job under an explicit key (a deliberate re-push derives one from the original),
    /// optionally delayed; returns the job's id (what `backfill_runs.job_id` will say).
    pub async fn push_as(&mut self, job: &Job, key: &str, delay: Option<Duration>) -> anyhow::Result<String> {
        let envelope = Envelope { key: Some(key.to_string()), ..Envelope::new(job) };
        self.push_envelope(job, envelope, key, delay).await
    }

    /// Pushes a prepared envelope of `job` (a retry carries its history) under `key`.
    #[tracing::instrument(level = "debug", skip_all, fields(kind = job.kind(), key = key))]
    pub async fn push_envelope(
        &mut self,
        job: &Job,
        envelope: Envelope,
        key: &str,
        delay: Option<Duration>,
    ) -> anyhow::Result<String> {
        // ULIDs sort by time, so jobs due in the same second still run in push order.
        let id = ulid::Ulid::new().to_string();
        let mut envelope = envelope;
        // A new job starts from the span pushing it (the bridge's event, a sweep); a retry or a
        // put-off keeps its job's trace. Its wait in the queue starts now (or when it is due).
        if envelope.trace.is_none() {
            envelope.trace = crate::telemetry::traceparent();
        }
        envelope.pushed_ms = Some(chrono::Utc::now().timestamp_millis() + delay.map_or(0, |d| d.as_millis() as i64));
        crate::metrics::get().jobs_pushed.get_or_create(&crate::metrics::l1("kind", job.kind())).inc();
        let mut task =
            TaskBuilder::new(envelope).task_id(id.parse().expect("a ULID is a task id")).idempotency_key(key);
        if let Some(d) = delay {
            task = task.run_in_seconds(d.as_secs());
        }
        let storage = match job.lane() {
            Lane::Urgent => &mut self.urgent,
            Lane::Bulk => &mut self.bulk,
        };
        storage
            .push_task(task.build())
            .await
            .map_err(|e| anyhow::anyhow!("failed to push {} job: {e:?}", job.kind()))?;
        if delay.is_none() {
            // Wake idle workers now rather than at their next poll. Best effort: a lost wake
            // costs one poll interval, nothing else.
            let _: redis::RedisResult<i64> = self.conn.publish(&self.wake[job.lane() as usize], 1).await;
        }
        Ok(id)
    }
}

impl Producer {
    /// Pushes many jobs, each under its derived key, in one batch per lane (one script call
    /// instead of one round trip per job), then wakes each lane once.
    #[tracing::instrument(level = "debug", skip_all, fields(jobs = jobs.len()))]
    pub async fn push_many(&mut self, jobs: &[Job]) -> anyhow::Result<()> {
        let keyed: Vec<(&Job, String)> = jobs.iter().map(|j| (j, j.idempotency_key())).collect();
        self.push_many_keyed(&keyed).await
    }

    /// [`Producer::push_many`] under given keys: a caller whose re-push of the same job is
    /// deliberate (the sweep, once the earlier one ran) derives a new key.
    pub async fn push_many_keyed(&mut self, jobs: &[(&Job, String)]) -> anyhow::Result<()> {
        for (j, _) in jobs {
            crate::metrics::get().jobs_pushed.get_or_create(&crate::metrics::l1("kind", j.kind())).inc();
        }
        for lane in Lane::ALL {
            let tasks: Vec<_> = jobs
                .iter()
                .filter(|(j, _)| j.lane() == lane)
                .map(|(j, key)| {
                    let key = key.clone();
                    let envelope = Envelope { key: Some(key.clone()), ..Envelope::new(j) };
                    TaskBuilder::new(envelope).idempotency_key(key).build()
                })
                .collect();
            if tasks.is_empty() {
                continue;
            }
            let storage = match lane {
                Lane::Urgent => &mut self.urgent,
                Lane::Bulk => &mut self.bulk,
            };
            storage
                .push_all(futures::stream::iter(tasks))
                .await
                .map_err(|e| anyhow::anyhow!("failed to push a batch of jobs: {e:?}"))?;
            let _: redis::RedisResult<i64> = self.conn.publish(&self.wake[lane as usize], 1).await;
        }
        Ok(())
    }
}
