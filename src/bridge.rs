//! The bridge: SUBSCRIBE to `{REDIS_CHANNEL_PREFIX}:events` and turn each subscription event into
//! a persisted job. It never stops on bad input: a message it cannot accept is counted, logged
//! with the reason and kept in `{TICKFILL_QUEUE}:rejected` (newest 1,000) for `tickfill events
//! rejected`. It reconnects forever with backoff when Redis goes away, and subscribes again on
//! the new primary when its connection moves there; then it pushes the events of its last
//! `BRIDGE_REPLAY_WINDOW` again (a push the old primary acknowledged may never have reached the
//! new one; the jobs' idempotency keys make a second push of one that did harmless).

use std::collections::VecDeque;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tickfill_jobs::Job;

use crate::{
    config::Settings,
    domain::event::{job_for, parse_event},
    metrics,
    queue::{self, history::History, rejected::keep_rejected, Producer},
    shutdown::{ReconnectDelays, Shutdown},
};

/// The receipt time of a message, in epoch milliseconds, strictly increasing within this process:
/// two events for one token stamped in the same second keep the order they arrived in.
fn receipt_ms() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering::SeqCst};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = Utc::now().timestamp_millis();
    let next = |last: i64| now.max(last + 1);
    // The closure always answers, so the update always happens; both arms hold the old value.
    let last = LAST.fetch_update(SeqCst, SeqCst, |last| Some(next(last))).unwrap_or_else(|last| last);
    next(last)
}

/// Handles one message: a job on success (returned, pushed), a kept rejection otherwise. Never
/// fails the bridge; a push that fails (Redis down) is returned so the caller can retry it.
#[tracing::instrument(name = "bridge.event", skip_all, fields(bytes = payload.len(), trace_id = tracing::field::Empty))]
pub async fn handle_message(
    producer: &mut Producer,
    conn: &mut crate::queue::RedisConn,
    settings: &Settings,
    history: &History,
    payload: &[u8],
) -> anyhow::Result<Option<Job>> {
    let received_ms = receipt_ms();
    crate::telemetry::mark_trace_id(&tracing::Span::current());
    match parse_event(payload, received_ms) {
        Ok(event) => {
            let token = event.instrument_token;
            let kind = metrics::l1("type", event.event_type.as_str());
            metrics::get().events_received.get_or_create(&kind).inc();
            let job = job_for(event);
            if matches!(job, Job::Subscribed { .. }) {
                queue::note_subscribing(conn, &settings.queue.name, token, received_ms).await;
            }
            producer.push(&job).await?;
            tracing::debug!(token = token.get(), kind = job.kind(), "event queued");
            queue::count(conn, &settings.queue.name, "events_accepted").await;
            history.add("events_accepted", 1);
            metrics::get().events_accepted.get_or_create(&kind).inc();
            Ok(Some(job))
        }
        Err(why) => {
            metrics::get().events_received.get_or_create(&metrics::l1("type", "unreadable")).inc();
            metrics::get().events_rejected.get_or_create(&metrics::l1("reason", why.code.as_str())).inc();
            tracing::warn!(code = why.code.as_str(), reason = %why.reason, bytes = payload.len(), "event rejected");
            keep_rejected(conn, &settings.queue.name, payload, &why).await;
            history.add("events_rejected", 1);
            Ok(None)
        }
    }
}

/// The jobs pushed in the last window, oldest first, to push again after a reconnect.
struct Recent {
    window: Duration,
    jobs: VecDeque<(tokio::time::Instant, Job)>,
}

impl Recent {
    /// The most jobs kept, whatever the window: a burst cannot grow the bridge without bound.
    const MAX: usize = 100_000;

    fn new(window: Duration) -> Recent {
        Recent { window, jobs: VecDeque::new() }
    }

    fn forget_old(&mut self) {
        let now = tokio::time::Instant::now();
        while self.jobs.front().is_some_and(|(at, _)| now.duration_since(*at) > self.window)
            || self.jobs.len() > Self::MAX
        {
            self.jobs.pop_front();
        }
    }

    fn keep(&mut self, job: Job) {
        if !self.window.is_zero() {
            self.jobs.push_back((tokio::time::Instant::now(), job));
        }
        self.forget_old();
    }

    /// Pushes the window's jobs again; returns how many.
    async fn replay(&mut self, producer: &mut Producer) -> anyhow::Result<u64> {
        self.forget_old();
        for (_, job) in &self.jobs {
            producer.push(job).await?;
        }
        Ok(self.jobs.len() as u64)
    }
}

/// Runs the bridge until `shutdown` fires. Reconnects with capped exponential backoff.
pub async fn run(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let channel = queue::keys::events_channel(&settings.events.channel_prefix);
    if !settings.events.enabled {
        tracing::warn!("SUBSCRIPTION_EVENTS_ENABLED=false: the bridge idles and queues nothing");
        shutdown.wait().await;
        return Ok(());
    }
    let history = History::new(&settings.queue.name);
    let mut conn = crate::shutdown::patiently("Redis", &shutdown, || queue::connect(&settings.redis)).await?;
    queue::warn_without_persistence(&mut conn).await;
    history.spawn_flusher(conn.clone(), shutdown.clone());
    let mut recent = Recent::new(settings.redis.replay_window);
    let mut delays = ReconnectDelays::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut backoff = delays.next_delay();
    let mut reconnects = 0u64;
    loop {
        let session = async {
            let mut producer = Producer::new(conn.clone(), &settings);
            let (mut pubsub, mut switched) = conn.pubsub().await?;
            pubsub.subscribe(&channel).await?;
            tracing::info!(channel = %channel, queue = %settings.queue.name, primary = %conn.primary(), "bridge subscribed");
            if reconnects > 0 {
                // Pub/sub forgot whatever was published while we were away: a sweep makes it good.
                let tick = DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("valid instant");
                producer.push(&Job::Sweep { tick }).await?;
                queue::count(&mut conn.clone(), &settings.queue.name, "bridge_catch_up_sweeps").await;
                tracing::info!(%tick, "catch-up sweep pushed after reconnecting");
                let n = recent.replay(&mut producer).await?;
                if n > 0 {
                    queue::count_by(&mut conn.clone(), &settings.queue.name, "events_replayed", n).await;
                    metrics::get().events_replayed.inc_by(n);
                    tracing::info!(
                        events = n,
                        window_s = settings.redis.replay_window.as_secs(),
                        "recent events pushed again after reconnecting"
                    );
                }
            }
            let mut messages = pubsub.on_message();
            loop {
                let msg = tokio::select! {
                    m = messages.next() => match m {
                        Some(m) => m,
                        None => return anyhow::Ok(()),
                    },
                    _ = switched.changed() => {
                        tracing::info!(primary = %conn.primary(), "Redis moved: subscribing on the new primary");
                        return anyhow::Ok(());
                    }
                };
                let payload = msg.get_payload_bytes().to_vec();
                // A push that fails is retried until it lands: the event is not lost while
                // this process lives.
                let mut waits = ReconnectDelays::new(Duration::from_millis(50), Duration::from_secs(5));
                loop {
                    match handle_message(&mut producer, &mut conn.clone(), &settings, &history, &payload).await {
                        Ok(job) => {
                            if let Some(job) = job {
                                recent.keep(job);
                            }
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "failed to queue an event; retrying");
                            tokio::time::sleep(waits.next_delay()).await;
                        }
                    }
                }
            }
        };
        tokio::select! {
            r = session => match r {
                Ok(()) => {
                    tracing::warn!("bridge subscribing again");
                    delays = ReconnectDelays::new(Duration::from_millis(100), Duration::from_secs(10));
                    backoff = Duration::ZERO;
                }
                Err(e) => tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "bridge cannot reach Redis; reconnecting"),
            },
            _ = shutdown.wait() => {
                tracing::info!("bridge stopped");
                return Ok(());
            }
        }
        // A move to another primary ends the wait at once.
        let mut moved = conn.switches();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = moved.changed() => {}
            _ = shutdown.wait() => return Ok(()),
        }
        backoff = delays.next_delay();
        reconnects += 1;
    }
}
