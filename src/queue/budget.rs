//! The accounts' fleet-wide rate budgets in Redis: one script that takes a grant from the first
//! account, in the order asked, that can serve now (`lua/take_grant.lua` documents its keys and
//! arguments). The policy around it (the order, local pacing, waiting) is `ticker::budget`'s.

use std::{sync::LazyLock, time::Duration};

use redis::Script;

use super::keys::{self, AccountKeys};
use crate::queue::RedisConn;

static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/take_grant.lua")));

/// One account's part of a take: its keys and its terms.
#[derive(Debug, Clone)]
pub struct Ask {
    keys: [String; 7],
    /// Requests a second; 0 = unlimited.
    pub rate_limit: u32,
    /// The spacing of bulk grants while urgent work waits (zero: none reserved).
    pub bulk_spacing: Duration,
    /// Whether a grant needs a valid session stored in Redis (Kite accounts without
    /// `KITE_ACCESS_TOKEN`).
    pub session_in_redis: bool,
}

impl Ask {
    /// The account `account` of namespace `ns`; `named`: whether it has keys of its own (an
    /// account of `TICKFILL_ACCOUNTS`) or the single budget's.
    pub fn new(
        ns: &str,
        account: &str,
        named: bool,
        rate_limit: u32,
        bulk_spacing: Duration,
        session_in_redis: bool,
    ) -> Ask {
        let [log, flag, bulk] = keys::budget(ns, named.then_some(account));
        let k = AccountKeys::new(ns, account);
        let keys = [log, flag, bulk, k.session(), k.breaker(), k.recent(), k.waiting()];
        Ask { keys, rate_limit, bulk_spacing, session_in_redis }
    }
}

/// What a take found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// A grant of the account at this index of the asks, with its stored session (empty when it
    /// needs none).
    Granted { index: usize, session: String },
    /// Every usable account is spent for now: look again after this.
    Spent(Duration),
    /// No account is usable (no valid session, breaker open): look again after this.
    Blocked(Duration),
}

/// Takes one grant from the first of `asks` that can serve now, on Redis's clock. `window`: the
/// sliding window of each account's log; `urgent`: the caller's lane; `flag_ttl`: how long an
/// urgent caller's flag holds bulk back; `waiter`: the caller among those waiting.
pub async fn take_grant(
    conn: &mut RedisConn,
    asks: &[&Ask],
    window: Duration,
    urgent: bool,
    flag_ttl: Duration,
    waiter: &str,
) -> redis::RedisResult<Taken> {
    let mut call = TAKE.prepare_invoke();
    for ask in asks {
        for key in &ask.keys {
            call.key(key);
        }
    }
    call.arg(asks.len())
        .arg(window.as_micros() as i64)
        .arg(if urgent { "u" } else { "b" })
        .arg(flag_ttl.as_millis() as i64)
        .arg(waiter);
    for ask in asks {
        call.arg(ask.rate_limit).arg(ask.bulk_spacing.as_micros() as i64).arg(u8::from(ask.session_in_redis));
    }
    let (i, us, session): (i64, i64, String) = call.invoke_async(conn).await?;
    let after = Duration::from_micros(us.max(1) as u64);
    Ok(match i {
        i if i > 0 => Taken::Granted { index: (i - 1) as usize, session },
        0 => Taken::Spent(after),
        _ => Taken::Blocked(after),
    })
}
