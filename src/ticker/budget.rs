//! The fleet-wide rate budgets of the history API, one per account, and the routing of each
//! request to an account that can serve it now.
//!
//! Each account's limit (`ACCOUNT_<NAME>_RATE_LIMIT`, else `TICKER_RATE_LIMIT`) is one budget for
//! every worker process together. Each process paces each lane with governor, and every request
//! then takes a grant here, from one Lua script run on Redis's own clock that looks at the
//! accounts in the caller's order and grants from the first that can serve now:
//!
//! - an account is usable unless its breaker is open (repeated 429s) or, in Kite mode, it has no
//!   valid session in Redis;
//! - each account keeps a sliding-window log of its last `limit` grants; a new grant is due when
//!   the oldest of them is one window old. The window is one second plus [`MARGIN`], so that
//!   requests which leave a little late or early still arrive at most `limit` in any one second;
//! - urgent work (subscription events) comes first in each account: an urgent caller that has to
//!   wait raises that account's flag, and while it is up bulk work (sweeps, hand backfills) gets
//!   only its reserved share, `TICKFILL_BULK_SHARE` of the limit, so it is slowed, never starved.
//!
//! A grant is spent when it is given. A worker that dies holding one loses nothing: the grant
//! simply ages out of the window with the others, and no lease has to expire.
//!
//! Without `TICKFILL_ACCOUNTS` there is one account on the single budget's keys, and with
//! `TICKER_RATE_LIMIT=0` and no session to look up no request touches Redis at all.

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::queue::RedisConn;
use tickfill_jobs::Lane;

use crate::{
    config::{Account, Secret, Settings, TickerApi},
    queue::budget::{take_grant, Ask, Taken},
};

/// Added to the one-second window: the slack for network and scheduling jitter between a grant
/// and its request's arrival at the ticker.
pub const MARGIN: Duration = Duration::from_millis(50);

/// How long the "urgent work is waiting" flag outlives the last urgent caller that raised it.
const URGENT_FLAG_TTL: Duration = Duration::from_millis(500);

/// The longest a waiter sleeps between two looks (a grant can free up sooner than predicted when
/// the flag drops).
const MAX_NAP: Duration = Duration::from_millis(250);

/// How often a caller looks again while no account is usable (no session, breakers open).
const BLOCKED_NAP: Duration = Duration::from_secs(1);

/// One account as the budget routes to it.
struct Slot {
    account: Account,
    /// Its keys and terms in Redis (its session lives there in Kite mode without
    /// `KITE_ACCESS_TOKEN`).
    ask: Ask,
}

/// Where a request goes: the account (its index in [`Settings::account_list`]) and, in Kite mode,
/// the session to send.
#[derive(Debug, Clone)]
pub struct Grant {
    pub account: usize,
    pub access_token: Option<Secret>,
    /// How long the caller waited for it.
    pub waited: Duration,
}

/// Hands out grants of the accounts' fleet-wide budgets, urgent lane first.
#[derive(Clone)]
pub struct Budget {
    redis: RedisConn,
    slots: Arc<[Slot]>,
    /// governor's pacing inside this process, one per lane, at the accounts' summed limit, so
    /// urgent work never queues locally behind bulk work that waits for the shared budget;
    /// `None` when an account is unlimited.
    local: Option<[Arc<DefaultDirectRateLimiter>; 2]>,
}

impl Budget {
    /// The budgets of `settings.account_list()`.
    pub fn new(redis: RedisConn, settings: &Settings) -> Budget {
        let accounts = settings.account_list();
        let kite = settings.ticker.api == TickerApi::Kite;
        let slots: Vec<Slot> = accounts
            .into_iter()
            .map(|account| {
                // The bulk lane's reserved share, as the spacing between its grants while urgent waits.
                let bulk_rate = settings.ticker.bulk_share * account.rate_limit as f64;
                let bulk_spacing = if bulk_rate > 0.0 {
                    Duration::from_secs_f64((1.0 + MARGIN.as_secs_f64()) / bulk_rate)
                } else {
                    Duration::ZERO
                };
                let session_in_redis = kite && account.env_session.is_none();
                let ask = Ask::new(
                    &settings.queue.name,
                    &account.name,
                    account.named,
                    account.rate_limit,
                    bulk_spacing,
                    session_in_redis,
                );
                Slot { ask, account }
            })
            .collect();
        let local = slots
            .iter()
            .map(|s| NonZeroU32::new(s.account.rate_limit))
            .try_fold(0u32, |sum, l| l.map(|l| sum.saturating_add(l.get())))
            .and_then(NonZeroU32::new)
            .map(|sum| [(); 2].map(|_| Arc::new(RateLimiter::direct(Quota::per_second(sum)))));
        Budget { redis, slots: slots.into(), local }
    }

    /// The accounts, in the order of [`Settings::account_list`].
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.slots.iter().map(|s| &s.account)
    }

    /// The account at `i`.
    pub fn account(&self, i: usize) -> &Account {
        &self.slots[i].account
    }

    /// The index of the account named `name`, if one is configured.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.account.name == name)
    }

    /// Whether a request can go without asking Redis: one account, unlimited, its session (if
    /// any) in the settings. Such an account has no breaker either: nothing would enforce it.
    pub fn free(&self) -> bool {
        matches!(&*self.slots, [only] if only.account.rate_limit == 0 && !only.ask.session_in_redis)
    }

    /// Waits for a grant for one request of `lane`, from `prefer` if it can serve now, else from
    /// the first other account that can (starting at a random one, so that work without a
    /// preference spreads). `waiter` names the caller among those waiting. While no account is
    /// usable, or Redis is unreachable, it keeps waiting, calling `blocked` now and then with
    /// what keeps each account: a request without a grant could break an account's limit.
    #[tracing::instrument(level = "debug", skip_all, fields(lane = lane.as_str()))]
    pub async fn take(
        &self,
        lane: Lane,
        prefer: Option<usize>,
        waiter: &str,
        mut blocked: impl FnMut(Duration),
    ) -> Grant {
        let started = std::time::Instant::now();
        if self.free() {
            let access_token = self.slots[0].account.env_session.clone();
            return Grant { account: 0, access_token, waited: Duration::ZERO };
        }
        if let Some(local) = &self.local {
            local[lane as usize].until_ready().await;
        }
        let n = self.slots.len();
        let first = prefer.filter(|p| *p < n).unwrap_or_else(|| rand::random_range(0..n));
        let order: Vec<usize> = (0..n).map(|i| (first + i) % n).collect();
        let window = Duration::from_secs(1) + MARGIN;
        let mut conn = self.redis.clone();
        let mut failures = 0u32;
        let asks: Vec<&Ask> = order.iter().map(|&i| &self.slots[i].ask).collect();
        loop {
            let r = take_grant(&mut conn, &asks, window, lane == Lane::Urgent, URGENT_FLAG_TTL, waiter).await;
            let nap = match r {
                Ok(Taken::Granted { index, session }) => {
                    let account = order[index];
                    let access_token = match &self.slots[account].account.env_session {
                        Some(t) => Some(t.clone()),
                        None => Some(Secret::new(session)).filter(|t| !t.is_empty()),
                    };
                    return Grant { account, access_token, waited: started.elapsed() };
                }
                Ok(Taken::Spent(after)) => after.min(MAX_NAP),
                Ok(Taken::Blocked(after)) => {
                    blocked(started.elapsed());
                    after.min(BLOCKED_NAP)
                }
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
