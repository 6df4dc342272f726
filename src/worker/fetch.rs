//! What stands between a job and the ticker: a halt (the settings' Kite session expired), the
//! accounts' fleet-wide budgets and sessions, and 429s, which are waited out and cost no attempt.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};
use tickfill_jobs::InstrumentToken;
use tracing::Instrument as _;

use tickfill_jobs::Lane;

use super::{job::JobError, WorkerState};
use crate::{
    domain::{market::Candle, window::Window},
    metrics,
    queue::{self, accounts::BreakerPolicy},
    ticker::{TickerError, Via},
};

/// How many 429s one job sits out before it hands itself back to the queue.
const MAX_THROTTLE_WAITS: u32 = 20;

/// How long to sit out the `n`th 429 in a row (from 1) when the ticker asked for `least`: exactly
/// `least` the first time, then a random share of up to 2, 4 and 8 times it more. Jobs throttled
/// together would otherwise retry together for ever against a limiter that counts refused
/// requests too (measured: three of four jobs gave up after 20 waits); spreading them lets the
/// limiter's window empty. Never less than the ticker asked for.
fn throttle_wait(least: Duration, n: u32, jitter: f64) -> Duration {
    let spread = (1u32 << n.saturating_sub(1).min(3)) - 1;
    least + least.mul_f64(spread as f64 * jitter.clamp(0.0, 1.0))
}

/// How often a job waiting out a halt looks whether it was lifted.
const HALT_POLL: Duration = Duration::from_secs(2);

/// How long a look that found no halt holds for every job of the process.
const HALT_FRESH: Duration = Duration::from_secs(1);

/// When this process last found history requests not halted.
static NOT_HALTED_AT: Mutex<Option<Instant>> = Mutex::new(None);

/// Waits while history requests are halted (Kite session expired), holding the job's slot: the
/// worker takes no more work meanwhile, and nothing spends an attempt.
async fn wait_while_halted(state: &WorkerState) {
    // One look per HALT_FRESH for the whole process, not one per request: a halt is noticed
    // that much later, and a busy worker spends no round trip on it.
    if NOT_HALTED_AT.lock().expect("halt clock").is_some_and(|t| t.elapsed() < HALT_FRESH) {
        return;
    }
    let mut redis = state.redis.clone();
    let mut waited = Duration::ZERO;
    while let Ok(Some(why)) = queue::requests_halted(&mut redis, &state.settings.queue.name).await {
        if waited.as_secs().is_multiple_of(60) {
            tracing::warn!(halted = %why, "history requests are halted; renew the session, then run `tickfill jobs resume`");
        }
        tokio::time::sleep(HALT_POLL).await;
        waited += HALT_POLL;
    }
    *NOT_HALTED_AT.lock().expect("halt clock") = Some(Instant::now());
}

/// A name for one caller among those waiting for a grant (unique in the fleet for a while).
fn waiter_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// How often a caller that no account can serve says so.
const BLOCKED_SAY_EVERY: Duration = Duration::from_secs(60);

/// Asks the ticker through an account that can serve now (`prefer` first), sitting out 429s
/// (which are not the job's fault and cost no attempt) and a halt. A session Kite refuses ends
/// that account's session only: the request goes again through another account, or waits for a
/// new session, spending no attempt. Returns the candles and the account (its index) that
/// answered.
#[tracing::instrument(level = "debug", skip_all, fields(token = token.get(), lane = lane.as_str()))]
pub(super) async fn fetch_with_throttle(
    state: &WorkerState,
    token: InstrumentToken,
    window: Window,
    lane: Lane,
    prefer: Option<usize>,
) -> Result<(Vec<Candle>, usize), JobError> {
    let mut redis = state.redis.clone();
    let ns = &state.settings.queue.name;
    let waiter = waiter_id();
    let mut throttled = 0;
    let m = metrics::get();
    while throttled < MAX_THROTTLE_WAITS {
        wait_while_halted(state).await;
        let mut said: Option<Duration> = None;
        let grant = state
            .budget
            .take(lane, prefer, &waiter, |waited| {
                if said.is_none_or(|s| waited >= s + BLOCKED_SAY_EVERY) {
                    said = Some(waited);
                    tracing::warn!(
                        token = token.get(),
                        waited_s = waited.as_secs(),
                        "no account can serve history requests now (Kite sessions missing or ended, or \
                         breakers open); waiting. `tickfill accounts` shows why"
                    );
                }
            })
            .instrument(tracing::info_span!("budget.wait"))
            .await;
        m.rate_limit_wait.observe(grant.waited.as_secs_f64());
        let account = state.budget.account(grant.account);
        if grant.waited > Duration::from_millis(20) {
            super::trail::note(
                "budget_wait",
                serde_json::json!({"ms": grant.waited.as_millis() as u64, "account": account.name}),
            );
        }
        if grant.waited > Duration::from_secs(1) {
            tracing::debug!(token = token.get(), waited_ms = grant.waited.as_millis() as u64, "waited for rate budget");
        }
        let label = metrics::l1("account", &account.name);
        m.account_requests.get_or_create(&label).inc();
        let answer = state.ticker.history(token, window, Via::of(account, grant.access_token.as_ref())).await;
        state.history.add("history_requests", 1);
        if let Err(e) = &answer {
            queue::count(&mut redis, ns, &format!("ticker_errors:{}", e.label())).await;
        }
        match answer {
            Ok(c) => {
                super::trail::note("answered", serde_json::json!({"account": account.name, "candles": c.len()}));
                return Ok((c, grant.account));
            }
            Err(TickerError::Throttled { retry_after }) => {
                throttled += 1;
                m.account_throttled.get_or_create(&label).inc();
                state.history.add("throttled", 1);
                let breaker = match state.budget.free() {
                    true => Ok(None),
                    false => queue::accounts::throttled(&mut redis, ns, &account.name, BreakerPolicy::default()).await,
                };
                match breaker {
                    Ok(Some(open)) => {
                        m.account_breaker_opened.get_or_create(&label).inc();
                        tracing::warn!(
                            account = %account.name,
                            open_s = open.as_secs_f64(),
                            "account throttled again and again: it backs off as a whole (breaker open)"
                        );
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "could not count a throttle"),
                }
                let least = retry_after.unwrap_or(state.settings.ticker.throttle_pause);
                let wait = throttle_wait(least, throttled, rand::random());
                tracing::info!(token = token.get(), account = %account.name, wait_ms = wait.as_millis() as u64, "ticker throttled; waiting");
                super::trail::note(
                    "throttled",
                    serde_json::json!({"account": account.name, "wait_ms": wait.as_millis() as u64}),
                );
                tokio::time::sleep(wait).await;
            }
            Err(TickerError::SessionExpired(msg)) if account.env_session.is_some() => {
                // The session of the settings (`KITE_ACCESS_TOKEN`): as before accounts, every
                // request halts until an operator renews it and resumes.
                // The next look goes to Redis, and finds the halt.
                *NOT_HALTED_AT.lock().expect("halt clock") = None;
                match queue::halt_requests(&mut redis, ns, &msg).await {
                    Ok(true) => tracing::error!(reason = %msg, "history requests halted until `tickfill jobs resume`"),
                    Ok(false) => {}
                    Err(e) => return Err(JobError::PutOff(anyhow::anyhow!("{msg} (and the halt failed: {e})"))),
                }
            }
            Err(TickerError::SessionExpired(msg)) => {
                // A session from Redis: that account alone stops until a new one checks out.
                let Some(used) = &grant.access_token else {
                    return Err(JobError::PutOff(anyhow::anyhow!("{msg}")));
                };
                match queue::accounts::end_session(&mut redis, ns, &account.name, used, &msg).await {
                    Ok(true) => {
                        m.account_sessions_ended.get_or_create(&label).inc();
                        tracing::error!(
                            account = %account.name,
                            reason = %msg,
                            "Kite refused the account's session: its work goes to the other accounts until \
                             `tickfill kite login --account {}` renews it",
                            account.name
                        );
                    }
                    Ok(false) => {}
                    Err(e) => {
                        return Err(JobError::PutOff(anyhow::anyhow!("{msg} (and ending the session failed: {e})")))
                    }
                }
            }
            Err(e @ TickerError::Unreachable(_)) => return Err(JobError::PutOff(e.into())),
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
        assert_eq!(throttle_wait(s, 1, 1.0), s, "the first wait is what the ticker asked");
        assert_eq!(throttle_wait(s, 2, 0.0), s, "never less than asked");
        assert_eq!(throttle_wait(s, 2, 1.0), Duration::from_secs(2));
        assert_eq!(throttle_wait(s, 3, 1.0), Duration::from_secs(4));
        assert_eq!(throttle_wait(s, 20, 1.0), Duration::from_secs(8), "capped at eight times");
        assert_eq!(throttle_wait(s, 4, 0.5), Duration::from_millis(4500));
    }
}
