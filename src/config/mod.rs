//! Settings, read once from the environment (and `.env` if present) at startup.
//!
//! Every variable, its default and its meaning is listed in `.env.example`. A bad value stops
//! startup with an error naming the variable. Durations are written `90s`, `5m`, `2h`, `7d`; a
//! bare number is refused so that nobody wonders whether it meant seconds or minutes.
//!
//! [`Settings`] is one section per part of the system, each in its own file with its variables,
//! their named defaults (`DEFAULT_*`) and how they are read:
//!
//! | section | file | variables |
//! |---|---|---|
//! | `redis` | `redis_target` | `REDIS_*`, `BRIDGE_REPLAY_WINDOW` |
//! | `events` | `events` | `SUBSCRIPTION_EVENTS_ENABLED`, `REDIS_CHANNEL_PREFIX` |
//! | `queue` | `queue` | `TICKFILL_QUEUE`, attempts, retries, heartbeats, retention, concurrency |
//! | `ticker` | `ticker` | `TICKER_*`, `KITE_API_URL`, `TICKFILL_BULK_SHARE` |
//! | `accounts` | `accounts` | `TICKFILL_ACCOUNTS`, `ACCOUNT_<NAME>_*`, the one account's `KITE_*` |
//! | `backfill` | `backfill` | `BACKFILL_*`, `SWEEP_INTERVAL`, `CHAIN_DEBOUNCE`, `TICKFILL_CALENDAR*` |
//! | `store` | `store` | `DATABASE_URL`, `DB_*`, `TIMESCALE_*` |
//! | `admin`, `log` | `admin` | `ADMIN_*`, `LOG_*` |
//!
//! `read` puts them together and checks the rules that span sections; `values` says how each
//! kind of value is written (durations, sizes, URLs, secrets); `interval` is the sweep schedule.

pub mod accounts;
mod admin;
mod backfill;
mod events;
mod interval;
mod queue;
mod read;
mod redis_target;
mod store;
mod ticker;
mod values;

use std::collections::HashMap;

use chrono::{DateTime, Utc};

pub use accounts::{Account, AccountSettings, NamedAccount, DEFAULT_ACCOUNT};
pub use admin::{AdminSettings, LogFormat, LogSettings, DEFAULT_ADMIN_LISTEN, DEFAULT_LOG_LEVEL};
pub use backfill::{
    BackfillSettings, DEFAULT_CHAIN_DEBOUNCE, DEFAULT_GAP_THRESHOLD, DEFAULT_LOOKBACK, DEFAULT_RECHECK, DEFAULT_SETTLE,
    DEFAULT_WINDOW_MINUTES, MAX_LOOKBACK, MAX_WINDOW_MINUTES,
};
pub use events::{EventSettings, DEFAULT_CHANNEL_PREFIX};
pub use interval::{Interval, DEFAULT_SWEEP_INTERVAL, MAX_SWEEP_GAP_DAYS};
pub use queue::{
    QueueSettings, DEFAULT_CONCURRENCY, DEFAULT_HEARTBEAT, DEFAULT_MAX_ATTEMPTS, DEFAULT_ORPHAN_AFTER, DEFAULT_QUEUE,
    DEFAULT_RETENTION, DEFAULT_RETRY_BASE, DEFAULT_RETRY_MAX, DEFAULT_SHUTDOWN_TIMEOUT, MAX_CONCURRENCY,
};
pub use read::VARIABLES;
pub use redis_target::{
    RedisSettings, RedisTarget, SentinelTarget, DEFAULT_REDIS_URL, DEFAULT_REPLAY_WINDOW, DEFAULT_RESPONSE_TIMEOUT,
};
pub use store::{StoreSettings, TimescalePolicy, DEFAULT_COMPRESS_AFTER};
pub use ticker::{
    TickerApi, TickerSettings, DEFAULT_BULK_SHARE, DEFAULT_KITE_URL, DEFAULT_RATE_LIMIT, DEFAULT_THROTTLE_PAUSE,
    DEFAULT_TICKER_MAX_BODY, DEFAULT_TICKER_TIMEOUT, DEFAULT_TICKER_URL,
};
pub use values::{ago, parse_bool, parse_duration, parse_size, ConfigError, Secret, MAX_DURATION};

/// Every setting tickfill reads, typed, in sections.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where Redis is and how its connection follows the primary.
    pub redis: RedisSettings,
    /// Where subscription events arrive.
    pub events: EventSettings,
    /// How jobs are kept, tried and run.
    pub queue: QueueSettings,
    /// The history API and its rate budget.
    pub ticker: TickerSettings,
    /// The accounts history requests are spread over.
    pub accounts: AccountSettings,
    /// What is fetched and when; which minutes trade.
    pub backfill: BackfillSettings,
    /// PostgreSQL and TimescaleDB.
    pub store: StoreSettings,
    /// The admin server.
    pub admin: AdminSettings,
    /// Log lines.
    pub log: LogSettings,
}

impl Settings {
    /// The live edge at `now`: the whole minute `BACKFILL_SETTLE` before it. Minutes from here on
    /// are too new to plan, judge or trust (a source publishes its newest minutes late).
    pub fn live_edge(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        crate::domain::window::floor_minute(now - chrono::Duration::from_std(self.backfill.settle).unwrap_or_default())
    }

    /// The accounts history requests are spread over, in the order `TICKFILL_ACCOUNTS` lists
    /// them (the first is the default account of subscriptions that name none, or name one not
    /// configured); without it, the one [`DEFAULT_ACCOUNT`]. An account without a limit of its
    /// own has `TICKER_RATE_LIMIT`.
    pub fn account_list(&self) -> Vec<Account> {
        self.accounts.list(self.ticker.rate_limit)
    }

    /// Settings with every default, for tests and benches that then override what they need.
    pub fn defaults() -> Self {
        Self::from_map(&HashMap::new()).expect("defaults are valid")
    }
}

#[cfg(test)]
mod tests;
