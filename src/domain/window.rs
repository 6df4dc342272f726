//! Time windows: minute alignment, the immediate window, holes left by coverage, and chunks the
//! ticker accepts. Every window is half-open, `[from, to)`.

use chrono::{DateTime, Duration, DurationRound, Utc};

/// The longest window the ticker serves for minute candles in one request.
pub const MAX_CHUNK: Duration = Duration::days(60);

pub type Window = (DateTime<Utc>, DateTime<Utc>);

/// The start of the minute `t` falls in.
pub fn floor_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::minutes(1)).expect("minute truncation")
}

/// The immediate window: the `minutes` before the start of the current minute (the forming
/// minute is never fetched).
pub fn immediate_window(now: DateTime<Utc>, minutes: u32) -> Window {
    let m = floor_minute(now);
    (m - Duration::minutes(minutes as i64), m)
}

/// A new subscription's window: the `minutes` before the minute it was received, through the
/// last whole minute before `now`. Starting from receipt (not from when a worker gets to it)
/// is what sweeps plan from too, so a job that waited in a backlog leaves no hole behind.
pub fn subscription_window(received: DateTime<Utc>, now: DateTime<Utc>, minutes: u32) -> Window {
    let (_, to) = immediate_window(now, minutes);
    (floor_minute(received.min(now)) - Duration::minutes(minutes as i64), to)
}

/// The parts of `[from, to)` not covered by `covered` (sorted by start; overlaps allowed).
pub fn holes(from: DateTime<Utc>, to: DateTime<Utc>, covered: &[Window]) -> Vec<Window> {
    let mut out = Vec::new();
    let mut cursor = from;
    for &(a, b) in covered {
        if b <= cursor {
            continue;
        }
        if a > cursor {
            out.push((cursor, a.min(to)));
        }
        cursor = cursor.max(b);
        if cursor >= to {
            break;
        }
    }
    if cursor < to {
        out.push((cursor, to));
    }
    out.retain(|(a, b)| a < b);
    out
}

/// Splits a window into consecutive chunks of at most `max`.
pub fn split(window: Window, max: Duration) -> Vec<Window> {
    let mut out = Vec::new();
    let mut start = window.0;
    while start < window.1 {
        let end = (start + max).min(window.1);
        out.push((start, end));
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(m: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_040 + m * 60, 0).unwrap()
    }

    #[test]
    fn holes_are_what_coverage_leaves_out() {
        assert_eq!(holes(t(0), t(10), &[]), vec![(t(0), t(10))]);
        assert_eq!(holes(t(0), t(10), &[(t(0), t(10))]), vec![]);
        assert_eq!(holes(t(0), t(10), &[(t(-5), t(3)), (t(6), t(8))]), vec![(t(3), t(6)), (t(8), t(10))]);
        assert_eq!(holes(t(0), t(10), &[(t(2), t(4)), (t(3), t(12))]), vec![(t(0), t(2))]);
    }

    #[test]
    fn ninety_days_split_into_sixty_and_thirty() {
        let w = (t(0), t(0) + Duration::days(90));
        let parts = split(w, MAX_CHUNK);
        assert_eq!(
            parts,
            vec![(t(0), t(0) + Duration::days(60)), (t(0) + Duration::days(60), t(0) + Duration::days(90))]
        );
        assert_eq!(split((t(0), t(0)), MAX_CHUNK), vec![]);
    }

    #[test]
    fn a_subscription_window_starts_from_receipt_and_ends_at_the_current_minute() {
        let received = Utc.with_ymd_and_hms(2025, 11, 4, 4, 0, 37).unwrap();
        let late = received + Duration::seconds(95); // a worker got to it in the next-but-one minute
        let (from, to) = subscription_window(received, late, 120);
        assert_eq!(from, Utc.with_ymd_and_hms(2025, 11, 4, 2, 0, 0).unwrap());
        assert_eq!(to, Utc.with_ymd_and_hms(2025, 11, 4, 4, 2, 0).unwrap());
        // A receipt stamped ahead of this host's clock does not shift the window past now.
        assert_eq!(subscription_window(late, received, 120), immediate_window(received, 120));
    }

    #[test]
    fn the_immediate_window_ends_at_the_current_minute() {
        let now = Utc.with_ymd_and_hms(2025, 11, 4, 4, 0, 37).unwrap();
        let (from, to) = immediate_window(now, 120);
        assert_eq!(to, Utc.with_ymd_and_hms(2025, 11, 4, 4, 0, 0).unwrap());
        assert_eq!(from, Utc.with_ymd_and_hms(2025, 11, 4, 2, 0, 0).unwrap());
    }
}
