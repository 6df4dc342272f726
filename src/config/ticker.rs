//! The ticker section: which history API is called (the ticker service or Kite), where, how long
//! an answer may take and how large it may be, and the rate budget it is held to.

use std::time::Duration;

use super::{
    accounts::parse_rate_limit,
    values::{parse_size, parse_url, within, ConfigError, Reader},
};

/// `TICKER_SERVICE_URL` when unset.
pub const DEFAULT_TICKER_URL: &str = "http://localhost:8080";
/// `KITE_API_URL` when unset.
pub const DEFAULT_KITE_URL: &str = "https://api.kite.trade";
/// `TICKER_SERVICE_TIMEOUT` when unset.
pub const DEFAULT_TICKER_TIMEOUT: Duration = Duration::from_secs(30);
/// `TICKER_MAX_BODY` when unset: the largest legal history answer, 60 days of one-minute candles
/// with every optional field (86,400 × about 250 bytes, some 22 MB), with room to spare.
pub const DEFAULT_TICKER_MAX_BODY: u64 = 32 << 20;
/// `TICKER_RATE_LIMIT` when unset: Kite's 3 history requests a second per API key.
pub const DEFAULT_RATE_LIMIT: u32 = 3;
/// `TICKFILL_BULK_SHARE` when unset.
pub const DEFAULT_BULK_SHARE: f64 = 0.2;
/// `TICKER_THROTTLE_PAUSE` when unset.
pub const DEFAULT_THROTTLE_PAUSE: Duration = Duration::from_secs(1);

/// Which history API the worker calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickerApi {
    TickerService,
    Kite,
}

/// The history API and the budget it is called within.
#[derive(Debug, Clone)]
pub struct TickerSettings {
    /// `TICKER_API`.
    pub api: TickerApi,
    /// `TICKER_SERVICE_URL`.
    pub url: String,
    /// `KITE_API_URL`.
    pub kite_url: String,
    /// `TICKER_SERVICE_TIMEOUT`: the longest a history request may take.
    pub timeout: Duration,
    /// `TICKER_MAX_BODY`: the largest ticker answer read, in bytes (each history answer is held to
    /// less: see [`crate::ticker::answer_cap`]).
    pub max_body: u64,
    /// `TICKER_RATE_LIMIT`: history requests per second, all replicas together; 0 = unlimited.
    /// The limit of each account that sets none of its own.
    pub rate_limit: u32,
    /// `TICKFILL_BULK_SHARE`: the share of each second's budget bulk work may take while urgent
    /// work waits.
    pub bulk_share: f64,
    /// `TICKER_THROTTLE_PAUSE`: how long an account waits after a 429 before its next request.
    pub throttle_pause: Duration,
    /// `TICKER_RECONCILE`: whether the subscription list is read to find subscriptions whose
    /// events were missed.
    pub reconcile: bool,
}

pub(super) fn read(r: &Reader<'_>) -> Result<TickerSettings, ConfigError> {
    Ok(TickerSettings {
        api: r.get("TICKER_API", TickerApi::TickerService, |s| match s.trim() {
            "ticker-service" => Ok(TickerApi::TickerService),
            "kite" => Ok(TickerApi::Kite),
            _ => Err("expected ticker-service or kite".into()),
        })?,
        url: r.get("TICKER_SERVICE_URL", DEFAULT_TICKER_URL.into(), parse_url)?,
        kite_url: r.get("KITE_API_URL", DEFAULT_KITE_URL.into(), parse_url)?,
        timeout: r.get("TICKER_SERVICE_TIMEOUT", DEFAULT_TICKER_TIMEOUT, |s| {
            within(s, Duration::from_secs(1), Duration::from_secs(3600))
        })?,
        max_body: r.get("TICKER_MAX_BODY", DEFAULT_TICKER_MAX_BODY, parse_size)?,
        rate_limit: r.get("TICKER_RATE_LIMIT", DEFAULT_RATE_LIMIT, parse_rate_limit)?,
        bulk_share: r.get("TICKFILL_BULK_SHARE", DEFAULT_BULK_SHARE, |s| {
            let v: f64 = s.trim().parse().map_err(|_| "expected a number".to_string())?;
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err("expected a fraction between 0 and 1".into())
            }
        })?,
        throttle_pause: r.duration("TICKER_THROTTLE_PAUSE", DEFAULT_THROTTLE_PAUSE)?,
        reconcile: r.boolean("TICKER_RECONCILE", true)?,
    })
}
