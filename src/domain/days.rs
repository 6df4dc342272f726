//! Days settle (see "Completeness" in the design): per instrument and trading day a state, from
//! what the store knows of the day's trading minutes and whether its check after the session was
//! accepted; and the rules that judge the days one fetch touched (revised, checked, adjusted).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::{
    calendar::TradingCalendar,
    market::{BarTarget, Candle},
    proof::Verdict,
    window::Window,
};

/// Where one instrument's day stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DayState {
    /// The session is not over.
    Open,
    /// Every trading minute is stored or confirmed empty, some stored; not yet checked.
    Complete,
    /// Some trading minutes are neither stored nor confirmed empty (suspect, or never asked).
    Partial,
    /// A later adjustment of the instrument was found and this day has not been checked since: its
    /// stored prices may be unadjusted.
    Suspect,
    /// Every trading minute is confirmed empty: the source has no candle for the day.
    Empty,
    /// Not a trading day.
    Closed,
    /// Checked once after the session, the check accepted.
    Final,
}

impl DayState {
    pub const ALL: [DayState; 7] = [
        DayState::Open,
        DayState::Complete,
        DayState::Partial,
        DayState::Suspect,
        DayState::Empty,
        DayState::Closed,
        DayState::Final,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DayState::Open => "open",
            DayState::Complete => "complete",
            DayState::Partial => "partial",
            DayState::Suspect => "suspect",
            DayState::Empty => "empty",
            DayState::Closed => "closed",
            DayState::Final => "final",
        }
    }
}

/// What the store knows of one instrument's day, in trading minutes of the window asked about.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DayFacts {
    pub date: NaiveDate,
    pub trading_minutes: i64,
    /// Trading minutes answers proved: a candle stored, or confirmed empty.
    pub covered_minutes: i64,
    pub suspect_minutes: i64,
    pub confirmed_empty_minutes: i64,
    /// When the last session of the day ends.
    pub session_end: Option<DateTime<Utc>>,
    /// Checks of the day so far, accepted or not.
    pub checks: i64,
    /// When the day's check was first accepted.
    pub checked_at: Option<DateTime<Utc>>,
    /// When the day was last checked, accepted or not.
    pub last_check_at: Option<DateTime<Utc>>,
    /// Since when a later adjustment of the instrument makes this day's prices doubtful (until a
    /// check of it is accepted).
    pub stale_since: Option<DateTime<Utc>>,
    /// Checks that found stored minutes changed, and how many minutes they changed.
    pub revisions: i64,
    pub revised_minutes: i64,
    /// The constant ratio a check found the whole day changed by (an equity's adjustment).
    pub adjustment: Option<f64>,
}

impl DayFacts {
    /// The day's state at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> DayState {
        let Some(end) = self.session_end else { return DayState::Closed };
        if self.trading_minutes == 0 {
            return DayState::Closed; // the window holds none of its sessions
        }
        if now < end {
            return DayState::Open;
        }
        if self.covered_minutes < self.trading_minutes {
            return DayState::Partial;
        }
        if self.stale_since.is_some() {
            return DayState::Suspect;
        }
        if self.checked_at.is_some() {
            return DayState::Final;
        }
        if self.confirmed_empty_minutes >= self.trading_minutes {
            return DayState::Empty;
        }
        DayState::Complete
    }

    /// Whether the day waits for its check: its session ended `settle` ago or more, every minute
    /// is proved, and no check was accepted yet.
    pub fn wants_check(&self, now: DateTime<Utc>, settle: chrono::Duration) -> bool {
        self.session_end.is_some_and(|end| now >= end + settle)
            && matches!(self.state(now), DayState::Complete | DayState::Empty | DayState::Suspect)
    }

    /// Whether a final day is due to be checked again (`every`: `BACKFILL_RECHECK`), for an
    /// adjustment the source made since its last check.
    pub fn wants_recheck(&self, now: DateTime<Utc>, every: chrono::Duration) -> bool {
        self.state(now) == DayState::Final && self.last_check_at.is_none_or(|last| now >= last + every)
    }
}

/// A price tick: how far an adjusted price may sit from `old × ratio` after rounding.
pub const TICK: f64 = 0.05;

/// The one ratio that turns every `old` price into its `new` one (each within a tick), when there
/// is one and it is not 1: the day was adjusted (a split, a bonus, a dividend), not revised minute
/// by minute. `pairs` are (old, new) open, high, low, close of every stored minute of a day.
pub fn adjustment_ratio(pairs: &[([f64; 4], [f64; 4])]) -> Option<f64> {
    let mut ratios: Vec<f64> = pairs.iter().filter(|(old, _)| old[3] > 0.0).map(|(old, new)| new[3] / old[3]).collect();
    if ratios.len() < 2 || ratios.len() != pairs.len() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    let r = ratios[ratios.len() / 2];
    let fits = pairs.iter().all(|(old, new)| (0..4).all(|i| (new[i] - old[i] * r).abs() <= TICK + 1e-9 * new[i].abs()));
    (fits && r.is_finite() && (r - 1.0).abs() > 1e-3).then_some(r)
}

/// What one fetch found of one day, to add to its `day_checks` row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DayCheck {
    pub day: NaiveDate,
    /// This fetch was the day's check (a verify), whether or not it was accepted.
    pub checked: bool,
    /// The check was accepted: the day is final.
    pub accepted: bool,
    /// Stored minutes this fetch changed.
    pub revised_minutes: i64,
    pub adjustment: Option<f64>,
}

/// The IST date of an instant.
pub fn ist_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&crate::domain::calendar::ist()).date_naive()
}

/// The fewest changed minutes of a day that are taken as an adjustment.
const MIN_ADJUSTED_MINUTES: usize = 5;

/// What one fetch saw and did.
pub struct FetchFacts<'a> {
    pub fetch: Window,
    pub candles: &'a [Candle],
    pub verdict: &'a Verdict,
    /// Coverage of the window before the fetch.
    pub covered: &'a [Window],
    /// Stored prices of the window before the fetch (a check reads them).
    pub before: &'a [(DateTime<Utc>, [f64; 4])],
    /// Stored minutes the fetch changed.
    pub revised: &'a [DateTime<Utc>],
}

/// Whether bars of `target` in `segment` are an equity's: its history is back-adjusted on
/// corporate actions.
pub fn is_equity(target: &BarTarget, segment: Option<&str>) -> bool {
    matches!(target, BarTarget::Minute { .. }) && segment != Some("INDICES")
}

/// How the days of one fetch are judged: the instrument's calendar, how long after a session its
/// minutes settle, and whether it is an equity.
pub struct Judge<'a> {
    pub calendar: &'a TradingCalendar,
    pub segment: Option<&'a str>,
    pub settle: Duration,
    pub equity: bool,
}

/// Per day the fetch touched: its revised minutes and, for a check, whether it is accepted (the
/// answer held every minute stored of it, and every trading minute is now proved) and the ratio
/// it was adjusted by.
pub fn judge_days(j: &Judge<'_>, f: &FetchFacts<'_>, check: bool, now: DateTime<Utc>) -> Vec<DayCheck> {
    let served: HashMap<DateTime<Utc>, [f64; 4]> =
        f.candles.iter().map(|c| (c.time, [c.open, c.high, c.low, c.close])).collect();
    let revised: HashSet<DateTime<Utc>> = f.revised.iter().copied().collect();
    let suspects: HashSet<DateTime<Utc>> = f.verdict.suspects.iter().map(|s| s.minute).collect();
    let mut proved: Vec<Window> = f.covered.iter().chain(&f.verdict.covered).copied().collect();
    proved.sort_unstable();
    let mut out = Vec::new();
    for day in j.calendar.days(j.segment, f.fetch) {
        let in_day = |t: &DateTime<Utc>| ist_date(*t) == day.date;
        let revised_minutes = revised.iter().filter(|t| in_day(t)).count() as i64;
        let settled = day.session_end.is_some_and(|end| now >= end + j.settle);
        let mut found = DayCheck { day: day.date, revised_minutes, ..Default::default() };
        let stored: Vec<&(DateTime<Utc>, [f64; 4])> = f.before.iter().filter(|(t, _)| in_day(t)).collect();
        let holds_stored = stored.iter().all(|(t, _)| served.contains_key(t));
        if check && settled {
            let proves_all = day.sessions.iter().all(|s| s.holes(&proved).is_empty()) && !suspects.iter().any(in_day);
            found.checked = true;
            found.accepted = holds_stored && proves_all;
        }
        // An equity's day of which every stored minute the fetch saw changed, by one ratio: an
        // adjustment, whichever fetch saw it.
        if holds_stored
            && j.equity
            && stored.len() >= MIN_ADJUSTED_MINUTES
            && stored.iter().all(|(t, _)| revised.contains(t))
        {
            let pairs: Vec<([f64; 4], [f64; 4])> = stored.iter().map(|(t, old)| (*old, served[t])).collect();
            found.adjustment = adjustment_ratio(&pairs);
        }
        if found.checked || found.revised_minutes > 0 || found.adjustment.is_some() {
            out.push(found);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    #[test]
    fn a_day_is_open_until_its_session_ends_then_partial_complete_empty_or_final() {
        let end = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
        let day = DayFacts {
            date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            trading_minutes: 375,
            covered_minutes: 370,
            suspect_minutes: 5,
            session_end: Some(end),
            ..Default::default()
        };
        assert_eq!(day.state(end - Duration::minutes(1)), DayState::Open);
        assert_eq!(day.state(end), DayState::Partial);
        assert!(!day.wants_check(end + Duration::hours(1), Duration::minutes(2)));
        let whole = DayFacts { covered_minutes: 375, suspect_minutes: 0, ..day.clone() };
        assert_eq!(whole.state(end), DayState::Complete);
        assert!(!whole.wants_check(end + Duration::minutes(1), Duration::minutes(2)), "settle first");
        assert!(whole.wants_check(end + Duration::minutes(2), Duration::minutes(2)));
        let none = DayFacts { confirmed_empty_minutes: 375, ..whole.clone() };
        assert_eq!(none.state(end), DayState::Empty);
        let checked = DayFacts { checked_at: Some(end + Duration::minutes(5)), ..whole.clone() };
        assert_eq!(checked.state(end + Duration::hours(1)), DayState::Final);
        assert!(!checked.wants_check(end + Duration::hours(1), Duration::minutes(2)));
        let hour = Duration::hours(1);
        assert!(checked.wants_recheck(end + hour, Duration::days(1)), "no last check known: due at once");
        let last = DayFacts { last_check_at: Some(end + Duration::minutes(5)), ..checked.clone() };
        assert!(!last.wants_recheck(end + hour, Duration::days(1)));
        assert!(last.wants_recheck(end + Duration::minutes(5) + Duration::days(1), Duration::days(1)));
        // A later adjustment makes a final day suspect, and wanting its check, until one is accepted.
        let stale = DayFacts { stale_since: Some(end + hour), ..last.clone() };
        assert_eq!(stale.state(end + hour), DayState::Suspect);
        assert!(stale.wants_check(end + hour, Duration::minutes(2)));
        assert!(!stale.wants_recheck(end + Duration::days(3), Duration::days(1)), "a check, not a recheck");
        // A checked day that lost proof (a suspect found since) is partial again, not final.
        assert_eq!(DayFacts { covered_minutes: 374, ..checked }.state(end), DayState::Partial);
        assert_eq!(DayFacts { session_end: None, ..whole }.state(end), DayState::Closed);
    }

    #[test]
    fn a_whole_day_scaled_by_one_ratio_is_an_adjustment_and_scattered_changes_are_not() {
        let old = [[100.0, 101.0, 99.5, 100.5], [100.5, 102.0, 100.0, 101.25], [101.25, 101.3, 100.1, 100.2]];
        let halve = |p: [f64; 4]| p.map(|x| (x * 0.5 * 20.0).round() / 20.0);
        let pairs: Vec<_> = old.iter().map(|o| (*o, halve(*o))).collect();
        assert!((adjustment_ratio(&pairs).unwrap() - 0.5).abs() < 1e-3);
        // One minute revised by other means breaks the ratio.
        let mut odd = pairs.clone();
        odd[1].1[1] = 60.0;
        assert_eq!(adjustment_ratio(&odd), None);
        // Unchanged is no adjustment; a single minute proves nothing.
        let same: Vec<_> = old.iter().map(|o| (*o, *o)).collect();
        assert_eq!(adjustment_ratio(&same), None);
        assert_eq!(adjustment_ratio(&pairs[..1]), None);
    }
}
