//! Settings, read once from the environment (and `.env` if present) at startup.
//!
//! Every variable, its default and its meaning is listed in `.env.example`. A bad value stops
//! startup with an error naming the variable. Durations are written `90s`, `5m`, `2h`, `7d`; a
//! bare number is refused so that nobody wonders whether it meant seconds or minutes.
//!
//! The variables read are listed in [`VARIABLES`].
//!
//! Layout: this file holds [`Settings`] and how it is read; `values` how each kind of value is
//! written (durations, sizes, URLs, secrets) and the reader that names a bad one's variable;
//! `interval` the sweep schedule; `accounts` the accounts requests are spread over; `redis_target`
//! where Redis is (one address or Sentinel).

pub mod accounts;
mod interval;
mod redis_target;
mod values;

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};

pub use accounts::{Account, NamedAccount, DEFAULT_ACCOUNT};
pub use interval::{Interval, DEFAULT_SWEEP_INTERVAL, MAX_SWEEP_GAP_DAYS};
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

    /// Reads `.env` (if present) and the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_map(&vars)
    }

    /// Reads settings from a map of variables; used by `from_env` and by tests.
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let r = Reader { vars };
        let database_url = match r.raw("DATABASE_URL") {
            Some(_) => r.get("DATABASE_URL", Secret::new(""), parse_database_url)?,
            None => {
                let host = r.string("DB_HOST", "127.0.0.1");
                let port: u16 = r.number("DB_PORT", 5432)?;
                let name = r.string("DB_NAME", "tickfill");
                let user = r.string("DB_USER", "postgres");
                let password = r.raw("DB_PASSWORD");
                database_url_from_parts(&host, port, &name, &user, password)
                    .and_then(|url| parse_database_url(&url))
                    .map_err(|reason| ConfigError { var: "DB_HOST".into(), value: host.clone(), reason })?
            }
        };
        let bulk_share: f64 = r.get("TICKFILL_BULK_SHARE", 0.2, |s| {
            let v: f64 = s.trim().parse().map_err(|_| "expected a number".to_string())?;
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err("expected a fraction between 0 and 1".into())
            }
        })?;
        let calendars = Arc::new(r.get("TICKFILL_CALENDAR_FILE", Calendars::built_in(), |path| {
            let text = std::fs::read_to_string(path.trim()).map_err(|e| format!("cannot read it: {e}"))?;
            let mut c = Calendars::built_in();
            c.extend(&text)?;
            Ok(c)
        })?);
        let settings = Settings {
            redis: redis_target::read(&r)?,
            channel_prefix: r.get("REDIS_CHANNEL_PREFIX", DEFAULT_CHANNEL_PREFIX.into(), parse_namespace)?,
            subscription_events_enabled: r.boolean("SUBSCRIPTION_EVENTS_ENABLED", true)?,
            backfill_enabled: r.boolean("BACKFILL_ENABLED", true)?,
            backfill_immediate_on_subscribe: r.boolean("BACKFILL_IMMEDIATE_ON_SUBSCRIBE", true)?,
            backfill_subscription_aware: r.boolean("BACKFILL_SUBSCRIPTION_AWARE", true)?,
            backfill_verify: r.boolean("BACKFILL_VERIFY", true)?,
            recheck: r.get("BACKFILL_RECHECK", Some(DEFAULT_RECHECK), |s| match parse_optional_duration(s)? {
                Some(d) if d < Duration::from_secs(60) => Err("must be at least 1m (or none)".into()),
                d => Ok(d),
            })?,
            database_url,
            ticker_url: r.get("TICKER_SERVICE_URL", DEFAULT_TICKER_URL.into(), parse_url)?,
            ticker_timeout: r.get("TICKER_SERVICE_TIMEOUT", Duration::from_secs(30), |s| {
                within(s, Duration::from_secs(1), Duration::from_secs(3600))
            })?,
            ticker_max_body: r.get("TICKER_MAX_BODY", DEFAULT_TICKER_MAX_BODY, parse_size)?,
            log_level: r.get("LOG_LEVEL", "info".into(), |s| {
                let l = s.trim().to_ascii_lowercase();
                match l.as_str() {
                    "trace" | "debug" | "info" | "warn" | "warning" | "error" => {
                        Ok(if l == "warning" { "warn".into() } else { l })
                    }
                    _ => Err("expected trace, debug, info, warn or error".into()),
                }
            })?,
            log_format: r.get("LOG_FORMAT", LogFormat::Text, |s| match s.trim() {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                _ => Err("expected text or json".into()),
            })?,
            queue: r.get("TICKFILL_QUEUE", DEFAULT_QUEUE.into(), parse_namespace)?,
            rate_limit: r.get("TICKER_RATE_LIMIT", 3, accounts::parse_rate_limit)?,
            throttle_pause: r.duration("TICKER_THROTTLE_PAUSE", Duration::from_secs(1))?,
            reconcile: r.boolean("TICKER_RECONCILE", true)?,
            window_minutes: r.get("BACKFILL_WINDOW_MINUTES", 120, |s| match s.trim().parse::<u32>() {
                Ok(n) if (1..=60 * 24 * 60).contains(&n) => Ok(n),
                _ => Err("expected whole minutes between 1 and 86400".into()),
            })?,
            lookback: r.get("BACKFILL_LOOKBACK", Duration::from_secs(7 * 86_400), |s| {
                within(s, Duration::from_secs(60), MAX_LOOKBACK)
            })?,
            gap_threshold: r.duration("BACKFILL_GAP_THRESHOLD", Duration::from_secs(180))?,
            settle: r.duration("BACKFILL_SETTLE", Duration::from_secs(120))?,
            sweep_interval: r.get("SWEEP_INTERVAL", Interval::Every(DEFAULT_SWEEP_INTERVAL), |s| {
                Interval::parse(s).map_err(|e| e.to_string())
            })?,
            max_attempts: r.get("TICKFILL_MAX_ATTEMPTS", 8, |s| match s.trim().parse::<u32>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err("expected a whole number of at least 1".into()),
            })?,
            retry_base: r.duration("TICKFILL_RETRY_BASE", Duration::from_secs(2))?,
            retry_max: r.duration("TICKFILL_RETRY_MAX", Duration::from_secs(300))?,
            heartbeat: r.duration("TICKFILL_HEARTBEAT", Duration::from_secs(5))?,
            orphan_after: r.duration("TICKFILL_ORPHAN_AFTER", Duration::from_secs(30))?,
            retention: r.duration("TICKFILL_RETENTION", Duration::from_secs(86_400))?,
            shutdown_timeout: r.duration("TICKFILL_SHUTDOWN_TIMEOUT", Duration::from_secs(30))?,
            bulk_share,
            concurrency: r.get("TICKFILL_CONCURRENCY", 16, |s| match s.trim().parse::<usize>() {
                Ok(n) if (1..=1024).contains(&n) => Ok(n),
                _ => Err("expected a whole number between 1 and 1024".into()),
            })?,
            chain_debounce: r.duration("CHAIN_DEBOUNCE", Duration::from_secs(2))?,
            admin_listen: r.get("ADMIN_LISTEN", "127.0.0.1:0".parse().unwrap(), |s| {
                s.trim().parse::<SocketAddr>().map_err(|_| "expected HOST:PORT, e.g. 127.0.0.1:9100".into())
            })?,
            admin_token: r.raw("ADMIN_TOKEN").map(|t| Secret::new(t.trim())),
            admin_read_token: r.raw("ADMIN_READ_TOKEN").map(|t| Secret::new(t.trim())),
            calendar: match r.raw("TICKFILL_CALENDAR").map(str::trim) {
                None | Some("exchange") => TradingCalendar::Exchange(calendars.clone()),
                Some("always") => TradingCalendar::Always,
                Some(other) => {
                    return Err(ConfigError {
                        var: "TICKFILL_CALENDAR".into(),
                        value: other.to_string(),
                        reason: "expected exchange or always".into(),
                    })
                }
            },
            calendars,
            ticker_api: r.get("TICKER_API", TickerApi::TickerService, |s| match s.trim() {
                "ticker-service" => Ok(TickerApi::TickerService),
                "kite" => Ok(TickerApi::Kite),
                _ => Err("expected ticker-service or kite".into()),
            })?,
            kite_url: r.get("KITE_API_URL", DEFAULT_KITE_URL.into(), parse_url)?,
            kite_api_key: Secret::new(r.string("KITE_API_KEY", "")),
            kite_access_token: Secret::new(r.string("KITE_ACCESS_TOKEN", "")),
            kite_api_secret: Secret::new(r.string("KITE_API_SECRET", "")),
            named_accounts: accounts::read(&r, r.raw("TICKER_API").map(str::trim) == Some("kite"))?,
            timescale: TimescalePolicy {
                compress_after: r.get(
                    "TIMESCALE_COMPRESS_AFTER",
                    Some(DEFAULT_COMPRESS_AFTER),
                    parse_optional_duration,
                )?,
                retention: r.get("TIMESCALE_RETENTION", None, parse_optional_duration)?,
            },
        };
        settings.check()?;
        Ok(settings)
    }

    /// Rules that span more than one variable.
    fn check(&self) -> Result<(), ConfigError> {
        if self.heartbeat.is_zero() {
            return Err(ConfigError {
                var: "TICKFILL_HEARTBEAT".into(),
                value: "0".into(),
                reason: "must be more than zero".into(),
            });
        }
        if self.orphan_after < self.heartbeat {
            return Err(ConfigError {
                var: "TICKFILL_ORPHAN_AFTER".into(),
                value: format!("{:?}", self.orphan_after),
                reason: "must be at least TICKFILL_HEARTBEAT".into(),
            });
        }
        // Chunks dropped inside the lookback would be holes the sweeps fetch again, forever.
        if let Some(r) = self.timescale.retention.filter(|r| *r <= self.lookback) {
            return Err(ConfigError {
                var: "TIMESCALE_RETENTION".into(),
                value: humantime::format_duration(r).to_string(),
                reason: format!(
                    "must be longer than BACKFILL_LOOKBACK ({}): dropped bars inside it would be fetched again",
                    humantime::format_duration(self.lookback)
                ),
            });
        }
        if let (Some(a), Some(r)) = (&self.admin_token, &self.admin_read_token) {
            if a == r {
                return Err(ConfigError {
                    var: "ADMIN_READ_TOKEN".into(),
                    value: "***".into(),
                    reason: "must differ from ADMIN_TOKEN (a read-only token that can act is none)".into(),
                });
            }
        }
        // Named accounts keep their sessions in Redis; the default account reads them as before.
        let legacy = self.named_accounts.is_empty();
        if legacy
            && self.ticker_api == TickerApi::Kite
            && (self.kite_api_key.is_empty() || self.kite_access_token.is_empty())
        {
            return Err(ConfigError {
                var: "KITE_API_KEY".into(),
                value: "***".into(),
                reason: "TICKER_API=kite needs KITE_API_KEY and KITE_ACCESS_TOKEN".into(),
            });
        }
        Ok(())
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
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_map(&map)
    }

    #[test]
    fn defaults_match_the_design() {
        let s = Settings::defaults();
        assert_eq!(s.channel_prefix, "ticker:nifty");
        assert_eq!(s.queue, "tickfill");
        assert_eq!(s.rate_limit, 3);
        assert_eq!(s.window_minutes, 120);
        assert_eq!(s.settle, Duration::from_secs(120));
        assert_eq!(s.ticker_url, "http://localhost:8080");
        assert!(s.subscription_events_enabled && s.backfill_enabled);
        assert_eq!(s.database_url.expose(), "postgres://postgres@127.0.0.1:5432/tickfill");
    }

    #[test]
    fn sizes_have_units_and_bounds() {
        assert_eq!(parse_size("32MiB"), Ok(32 << 20));
        assert_eq!(parse_size("512 KB"), Ok(512 << 10));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        for bad in
            ["", "MiB", "12XB", "-5MiB", "1.5MiB", "2GiB", "1000", "99999999999999999999", "18446744073709551615GiB"]
        {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("30").is_err());
        for huge in ["99999999999d", "999999999999d", "3381903080180084463m", "36501d", "18446744073709551616s"] {
            let e = parse_duration(huge).unwrap_err();
            assert!(e.contains(huge), "{huge}: {e}");
        }
        assert_eq!(parse_duration("36500d"), Ok(MAX_DURATION));
        assert!(ago(Utc::now(), MAX_DURATION).is_ok());
        assert!(parse_duration("5 minutes").is_err());
    }

    #[test]
    fn timescale_policies_are_durations_or_none_and_retention_outlives_the_lookback() {
        let d = Settings::defaults().timescale;
        assert_eq!((d.compress_after, d.retention), (Some(DEFAULT_COMPRESS_AFTER), None));
        let s = with(&[("TIMESCALE_COMPRESS_AFTER", "none"), ("TIMESCALE_RETENTION", "90d")]).unwrap();
        assert_eq!(s.timescale.compress_after, None);
        assert_eq!(s.timescale.retention, Some(Duration::from_secs(90 * 86_400)));
        for (var, value, says) in [
            ("TIMESCALE_RETENTION", "7d", "BACKFILL_LOOKBACK"),
            ("TIMESCALE_RETENTION", "0s", "more than zero"),
            ("TIMESCALE_COMPRESS_AFTER", "7", "unit"),
            ("TIMESCALE_COMPRESS_AFTER", "forever", "unit"),
        ] {
            let e = with(&[(var, value)]).unwrap_err();
            assert_eq!(e.var, var);
            assert!(e.to_string().contains(says), "{e}");
        }
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let e = with(&[("BACKFILL_LOOKBACK", "30")]).unwrap_err();
        assert_eq!(e.var, "BACKFILL_LOOKBACK");
        assert!(e.to_string().contains("BACKFILL_LOOKBACK"));
        let e = with(&[("BACKFILL_ENABLED", "maybe")]).unwrap_err();
        assert_eq!(e.var, "BACKFILL_ENABLED");
        let e = with(&[("TICKER_SERVICE_URL", "ftp://x")]).unwrap_err();
        assert_eq!(e.var, "TICKER_SERVICE_URL");
    }

    #[test]
    fn the_read_token_must_differ_from_the_admin_token() {
        assert!(with(&[("ADMIN_TOKEN", "a"), ("ADMIN_READ_TOKEN", "b")]).is_ok());
        let e = with(&[("ADMIN_TOKEN", "same"), ("ADMIN_READ_TOKEN", "same")]).unwrap_err();
        assert_eq!(e.var, "ADMIN_READ_TOKEN");
        assert!(!e.to_string().contains("same"), "{e}");
    }

    #[test]
    fn secrets_never_print() {
        let s = with(&[("ADMIN_TOKEN", "hunter2"), ("DB_PASSWORD", "pw123")]).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("pw123"), "{shown}");
        let e = with(&[("TICKER_API", "kite"), ("KITE_API_KEY", "k-secret")]).unwrap_err();
        assert!(!e.to_string().contains("k-secret"));
    }

    #[test]
    fn env_example_lists_every_variable_and_its_defaults_parse() {
        let text = include_str!("../../.env.example");
        let mut map = HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && l.contains('=')) {
            let (k, v) = line.split_once('=').unwrap();
            map.insert(k.trim().to_string(), v.trim().to_string());
        }
        for var in VARIABLES {
            assert!(map.contains_key(*var), "{var} missing from .env.example");
        }
        assert_eq!(map.len(), VARIABLES.len(), ".env.example lists a variable tickfill does not read");
        let s = Settings::from_map(&map).unwrap();
        let d = Settings::defaults();
        assert_eq!((s.rate_limit, s.lookback, s.queue.as_str()), (d.rate_limit, d.lookback, d.queue.as_str()));
    }

    #[test]
    fn db_parts_build_the_url_when_database_url_is_unset() {
        let s = with(&[
            ("DB_HOST", "db"),
            ("DB_PORT", "6543"),
            ("DB_NAME", "bars"),
            ("DB_USER", "u"),
            ("DB_PASSWORD", "p"),
        ])
        .unwrap();
        assert_eq!(s.database_url.expose(), "postgres://u:p@db:6543/bars");
        assert_eq!(with(&[("DB_PORT", "x")]).unwrap_err().var, "DB_PORT");
    }

    // Sweep intervals.

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

    #[test]
    fn cron_schedules_that_never_fire_or_name_impossible_values_are_refused_in_our_words() {
        let never = Interval::parse("0 0 30 2 *").unwrap_err().to_string();
        assert!(never.contains("never fires"), "{never}");
        let leap = Interval::parse("0 0 29 2 *").map(|_| ()).map_err(|e| e.to_string());
        // 29 February fires within a year only in the year before a leap day.
        if let Err(e) = leap {
            assert!(e.contains("more than 366 days away"), "{e}");
        }
        assert!(Interval::parse("59 * * * *").is_ok(), "59 is a minute");
        let sixty = Interval::parse("60 * * * *").unwrap_err().to_string();
        assert!(sixty.contains("minute field \"60\" holds 60, outside 0–59"), "{sixty}");
        let err = with(&[("SWEEP_INTERVAL", "0 0 30 2 *")]).unwrap_err();
        assert_eq!(err.var, "SWEEP_INTERVAL");
    }

    #[test]
    fn settings_that_can_never_work_are_refused_naming_the_variable() {
        for (var, value) in [
            ("TICKER_SERVICE_TIMEOUT", "0s"),
            ("BACKFILL_LOOKBACK", "0s"),
            ("BACKFILL_LOOKBACK", "401d"),
            ("BACKFILL_RECHECK", "0s"),
        ] {
            let err = with(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{value}");
        }
        assert_eq!(with(&[("BACKFILL_LOOKBACK", "400d")]).unwrap().lookback, MAX_LOOKBACK);
        assert_eq!(with(&[("BACKFILL_RECHECK", "none")]).unwrap().recheck, None);
        assert_eq!(with(&[("TICKER_SERVICE_TIMEOUT", "1s")]).unwrap().ticker_timeout, Duration::from_secs(1));
    }
}
