//! Settings, read once from the environment (and `.env` if present) at startup.
//!
//! Every variable, its default and its meaning is listed in `.env.example`. A bad value stops
//! startup with an error naming the variable. Durations are written `90s`, `5m`, `2h`, `7d`; a
//! bare number is refused so that nobody wonders whether it meant seconds or minutes.
//!
//! The variables read are listed in [`VARIABLES`] (`read`).
//!
//! Layout: this file holds [`Settings`]; `read` how it is read from the environment; `values` how each kind of value is
//! written (durations, sizes, URLs, secrets) and the reader that names a bad one's variable;
//! `interval` the sweep schedule; `accounts` the accounts requests are spread over; `redis_target`
//! where Redis is (one address or Sentinel).

pub mod accounts;
mod interval;
mod read;
mod redis_target;
mod values;

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};

pub use accounts::{Account, NamedAccount, DEFAULT_ACCOUNT};
pub use interval::{Interval, DEFAULT_SWEEP_INTERVAL, MAX_SWEEP_GAP_DAYS};
pub use read::VARIABLES;
pub use redis_target::{
    RedisSettings, RedisTarget, SentinelTarget, DEFAULT_REDIS_URL, DEFAULT_REPLAY_WINDOW, DEFAULT_RESPONSE_TIMEOUT,
};
pub use values::{
    ago, parse_bool, parse_duration, parse_size, ConfigError, Secret, DEFAULT_TICKER_MAX_BODY, MAX_DURATION,
};
use values::{
    database_url_from_parts, parse_database_url, parse_namespace, parse_optional_duration, parse_url, within, Reader,
};

use crate::domain::calendar::{Calendars, TradingCalendar};

/// The longest `BACKFILL_LOOKBACK`: as far as `tickfill quality` reads at once.
pub const MAX_LOOKBACK: Duration = Duration::from_secs(400 * 86_400);

/// `BACKFILL_RECHECK` when unset: an equity's final days are checked again once a day.
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(86_400);

pub const DEFAULT_CHANNEL_PREFIX: &str = "ticker:nifty";
pub const DEFAULT_QUEUE: &str = "tickfill";
pub const DEFAULT_TICKER_URL: &str = "http://localhost:8080";
pub const DEFAULT_KITE_URL: &str = "https://api.kite.trade";

/// Which history API the worker calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickerApi {
    TickerService,
    Kite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Every setting tickfill reads, typed.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where Redis is and how its connection follows the primary.
    pub redis: RedisSettings,
    pub channel_prefix: String,
    pub subscription_events_enabled: bool,
    pub backfill_enabled: bool,
    pub backfill_immediate_on_subscribe: bool,
    pub backfill_subscription_aware: bool,
    /// After each trading day's session, one check fetch per instrument and day settles it.
    pub backfill_verify: bool,
    /// How often an equity's final days are checked again for an adjustment the source made
    /// since (`BACKFILL_RECHECK`; `None`: never).
    pub recheck: Option<Duration>,
    pub database_url: Secret,
    pub ticker_url: String,
    pub ticker_timeout: Duration,
    /// The largest ticker answer read, in bytes (each history answer is held to less: see
    /// [`crate::ticker::answer_cap`]).
    pub ticker_max_body: u64,
    pub log_level: String,
    pub log_format: LogFormat,
    pub queue: String,
    /// History requests per second, all replicas together; 0 = unlimited.
    pub rate_limit: u32,
    pub throttle_pause: Duration,
    pub reconcile: bool,
    pub window_minutes: u32,
    pub lookback: Duration,
    pub gap_threshold: Duration,
    pub settle: Duration,
    pub sweep_interval: Interval,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub heartbeat: Duration,
    pub orphan_after: Duration,
    pub retention: Duration,
    pub shutdown_timeout: Duration,
    pub bulk_share: f64,
    /// Jobs one worker process runs at once.
    pub concurrency: usize,
    pub chain_debounce: Duration,
    pub admin_listen: SocketAddr,
    pub admin_token: Option<Secret>,
    /// `ADMIN_READ_TOKEN`: sees everything, changes nothing; once set, every read needs one of
    /// the two tokens.
    pub admin_read_token: Option<Secret>,
    /// Which minutes trade (`TICKFILL_CALENDAR`).
    pub calendar: TradingCalendar,
    /// The exchanges' calendars, built in and extended by `TICKFILL_CALENDAR_FILE`, whichever
    /// `calendar` is in force.
    pub calendars: Arc<Calendars>,
    pub ticker_api: TickerApi,
    pub kite_url: String,
    pub kite_api_key: Secret,
    pub kite_access_token: Secret,
    /// The default account's Kite API secret (`KITE_API_SECRET`), for `tickfill kite login`.
    pub kite_api_secret: Secret,
    /// `TICKFILL_ACCOUNTS` and each account's variables; empty: one account, [`DEFAULT_ACCOUNT`],
    /// configured by `TICKER_RATE_LIMIT`, `KITE_API_KEY` and `KITE_ACCESS_TOKEN`. Read them
    /// through [`Settings::accounts`].
    pub named_accounts: Vec<NamedAccount>,
    /// What TimescaleDB does with old chunks (no effect on plain PostgreSQL).
    pub timescale: TimescalePolicy,
}

/// `TIMESCALE_COMPRESS_AFTER` when unset.
pub const DEFAULT_COMPRESS_AFTER: Duration = Duration::from_secs(7 * 86_400);

/// The chunk policies of the bar tables on TimescaleDB; plain PostgreSQL ignores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimescalePolicy {
    /// Compress chunks whose newest minute is older than this; `None`: never.
    pub compress_after: Option<Duration>,
    /// Drop chunks (bars and option-chain tables, not their rollups) older than this; `None`: keep all.
    pub retention: Option<Duration>,
}

impl Default for TimescalePolicy {
    fn default() -> Self {
        TimescalePolicy { compress_after: Some(DEFAULT_COMPRESS_AFTER), retention: None }
    }
}

impl Settings {
    /// The live edge at `now`: the whole minute `BACKFILL_SETTLE` before it. Minutes from here on
    /// are too new to plan, judge or trust (a source publishes its newest minutes late).
    pub fn live_edge(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        crate::domain::window::floor_minute(now - chrono::Duration::from_std(self.settle).unwrap_or_default())
    }

    /// The accounts history requests are spread over, in the order `TICKFILL_ACCOUNTS` lists
    /// them (the first is the default account of subscriptions that name none, or name one not
    /// configured); without it, the one [`DEFAULT_ACCOUNT`].
    pub fn accounts(&self) -> Vec<Account> {
        if self.named_accounts.is_empty() {
            return vec![Account {
                name: DEFAULT_ACCOUNT.into(),
                named: false,
                rate_limit: self.rate_limit,
                kite_api_key: self.kite_api_key.clone(),
                kite_api_secret: self.kite_api_secret.clone(),
                env_session: Some(self.kite_access_token.clone()).filter(|t| !t.is_empty()),
            }];
        }
        self.named_accounts
            .iter()
            .map(|a| Account {
                name: a.name.clone(),
                named: true,
                rate_limit: a.rate_limit.unwrap_or(self.rate_limit),
                kite_api_key: a.kite_api_key.clone(),
                kite_api_secret: a.kite_api_secret.clone(),
                env_session: None,
            })
            .collect()
    }

    /// Settings with every default, for tests and benches that then override what they need.
    pub fn defaults() -> Self {
        Self::from_map(&HashMap::new()).expect("defaults are valid")
    }
}

#[cfg(test)]
mod tests;
