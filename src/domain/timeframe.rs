//! Chart timeframes and their buckets, aligned to the IST session: 5- and 15-minute buckets on
//! the clock (IST is UTC+05:30, a whole number of quarter hours), hours starting at :15 IST
//! (09:15, 10:15, … the session's open), days the IST calendar day. IST keeps no daylight saving,
//! so each alignment is a fixed offset from UTC midnight.

use chrono::{DateTime, Duration, Utc};

use super::window::Window;

/// A timeframe of bars: one minute (the stored bars) or one of the rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timeframe {
    M1,
    M5,
    M15,
    H1,
    D1,
}

impl Timeframe {
    /// Every rollup of the bar tables, finest first: each is built from the one it names as its
    /// `source` (15 minutes from 5, hours and days from 15), so each bucket is read once.
    pub const ROLLUPS: [Timeframe; 4] = [Timeframe::M5, Timeframe::M15, Timeframe::H1, Timeframe::D1];
    /// The rollups of the option-chain tables.
    pub const CHAIN_ROLLUPS: [Timeframe; 2] = [Timeframe::M5, Timeframe::M15];

    /// The name used on the command line and as the suffix of a rollup's relation.
    pub fn as_str(self) -> &'static str {
        match self {
            Timeframe::M1 => "1m",
            Timeframe::M5 => "5m",
            Timeframe::M15 => "15m",
            Timeframe::H1 => "1h",
            Timeframe::D1 => "1d",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "1m" => Ok(Timeframe::M1),
            "5m" => Ok(Timeframe::M5),
            "15m" => Ok(Timeframe::M15),
            "1h" => Ok(Timeframe::H1),
            "1d" => Ok(Timeframe::D1),
            other => Err(format!("unknown timeframe {other:?}: expected 1m, 5m, 15m, 1h or 1d")),
        }
    }

    /// The bucket's length in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Timeframe::M1 => 60,
            Timeframe::M5 => 300,
            Timeframe::M15 => 900,
            Timeframe::H1 => 3_600,
            Timeframe::D1 => 86_400,
        }
    }

    /// The bucket's length in minutes.
    pub fn minutes(self) -> i64 {
        self.seconds() / 60
    }

    /// Where buckets start, in seconds after UTC midnight: an hour at :45 UTC (:15 IST), a day at
    /// 18:30 UTC (IST midnight).
    pub fn offset_seconds(self) -> i64 {
        match self {
            Timeframe::H1 => 45 * 60,
            Timeframe::D1 => 18 * 3_600 + 30 * 60,
            _ => 0,
        }
    }

    /// The length as an SQL interval literal.
    pub fn interval_sql(self) -> &'static str {
        match self {
            Timeframe::M1 => "1 minute",
            Timeframe::M5 => "5 minutes",
            Timeframe::M15 => "15 minutes",
            Timeframe::H1 => "1 hour",
            Timeframe::D1 => "1 day",
        }
    }

    /// The finer timeframe this one is rolled up from.
    pub fn source(self) -> Timeframe {
        match self {
            Timeframe::M1 | Timeframe::M5 => Timeframe::M1,
            Timeframe::M15 => Timeframe::M5,
            Timeframe::H1 | Timeframe::D1 => Timeframe::M15,
        }
    }

    /// The start of the bucket holding `t`.
    pub fn floor(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let s = t.timestamp();
        let into = (s - self.offset_seconds()).rem_euclid(self.seconds());
        DateTime::from_timestamp(s - into, 0).unwrap_or(t)
    }

    /// The buckets that hold any instant of `w`, as one window from the first's start to the
    /// last's end.
    pub fn cover(self, w: Window) -> Window {
        if w.is_empty() {
            return w;
        }
        let last = self.floor(w.to - Duration::nanoseconds(1));
        Window::new(self.floor(w.from), last + Duration::seconds(self.seconds()))
    }
}

impl std::fmt::Display for Timeframe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn hours_start_at_the_sessions_quarter_past_and_days_at_ist_midnight() {
        // 09:14 IST is in the 08:15 IST hour; 09:15 IST opens its own.
        assert_eq!(Timeframe::H1.floor(t("2025-11-04T09:14:00+05:30")), t("2025-11-04T08:15:00+05:30"));
        assert_eq!(Timeframe::H1.floor(t("2025-11-04T09:15:00+05:30")), t("2025-11-04T09:15:00+05:30"));
        assert_eq!(Timeframe::H1.floor(t("2025-11-04T15:29:00+05:30")), t("2025-11-04T15:15:00+05:30"));
        assert_eq!(Timeframe::D1.floor(t("2025-11-04T00:00:00+05:30")), t("2025-11-04T00:00:00+05:30"));
        assert_eq!(Timeframe::D1.floor(t("2025-11-04T23:59:00+05:30")), t("2025-11-04T00:00:00+05:30"));
        assert_eq!(Timeframe::D1.floor(t("2025-11-03T18:29:00Z")), t("2025-11-03T00:00:00+05:30"));
        assert_eq!(Timeframe::M15.floor(t("2025-11-04T09:29:59+05:30")), t("2025-11-04T09:15:00+05:30"));
        assert_eq!(Timeframe::M5.floor(t("2025-11-04T09:17:00+05:30")), t("2025-11-04T09:15:00+05:30"));
        // Before 1970 too (rem_euclid, not %).
        assert_eq!(Timeframe::M5.floor(t("1969-12-31T23:58:00Z")), t("1969-12-31T23:55:00Z"));
    }

    #[test]
    fn cover_spans_every_bucket_a_window_touches() {
        let w = Window::new(t("2025-11-04T09:16:00+05:30"), t("2025-11-04T09:21:00+05:30"));
        assert_eq!(Timeframe::M5.cover(w), Window::new(t("2025-11-04T09:15:00+05:30"), t("2025-11-04T09:25:00+05:30")));
        // An end on a boundary takes no extra bucket.
        let w = Window::new(t("2025-11-04T09:15:00+05:30"), t("2025-11-04T10:15:00+05:30"));
        assert_eq!(Timeframe::H1.cover(w), w);
        assert!(Timeframe::D1.cover(Window::new(w.to, w.from)).is_empty());
    }

    #[test]
    fn every_rollup_is_whole_buckets_of_its_source() {
        for tf in Timeframe::ROLLUPS {
            let src = tf.source();
            assert_eq!(tf.seconds() % src.seconds(), 0, "{tf}");
            assert_eq!((tf.offset_seconds() - src.offset_seconds()) % src.seconds(), 0, "{tf}");
        }
        for s in ["1m", "5m", "15m", "1h", "1d"] {
            assert_eq!(Timeframe::parse(s).unwrap().as_str(), s);
        }
        assert!(Timeframe::parse("2h").unwrap_err().contains("2h"));
    }
}
