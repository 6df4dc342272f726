//! Time windows: minute alignment, the immediate window, holes left by coverage, and chunks the
//! ticker accepts. Every window is half-open, `[from, to)`.

use chrono::{DateTime, Duration, Utc};

/// The longest window the ticker serves for minute candles in one request.
pub const MAX_CHUNK: Duration = Duration::days(60);

/// A half-open span of time, `[from, to)`; empty when `from >= to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Window {
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        Window { from, to }
    }

    pub fn is_empty(&self) -> bool {
        self.from >= self.to
    }

    /// Whole minutes between the ends (0 for an empty window).
    pub fn minutes(&self) -> i64 {
        (self.to - self.from).num_minutes().max(0)
    }

    /// Both ends rounded down to the minute.
    pub fn floor_minutes(self) -> Self {
        Window::new(floor_minute(self.from), floor_minute(self.to))
    }

    /// The parts of this window not covered by `covered` (sorted by start; overlaps allowed).
    pub fn holes(self, covered: &[Window]) -> Vec<Window> {
        let mut out = Vec::new();
        let mut cursor = self.from;
        for c in covered {
            if c.to <= cursor {
                continue;
            }
            if c.from > cursor {
                out.push(Window::new(cursor, c.from.min(self.to)));
            }
            cursor = cursor.max(c.to);
            if cursor >= self.to {
                break;
            }
        }
        if cursor < self.to {
            out.push(Window::new(cursor, self.to));
        }
        out.retain(|w| !w.is_empty());
        out
    }

    /// Consecutive chunks of at most `max` that make up this window.
    pub fn split(self, max: Duration) -> Vec<Window> {
        let mut out = Vec::new();
        let mut start = self.from;
        while start < self.to {
            let end = (start + max).min(self.to);
            out.push(Window::new(start, end));
            start = end;
        }
        out
    }
}

/// The fewest windows of at most `max` that hold every one of `holes` (sorted, disjoint): each
/// window runs from a hole's start to the end of the last hole that still fits, so the covered
/// minutes between holes are asked again rather than spending a request per hole. A hole longer
/// than `max` is split.
pub fn spans(holes: &[Window], max: Duration) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    for part in holes.iter().flat_map(|h| h.split(max)) {
        match out.last_mut() {
            Some(w) if part.to - w.from <= max => w.to = part.to,
            _ => out.push(part),
        }
    }
    out
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {})", self.from.to_rfc3339(), self.to.to_rfc3339())
    }
}

/// The start of the minute `t` falls in (for any instant chrono can hold).
pub fn floor_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp().div_euclid(60) * 60, 0).unwrap_or(t)
}

/// The immediate window: the `minutes` before the start of the current minute (the forming
/// minute is never fetched).
pub fn immediate_window(now: DateTime<Utc>, minutes: u32) -> Window {
    let m = floor_minute(now);
    Window::new(m - Duration::minutes(minutes as i64), m)
}

/// A new subscription's window: the `minutes` before the minute it was received, through the
/// last whole minute before `now`. Starting from receipt (not from when a worker gets to it)
/// is what sweeps plan from too, so a job that waited in a backlog leaves no hole behind.
pub fn subscription_window(received: DateTime<Utc>, now: DateTime<Utc>, minutes: u32) -> Window {
    let to = immediate_window(now, minutes).to;
    Window::new(floor_minute(received.min(now)) - Duration::minutes(minutes as i64), to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(m: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_040 + m * 60, 0).unwrap()
    }

    fn w(a: DateTime<Utc>, b: DateTime<Utc>) -> Window {
        Window::new(a, b)
    }

    #[test]
    fn holes_are_what_coverage_leaves_out() {
        let all = w(t(0), t(10));
        assert_eq!(all.holes(&[]), vec![all]);
        assert_eq!(all.holes(&[all]), vec![]);
        assert_eq!(all.holes(&[w(t(-5), t(3)), w(t(6), t(8))]), vec![w(t(3), t(6)), w(t(8), t(10))]);
        assert_eq!(all.holes(&[w(t(2), t(4)), w(t(3), t(12))]), vec![w(t(0), t(2))]);
    }

    #[test]
    fn ninety_days_split_into_sixty_and_thirty() {
        let parts = w(t(0), t(0) + Duration::days(90)).split(MAX_CHUNK);
        assert_eq!(
            parts,
            vec![w(t(0), t(0) + Duration::days(60)), w(t(0) + Duration::days(60), t(0) + Duration::days(90))]
        );
        assert_eq!(w(t(0), t(0)).split(MAX_CHUNK), vec![]);
    }

    #[test]
    fn a_subscription_window_starts_from_receipt_and_ends_at_the_current_minute() {
        let received = Utc.with_ymd_and_hms(2025, 11, 4, 4, 0, 37).unwrap();
        let late = received + Duration::seconds(95); // a worker got to it in the next-but-one minute
        let win = subscription_window(received, late, 120);
        assert_eq!(win.from, Utc.with_ymd_and_hms(2025, 11, 4, 2, 0, 0).unwrap());
        assert_eq!(win.to, Utc.with_ymd_and_hms(2025, 11, 4, 4, 2, 0).unwrap());
        // A receipt stamped ahead of this host's clock does not shift the window past now.
        assert_eq!(subscription_window(late, received, 120), immediate_window(received, 120));
    }

    #[test]
    fn the_immediate_window_ends_at_the_current_minute() {
        let now = Utc.with_ymd_and_hms(2025, 11, 4, 4, 0, 37).unwrap();
        let win = immediate_window(now, 120);
        assert_eq!(win.to, Utc.with_ymd_and_hms(2025, 11, 4, 4, 0, 0).unwrap());
        assert_eq!(win.from, Utc.with_ymd_and_hms(2025, 11, 4, 2, 0, 0).unwrap());
    }

    #[test]
    fn spans_hold_every_hole_in_the_fewest_windows_of_sixty_days() {
        let day = |d: i64| t(0) + Duration::days(d);
        let hole = |a: i64, b: i64| w(day(a), day(b));
        // Three holes within a week: one window from the first's start to the last's end.
        assert_eq!(spans(&[hole(0, 1), hole(3, 4), hole(6, 7)], MAX_CHUNK), vec![hole(0, 7)]);
        // Holes 70 days apart: two windows; a 90-day hole: split at 60 days, the rest joins the next.
        assert_eq!(spans(&[hole(0, 1), hole(70, 71)], MAX_CHUNK), vec![hole(0, 1), hole(70, 71)]);
        assert_eq!(spans(&[hole(0, 90), hole(100, 101)], MAX_CHUNK), vec![hole(0, 60), hole(60, 101)]);
        assert_eq!(spans(&[], MAX_CHUNK), vec![]);
        // Exactly 60 days fits in one.
        assert_eq!(spans(&[hole(0, 1), hole(59, 60)], MAX_CHUNK), vec![hole(0, 60)]);
    }
}
