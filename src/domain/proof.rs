//! What an answer proves (see "Completeness" in the design): a trading minute is covered when the
//! answer holds its candle, or when enough answers lacked it that the source is taken to have none
//! (confirmed empty, with the reason). Until then it is *suspect*: not covered, asked again later
//! with backoff.
//!
//! How many answers must lack a minute depends on what trades it, and on where it was missing.
//! Missing *inside* an answer (a later candle was served) is evidence; missing at the *tail* (no
//! later candle) may be lag or an answer cut short, and is weak evidence. An index, an equity or
//! a future trades every session minute: a minute is given up on after [`LIQUID_INSIDE`] answers
//! lacked it inside, or [`MAX_ASKS`] lacked it at all. An option may simply not have traded (Kite
//! serves no candle then): a minute two answers lacked inside them is a no-trade minute — one
//! extra request, ever, when the first answer already held later candles. So is a tail once its session is over, when two answers in a
//! row ended at the same last candle: an answer cut short ends at a random minute, so two that
//! agree are taken as the source's own end.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::window::Window;

/// Answers that must lack a minute (inside them) of an instrument that trades every minute before
/// it is confirmed empty.
pub const LIQUID_INSIDE: u32 = 4;

/// Answers that must lack a minute of an option (which may not have traded), inside them or
/// after its session ended, before it is confirmed empty.
pub const OPTION_ASKS: u32 = 2;

/// Answers lacking a minute, anywhere, after which it is confirmed empty whatever it is.
pub const MAX_ASKS: u32 = 8;

/// The backoff before a suspect is asked again doubles at most this many times (64 × the first).
pub const MAX_DOUBLINGS: u32 = 6;

/// How many answers lacked a minute so far, how many of them held a later candle, and, when the
/// last one lacked it at its tail (and held every stored minute), that answer's last candle
/// (`Some(None)`: it held none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Misses {
    pub asks: u32,
    pub inside: u32,
    pub tail_end: Option<Option<DateTime<Utc>>>,
}

/// A minute still suspect after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspect {
    pub minute: DateTime<Utc>,
    /// Answers that have lacked it, this one included.
    pub asks: u32,
    /// Of those, the answers that held a later candle.
    pub inside: u32,
    pub next_ask_at: DateTime<Utc>,
    pub tail: bool,
    /// When the answer lacked it at its tail and held every stored minute: its last candle
    /// (`Some(None)`: it held none).
    pub tail_end: Option<Option<DateTime<Utc>>>,
}

/// What one answer proved about its window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The parts of the window now covered: every minute but the suspects.
    pub covered: Vec<Window>,
    pub suspects: Vec<Suspect>,
    /// Minutes taken to have no candle at the source, with why.
    pub confirmed: Vec<(DateTime<Utc>, &'static str)>,
}

/// A trading minute an answer held no candle for, with the end of its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lacking {
    pub minute: DateTime<Utc>,
    pub session_end: DateTime<Utc>,
}

/// The minutes of `trading` (sessions, in order) that `candles` hold no candle for.
pub fn lacking(trading: &[Window], candles: &[DateTime<Utc>]) -> Vec<Lacking> {
    let held: std::collections::HashSet<DateTime<Utc>> = candles.iter().copied().collect();
    let mut out = Vec::new();
    for session in trading {
        let mut m = session.from;
        while m < session.to {
            if !held.contains(&m) {
                out.push(Lacking { minute: m, session_end: session.to });
            }
            m += Duration::minutes(1);
        }
    }
    out
}

/// The facts one answer is judged on.
pub struct Answer<'a> {
    /// The window asked for, in whole minutes.
    pub window: Window,
    /// Its trading minutes the answer held no candle for ([`lacking`]).
    pub lacking: &'a [Lacking],
    /// The newest minute the answer held a candle for.
    pub last_candle: Option<DateTime<Utc>>,
    /// Answers that lacked each minute before this one.
    pub prior: &'a HashMap<DateTime<Utc>, Misses>,
    /// Whether the instrument may have minutes without trades (an option).
    pub may_not_trade: bool,
    /// Whether the answer held every minute the store holds a candle for in its window: one that
    /// did not is known to have left minutes out, and proves no minute empty.
    pub consistent: bool,
    pub now: DateTime<Utc>,
    /// Minutes from here on are too new to judge (`BACKFILL_SETTLE`): one the answer lacks is
    /// neither suspect nor covered, since a source publishes its newest minutes late.
    pub settled: DateTime<Utc>,
    /// The first backoff before a suspect is asked again (doubling after each answer).
    pub backoff: Duration,
    /// How late the source has been seen to publish a minute: a minute the answer lacks at its
    /// tail, younger than that, may simply not be published yet, and is not judged.
    pub lag: Duration,
}

/// How long to wait before asking again after the `n`th answer that did not settle a question
/// (from 1): `first`, doubling each time, [`MAX_DOUBLINGS`] times at most.
pub fn backoff(first: Duration, n: u32) -> Duration {
    first * 2i32.pow(n.saturating_sub(1).min(MAX_DOUBLINGS))
}

/// Judges one answer.
pub fn judge(a: &Answer<'_>) -> Verdict {
    let mut v = Verdict::default();
    let mut unjudged = Vec::new();
    for &Lacking { minute: m, session_end } in a.lacking {
        if m >= a.settled {
            unjudged.push(Window::new(m, m + Duration::minutes(1)));
            continue;
        }
        let before = a.prior.get(&m).copied().unwrap_or_default();
        let tail = a.last_candle.is_none_or(|l| m > l);
        if tail && a.lag > Duration::zero() && m + Duration::minutes(1) + a.lag > a.now {
            unjudged.push(Window::new(m, m + Duration::minutes(1)));
            continue;
        }
        let inside = u32::from(!tail && a.consistent);
        let misses = Misses { asks: before.asks + 1, inside: before.inside + inside, tail_end: None };
        // An option's tail is explained once its session is over, by two answers that agree where
        // they end; before, it may be lag, and one answer may have been cut short.
        let session_over = a.now >= session_end;
        let agreed = tail && a.consistent && before.tail_end == Some(a.last_candle);
        let why = if a.may_not_trade && misses.inside >= OPTION_ASKS {
            Some("no trade: two answers lacked it between served minutes")
        } else if a.may_not_trade && agreed && session_over && misses.asks >= OPTION_ASKS {
            Some("no trade: two answers after its session ended it at the same last candle")
        } else if !a.may_not_trade && misses.inside >= LIQUID_INSIDE {
            Some("never served: four answers lacked it between served minutes")
        } else if misses.asks >= MAX_ASKS {
            Some("never served: eight answers lacked it")
        } else {
            None
        };
        match why {
            Some(why) => v.confirmed.push((m, why)),
            None => {
                let wait = backoff(a.backoff, misses.asks);
                v.suspects.push(Suspect {
                    minute: m,
                    asks: misses.asks,
                    inside: misses.inside,
                    next_ask_at: a.now + wait,
                    tail,
                    tail_end: (tail && a.consistent).then_some(a.last_candle),
                });
            }
        }
    }
    let mut runs: Vec<Window> =
        v.suspects.iter().map(|s| Window::new(s.minute, s.minute + Duration::minutes(1))).collect();
    runs.extend(unjudged);
    runs.sort_unstable();
    v.covered = a.window.holes(&runs);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(m: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_764_565_200 + m * 60, 0).unwrap()
    }

    /// Judges an answer of `candles` for `window` whose sessions are `trading`.
    fn judged(
        window: Window,
        trading: &[Window],
        candles: &[DateTime<Utc>],
        prior: &HashMap<DateTime<Utc>, Misses>,
        may_not_trade: bool,
        now: DateTime<Utc>,
    ) -> Verdict {
        let lacking = lacking(trading, candles);
        judge(&Answer {
            window,
            lacking: &lacking,
            last_candle: candles.iter().max().copied(),
            prior,
            may_not_trade,
            consistent: true,
            now,
            settled: window.to,
            backoff: Duration::minutes(5),
            lag: Duration::zero(),
        })
    }

    #[test]
    fn a_whole_answer_covers_its_window_and_a_short_one_leaves_its_tail_suspect() {
        let w = Window::new(t(0), t(10));
        let all: Vec<_> = (0..10).map(t).collect();
        let none = HashMap::new();
        let v = judged(w, &[w], &all, &none, false, t(12));
        assert_eq!((v.covered, v.suspects.len(), v.confirmed.len()), (vec![w], 0, 0));
        // Ended 3 minutes early: those 3 are suspect tails, asked again in 5 minutes.
        let v = judged(w, &[w], &all[..7], &none, false, t(12));
        assert_eq!(v.covered, vec![Window::new(t(0), t(7))]);
        assert_eq!(v.suspects.iter().map(|s| (s.asks, s.tail)).collect::<Vec<_>>(), vec![(1, true); 3]);
        assert_eq!(v.suspects[0].next_ask_at, t(17));
        // Lacking within the settle margin (from minute 8): neither suspect nor covered.
        let lacking = lacking(&[w], &all[..7]);
        let v = judge(&Answer {
            window: w,
            lacking: &lacking,
            last_candle: Some(t(6)),
            prior: &none,
            may_not_trade: false,
            consistent: true,
            now: t(10),
            settled: t(8),
            backoff: Duration::minutes(5),
            lag: Duration::zero(),
        });
        assert_eq!(v.covered, vec![Window::new(t(0), t(7))]);
        assert_eq!(v.suspects.iter().map(|s| s.minute).collect::<Vec<_>>(), vec![t(7)]);
    }

    #[test]
    fn a_tail_is_not_confirmed_empty_before_a_lagging_source_could_have_published_it() {
        let w = Window::new(t(0), t(30));
        let held: Vec<_> = (0..20).map(t).collect(); // the newest 10 minutes not served
        let seven: HashMap<_, _> =
            (20..30).map(|m| (t(m), Misses { asks: MAX_ASKS - 1, inside: 0, tail_end: None })).collect();
        let lacking = lacking(&[w], &held);
        let answer = |lag: Duration, now| Answer {
            window: w,
            lacking: &lacking,
            last_candle: Some(t(19)),
            prior: &seven,
            may_not_trade: false,
            consistent: true,
            now,
            settled: w.to,
            backoff: Duration::minutes(5),
            lag,
        };
        // A source seen to publish 10 minutes late: the eighth answer lacking them confirms only
        // the minutes it could have published by now; the younger ones are not judged at all.
        let v = judge(&answer(Duration::minutes(10), t(35)));
        assert_eq!(v.confirmed.iter().map(|c| c.0).collect::<Vec<_>>(), (20..25).map(t).collect::<Vec<_>>());
        assert!(v.suspects.is_empty(), "{:?}", v.suspects);
        assert_eq!(v.covered, vec![Window::new(t(0), t(25))]);
        // Once the lag has passed for all of them, they are judged like any other.
        assert_eq!(judge(&answer(Duration::minutes(10), t(41))).confirmed.len(), 10);
        // With no lag seen, as before: the eighth answer confirms them all.
        assert_eq!(judge(&answer(Duration::zero(), t(31))).confirmed.len(), 10);
    }

    #[test]
    fn an_option_no_trade_minute_is_confirmed_by_the_second_answer_an_index_only_by_the_fourth() {
        let w = Window::new(t(0), t(5));
        let candles = [t(0), t(1), t(3), t(4)]; // minute 2 missing, inside
        let once: HashMap<_, _> = [(t(2), Misses { asks: 1, inside: 1, tail_end: None })].into();
        let v = judged(w, &[w], &candles, &once, true, t(30));
        assert_eq!(v.confirmed, vec![(t(2), "no trade: two answers lacked it between served minutes")]);
        // Lacking at the tail first (an answer cut short), then inside: not yet.
        let tail_then: HashMap<_, _> = [(t(2), Misses { asks: 1, inside: 0, tail_end: Some(Some(t(1))) })].into();
        assert_eq!(judged(w, &[w], &candles, &tail_then, true, t(30)).suspects[0].inside, 1);
        assert_eq!(v.covered, vec![w]);
        let v = judged(w, &[w], &candles, &once, false, t(30));
        assert_eq!((v.suspects[0].asks, v.suspects[0].next_ask_at), (2, t(40)));
        let thrice: HashMap<_, _> = [(t(2), Misses { asks: 3, inside: 3, tail_end: None })].into();
        assert_eq!(judged(w, &[w], &candles, &thrice, false, t(30)).confirmed.len(), 1);
        // Missing at the tail is weak evidence: an index is given up on only after eight answers.
        let tails: HashMap<_, _> = [(t(4), Misses { asks: 6, inside: 0, tail_end: Some(Some(t(3))) })].into();
        let short = [t(0), t(1), t(2), t(3)];
        assert_eq!(judged(w, &[w], &short, &tails, false, t(30)).suspects[0].asks, 7);
        let tails: HashMap<_, _> = [(t(4), Misses { asks: 7, inside: 0, tail_end: Some(Some(t(3))) })].into();
        assert_eq!(
            judged(w, &[w], &short, &tails, false, t(30)).confirmed,
            vec![(t(4), "never served: eight answers lacked it")]
        );
    }

    #[test]
    fn an_answer_that_lacks_stored_minutes_confirms_nothing_but_still_counts() {
        let w = Window::new(t(0), t(5));
        let candles = [t(0), t(1), t(3), t(4)]; // minute 2 missing, inside
        let once: HashMap<_, _> = [(t(2), Misses { asks: 1, inside: 1, tail_end: None })].into();
        let lacking = lacking(&[w], &candles);
        let answer = |consistent| Answer {
            window: w,
            lacking: &lacking,
            last_candle: Some(t(4)),
            prior: &once,
            may_not_trade: true,
            consistent,
            now: t(30),
            settled: t(30),
            backoff: Duration::minutes(5),
            lag: Duration::zero(),
        };
        assert_eq!(judge(&answer(true)).confirmed.len(), 1);
        // The same answer, known to have left out a stored minute (a hole told inside it).
        let v = judge(&answer(false));
        assert_eq!(v.confirmed, vec![]);
        assert_eq!((v.suspects[0].asks, v.suspects[0].inside, v.suspects[0].tail_end), (2, 1, None));
    }

    #[test]
    fn an_option_tail_waits_for_the_end_of_its_session_and_closed_minutes_need_no_proof() {
        let w = Window::new(t(0), t(10));
        let session = [Window::new(t(0), t(6))]; // minutes 6-9 are closed
        let candles = [t(0), t(1), t(2)];
        let one = Misses { asks: 1, inside: 0, tail_end: Some(Some(t(2))) };
        let once: HashMap<_, _> = [(t(3), one), (t(4), one), (t(5), one)].into();
        // During the session: still suspect.
        let v = judged(w, &session, &candles, &once, true, t(5));
        assert_eq!((v.suspects.len(), v.confirmed.len()), (3, 0));
        assert_eq!(v.suspects[0].tail_end, Some(Some(t(2))));
        // After it, the two answers agreeing where they end: confirmed, and the closed minutes
        // were never suspect.
        let v = judged(w, &session, &candles, &once, true, t(20));
        assert_eq!((v.suspects.len(), v.confirmed.len()), (0, 3));
        assert_eq!(v.covered, vec![w]);
        // An answer cut short ends elsewhere: the tail it left stays suspect.
        let cut = Misses { asks: 1, inside: 0, tail_end: Some(Some(t(1))) };
        let short: HashMap<_, _> = [(t(3), cut), (t(4), cut), (t(5), cut)].into();
        let v = judged(w, &session, &candles, &short, true, t(20));
        assert_eq!((v.suspects.len(), v.confirmed.len()), (3, 0));
    }
}
