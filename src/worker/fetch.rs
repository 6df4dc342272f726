//! What stands between a job and the ticker: a pause (an expired Kite session), the fleet-wide
//! rate budget, and 429s, which are waited out and cost no attempt.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use tickfill_jobs::Lane;

use super::{job::JobError, WorkerState};
use crate::{
    domain::{market::Candle, window::Window},
    metrics, queue,
    ticker::TickerError,
};

/// How many 429s one job sits out before it hands itself back to the queue.
const MAX_THROTTLE_WAITS: u32 = 20;

/// How long to sit out the `n`th 429 in a row (from 1) when the ticker asked for `least`: exactly
/// `least` the first time, then a random share of up to 2, 4 and 8 times it more. Jobs throttled
/// together would otherwise retry together for ever against a limiter that counts refused
/// requests too (measured: three of four jobs gave up after 20 waits); spreading them lets the
/// limiter's window empty. Never less than the ticker asked for.
fn throttle_pause(least: Duration, n: u32, jitter: f64) -> Duration {
    let spread = (1u32 << n.saturating_sub(1).min(3)) - 1;
    least + least.mul_f64(spread as f64 * jitter.clamp(0.0, 1.0))
}

/// How often a job waiting out a pause looks whether it was lifted.
const PAUSE_POLL: Duration = Duration::from_secs(2);

/// How long a look that found no pause holds for every job of the process.
const PAUSE_FRESH: Duration = Duration::from_secs(1);

/// When this process last found history requests not paused.
static NOT_PAUSED_AT: Mutex<Option<Instant>> = Mutex::new(None);

/// Waits while history requests are paused (Kite session expired), holding the job's slot: the
/// worker takes no more work meanwhile, and nothing spends an attempt.
async fn wait_while_paused(state: &WorkerState) {
    // One look per PAUSE_FRESH for the whole process, not one per request: a pause is noticed
    // that much later, and a busy worker spends no round trip on it.
    if NOT_PAUSED_AT.lock().expect("pause clock").is_some_and(|t| t.elapsed() < PAUSE_FRESH) {
        return;
    }
    let mut redis = state.redis.clone();
    let mut waited = Duration::ZERO;
    while let Ok(Some(why)) = queue::paused(&mut redis, &state.settings.queue).await {
        if waited.as_secs().is_multiple_of(60) {
            tracing::warn!(paused = %why, "history requests are paused; renew the session, then run `tickfill jobs resume`");
        }
        tokio::time::sleep(PAUSE_POLL).await;
        waited += PAUSE_POLL;
    }
    *NOT_PAUSED_AT.lock().expect("pause clock") = Some(Instant::now());
}

/// Asks the ticker, sitting out 429s (which are not the job's fault and cost no attempt) and
/// pauses (an expired Kite session).
#[tracing::instrument(level = "debug", skip_all, fields(token = token, lane = lane.as_str()))]
pub(super) async fn fetch_with_throttle(
    state: &WorkerState,
    token: u32,
    window: Window,
    lane: Lane,
) -> Result<Vec<Candle>, JobError> {
    let mut redis = state.redis.clone();
    let mut throttled = 0;
    while throttled < MAX_THROTTLE_WAITS {
        wait_while_paused(state).await;
        if let Some(budget) = &state.budget {
            let waited = budget.take(lane).await;
            metrics::get().rate_limit_wait.observe(waited.as_secs_f64());
            if waited > Duration::from_secs(1) {
                tracing::debug!(token, waited_ms = waited.as_millis() as u64, "waited for rate budget");
            }
        }
        let answer = state.ticker.history(token, window).await;
        if let Err(e) = &answer {
            queue::count(&mut redis, &state.settings.queue, &format!("ticker_errors:{}", e.label())).await;
        }
        match answer {
            Ok(c) => return Ok(c),
            Err(TickerError::Throttled { retry_after }) => {
                throttled += 1;
                let least = retry_after.unwrap_or(state.settings.throttle_pause);
                let pause = throttle_pause(least, throttled, rand::random());
                tracing::info!(token, pause_ms = pause.as_millis() as u64, "ticker throttled; waiting");
                tokio::time::sleep(pause).await;
            }
            Err(TickerError::SessionExpired(msg)) => {
                // The next look goes to Redis, and finds the pause.
                *NOT_PAUSED_AT.lock().expect("pause clock") = None;
                match queue::pause(&mut redis, &state.settings.queue, &msg).await {
                    Ok(true) => tracing::error!(reason = %msg, "history requests paused until `tickfill jobs resume`"),
                    Ok(false) => {}
                    Err(e) => return Err(JobError::Pause(anyhow::anyhow!("{msg} (and the pause failed: {e})"))),
                }
            }
            Err(e @ TickerError::Unreachable(_)) => return Err(JobError::Pause(e.into())),
            Err(e @ TickerError::Transient(_)) => return Err(JobError::Retry(e.into())),
            Err(TickerError::Permanent(msg)) => return Err(JobError::GiveUp(msg)),
        }
    }
    Err(JobError::Retry(anyhow::anyhow!("ticker kept throttling token {token}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_429_waits_as_asked_and_repeated_ones_spread_out() {
        let s = Duration::from_secs(1);
        assert_eq!(throttle_pause(s, 1, 1.0), s, "the first wait is what the ticker asked");
        assert_eq!(throttle_pause(s, 2, 0.0), s, "never less than asked");
        assert_eq!(throttle_pause(s, 2, 1.0), Duration::from_secs(2));
        assert_eq!(throttle_pause(s, 3, 1.0), Duration::from_secs(4));
        assert_eq!(throttle_pause(s, 20, 1.0), Duration::from_secs(8), "capped at eight times");
        assert_eq!(throttle_pause(s, 4, 0.5), Duration::from_millis(4500));
    }
}
