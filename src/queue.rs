//! The Redis side of the queue: apalis-redis storages per lane, pushing jobs with their
//! idempotency keys, and the few scripts apalis-redis 1.0 needs beside it.
//!
//! Key layout under the namespace `TICKFILL_QUEUE` (`ns`):
//! - `{ns}:urgent:*`, `{ns}:bulk:*`: the apalis-redis queues (scheduled, active, data, meta, …);
//! - `{ns}:rejected`: the newest rejected events (capped list), `{ns}:counters`: a hash of counts.
//!
//! apalis-redis lands every push in `:scheduled` and its fetch moves *all* due ids to `:active`
//! in one `unpack`, which fails from about 8,000 ids on. [`promote_due`] moves them in chunks of
//! 1,000 and runs before and beside every worker, so the fetch never meets a large batch.

use std::time::Duration;

use anyhow::Context;
use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use redis::AsyncCommands;
use tickfill_jobs::{queue_name, Envelope, Job, Lane};

use crate::config::Settings;

/// How long an idempotency key keeps a second push of the same job out. apalis-redis never frees
/// a key before this, so deliberate re-pushes derive a new key (see `Producer::push_as`).
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// Chunk size of [`promote_due`]: far below the size at which a Lua `unpack` fails.
pub const PROMOTE_CHUNK: usize = 1000;

/// Opens a managed (reconnecting) Redis connection.
pub async fn connect(url: &str) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url).context("REDIS_URL is not a valid Redis URL")?;
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)));
    client.get_connection_manager_with_config(cfg).await.context("failed to connect to Redis")
}

/// The apalis-redis configuration of one lane.
pub fn storage_config(settings: &Settings, lane: Lane) -> Config {
    // A dead worker is noticed `heartbeat × missed` after its last beat, by a live worker at its
    // next beat (up to one heartbeat later): so `missed` leaves one heartbeat of the budget.
    let missed = ((settings.orphan_after.as_secs_f64() / settings.heartbeat.as_secs_f64()).floor() as usize)
        .saturating_sub(1)
        .max(1);
    Config::default()
        .queue(queue_name(&settings.queue, lane))
        .idempotency_ttl(Some(IDEMPOTENCY_TTL))
        .heartbeat_interval(settings.heartbeat)
        .missed_heartbeats(missed)
        // One job per fetch: a worker never holds buffered jobs it is not running, so its
        // heartbeat keeps going and nobody steals them (APALIS-NOTES §7).
        .batch_size(1)
        // Locks cost O(backlog) per job and orphan recovery does not need them (§8).
        .lock_tasks(false)
        .emit_events(false)
}

/// The key that, while set, pauses every history request of the namespace (its value says why).
pub fn paused_key(ns: &str) -> String {
    format!("{ns}:paused")
}

/// Pauses history requests, keeping the first reason given; returns whether this call paused.
pub async fn pause(conn: &mut ConnectionManager, ns: &str, reason: &str) -> redis::RedisResult<bool> {
    let value = serde_json::json!({"reason": reason, "since": chrono::Utc::now().to_rfc3339()}).to_string();
    redis::cmd("SET")
        .arg(paused_key(ns))
        .arg(value)
        .arg("NX")
        .query_async::<Option<String>>(conn)
        .await
        .map(|r| r.is_some())
}

/// Why history requests are paused (`{"reason":…,"since":…}`), or `None`.
pub async fn paused(conn: &mut ConnectionManager, ns: &str) -> redis::RedisResult<Option<serde_json::Value>> {
    let v: Option<String> = conn.get(paused_key(ns)).await?;
    Ok(v.map(|s| serde_json::from_str(&s).unwrap_or(serde_json::Value::String(s))))
}

/// Lifts a pause; returns whether there was one.
pub async fn resume(conn: &mut ConnectionManager, ns: &str) -> redis::RedisResult<bool> {
    let n: i64 = conn.del(paused_key(ns)).await?;
    Ok(n > 0)
}

/// The sorted set of tokens whose subscription event the bridge queued (score: when it received
/// it). Reconcile leaves a token noted here to its own job; once the job has recorded the
/// subscription the store knows it anyway, so entries are not removed one by one but dropped
/// when older than the grace (see `queued_subscriptions`): no extra round trip per job.
pub fn subscribing_key(ns: &str) -> String {
    format!("{ns}:subscribing")
}

/// Notes that a subscription event of `token` is on its way to the store.
pub async fn note_subscribing(conn: &mut ConnectionManager, ns: &str, token: u32, received_ms: i64) {
    let r: redis::RedisResult<i64> = conn.zadd(subscribing_key(ns), token, received_ms).await;
    if let Err(e) = r {
        tracing::debug!(error = %e, "could not note a queued subscription");
    }
}

/// Tokens whose subscription event was received after `since_ms` (queued, running or done);
/// older notes are dropped: if their job died or was lost, reconcile takes over.
pub async fn queued_subscriptions(
    conn: &mut ConnectionManager,
    ns: &str,
    since_ms: i64,
) -> redis::RedisResult<Vec<u32>> {
    let key = subscribing_key(ns);
    let _: i64 = conn.zrembyscore(&key, "-inf", format!("({since_ms}")).await?;
    conn.zrangebyscore(&key, since_ms, "+inf").await
}

/// Pushes jobs onto the lanes of one namespace.
#[derive(Clone)]
pub struct Producer {
    urgent: RedisStorage<Envelope>,
    bulk: RedisStorage<Envelope>,
    conn: ConnectionManager,
    ns: String,
}

impl Producer {
    /// The producer's Redis connection.
    pub fn conn(&mut self) -> &mut ConnectionManager {
        &mut self.conn
    }

    pub fn new(conn: ConnectionManager, settings: &Settings) -> Self {
        let storage = |lane| RedisStorage::new(conn.clone()).with_config(storage_config(settings, lane));
        Producer { urgent: storage(Lane::Urgent), bulk: storage(Lane::Bulk), conn, ns: settings.queue.clone() }
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
    pub async fn push_envelope(
        &mut self,
        job: &Job,
        envelope: Envelope,
        key: &str,
        delay: Option<Duration>,
    ) -> anyhow::Result<String> {
        // ULIDs sort by time, so jobs due in the same second still run in push order.
        let id = ulid::Ulid::new().to_string();
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
            let _: redis::RedisResult<i64> = self.conn.publish(wake_channel(&self.ns, job.lane()), 1).await;
        }
        Ok(id)
    }
}

impl Producer {
    /// Pushes many jobs, each under its derived key, in one batch per lane (one script call
    /// instead of one round trip per job), then wakes each lane once.
    pub async fn push_many(&mut self, jobs: &[Job]) -> anyhow::Result<()> {
        for j in jobs {
            crate::metrics::get().jobs_pushed.get_or_create(&crate::metrics::l1("kind", j.kind())).inc();
        }
        for lane in Lane::ALL {
            let tasks: Vec<_> = jobs
                .iter()
                .filter(|j| j.lane() == lane)
                .map(|j| {
                    let key = j.idempotency_key();
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
            let _: redis::RedisResult<i64> = self.conn.publish(wake_channel(&self.ns, lane), 1).await;
        }
        Ok(())
    }
}

/// The pub/sub channel a producer pings after pushing to a lane, so idle workers fetch at once.
pub fn wake_channel(ns: &str, lane: Lane) -> String {
    format!("{}:wake", queue_name(ns, lane))
}

/// Moves due jobs of one queue from `:scheduled` to `:active` in chunks; returns how many moved.
pub async fn promote_due(conn: &mut ConnectionManager, config: &Config) -> redis::RedisResult<u64> {
    static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r"local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
              if #ids > 0 then
                redis.call('RPUSH', KEYS[2], unpack(ids))
                redis.call('ZREM', KEYS[1], unpack(ids))
                redis.call('DEL', KEYS[3])
                redis.call('LPUSH', KEYS[3], 1)
              end
              return #ids",
        )
    });
    let now = chrono::Utc::now().timestamp();
    let mut total = 0;
    loop {
        let moved: u64 = SCRIPT
            .key(config.scheduled_jobs_set())
            .key(config.active_jobs_list())
            .key(config.signal_list())
            .arg(now)
            .arg(PROMOTE_CHUNK)
            .invoke_async(conn)
            .await?;
        total += moved;
        if moved < PROMOTE_CHUNK as u64 {
            return Ok(total);
        }
    }
}

/// Redis keys tickfill owns beside the apalis queues.
pub fn rejected_key(ns: &str) -> String {
    format!("{ns}:rejected")
}

pub fn counters_key(ns: &str) -> String {
    format!("{ns}:counters")
}

/// Adds one to a named counter of the namespace (kept in Redis so every process and the CLI see
/// the same figures).
pub async fn count(conn: &mut ConnectionManager, ns: &str, name: &str) {
    let r: redis::RedisResult<i64> = conn.hincr(counters_key(ns), name, 1).await;
    if let Err(e) = r {
        tracing::warn!(counter = name, error = %e, "failed to count");
    }
}

/// Reads every counter of the namespace.
pub async fn counters(conn: &mut ConnectionManager, ns: &str) -> redis::RedisResult<Vec<(String, i64)>> {
    let mut all: Vec<(String, i64)> = conn.hgetall(counters_key(ns)).await?;
    all.sort();
    Ok(all)
}

/// The global sorted set in which apalis-redis registers each queue's workers key.
const APALIS_QUEUES: &str = "core:apalis:queues:list";

/// Every key matching `pattern`, found with SCAN (never KEYS, which blocks Redis).
pub async fn scan_keys(conn: &mut ConnectionManager, pattern: &str) -> redis::RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut iter: redis::AsyncIter<String> = conn.scan_match(pattern).await?;
    while let Some(k) = futures::StreamExt::next(&mut iter).await {
        keys.push(k?);
    }
    Ok(keys)
}

/// Deletes every key of a namespace (scratch namespaces of tests and benches only).
pub async fn delete_namespace(conn: &mut ConnectionManager, ns: &str) -> redis::RedisResult<u64> {
    let keys = scan_keys(conn, &format!("{ns}:*")).await?;
    let mut deleted = 0;
    for chunk in keys.chunks(500) {
        deleted += conn.del::<_, u64>(chunk).await?;
    }
    // apalis-redis registers every queue in one global set; forget this namespace's entries.
    let registered: Vec<String> = conn.zrange(APALIS_QUEUES, 0, -1).await?;
    let ours: Vec<&String> = registered.iter().filter(|k| k.starts_with(&format!("{ns}:"))).collect();
    if !ours.is_empty() {
        conn.zrem::<_, _, i64>(APALIS_QUEUES, ours).await?;
    }
    Ok(deleted)
}

/// How many subscribers a pub/sub channel has (the bridge's readiness from outside).
pub async fn subscribers(conn: &mut ConnectionManager, channel: &str) -> redis::RedisResult<i64> {
    let (_, n): (String, i64) = redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(conn).await?;
    Ok(n)
}

/// How many jobs of one lane are in each state, read straight from apalis-redis's keys (its own
/// introspection does not work in 1.0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Depths {
    pub scheduled: u64,
    pub active: u64,
    pub running: u64,
    pub done: u64,
    pub dead: u64,
}

impl Depths {
    /// Jobs not yet finished: waiting, due or running.
    pub fn pending(&self) -> u64 {
        self.scheduled + self.active + self.running
    }
}

/// Reads the depths of one lane.
pub async fn lane_depths(conn: &mut ConnectionManager, ns: &str, lane: Lane) -> redis::RedisResult<Depths> {
    let q = queue_name(ns, lane);
    let inflight = scan_keys(conn, &format!("{q}:inflight:*")).await?;
    let mut running = 0;
    for key in inflight {
        running += conn.scard::<_, u64>(key).await?;
    }
    Ok(Depths {
        scheduled: conn.zcard(format!("{q}:scheduled")).await?,
        active: conn.llen(format!("{q}:active")).await?,
        running,
        done: conn.scard(format!("{q}:done")).await?,
        dead: conn.scard(format!("{q}:dead")).await?,
    })
}

/// Deletes finished (done) jobs of one lane that finished before `before`: their entry in the done
/// set, their data and their metadata, in chunks. apalis-redis keeps them forever (about 370 bytes
/// each), so without this Redis grows with every job ever run. Returns how many went.
pub async fn prune_done(conn: &mut ConnectionManager, ns: &str, lane: Lane, before: i64) -> redis::RedisResult<u64> {
    let q = queue_name(ns, lane);
    let done_key = format!("{q}:done");
    let mut cursor = 0u64;
    let mut pruned = 0;
    loop {
        let (next, ids): (u64, Vec<String>) =
            redis::cmd("SSCAN").arg(&done_key).arg(cursor).arg("COUNT").arg(1000).query_async(conn).await?;
        if !ids.is_empty() {
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.hget(format!("{q}:meta:{id}"), "done_at");
            }
            let finished: Vec<Option<i64>> = pipe.query_async(conn).await?;
            let expired: Vec<&String> =
                ids.iter().zip(finished).filter(|(_, at)| at.is_none_or(|t| t < before)).map(|(id, _)| id).collect();
            if !expired.is_empty() {
                let mut pipe = redis::pipe();
                pipe.srem(&done_key, &expired).ignore().hdel(format!("{q}:data"), &expired).ignore();
                for id in &expired {
                    pipe.del(format!("{q}:meta:{id}")).ignore();
                }
                pipe.query_async::<()>(conn).await?;
                pruned += expired.len() as u64;
            }
        }
        if next == 0 {
            return Ok(pruned);
        }
        cursor = next;
    }
}

/// Warns when Redis keeps nothing on disk: queued jobs would not survive its restart.
pub async fn warn_without_persistence(conn: &mut ConnectionManager) {
    let aof: redis::RedisResult<Vec<String>> =
        redis::cmd("CONFIG").arg("GET").arg("appendonly").query_async(conn).await;
    match aof.as_deref() {
        Ok([_, v]) if v == "yes" => {}
        Ok(_) => tracing::warn!(
            "Redis runs without appendonly: queued jobs would be lost if Redis restarts (set appendonly yes)"
        ),
        // Managed Redis often forbids CONFIG; say so rather than guess.
        Err(e) => tracing::info!(error = %e, "cannot read Redis's appendonly setting"),
    }
}

/// How many times task `id` has started: a second start means a worker died running it.
pub fn starts_key(ns: &str, id: &str) -> String {
    format!("{ns}:starts:{id}")
}

/// Moves the jobs claimed by this process's workers (names starting `worker_prefix`) back to the
/// head of the active list and unregisters those workers; returns how many jobs moved. A job
/// handed back was stopped on purpose, not by a crash: its start is forgotten (`starts_key`), so it
/// spends no attempt.
pub async fn hand_back(
    conn: &mut ConnectionManager,
    ns: &str,
    lane: Lane,
    worker_prefix: &str,
) -> redis::RedisResult<u64> {
    static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r"local ids = redis.call('SMEMBERS', KEYS[1])
              for _, id in ipairs(ids) do
                redis.call('LPUSH', KEYS[2], id)
                redis.call('DEL', ARGV[2] .. id)
              end
              redis.call('DEL', KEYS[1])
              redis.call('ZREM', KEYS[3], ARGV[1])
              if #ids > 0 then redis.call('DEL', KEYS[4]); redis.call('LPUSH', KEYS[4], 1) end
              return #ids",
        )
    });
    let q = queue_name(ns, lane);
    let prefix = format!("{q}:inflight:");
    let sets = scan_keys(conn, &format!("{prefix}{worker_prefix}-*")).await?;
    let mut moved = 0;
    for set in sets {
        let worker = set.trim_start_matches(&prefix).to_string();
        moved += SCRIPT
            .key(&set)
            .key(format!("{q}:active"))
            .key(format!("{q}:workers"))
            .key(format!("{q}:signal"))
            .arg(worker)
            .arg(starts_key(ns, ""))
            .invoke_async::<u64>(conn)
            .await?;
    }
    Ok(moved)
}
