//! The fleet-wide rate budget of the ticker's history API.
//!
//! `TICKER_RATE_LIMIT` is one budget for every worker process together. Each process paces each
//! lane with governor, and every request then takes a grant here, from a
//! sliding-window log kept in Redis and updated by one Lua script on Redis's own clock:
//!
//! - the log holds the times of the last `limit` grants; a new grant is due when the oldest of
//!   them is one window old. The window is one second plus [`MARGIN`], so that requests which
//!   leave a little late or early still arrive at most `limit` in any one second;
//! - urgent work (subscription events) comes first: an urgent caller that has to wait raises a
//!   flag, and while it is up bulk work (sweeps, hand backfills) gets only its reserved share,
//!   `TICKFILL_BULK_SHARE` of the limit, so it is slowed, never starved.
//!
//! A grant is spent when it is given. A worker that dies holding one loses nothing: the grant
//! simply ages out of the window with the others, and no lease has to expire.

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use redis::{aio::ConnectionManager, Script};
use tickfill_jobs::Lane;

use crate::config::Settings;

/// Added to the one-second window: the slack for network and scheduling jitter between a grant
/// and its request's arrival at the ticker.
pub const MARGIN: Duration = Duration::from_millis(50);

/// How long the "urgent work is waiting" flag outlives the last urgent caller that raised it.
const URGENT_FLAG_TTL: Duration = Duration::from_millis(500);

/// The longest a waiter sleeps between two looks (a grant can free up sooner than predicted when
/// the flag drops).
const MAX_NAP: Duration = Duration::from_millis(250);

/// Takes one grant or says how long to wait (the script documents its keys and arguments).
const TAKE: &str = include_str!("budget.lua");

/// Hands out grants of the fleet-wide budget, urgent lane first.
#[derive(Clone)]
pub struct Budget {
    redis: ConnectionManager,
    keys: [String; 3],
    limit: u32,
    bulk_spacing: Duration,
    /// governor's pacing inside this process, one per lane, so urgent work never queues
    /// locally behind bulk work that waits for the shared budget.
    local: [Arc<DefaultDirectRateLimiter>; 2],
    script: Arc<Script>,
}

impl Budget {
    /// The budget of `settings.queue`; `None` when `TICKER_RATE_LIMIT=0` (unlimited).
    pub fn new(redis: ConnectionManager, settings: &Settings) -> Option<Budget> {
        let limit = NonZeroU32::new(settings.rate_limit)?;
        // The bulk lane's reserved share, as the spacing between its grants while urgent waits.
        let bulk_rate = settings.bulk_share * limit.get() as f64;
        let bulk_spacing = if bulk_rate > 0.0 {
            Duration::from_secs_f64((1.0 + MARGIN.as_secs_f64()) / bulk_rate)
        } else {
            Duration::ZERO
        };
        Some(Budget {
            redis,
            keys: crate::queue::keys::budget(&settings.queue),
            limit: limit.get(),
            bulk_spacing,
            local: [(); 2].map(|_| Arc::new(RateLimiter::direct(Quota::per_second(limit)))),
            script: Arc::new(Script::new(TAKE)),
        })
    }

    /// Waits for a grant for one request of `lane`; returns how long it waited. While Redis is
    /// unreachable it keeps waiting: a request without a grant could break the fleet's limit.
    #[tracing::instrument(level = "debug", skip_all, fields(lane = lane.as_str()))]
    pub async fn take(&self, lane: Lane) -> Duration {
        let started = std::time::Instant::now();
        self.local[lane as usize].until_ready().await;
        let mut conn = self.redis.clone();
        let window = Duration::from_secs(1) + MARGIN;
        let mut failures = 0u32;
        loop {
            let r: redis::RedisResult<i64> = self
                .script
                .key(&self.keys[0])
                .key(&self.keys[1])
                .key(&self.keys[2])
                .arg(self.limit)
                .arg(window.as_micros() as i64)
                .arg(if lane == Lane::Urgent { "u" } else { "b" })
                .arg(self.bulk_spacing.as_micros() as i64)
                .arg(URGENT_FLAG_TTL.as_millis() as i64)
                .invoke_async(&mut conn)
                .await;
            let nap = match r {
                Ok(0) => return started.elapsed(),
                Ok(us) => Duration::from_micros(us.max(1) as u64).min(MAX_NAP),
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(20) {
                        tracing::warn!(error = %e, "rate budget unreachable in Redis; waiting");
                    }
                    Duration::from_millis(250)
                }
            };
            // A little spread, so waiters woken by the same free grant do not all ask at once.
            tokio::time::sleep(nap + Duration::from_micros(rand::random_range(0..2000))).await;
        }
    }
}
