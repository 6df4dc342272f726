//! The worker: an apalis worker pool on the urgent and bulk queues of one namespace.
//!
//! Layout: this file holds the pool (shared state, the loops beside apalis, start and stop);
//! `job` what a job handler takes and returns; `attempt` one attempt of a job and the retry policy; `fetch` the pause, budget and throttle
//! in front of the ticker; one file per job kind: `subscribe`, `backfill`, `sweep_job`, `chain`.
//!
//! Each job decides explicitly what happens when it fails: a transient failure (ticker 5xx or
//! timeout, database or Redis trouble) schedules the next attempt with exponential backoff and
//! jitter, up to `TICKFILL_MAX_ATTEMPTS`; a permanent one (unknown token, bad window, a response
//! that breaks the contract, an unknown instrument, an unknown schema version) is aborted into the
//! dead set with the reason. A 429 is waited out and costs no attempt. Every handler is
//! idempotent: delivery is at-least-once and every write is an upsert.

use std::{sync::Arc, time::Duration};
use tickfill_jobs::InstrumentToken;

use anyhow::Context;
use apalis::prelude::{Monitor, WorkerBuilder, WorkerBuilderExt};
use apalis_core::backend::ext::{poll_strategy::Strategy, BackendExt};
use apalis_core::worker::ext::event_listener::EventListenerExt;
use apalis_redis::RedisStorage;

use crate::queue::RedisConn;
use chrono::Utc;
use sqlx::PgPool;
use tickfill_jobs::{Envelope, Lane};
use tokio::sync::{mpsc, watch};

mod attempt;
mod backfill;
mod chain;
mod fetch;
mod hold;
mod inflight;
mod job;
mod older_checks;
mod subscribe;
mod sweep_job;
mod trail;

pub use attempt::backoff;
pub use backfill::store_answer;
pub use backfill::BackfillCtx;
pub use job::JobError;

use crate::{
    config::Settings,
    queue::{self, Producer},
    shutdown::{ReconnectDelays, Shutdown},
    store,
    ticker::{budget::Budget, TickerClient},
};

/// How often an idle worker looks for jobs (apalis-redis otherwise waits a whole heartbeat).
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A backfill that was committed, for whoever wants to show it (`tickfill dev`).
#[derive(Debug, Clone)]
pub struct Committed {
    pub token: InstrumentToken,
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
    /// The accounts' fleet-wide rate budgets, which route each request.
    pub budget: Budget,
    pub redis: RedisConn,
    pub producer: Producer,
    pub commits: Option<mpsc::UnboundedSender<Committed>>,
    /// How the store keeps its rollups (the worker refreshes plain rollup tables).
    pub rollups: store::rollups::UpkeepCache,
    /// This process's counts over time, written out once a second while the pool runs.
    pub history: Arc<queue::history::History>,
    /// The task ids this process runs now (the in-flight sets are compared with it).
    pub running: Arc<inflight::Running>,
}

/// Builds the shared state of a worker process.
pub async fn build_state(
    settings: Settings,
    commits: Option<mpsc::UnboundedSender<Committed>>,
) -> anyhow::Result<Arc<WorkerState>> {
    // Each lane runs up to `concurrency` jobs, each holding a connection while it writes. The pool
    // opens connections as they are needed: keeping many warm made single jobs slower (measured).
    let pool = store::connect(settings.store.database_url.expose(), settings.queue.concurrency as u32 * 2 + 2).await?;
    let redis = queue::connect(&settings.redis).await?;
    let ticker = TickerClient::new(&settings)?;
    let producer = Producer::new(redis.clone(), &settings);
    let budget = Budget::new(redis.clone(), &settings);
    let m = crate::metrics::get();
    for a in budget.accounts() {
        tracing::info!(account = %a.name, limit = a.rate_limit, named = a.named, "account");
        // Every account's series from the start, so rates and alerts see it before its first 429.
        let l = crate::metrics::l1("account", &a.name);
        for f in [&m.account_requests, &m.account_throttled, &m.account_breaker_opened, &m.account_sessions_ended] {
            let _ = f.get_or_create(&l);
        }
    }
    let rollups = store::rollups::UpkeepCache::default();
    let settings_queue = settings.queue.name.clone();
    if rollups.get(&pool).await? == store::rollups::Upkeep::Missing {
        tracing::warn!("the store has no rollups yet: run `tickfill migrate`");
    }
    Ok(Arc::new(WorkerState {
        settings,
        pool,
        ticker,
        budget,
        redis,
        producer,
        commits,
        rollups,
        history: queue::history::History::new(&settings_queue),
        running: Arc::default(),
    }))
}

/// Keeps moving due jobs to the active lists, in chunks (see `queue::promote_due`).
async fn promote_forever(mut conn: RedisConn, settings: Settings, shutdown: Shutdown) {
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
async fn prune_forever(mut conn: RedisConn, settings: Settings, shutdown: Shutdown) {
    let every = PRUNE_EVERY.min(settings.queue.retention.max(Duration::from_secs(1)));
    while !shutdown.is_triggered() {
        let before =
            (Utc::now() - chrono::Duration::from_std(settings.queue.retention).unwrap_or_default()).timestamp();
        for lane in Lane::ALL {
            match queue::prune_done(&mut conn, &settings.queue.name, lane, before).await {
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
async fn forward_wakes(
    settings: Settings,
    conn: RedisConn,
    senders: Vec<(Lane, watch::Sender<u64>)>,
    shutdown: Shutdown,
) {
    let mut delays = ReconnectDelays::new(Duration::from_millis(100), Duration::from_secs(5));
    let channels: Vec<String> =
        senders.iter().map(|(lane, _)| queue::keys::LaneKeys::new(&settings.queue.name, *lane).wake()).collect();
    while !shutdown.is_triggered() {
        let session = async {
            let (mut pubsub, mut switched) = conn.pubsub().await?;
            for channel in &channels {
                pubsub.subscribe(channel).await?;
            }
            let mut messages = pubsub.on_message();
            loop {
                let msg = tokio::select! {
                    m = futures::StreamExt::next(&mut messages) => match m {
                        Some(m) => m,
                        None => return redis::RedisResult::Ok(()),
                    },
                    // The connection moved to another primary: listen there.
                    _ = switched.changed() => return Ok(()),
                };
                let channel = msg.get_channel_name();
                for ((_, tx), wake) in senders.iter().zip(&channels) {
                    if channel == *wake {
                        tx.send_modify(|n| *n = n.wrapping_add(1));
                    }
                }
            }
        };
        tokio::select! {
            r = session => match r {
                Ok(()) => delays = ReconnectDelays::new(Duration::from_millis(100), Duration::from_secs(5)),
                Err(e) => tracing::debug!(error = %e, "wake listener lost Redis"),
            },
            _ = shutdown.wait() => return,
        }
        // A move to another primary ends the wait at once.
        let mut moved = conn.switches();
        tokio::select! {
            _ = tokio::time::sleep(delays.next_delay()) => {}
            _ = moved.changed() => {}
        }
    }
}

/// In Kite mode, says which accounts have no valid session yet: their requests wait for one.
async fn say_missing_sessions(settings: &Settings, conn: &mut RedisConn) {
    use crate::queue::accounts::SessionState;
    if settings.ticker.api != crate::config::TickerApi::Kite {
        return;
    }
    let Ok(report) = crate::accounts::report(settings, conn).await else { return };
    for a in report {
        if matches!(a.session, SessionState::Missing | SessionState::Expired { .. }) {
            tracing::warn!(
                account = %a.account,
                session = a.session.label(),
                "no valid Kite session for this account: it serves nothing until one is stored \
                 (`tickfill kite login --account {}`)",
                a.account
            );
        }
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
    say_missing_sessions(&settings, &mut conn).await;
    tokio::spawn(promote_forever(conn.clone(), settings.clone(), shutdown.clone()));
    let wakes: Vec<(Lane, watch::Sender<u64>)> = Lane::ALL.iter().map(|l| (*l, watch::channel(0).0)).collect();
    let receivers: Vec<watch::Receiver<u64>> = wakes.iter().map(|(_, tx)| tx.subscribe()).collect();
    tokio::spawn(forward_wakes(settings.clone(), state.redis.clone(), wakes, shutdown.clone()));
    tokio::spawn(prune_forever(conn.clone(), settings.clone(), shutdown.clone()));
    let name = worker_name();
    tracing::info!(worker = %name, queue = %settings.queue.name, concurrency = settings.queue.concurrency, "worker starting");
    // An operator's pause of a lane stops its apalis worker from taking jobs (they stay pending);
    // a lane paused before the worker starts is paused the moment it starts.
    let lanes = hold::LaneSwitches::new(&mut conn, &settings.queue.name).await;
    tokio::spawn(lanes.clone().follow(conn.clone(), settings.queue.name.clone(), shutdown.clone()));
    let mut monitor = Monitor::new();
    for (lane, wake) in Lane::ALL.into_iter().zip(receivers) {
        let (state, conn, name, settings) = (state.clone(), conn.clone(), name.clone(), settings.clone());
        let lanes = lanes.clone();
        monitor = monitor.register(move |restarts| {
            // Fetch on a producer's ping, and every POLL_INTERVAL in any case (retries come due
            // without a ping, and a ping can be lost).
            let strategy = Strategy::new().stream(wake_stream(wake.clone())).interval(POLL_INTERVAL);
            let storage = RedisStorage::<Envelope, RedisConn>::new(conn.clone())
                .with_config(queue::storage_config(&settings, lane))
                .poll_with_strategy(strategy);
            WorkerBuilder::new(format!("{name}-{}-{restarts}", lane.as_str()))
                .backend(storage)
                .concurrency(settings.queue.concurrency)
                .data(state.clone())
                .on_event({
                    let lanes = lanes.clone();
                    move |ctx, event| {
                        if matches!(event, apalis_core::worker::event::Event::Start) {
                            lanes.started(lane, ctx);
                        }
                    }
                })
                .build(attempt::handle_job)
        });
    }
    state.history.spawn_flusher(conn.clone(), shutdown.clone());
    // Jobs a failover left in this process's in-flight sets without running here.
    let every = (settings.queue.orphan_after / inflight::LOOKS).max(Duration::from_secs(1));
    tokio::spawn(inflight::look_forever(
        conn.clone(),
        settings.queue.name.clone(),
        name.clone(),
        state.running.clone(),
        every,
        shutdown.clone(),
    ));
    let grace = settings.queue.shutdown_timeout;
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
        match queue::hand_back(&mut conn, &settings.queue.name, lane, &name).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(lane = lane.as_str(), jobs = n, "handed unfinished jobs back to the queue"),
            Err(e) => tracing::warn!(error = %e, "failed to hand unfinished jobs back; orphan recovery will"),
        }
    }
    tracing::info!("worker stopped");
    Ok(())
}
