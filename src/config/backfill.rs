//! The backfill section: what a subscription fetches at once, what sweeps look for and when they
//! run, when a day is settled and checked, which minutes trade, and how long a chain waits for
//! its legs.

use std::{sync::Arc, time::Duration};

use super::{
    interval::{Interval, DEFAULT_SWEEP_INTERVAL},
    values::{parse_optional_duration, within, ConfigError, Reader},
};
use crate::domain::calendar::{Calendars, TradingCalendar};

/// `BACKFILL_WINDOW_MINUTES` when unset: the immediate window on subscribe.
pub const DEFAULT_WINDOW_MINUTES: u32 = 120;
/// The widest `BACKFILL_WINDOW_MINUTES`: 60 days of minutes.
pub const MAX_WINDOW_MINUTES: u32 = 60 * 24 * 60;
/// `BACKFILL_LOOKBACK` when unset.
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(7 * 86_400);
/// The longest `BACKFILL_LOOKBACK`: as far as `tickfill quality` reads at once.
pub const MAX_LOOKBACK: Duration = Duration::from_secs(400 * 86_400);
/// `BACKFILL_GAP_THRESHOLD` when unset.
pub const DEFAULT_GAP_THRESHOLD: Duration = Duration::from_secs(180);
/// `BACKFILL_SETTLE` when unset.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(120);
/// `BACKFILL_RECHECK` when unset: an equity's final days are checked again once a day.
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(86_400);
/// `CHAIN_DEBOUNCE` when unset.
pub const DEFAULT_CHAIN_DEBOUNCE: Duration = Duration::from_secs(2);

/// What is fetched, when, and which minutes count.
#[derive(Debug, Clone)]
pub struct BackfillSettings {
    /// `BACKFILL_ENABLED`: `false` records subscriptions and fetches nothing.
    pub enabled: bool,
    /// `BACKFILL_IMMEDIATE_ON_SUBSCRIBE`: a subscription fetches its window at once.
    pub on_subscribe: bool,
    /// `BACKFILL_SUBSCRIPTION_AWARE`: sweeps and backfills cover subscribed instruments only.
    pub subscription_aware: bool,
    /// `BACKFILL_VERIFY`: after each trading day's session, one check fetch per instrument and day
    /// settles it.
    pub verify: bool,
    /// `BACKFILL_RECHECK`: how often an equity's final days are checked again for an adjustment
    /// the source made since (`None`: never).
    pub recheck: Option<Duration>,
    /// `BACKFILL_WINDOW_MINUTES`: the window fetched on subscribe.
    pub window_minutes: u32,
    /// `BACKFILL_LOOKBACK`: how far back sweeps look for holes.
    pub lookback: Duration,
    /// `BACKFILL_GAP_THRESHOLD`: live-edge holes shorter than this wait for the next sweep.
    pub gap_threshold: Duration,
    /// `BACKFILL_SETTLE`: minutes newer than this are too new to plan, judge or trust.
    pub settle: Duration,
    /// `SWEEP_INTERVAL`.
    pub sweep_interval: Interval,
    /// `CHAIN_DEBOUNCE`: how long a chain waits for more of its legs before it is rebuilt.
    pub chain_debounce: Duration,
    /// `TICKFILL_CALENDAR`: which minutes trade.
    pub calendar: TradingCalendar,
    /// The exchanges' calendars, built in and extended by `TICKFILL_CALENDAR_FILE`, whichever
    /// `calendar` is in force.
    pub calendars: Arc<Calendars>,
}

pub(super) fn read(r: &Reader<'_>) -> Result<BackfillSettings, ConfigError> {
    let calendars = Arc::new(r.get("TICKFILL_CALENDAR_FILE", Calendars::built_in(), |path| {
        let text = std::fs::read_to_string(path.trim()).map_err(|e| format!("cannot read it: {e}"))?;
        let mut c = Calendars::built_in();
        c.extend(&text)?;
        Ok(c)
    })?);
    Ok(BackfillSettings {
        enabled: r.boolean("BACKFILL_ENABLED", true)?,
        on_subscribe: r.boolean("BACKFILL_IMMEDIATE_ON_SUBSCRIBE", true)?,
        subscription_aware: r.boolean("BACKFILL_SUBSCRIPTION_AWARE", true)?,
        verify: r.boolean("BACKFILL_VERIFY", true)?,
        recheck: r.get("BACKFILL_RECHECK", Some(DEFAULT_RECHECK), |s| match parse_optional_duration(s)? {
            Some(d) if d < Duration::from_secs(60) => Err("must be at least 1m (or none)".into()),
            d => Ok(d),
        })?,
        window_minutes: r.get("BACKFILL_WINDOW_MINUTES", DEFAULT_WINDOW_MINUTES, |s| {
            match s.trim().parse::<u32>() {
                Ok(n) if (1..=MAX_WINDOW_MINUTES).contains(&n) => Ok(n),
                _ => Err(format!("expected whole minutes between 1 and {MAX_WINDOW_MINUTES}")),
            }
        })?,
        lookback: r.get("BACKFILL_LOOKBACK", DEFAULT_LOOKBACK, |s| within(s, Duration::from_secs(60), MAX_LOOKBACK))?,
        gap_threshold: r.duration("BACKFILL_GAP_THRESHOLD", DEFAULT_GAP_THRESHOLD)?,
        settle: r.duration("BACKFILL_SETTLE", DEFAULT_SETTLE)?,
        sweep_interval: r.get("SWEEP_INTERVAL", Interval::Every(DEFAULT_SWEEP_INTERVAL), |s| {
            Interval::parse(s).map_err(|e| e.to_string())
        })?,
        chain_debounce: r.duration("CHAIN_DEBOUNCE", DEFAULT_CHAIN_DEBOUNCE)?,
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
    })
}
