//! `SWEEP_INTERVAL`: a duration or a cron expression, and the ticks it makes.

use std::{fmt, str::FromStr, time::Duration};

use chrono::{DateTime, Utc};

use super::values::parse_duration;

/// How far ahead a cron `SWEEP_INTERVAL` must fire: a schedule that sleeps longer (30 February,
/// 29 February) would leave the store unswept for years.
pub const MAX_SWEEP_GAP_DAYS: i64 = 366;

/// `SWEEP_INTERVAL` when unset.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(300);

/// When sweeps happen.
#[derive(Debug, Clone)]
pub enum Interval {
    Every(Duration),
    Cron(Box<cron::Schedule>),
}

impl Interval {
    /// The time between sweeps, for what scales with it (staleness, the backoff of suspect
    /// minutes): the duration itself, or [`DEFAULT_SWEEP_INTERVAL`] for a cron schedule.
    pub fn nominal(&self) -> Duration {
        match self {
            Interval::Every(d) => *d,
            Interval::Cron(_) => DEFAULT_SWEEP_INTERVAL,
        }
    }

    /// Reads `SWEEP_INTERVAL`: a duration (`5m`) or a cron expression of 5 (minute first),
    /// 6 (second first) or 7 fields.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        if let Ok(d) = parse_duration(s) {
            anyhow::ensure!(d >= Duration::from_secs(1), "SWEEP_INTERVAL must be at least 1s");
            return Ok(Interval::Every(d));
        }
        let expr = if s.split_whitespace().count() == 5 { format!("0 {s}") } else { s.to_string() };
        // The cron crate's message draws a caret under its own six-field form: only its last
        // line (the reason) is kept.
        check_cron_ranges(&expr)?;
        let schedule = cron::Schedule::from_str(&expr).map_err(|e| {
            let e = e.to_string();
            anyhow::anyhow!("neither a duration nor a cron expression: {}", e.lines().last().unwrap_or(&e).trim())
        })?;
        let now = Utc::now();
        match schedule.after(&now).next() {
            Some(t) if t - now <= chrono::Duration::days(MAX_SWEEP_GAP_DAYS) => {}
            Some(t) => anyhow::bail!("the cron expression next fires at {t}, more than {MAX_SWEEP_GAP_DAYS} days away"),
            None => anyhow::bail!("the cron expression never fires (no such date)"),
        }
        Ok(Interval::Cron(Box::new(schedule)))
    }

    /// The latest tick at or before `now`.
    pub fn latest_tick(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Interval::Every(d) => {
                let step = d.as_millis() as i64;
                let ms = now.timestamp_millis().div_euclid(step) * step;
                DateTime::from_timestamp_millis(ms).expect("valid instant")
            }
            Interval::Cron(s) => {
                let just_after = now + chrono::Duration::milliseconds(1);
                s.after(&just_after).next_back().unwrap_or(now)
            }
        }
    }

    /// The first tick after `tick`.
    pub fn next_tick(&self, tick: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Interval::Every(d) => tick + chrono::Duration::from_std(*d).expect("interval fits"),
            Interval::Cron(s) => s.after(&tick).next().unwrap_or(tick + chrono::Duration::days(365)),
        }
    }
}

/// Numbers in a cron expression's fields (second first) within their ranges, in our own words: the
/// cron crate's messages state the bounds wrongly ("less than 59" while it accepts 59).
fn check_cron_ranges(expr: &str) -> anyhow::Result<()> {
    const FIELDS: [(&str, u32, u32); 7] = [
        ("second", 0, 59),
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day of month", 1, 31),
        ("month", 1, 12),
        ("day of week", 0, 7),
        ("year", 1970, 2099),
    ];
    for (field, (name, lo, hi)) in expr.split_whitespace().zip(FIELDS) {
        for n in field.split(|c: char| !c.is_ascii_digit()).filter(|n| !n.is_empty()) {
            // A step (`*/90`) is a count, not a value of the field.
            if field.contains(&format!("/{n}")) {
                continue;
            }
            match n.parse::<u32>() {
                Ok(v) if (lo..=hi).contains(&v) => {}
                _ => anyhow::bail!("the {name} field {field:?} holds {n}, outside {lo}–{hi}"),
            }
        }
    }
    Ok(())
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interval::Every(d) => write!(f, "every {}", humantime::format_duration(*d)),
            Interval::Cron(s) => write!(f, "cron {}", s.source()),
        }
    }
}
