//! Exchange calendars: which minutes trade, per exchange and day, as data.
//!
//! The sessions, holidays and special sessions of NSE, BSE and MCX for 2024–2026 are text files
//! beside this module (one per exchange and year, each naming its source), compiled in. An
//! operator extends or overrides them with a file in the same format (`TICKFILL_CALENDAR_FILE`).
//! The format, a line each (`#` starts a comment):
//!
//! ```text
//! exchange NSE                              # the exchange the following lines are about
//! regular 09:15-15:30                       # its weekday session
//! regular 2026-03-09..2026-10-30 09:00-23:30  # another weekday session for those dates
//! 2026-01-26 closed Republic Day            # no session that day
//! 2026-02-01 open 09:15-15:30 Union Budget  # a session that day (weekend or not), with a note
//! 2024-03-02 open 09:15-10:00,11:30-12:30 … # a day of two sessions
//! ```
//!
//! Times are IST wall clock; a later line about the same day or range wins. Days of a year with
//! no data trade the regular weekday session. Pure: no I/O here; the caller reads the file.

use std::collections::BTreeMap;

use chrono::{Datelike, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};

use super::window::Window;

/// The calendar data shipped with tickfill.
const BUILT_IN: [&str; 9] = [
    include_str!("calendar/nse-2024.txt"),
    include_str!("calendar/nse-2025.txt"),
    include_str!("calendar/nse-2026.txt"),
    include_str!("calendar/bse-2024.txt"),
    include_str!("calendar/bse-2025.txt"),
    include_str!("calendar/bse-2026.txt"),
    include_str!("calendar/mcx-2024.txt"),
    include_str!("calendar/mcx-2025.txt"),
    include_str!("calendar/mcx-2026.txt"),
];

/// The exchanges with calendars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Exchange {
    Nse,
    Bse,
    Mcx,
}

impl Exchange {
    pub const ALL: [Exchange; 3] = [Exchange::Nse, Exchange::Bse, Exchange::Mcx];

    pub fn as_str(self) -> &'static str {
        match self {
            Exchange::Nse => "NSE",
            Exchange::Bse => "BSE",
            Exchange::Mcx => "MCX",
        }
    }

    pub fn parse(s: &str) -> Option<Exchange> {
        Exchange::ALL.into_iter().find(|e| e.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// The calendar an instrument trades by, from its segment or exchange as Kite names them
    /// (`NFO-OPT` and `INDICES` on NSE, `BFO-FUT` on BSE, `MCX-FUT` on MCX); NSE when unknown.
    pub fn of_segment(segment: Option<&str>) -> Exchange {
        let s = segment.unwrap_or("").to_ascii_uppercase();
        if s.starts_with("BSE") || s.starts_with("BFO") || s.starts_with("BCD") {
            Exchange::Bse
        } else if s.starts_with("MCX") {
            Exchange::Mcx
        } else {
            Exchange::Nse
        }
    }
}

/// A span of one day's trading, IST wall clock, `[open, close)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub open: NaiveTime,
    pub close: NaiveTime,
}

/// What one day is on one exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    pub date: NaiveDate,
    /// Empty when the exchange does not trade that day.
    pub sessions: Vec<Session>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct ExchangeData {
    regular: Option<Vec<Session>>,
    /// Weekday sessions for a span of dates, later entries winning.
    ranges: Vec<(NaiveDate, NaiveDate, Vec<Session>)>,
    days: BTreeMap<NaiveDate, (Vec<Session>, Option<String>)>,
}

/// The trading calendars of every exchange.
#[derive(Debug, Clone, Default)]
pub struct Calendars {
    data: BTreeMap<Exchange, ExchangeData>,
}

/// IST, the offset every session is written in.
pub fn ist() -> FixedOffset {
    FixedOffset::east_opt(5 * 3600 + 1800).expect("a valid offset")
}

impl Calendars {
    /// The built-in data.
    pub fn built_in() -> Calendars {
        let mut c = Calendars::default();
        for text in BUILT_IN {
            c.extend(text).expect("the built-in calendar data parses");
        }
        c
    }

    /// Adds (or overrides with) the lines of `text`; an error names the line and what is wrong.
    pub fn extend(&mut self, text: &str) -> Result<(), String> {
        let mut current: Option<Exchange> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |why: String| format!("line {}: {why}: {raw:?}", i + 1);
            let (head, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            if head == "exchange" {
                current = Some(
                    Exchange::parse(rest).ok_or_else(|| at(format!("unknown exchange {rest:?} (NSE, BSE or MCX)")))?,
                );
                continue;
            }
            let ex = current.ok_or_else(|| at("no `exchange` line before it".into()))?;
            let data = self.data.entry(ex).or_default();
            if head == "regular" {
                match rest.split_once(char::is_whitespace) {
                    Some((range, times)) if range.contains("..") => {
                        let (a, b) = range.split_once("..").unwrap_or_default();
                        let (a, b) = (date(a).map_err(&at)?, date(b).map_err(&at)?);
                        if a > b {
                            return Err(at(format!("{a} is after {b}")));
                        }
                        data.ranges.push((a, b, sessions(times.trim()).map_err(&at)?));
                    }
                    _ => data.regular = Some(sessions(rest).map_err(&at)?),
                }
                continue;
            }
            let day = date(head).map_err(&at)?;
            let (kind, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let entry = match kind {
                "closed" => (Vec::new(), note(rest)),
                "open" => {
                    let (times, text) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    (sessions(times).map_err(&at)?, note(text))
                }
                other => return Err(at(format!("{other:?} is neither `open` nor `closed`"))),
            };
            data.days.insert(day, entry);
        }
        Ok(())
    }

    /// Whether any holiday or special session of `ex` is known in `year` (without, every weekday
    /// is taken for a regular session).
    pub fn has_data(&self, ex: Exchange, year: i32) -> bool {
        self.data.get(&ex).is_some_and(|d| d.days.keys().any(|k| k.year() == year))
    }

    /// One day of one exchange.
    pub fn day(&self, ex: Exchange, date: NaiveDate) -> Day {
        let data = self.data.get(&ex);
        if let Some((sessions, note)) = data.and_then(|d| d.days.get(&date)) {
            return Day { date, sessions: sessions.clone(), note: note.clone() };
        }
        let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
        let sessions = if weekend {
            Vec::new()
        } else {
            data.and_then(|d| d.ranges.iter().rev().find(|(a, b, _)| (*a..=*b).contains(&date)).map(|r| r.2.clone()))
                .or_else(|| data.and_then(|d| d.regular.clone()))
                .unwrap_or_else(|| vec![Session { open: hm(9, 15), close: hm(15, 30) }])
        };
        Day { date, sessions, note: weekend.then(|| "weekend".to_string()) }
    }

    /// The parts of `window` inside sessions of `ex`, in order.
    pub fn trading_windows(&self, ex: Exchange, window: Window) -> Vec<Window> {
        let mut out = Vec::new();
        if window.is_empty() {
            return out;
        }
        let tz = ist();
        let first = window.from.with_timezone(&tz).date_naive();
        let last = window.to.with_timezone(&tz).date_naive();
        let mut d = first;
        while d <= last {
            for s in self.day(ex, d).sessions {
                let at = |t: NaiveTime| tz.from_local_datetime(&d.and_time(t)).single().map(|x| x.with_timezone(&Utc));
                let (Some(open), Some(close)) = (at(s.open), at(s.close)) else { continue };
                let part = Window::new(open.max(window.from), close.min(window.to));
                if !part.is_empty() {
                    out.push(part);
                }
            }
            d = match d.succ_opt() {
                Some(n) => n,
                None => break,
            };
        }
        out
    }

    /// Trading minutes of `ex` in `window`.
    pub fn trading_minutes(&self, ex: Exchange, window: Window) -> i64 {
        self.trading_windows(ex, window).iter().map(Window::minutes).sum()
    }
}

/// Which minutes count as trading: the exchanges' calendars, or every minute (`always`: the
/// simulator's default, for development, tests and benches at any hour).
#[derive(Debug, Clone)]
pub enum TradingCalendar {
    Always,
    Exchange(std::sync::Arc<Calendars>),
}

impl TradingCalendar {
    /// The parts of `window` that trade for an instrument of `segment`.
    pub fn trading_windows(&self, segment: Option<&str>, window: Window) -> Vec<Window> {
        match self {
            TradingCalendar::Always => {
                if window.is_empty() {
                    vec![]
                } else {
                    vec![window]
                }
            }
            TradingCalendar::Exchange(c) => c.trading_windows(Exchange::of_segment(segment), window),
        }
    }

    /// The trading parts of `window` that `covered` (sorted) lacks: what is missing of it.
    pub fn trading_holes(&self, segment: Option<&str>, window: Window, covered: &[Window]) -> Vec<Window> {
        window.holes(covered).into_iter().flat_map(|hole| self.trading_windows(segment, hole)).collect()
    }

    /// The IST days `window` touches, each with its sessions clipped to the window and the end of
    /// its last session (whole, not clipped); a day without trading has neither. Under `always`
    /// a day's session is the whole IST day.
    pub fn days(&self, segment: Option<&str>, window: Window) -> Vec<TradingDay> {
        let mut out = Vec::new();
        if window.is_empty() {
            return out;
        }
        let tz = ist();
        let midnight = |d: NaiveDate| tz.from_local_datetime(&d.and_time(NaiveTime::MIN)).single();
        let mut d = window.from.with_timezone(&tz).date_naive();
        while let (Some(start), Some(next)) = (midnight(d), d.succ_opt()) {
            let Some(end) = midnight(next) else { break };
            let (start, end) = (start.with_timezone(&Utc), end.with_timezone(&Utc));
            if start >= window.to {
                break;
            }
            let whole = self.trading_windows(segment, Window::new(start, end));
            let sessions = whole
                .iter()
                .map(|w| Window::new(w.from.max(window.from), w.to.min(window.to)))
                .filter(|w| !w.is_empty())
                .collect();
            out.push(TradingDay { date: d, sessions, session_end: whole.last().map(|w| w.to) });
            d = next;
        }
        out
    }
}

/// One IST day of an instrument's calendar within a window ([`TradingCalendar::days`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradingDay {
    pub date: NaiveDate,
    /// Its trading minutes in the window, in order.
    pub sessions: Vec<Window>,
    /// When its last session ends (`None`: no trading that day).
    pub session_end: Option<chrono::DateTime<Utc>>,
}

impl TradingDay {
    /// Trading minutes of the day in the window.
    pub fn minutes(&self) -> i64 {
        self.sessions.iter().map(Window::minutes).sum()
    }
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).expect("a valid time")
}

fn date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD)"))
}

/// `09:15-15:30` or `09:15-10:00,11:30-15:30`: sessions in order, none empty or overlapping.
fn sessions(s: &str) -> Result<Vec<Session>, String> {
    let mut out: Vec<Session> = Vec::new();
    for part in s.split(',') {
        let (a, b) = part.trim().split_once('-').ok_or_else(|| format!("{part:?} is not HH:MM-HH:MM"))?;
        let time = |t: &str| {
            let t = t.trim();
            NaiveTime::parse_from_str(t, "%H:%M").map_err(|_| format!("{t:?} is not a time (HH:MM)"))
        };
        let s = Session { open: time(a)?, close: time(b)? };
        if s.open >= s.close {
            return Err(format!("{part:?} closes before it opens"));
        }
        if out.last().is_some_and(|p| p.close > s.open) {
            return Err(format!("{part:?} overlaps the session before it"));
        }
        out.push(s);
    }
    Ok(out)
}

fn note(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_built_in_data_knows_holidays_weekends_and_special_sessions() {
        let c = Calendars::built_in();
        for closed in ["2026-01-26", "2026-03-03", "2026-10-02", "2026-12-25", "2026-12-05", "2026-12-06"] {
            assert!(c.day(Exchange::Nse, d(closed)).sessions.is_empty(), "{closed}");
        }
        let open = c.day(Exchange::Nse, d("2026-12-01"));
        assert_eq!(open.sessions, vec![Session { open: hm(9, 15), close: hm(15, 30) }]);
        let budget = c.day(Exchange::Nse, d("2026-02-01"));
        assert_eq!((budget.sessions.len(), budget.note.as_deref()), (1, Some("Union Budget (Sunday session)")));
        assert_eq!(c.day(Exchange::Nse, d("2024-03-02")).sessions.len(), 2);
        // MCX: evening only on Holi, the summer close in June, the winter close in December.
        let holi = c.day(Exchange::Mcx, d("2026-03-03"));
        assert_eq!(holi.sessions, vec![Session { open: hm(17, 0), close: hm(23, 55) }]);
        assert_eq!(c.day(Exchange::Mcx, d("2026-06-02")).sessions[0].close, hm(23, 30));
        assert_eq!(c.day(Exchange::Mcx, d("2026-12-01")).sessions[0].close, hm(23, 55));
    }

    #[test]
    fn trading_windows_cut_a_window_to_its_sessions() {
        let c = Calendars::built_in();
        let utc = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // Friday 2026-11-27 12:00 IST to Monday 2026-11-30 10:00 IST: Friday's afternoon, Monday's start.
        let w = Window::new(utc("2026-11-27T12:00:00+05:30"), utc("2026-11-30T10:00:00+05:30"));
        assert_eq!(
            c.trading_windows(Exchange::Nse, w),
            vec![
                Window::new(utc("2026-11-27T12:00:00+05:30"), utc("2026-11-27T15:30:00+05:30")),
                Window::new(utc("2026-11-30T09:15:00+05:30"), utc("2026-11-30T10:00:00+05:30")),
            ]
        );
        assert_eq!(c.trading_minutes(Exchange::Nse, w), 210 + 45);
        assert_eq!(TradingCalendar::Always.trading_windows(None, w), vec![w]);
    }

    #[test]
    fn an_operator_file_overrides_and_bad_lines_are_named() {
        let mut c = Calendars::built_in();
        c.extend("exchange NSE\n2026-11-08 open 18:00-19:15 Muhurat trading\n2026-12-01 closed Test closure\n")
            .unwrap();
        assert_eq!(
            c.day(Exchange::Nse, d("2026-11-08")).sessions,
            vec![Session { open: hm(18, 0), close: hm(19, 15) }]
        );
        assert!(c.day(Exchange::Nse, d("2026-12-01")).sessions.is_empty());
        for (bad, why) in [
            ("2026-12-01 closed x", "no `exchange` line"),
            ("exchange LSE", "unknown exchange"),
            ("exchange NSE\n2026-02-30 closed x", "is not a date"),
            ("exchange NSE\n2026-12-01 shut x", "neither `open` nor `closed`"),
            ("exchange NSE\n2026-12-01 open 15:30-09:15 x", "closes before it opens"),
            ("exchange NSE\n2026-12-01 open 09:15-12:00,11:00-15:30 x", "overlaps"),
            ("exchange NSE\nregular 2026-12-01..2026-11-01 09:00-10:00", "is after"),
        ] {
            let err = Calendars::default().extend(bad).unwrap_err();
            assert!(err.contains(why) && err.starts_with("line "), "{bad}: {err}");
        }
    }
}
