//! The scheduler: pushes a `Sweep{tick}` job at every tick of `SWEEP_INTERVAL`, replacing cron.
//!
//! Ticks are instants every scheduler computes alike (multiples of the interval since the epoch,
//! or the times of a cron expression, in UTC), and a sweep's idempotency key is its tick, so any
//! number of schedulers push each tick once. A scheduler that starts (or wakes after a pause)
//! pushes only the latest tick that has passed: missed ticks are not replayed. While an operator
//! has paused sweeps (`queue::controls`), ticks push nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tickfill_jobs::Job;

use crate::{config::Settings, queue, shutdown::Shutdown};

/// Runs the scheduler until `shutdown` fires.
pub async fn run(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let interval = settings.backfill.sweep_interval.clone();
    // Started while Redis is down, it waits for it rather than exiting.
    let conn = crate::shutdown::patiently("Redis", &shutdown, || queue::connect(&settings.redis)).await?;
    let mut producer = queue::Producer::new(conn, &settings);
    tracing::info!(interval = %settings.backfill.sweep_interval, queue = %settings.queue.name, "scheduler started");
    let mut last_pushed: Option<DateTime<Utc>> = None;
    let mut said_paused = false;
    loop {
        let tick = interval.latest_tick(Utc::now());
        let paused = match queue::controls::read(producer.conn(), &settings.queue.name).await {
            Ok(c) => c.sweeps,
            Err(_) => None,
        };
        if let Some(p) = paused.as_ref().filter(|_| last_pushed != Some(tick)) {
            if !said_paused {
                tracing::info!(%tick, since = %p.since, by = %p.by, "sweeps paused: this tick pushes none");
                said_paused = true;
            }
            queue::count(producer.conn(), &settings.queue.name, "sweep_ticks_paused").await;
            last_pushed = Some(tick);
        } else if last_pushed != Some(tick) {
            said_paused = false;
            match producer.push(&Job::Sweep { tick }).await {
                Ok(()) => {
                    tracing::info!(%tick, "sweep pushed (once across schedulers)");
                    last_pushed = Some(tick);
                }
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), %tick, "failed to push a sweep; retrying")
                }
            }
        }
        let wait = match last_pushed {
            Some(t) => (interval.next_tick(t) - Utc::now()).to_std().unwrap_or_default(),
            None => Duration::from_secs(1),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
            _ = shutdown.wait() => {
                tracing::info!("scheduler stopped");
                return Ok(());
            }
        }
    }
}
