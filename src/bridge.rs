//! The bridge: SUBSCRIBE to `{REDIS_CHANNEL_PREFIX}:events` and turn each subscription event into
//! a persisted job. It never stops on bad input: a message it cannot accept is counted, logged
//! with the reason and kept in `{TICKFILL_QUEUE}:rejected` (newest 1,000) for `tickfill events
//! rejected`. It reconnects forever with backoff when Redis goes away.

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

/// Handles one message: a job on success, a kept rejection otherwise. Never fails the bridge;
/// a push that fails (Redis down) is returned so the caller can retry it.
#[tracing::instrument(level = "debug", skip_all, fields(bytes = payload.len()))]
pub async fn handle_message(
    producer: &mut Producer,
    conn: &mut redis::aio::ConnectionManager,
    settings: &Settings,
    history: &History,
    payload: &[u8],
) -> anyhow::Result<()> {
    let received_ms = receipt_ms();
    match parse_event(payload, received_ms) {
        Ok(event) => {
            let token = event.instrument_token.get();
            let kind = metrics::l1("type", event.event_type.as_str());
            metrics::get().events_received.get_or_create(&kind).inc();
            let job = job_for(event);
            if matches!(job, Job::Subscribed { .. }) {
                queue::note_subscribing(conn, &settings.queue, token, received_ms).await;
            }
            producer.push(&job).await?;
            tracing::debug!(token, kind = job.kind(), "event queued");
            queue::count(conn, &settings.queue, "events_accepted").await;
            history.add("events_accepted", 1);
            metrics::get().events_accepted.get_or_create(&kind).inc();
        }
        Err(why) => {
            metrics::get().events_received.get_or_create(&metrics::l1("type", "unreadable")).inc();
            metrics::get().events_rejected.get_or_create(&metrics::l1("reason", why.code.as_str())).inc();
            tracing::warn!(code = why.code.as_str(), reason = %why.reason, bytes = payload.len(), "event rejected");
            keep_rejected(conn, &settings.queue, payload, &why).await;
            history.add("events_rejected", 1);
        }
    }
    Ok(())
}

/// Runs the bridge until `shutdown` fires. Reconnects with capped exponential backoff.
pub async fn run(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let channel = queue::keys::events_channel(&settings.channel_prefix);
    if !settings.subscription_events_enabled {
        tracing::warn!("SUBSCRIPTION_EVENTS_ENABLED=false: the bridge idles and queues nothing");
        shutdown.wait().await;
        return Ok(());
    }
    let client = redis::Client::open(settings.redis_url.expose())?;
    let history = History::new(&settings.queue);
    if let Ok(mut conn) = queue::connect(settings.redis_url.expose()).await {
        queue::warn_without_persistence(&mut conn).await;
        history.spawn_flusher(conn, shutdown.clone());
    }
    let mut delays = ReconnectDelays::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut backoff = delays.next_delay();
    let mut reconnects = 0u64;
    loop {
        let session = async {
            let mut conn = queue::connect(settings.redis_url.expose()).await?;
            let mut producer = Producer::new(conn.clone(), &settings);
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            tracing::info!(channel = %channel, queue = %settings.queue, "bridge subscribed");
            if reconnects > 0 {
                // Pub/sub forgot whatever was published while we were away: a sweep makes it good.
                let tick = DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("valid instant");
                producer.push(&Job::Sweep { tick }).await?;
                queue::count(&mut conn, &settings.queue, "bridge_catch_up_sweeps").await;
                tracing::info!(%tick, "catch-up sweep pushed after reconnecting");
            }
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let payload = msg.get_payload_bytes().to_vec();
                // A push that fails is retried until it lands: the event is not lost while
                // this connection lives.
                let mut waits = ReconnectDelays::new(Duration::from_millis(50), Duration::from_secs(5));
                while let Err(e) = handle_message(&mut producer, &mut conn, &settings, &history, &payload).await {
                    tracing::warn!(error = %e, "failed to queue an event; retrying");
                    tokio::time::sleep(waits.next_delay()).await;
                }
            }
            anyhow::Ok(())
        };
        tokio::select! {
            r = session => match r {
                Ok(()) => tracing::warn!("bridge lost its subscription; reconnecting"),
                Err(e) => tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "bridge cannot reach Redis; reconnecting"),
            },
            _ = shutdown.wait() => {
                tracing::info!("bridge stopped");
                return Ok(());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait() => return Ok(()),
        }
        backoff = delays.next_delay();
        reconnects += 1;
    }
}
