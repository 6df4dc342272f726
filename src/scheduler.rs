//! The scheduler: pushes a `Sweep{tick}` job at every tick of `SWEEP_INTERVAL`, replacing cron.
//!
//! Ticks are instants every scheduler computes alike (multiples of the interval since the epoch,
//! or the times of a cron expression, in UTC), and a sweep's idempotency key is its tick, so any
//! number of schedulers push each tick once. A scheduler that starts (or wakes after a pause)
//! pushes only the latest tick that has passed: missed ticks are not replayed.

use std::{str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use tickfill_jobs::Job;

use crate::{config::Settings, queue, shutdown::Shutdown};

/// When sweeps happen.
#[derive(Debug, Clone)]
pub enum Interval {
    Every(Duration),
    Cron(Box<cron::Schedule>),
}

impl Interval {
    /// Reads `SWEEP_INTERVAL`: a duration (`5m`) or a cron expression of 5 (minute first),
    /// 6 (second first) or 7 fields.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        if let Ok(d) = crate::config::parse_duration(s) {
            anyhow::ensure!(d >= Duration::from_secs(1), "SWEEP_INTERVAL must be at least 1s");
            return Ok(Interval::Every(d));
        }
        let expr = if s.split_whitespace().count() == 5 { format!("0 {s}") } else { s.to_string() };
        let schedule = cron::Schedule::from_str(&expr).map_err(|e| anyhow::anyhow!("SWEEP_INTERVAL {s:?}: {e}"))?;
        Ok(Interval::Cron(Box::new(schedule)))
    }

    /// The latest tick at or before `now`.
    pub fn latest_tick(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Interval::Every(d) => {
                let step = d.as_millis() as i64;
                let ms = now.timestamp_millis().div_euclid(step) * step;
                DateTime::from_timestamp_millis(ms).expect("valid instant")
            }
            Interval::Cron(s) => {
                let just_after = now + chrono::Duration::milliseconds(1);
                s.after(&just_after).next_back().unwrap_or(now)
            }
        }
    }

    /// The first tick after `tick`.
    pub fn next_tick(&self, tick: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Interval::Every(d) => tick + chrono::Duration::from_std(*d).expect("interval fits"),
            Interval::Cron(s) => s.after(&tick).next().unwrap_or(tick + chrono::Duration::days(365)),
        }
    }
}

/// Runs the scheduler until `shutdown` fires.
pub async fn run(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let interval = Interval::parse(&settings.sweep_interval)?;
    // Started while Redis is down, it waits for it rather than exiting.
    let conn = crate::shutdown::patiently("Redis", &shutdown, || queue::connect(settings.redis_url.expose())).await?;
    let mut producer = queue::Producer::new(conn, &settings);
    tracing::info!(interval = %settings.sweep_interval, queue = %settings.queue, "scheduler started");
    let mut last_pushed: Option<DateTime<Utc>> = None;
    loop {
        let tick = interval.latest_tick(Utc::now());
        if last_pushed != Some(tick) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn duration_ticks_are_aligned_and_only_the_latest_counts() {
        let i = Interval::parse("5m").unwrap();
        let now = Utc.with_ymd_and_hms(2025, 11, 4, 10, 7, 31).unwrap();
        assert_eq!(i.latest_tick(now), Utc.with_ymd_and_hms(2025, 11, 4, 10, 5, 0).unwrap());
        assert_eq!(i.next_tick(i.latest_tick(now)), Utc.with_ymd_and_hms(2025, 11, 4, 10, 10, 0).unwrap());
        // Down for an hour: the latest tick is the one that fires.
        let later = now + chrono::Duration::hours(1);
        assert_eq!(i.latest_tick(later), Utc.with_ymd_and_hms(2025, 11, 4, 11, 5, 0).unwrap());
    }

    #[test]
    fn cron_expressions_with_five_or_six_fields() {
        let i = Interval::parse("*/15 * * * *").unwrap();
        let now = Utc.with_ymd_and_hms(2025, 11, 4, 10, 7, 31).unwrap();
        assert_eq!(i.latest_tick(now), Utc.with_ymd_and_hms(2025, 11, 4, 10, 0, 0).unwrap());
        assert_eq!(i.next_tick(i.latest_tick(now)), Utc.with_ymd_and_hms(2025, 11, 4, 10, 15, 0).unwrap());
        let on = Utc.with_ymd_and_hms(2025, 11, 4, 10, 15, 0).unwrap();
        assert_eq!(i.latest_tick(on), on);
        assert!(Interval::parse("0 30 9 * * Mon-Fri").is_ok());
        assert!(Interval::parse("every now and then").is_err());
    }
}
