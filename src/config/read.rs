//! Reading the settings from the environment (and `.env`): every variable, how it is parsed and
//! checked, and its default. A bad value stops startup naming the variable.

use std::{collections::HashMap, sync::Arc, time::Duration};

use super::*;

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
}
