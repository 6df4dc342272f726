//! The worker: an apalis worker pool on the urgent and bulk queues of one namespace.
//!
//! Each job decides explicitly what happens when it fails: a transient failure (ticker 5xx or
//! timeout, database or Redis trouble) schedules the next attempt with exponential backoff and
//! jitter, up to `TICKFILL_MAX_ATTEMPTS`; a permanent one (unknown token, bad window, a response
//! that breaks the contract, an unknown instrument, an unknown schema version) is aborted into the
//! dead set with the reason. A 429 is waited out and costs no attempt. Every handler is
//! idempotent: delivery is at-least-once and every write is an upsert.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use apalis::prelude::{AbortError, BoxDynError, Data, Monitor, TaskId, WorkerBuilder, WorkerBuilderExt};
use apalis_core::backend::ext::{poll_strategy::Strategy, BackendExt};
use apalis_redis::{ConnectionManager, RedisStorage};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;
use tickfill_jobs::{Envelope, Job, Lane, Reason, SubscriptionEvent};
use tokio::sync::{mpsc, watch};
use tracing::Instrument as _;

mod backfill;
mod chain;
mod subscribe;
mod sweep_job;

use backfill::*;
use chain::*;
use subscribe::*;
use sweep_job::*;

use crate::{
    config::Settings,
    domain::{
        instrument::{Instrument, Source},
        market::{classify, BarTarget},
        window::{self, subscription_window},
    },
    metrics,
    queue::{self, Producer},
    shutdown::Shutdown,
    store::{
        self, bars, instruments,
        runs::{self, Outcome, Run},
        subscriptions::{self, Subscription},
    },
    ticker::{budget::Budget, TickerClient, TickerError},
};

/// How often an idle worker looks for jobs (apalis-redis otherwise waits a whole heartbeat).
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How many 429s one job sits out before it hands itself back to the queue.
const MAX_THROTTLE_WAITS: u32 = 20;

/// A backfill that was committed, for whoever wants to show it (`tickfill dev`).
#[derive(Debug, Clone)]
pub struct Committed {
    pub token: u32,
    pub label: String,
    pub table: &'static str,
    pub rows: u64,
    /// From the bridge receiving the event to the commit, when the job came from an event.
    pub latency: Option<Duration>,
}

/// What every job of a worker process shares.
pub struct WorkerState {
    pub settings: Settings,
    pub pool: PgPool,
    pub ticker: TickerClient,
    /// The fleet-wide rate budget; `None` when `TICKER_RATE_LIMIT=0`.
    pub budget: Option<Budget>,
    pub redis: ConnectionManager,
    pub producer: Producer,
    pub commits: Option<mpsc::UnboundedSender<Committed>>,
}

/// Why a job did not complete.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Try again later.
    #[error("{0:#}")]
    Retry(anyhow::Error),
    /// Give up: to the dead set with this reason.
    #[error("{0}")]
    GiveUp(String),
    /// A dependency cannot be reached: try the same attempt again later, spending none.
    #[error("{0:#}")]
    Pause(anyhow::Error),
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::Retry(anyhow::Error::new(e).context("database error"))
    }
}

/// Everything one job run knows about itself.
struct JobMeta {
    /// The first attempt's id: every attempt of a job updates one `backfill_runs` row.
    id: String,
    /// This attempt's number, from 1.
    attempt: usize,
    /// No further attempt follows a transient failure of this one.
    last_attempt: bool,
    started_at: DateTime<Utc>,
}

/// The retry delay before attempt `next` (2, 3, …): `base · 2^(next − 2)`, at most `max`, then
/// scaled by a random factor in [0.5, 1] so that jobs that failed together do not retry together.
/// apalis-redis schedules in whole seconds, so the delay is at least one.
pub fn backoff(next: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = next.saturating_sub(2).min(30);
    let full = base.saturating_mul(1u32 << exp).min(max);
    let scaled = full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
    Duration::from_secs(scaled.as_secs_f64().ceil().max(1.0) as u64)
}

/// Every error of a job's attempts, for the dead set and the log.
fn all_errors(envelope: &Envelope, last: &str) -> String {
    let mut parts: Vec<String> =
        envelope.failures.iter().enumerate().map(|(i, f)| format!("attempt {}: {}", i + 1, f.error)).collect();
    parts.push(format!("attempt {}: {last}", envelope.attempt()));
    parts.join("; ")
}

/// The apalis handler: decode, dispatch, and decide what a failure means. tickfill keeps its own
/// retry policy (apalis-redis 1.0 would retry 25 times at `now + attempt` seconds): a transient
/// failure pushes the next attempt as a delayed job carrying every earlier error, so the schedule
/// lives in Redis and survives a crash; the last allowed attempt, or a permanent failure, goes to
/// the dead set with the reasons.
async fn handle_job(envelope: Envelope, task_id: TaskId, state: Data<Arc<WorkerState>>) -> Result<(), BoxDynError> {
    let this_id = task_id.to_string();
    // A task id that starts again was recovered from a worker that died running it: that counts
    // as an attempt, so a job that crashes its worker ends dead instead of looping.
    // The count lives as long as finished jobs do (`TICKFILL_RETENTION`), so it needs no second
    // round trip to clear it.
    let starts_key = queue::keys::starts(&state.settings.queue, &this_id);
    let mut redis = state.redis.clone();
    let counted: redis::RedisResult<(u32,)> = redis::pipe()
        .incr(&starts_key, 1)
        .expire(&starts_key, state.settings.retention.as_secs().max(3600) as i64)
        .ignore()
        .query_async(&mut redis)
        .await;
    let starts = counted.map(|(n,)| n).unwrap_or(1);
    let attempt = envelope.attempt() + starts.saturating_sub(1);
    handle_attempt(&envelope, &this_id, attempt, &state).await
}

/// Pushes the job's next envelope to run after `delay` and completes this run. If it cannot be
/// scheduled, this run fails with the original error instead, and apalis runs it again.
async fn put_off(
    state: &WorkerState,
    job: &Job,
    error: anyhow::Error,
    next: Envelope,
    key: &str,
    delay: Duration,
    counter: &str,
) -> Result<(), BoxDynError> {
    if let Err(push) = state.producer.clone().push_envelope(job, next, key, Some(delay)).await {
        tracing::warn!(error = format!("{push:#}"), "could not schedule the job again");
        return Err(error.into());
    }
    tracing::warn!(error = format!("{error:#}"), retry_in_s = delay.as_secs(), "job put off; it runs again later");
    queue::count(&mut state.redis.clone(), &state.settings.queue, &format!("{counter}:{}", job.kind())).await;
    Ok(())
}

async fn handle_attempt(
    envelope: &Envelope,
    this_id: &str,
    attempt: u32,
    state: &WorkerState,
) -> Result<(), BoxDynError> {
    if attempt > state.settings.max_attempts {
        let reason = format!(
            "gave up after {attempt} attempts: the job was abandoned by workers that died running it; {}",
            all_errors(envelope, "worker died")
        );
        tracing::error!(job_id = %this_id, reason = %reason, "job failed for good; sent to the dead set");
        queue::count(&mut state.redis.clone(), &state.settings.queue, "jobs_dead:crashed_worker").await;
        metrics::get().jobs_dead.get_or_create(&metrics::l1("kind", "crashed_worker")).inc();
        return Err(Box::new(AbortError::new(reason)));
    }
    let meta = JobMeta {
        id: envelope.origin.clone().unwrap_or_else(|| this_id.to_string()),
        attempt: attempt as usize,
        last_attempt: attempt >= state.settings.max_attempts,
        started_at: Utc::now(),
    };
    let job = match envelope.decode() {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(job_id = %this_id, error = %e, "job refused");
            queue::count(&mut state.redis.clone(), &state.settings.queue, "jobs_refused").await;
            return Err(Box::new(AbortError::new(e)));
        }
    };
    let span = tracing::info_span!("job", job_id = %meta.id, kind = job.kind(), token = job.token(), attempt);
    let kind = metrics::l1("kind", job.kind());
    let m = metrics::get();
    m.jobs_started.get_or_create(&kind).inc();
    let started = std::time::Instant::now();
    let result = run_job(state, &job, &meta).instrument(span.clone()).await;
    m.job_duration.get_or_create(&kind).observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(()) => m.jobs_succeeded.get_or_create(&kind).inc(),
        Err(JobError::Pause(_)) => m.jobs_put_off.get_or_create(&kind).inc(),
        Err(JobError::Retry(_)) if !meta.last_attempt => m.jobs_retried.get_or_create(&kind).inc(),
        Err(_) => m.jobs_dead.get_or_create(&kind).inc(),
    };
    let _enter = span.enter();
    let mut redis = state.redis.clone();
    let ns = &state.settings.queue;
    match result {
        Ok(()) => Ok(()),
        Err(JobError::Pause(e)) => {
            // An outage is no fault of the job: wait (doubling up to TICKFILL_RETRY_MAX) without
            // spending an attempt, however long the outage lasts.
            let s = &state.settings;
            let delay = backoff(envelope.pauses + 2, s.retry_base, s.retry_max, rand::random());
            let (next, key) = envelope.paused(this_id, &job.idempotency_key());
            put_off(state, &job, e, next, &key, delay, "jobs_paused").await
        }
        Err(JobError::Retry(e)) if !meta.last_attempt => {
            let s = &state.settings;
            let delay = backoff(attempt + 1, s.retry_base, s.retry_max, rand::random());
            let mut next = envelope.next_attempt(this_id, format!("{e:#}"), Utc::now());
            // Attempts lost to dead workers count as failures too.
            while next.attempt() < attempt + 1 {
                next = next.next_attempt(this_id, "the worker running it died".into(), Utc::now());
            }
            let key = envelope.next_key(&job.idempotency_key());
            put_off(state, &job, e, next, &key, delay, "jobs_retried").await
        }
        Err(JobError::Retry(e)) => {
            let reason = format!("gave up after {attempt} attempts: {}", all_errors(envelope, &format!("{e:#}")));
            tracing::error!(reason = %reason, "job failed for good; sent to the dead set");
            queue::count(&mut redis, ns, &format!("jobs_dead:{}", job.kind())).await;
            Err(Box::new(AbortError::new(reason)))
        }
        Err(JobError::GiveUp(reason)) => {
            let reason = if envelope.failures.is_empty() { reason } else { all_errors(envelope, &reason) };
            tracing::error!(reason = %reason, "job failed for good; sent to the dead set");
            queue::count(&mut redis, ns, &format!("jobs_dead:{}", job.kind())).await;
            Err(Box::new(AbortError::new(reason)))
        }
    }
}

async fn run_job(state: &WorkerState, job: &Job, meta: &JobMeta) -> Result<(), JobError> {
    match job {
        Job::Subscribed { event } => subscribed(state, event, meta).await,
        Job::Unsubscribed { event } => unsubscribed(state, event).await,
        Job::Backfill { token, from, to, reason, force } => {
            requested_backfill(state, *token, (*from, *to), *reason, *force, meta).await
        }
        Job::Sweep { tick } => run_sweep(state, *tick, meta).await,
        Job::ChainMetrics { underlying, expiry, from, to } => {
            rebuild_chain(state, underlying, *expiry, (*from, *to), meta).await
        }
    }
}

/// Builds the shared state of a worker process.
pub async fn build_state(
    settings: Settings,
    commits: Option<mpsc::UnboundedSender<Committed>>,
) -> anyhow::Result<Arc<WorkerState>> {
    // Each lane runs up to `concurrency` jobs, each holding a connection while it writes. The pool
    // opens connections as they are needed: keeping many warm made single jobs slower (measured).
    let pool = store::connect(settings.database_url.expose(), settings.concurrency as u32 * 2 + 2).await?;
    let redis = queue::connect(settings.redis_url.expose()).await?;
    let ticker = TickerClient::new(&settings)?;
    let producer = Producer::new(redis.clone(), &settings);
    let budget = Budget::new(redis.clone(), &settings);
    Ok(Arc::new(WorkerState { settings, pool, ticker, budget, redis, producer, commits }))
}

/// Keeps moving due jobs to the active lists, in chunks (see `queue::promote_due`).
async fn promote_forever(mut conn: ConnectionManager, settings: Settings, shutdown: Shutdown) {
    let configs: Vec<_> = Lane::ALL.iter().map(|l| queue::storage_config(&settings, *l)).collect();
    while !shutdown.is_triggered() {
        for cfg in &configs {
            if let Err(e) = queue::promote_due(&mut conn, cfg).await {
                tracing::warn!(error = %e, "failed to promote due jobs");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = shutdown.wait() => {}
        }
    }
}

/// How often a worker prunes finished jobs older than `TICKFILL_RETENTION`.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Prunes finished jobs past their retention, now and every [`PRUNE_EVERY`].
async fn prune_forever(mut conn: ConnectionManager, settings: Settings, shutdown: Shutdown) {
    let every = PRUNE_EVERY.min(settings.retention.max(Duration::from_secs(1)));
    while !shutdown.is_triggered() {
        let before = (Utc::now() - chrono::Duration::from_std(settings.retention).unwrap_or_default()).timestamp();
        for lane in Lane::ALL {
            match queue::prune_done(&mut conn, &settings.queue, lane, before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(lane = lane.as_str(), pruned = n, "pruned finished jobs past retention"),
                Err(e) => tracing::warn!(error = %e, "failed to prune finished jobs"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => {}
        }
    }
}

/// A stream that yields whenever a producer pings the lane's wake channel.
type WakeStream = std::pin::Pin<Box<dyn futures::Stream<Item = ()> + Send + Sync>>;

fn wake_stream(rx: watch::Receiver<u64>) -> WakeStream {
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    }))
}

/// Listens on the lanes' wake channels and forwards each ping to that lane's workers.
/// Reconnects with backoff; while it is away the workers still poll every [`POLL_INTERVAL`].
async fn forward_wakes(settings: Settings, senders: Vec<(Lane, watch::Sender<u64>)>, shutdown: Shutdown) {
    let client = match redis::Client::open(settings.redis_url.expose()) {
        Ok(c) => c,
        Err(e) => return tracing::warn!(error = %e, "no wake-ups: bad REDIS_URL"),
    };
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_triggered() {
        let session = async {
            let mut pubsub = client.get_async_pubsub().await?;
            for (lane, _) in &senders {
                pubsub.subscribe(queue::keys::LaneKeys::new(&settings.queue, *lane).wake()).await?;
            }
            let mut messages = pubsub.on_message();
            while let Some(msg) = futures::StreamExt::next(&mut messages).await {
                let channel = msg.get_channel_name();
                for (lane, tx) in &senders {
                    if channel == queue::keys::LaneKeys::new(&settings.queue, *lane).wake() {
                        tx.send_modify(|n| *n = n.wrapping_add(1));
                    }
                }
            }
            redis::RedisResult::Ok(())
        };
        tokio::select! {
            r = session => if let Err(e) = r { tracing::debug!(error = %e, "wake listener lost Redis") },
            _ = shutdown.wait() => return,
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// A name no other worker process has used: host, pid and a random suffix.
fn worker_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host = host.trim();
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}-{}", if host.is_empty() { "worker" } else { host }, std::process::id(), &id[..8])
}

/// Runs the worker pool until `shutdown` fires; in-flight jobs get `TICKFILL_SHUTDOWN_TIMEOUT`.
pub async fn run(state: Arc<WorkerState>, shutdown: Shutdown) -> anyhow::Result<()> {
    let settings = state.settings.clone();
    let mut conn = state.redis.clone();
    queue::warn_without_persistence(&mut conn).await;
    for lane in Lane::ALL {
        let moved = queue::promote_due(&mut conn, &queue::storage_config(&settings, lane)).await?;
        if moved > 0 {
            tracing::info!(lane = lane.as_str(), moved, "promoted due jobs before start");
        }
    }
    tokio::spawn(promote_forever(conn.clone(), settings.clone(), shutdown.clone()));
    let wakes: Vec<(Lane, watch::Sender<u64>)> = Lane::ALL.iter().map(|l| (*l, watch::channel(0).0)).collect();
    let receivers: Vec<watch::Receiver<u64>> = wakes.iter().map(|(_, tx)| tx.subscribe()).collect();
    tokio::spawn(forward_wakes(settings.clone(), wakes, shutdown.clone()));
    tokio::spawn(prune_forever(conn.clone(), settings.clone(), shutdown.clone()));
    let name = worker_name();
    tracing::info!(worker = %name, queue = %settings.queue, concurrency = settings.concurrency, "worker starting");
    let mut monitor = Monitor::new();
    for (lane, wake) in Lane::ALL.into_iter().zip(receivers) {
        let (state, conn, name, settings) = (state.clone(), conn.clone(), name.clone(), settings.clone());
        monitor = monitor.register(move |restarts| {
            // Fetch on a producer's ping, and every POLL_INTERVAL in any case (retries come due
            // without a ping, and a ping can be lost).
            let strategy = Strategy::new().stream(wake_stream(wake.clone())).interval(POLL_INTERVAL);
            let storage = RedisStorage::<Envelope>::new(conn.clone())
                .with_config(queue::storage_config(&settings, lane))
                .poll_with_strategy(strategy);
            WorkerBuilder::new(format!("{name}-{}-{restarts}", lane.as_str()))
                .backend(storage)
                .concurrency(settings.concurrency)
                .data(state.clone())
                .build(handle_job)
        });
    }
    let grace = settings.shutdown_timeout;
    let stop = shutdown.clone();
    let stopping = shutdown.clone();
    monitor
        .should_restart(move |ctx, err| {
            if stopping.is_triggered() {
                return false;
            }
            tracing::warn!(worker = ctx.name(), error = %err, "worker stopped; restarting");
            true
        })
        .with_terminator(async move {
            tokio::time::sleep(grace).await;
        })
        .run_with_signal(async move {
            stop.wait().await;
            Ok(())
        })
        .await
        .context("worker pool failed")?;
    // Jobs still running when the grace period ran out were abandoned mid-way (their transaction
    // rolled back): hand them back at the head of their queue instead of leaving them to orphan
    // recovery.
    for lane in Lane::ALL {
        match queue::hand_back(&mut conn, &settings.queue, lane, &name).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(lane = lane.as_str(), jobs = n, "handed unfinished jobs back to the queue"),
            Err(e) => tracing::warn!(error = %e, "failed to hand unfinished jobs back; orphan recovery will"),
        }
    }
    tracing::info!("worker stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_and_whole_seconds() {
        let (base, max) = (Duration::from_secs(2), Duration::from_secs(300));
        let full: Vec<u64> = (2..12).map(|n| backoff(n, base, max, 1.0).as_secs()).collect();
        assert_eq!(full, vec![2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(5, base, max, 0.0), Duration::from_secs(8), "half of 16 at the lowest jitter");
        for j in [0.0, 0.3, 0.9] {
            let d = backoff(4, base, max, j).as_secs();
            assert!((4..=8).contains(&d), "{d}");
        }
        assert_eq!(backoff(2, Duration::from_millis(100), max, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(u32::MAX, base, max, 1.0), max);
    }
}
