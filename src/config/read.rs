//! Reading the settings from the environment (and `.env`): each section reads its own variables
//! (see the table in `config`); this file puts them together and checks the rules that span
//! sections. A bad value stops startup naming the variable.

use std::collections::HashMap;

use super::{values::Reader, *};
/// Every variable tickfill reads; `.env.example` lists each with its default.
pub const VARIABLES: &[&str] = &[
    "REDIS_URL",
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER",
    "REDIS_SENTINEL_PASSWORD",
    "REDIS_PASSWORD",
    "REDIS_DB",
    "REDIS_RESPONSE_TIMEOUT",
    "BRIDGE_REPLAY_WINDOW",
    "REDIS_CHANNEL_PREFIX",
    "SUBSCRIPTION_EVENTS_ENABLED",
    "BACKFILL_ENABLED",
    "BACKFILL_IMMEDIATE_ON_SUBSCRIBE",
    "BACKFILL_SUBSCRIPTION_AWARE",
    "BACKFILL_VERIFY",
    "BACKFILL_RECHECK",
    "DATABASE_URL",
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_USER",
    "DB_PASSWORD",
    "TICKER_SERVICE_URL",
    "TICKER_SERVICE_TIMEOUT",
    "TICKER_MAX_BODY",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "TICKFILL_QUEUE",
    "TICKER_RATE_LIMIT",
    "TICKER_THROTTLE_PAUSE",
    "TICKER_RECONCILE",
    "BACKFILL_WINDOW_MINUTES",
    "BACKFILL_LOOKBACK",
    "BACKFILL_GAP_THRESHOLD",
    "BACKFILL_SETTLE",
    "SWEEP_INTERVAL",
    "TICKFILL_MAX_ATTEMPTS",
    "TICKFILL_RETRY_BASE",
    "TICKFILL_RETRY_MAX",
    "TICKFILL_HEARTBEAT",
    "TICKFILL_ORPHAN_AFTER",
    "TICKFILL_RETENTION",
    "TICKFILL_SHUTDOWN_TIMEOUT",
    "TICKFILL_BULK_SHARE",
    "TICKFILL_CONCURRENCY",
    "CHAIN_DEBOUNCE",
    "ADMIN_LISTEN",
    "ADMIN_TOKEN",
    "ADMIN_READ_TOKEN",
    "TICKFILL_CALENDAR",
    "TICKFILL_CALENDAR_FILE",
    "TICKER_API",
    "KITE_API_URL",
    "KITE_API_KEY",
    "KITE_ACCESS_TOKEN",
    "KITE_API_SECRET",
    "TICKFILL_ACCOUNTS",
    "TIMESCALE_COMPRESS_AFTER",
    "TIMESCALE_RETENTION",
];

impl Settings {
    /// Reads `.env` (if present) and the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_map(&vars)
    }

    /// Reads settings from a map of variables; used by `from_env` and by tests.
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let r = Reader { vars };
        let ticker = ticker::read(&r)?;
        let settings = Settings {
            redis: redis_target::read(&r)?,
            events: events::read(&r)?,
            queue: queue::read(&r)?,
            accounts: accounts::read(&r, ticker.api == TickerApi::Kite)?,
            ticker,
            backfill: backfill::read(&r)?,
            store: store::read(&r)?,
            admin: admin::read(&r)?,
            log: admin::read_log(&r)?,
        };
        settings.check()?;
        Ok(settings)
    }

    /// Rules that span sections.
    fn check(&self) -> Result<(), ConfigError> {
        // Chunks dropped inside the lookback would be holes the sweeps fetch again, forever.
        if let Some(r) = self.store.timescale.retention.filter(|r| *r <= self.backfill.lookback) {
            return Err(ConfigError {
                var: "TIMESCALE_RETENTION".into(),
                value: humantime::format_duration(r).to_string(),
                reason: format!(
                    "must be longer than BACKFILL_LOOKBACK ({}): dropped bars inside it would be fetched again",
                    humantime::format_duration(self.backfill.lookback)
                ),
            });
        }
        Ok(())
    }
}
