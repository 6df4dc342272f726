//! Days settle: what one fetch found of each day it touched — revised minutes, and, for a check
//! (`Reason::Verify`), whether the day is accepted as final and whether an equity's day changed
//! whole by one ratio (an adjustment, after which its older history is checked too).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use tickfill_jobs::{InstrumentToken, Job, Reason};

use super::{ctx::BackfillCtx, WorkerState};
use crate::{
    config::Settings,
    domain::{
        days,
        market::{BarTarget, Candle},
        proof::Verdict,
        window::{self, Window},
    },
    store::{
        bars,
        days::{ist_date, DayCheck},
    },
};

/// The fewest changed minutes of a day that are taken as an adjustment.
const MIN_ADJUSTED_MINUTES: usize = 5;

/// What one fetch saw and did.
pub(super) struct Facts<'a> {
    pub(super) fetch: Window,
    pub(super) candles: &'a [Candle],
    pub(super) verdict: &'a Verdict,
    /// Coverage of the window before the fetch.
    pub(super) covered: &'a [Window],
    /// Stored prices of the window before the fetch (a check reads them).
    pub(super) before: &'a [(DateTime<Utc>, [f64; 4])],
    /// Stored minutes the fetch changed.
    pub(super) revised: &'a [DateTime<Utc>],
}

/// Whether `ctx` is an equity: its history is back-adjusted on corporate actions.
pub(super) fn is_equity(ctx: &BackfillCtx) -> bool {
    matches!(ctx.target, BarTarget::Minute { .. }) && ctx.segment.as_deref() != Some("INDICES")
}

/// Per day the fetch touched: its revised minutes and, for a check, whether it is accepted (the
/// answer held every minute stored of it, and every trading minute is now proved) and the ratio
/// it was adjusted by.
pub(super) fn judge_days(
    settings: &Settings,
    ctx: &BackfillCtx,
    f: &Facts<'_>,
    check: bool,
    now: DateTime<Utc>,
) -> Vec<DayCheck> {
    let settle = Duration::from_std(settings.settle).unwrap_or_default();
    let served: HashMap<DateTime<Utc>, [f64; 4]> =
        f.candles.iter().map(|c| (c.time, [c.open, c.high, c.low, c.close])).collect();
    let revised: HashSet<DateTime<Utc>> = f.revised.iter().copied().collect();
    let suspects: HashSet<DateTime<Utc>> = f.verdict.suspects.iter().map(|s| s.minute).collect();
    let mut proved: Vec<Window> = f.covered.iter().chain(&f.verdict.covered).copied().collect();
    proved.sort_unstable();
    let mut out = Vec::new();
    for day in settings.calendar.days(ctx.segment.as_deref(), f.fetch) {
        let in_day = |t: &DateTime<Utc>| ist_date(*t) == day.date;
        let revised_minutes = revised.iter().filter(|t| in_day(t)).count() as i64;
        let settled = day.session_end.is_some_and(|end| now >= end + settle);
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
            && is_equity(ctx)
            && stored.len() >= MIN_ADJUSTED_MINUTES
            && stored.iter().all(|(t, _)| revised.contains(t))
        {
            let pairs: Vec<([f64; 4], [f64; 4])> = stored.iter().map(|(t, old)| (*old, served[t])).collect();
            found.adjustment = days::adjustment_ratio(&pairs);
        }
        if found.checked || found.revised_minutes > 0 || found.adjustment.is_some() {
            out.push(found);
        }
    }
    out
}

/// After an adjustment found in `checked`: all of the instrument's stored history before it is
/// checked too (in ≤ 60-day windows, however old: the lookback bounds what sweeps fill, not what
/// is stored), since the source now serves all of it adjusted. Its days are suspect until then.
pub(super) async fn push_older_checks(
    state: &WorkerState,
    token: InstrumentToken,
    target: &BarTarget,
    checked: Window,
) -> anyhow::Result<()> {
    let since = DateTime::<Utc>::UNIX_EPOCH;
    let Some(first) = bars::first_stored(&state.pool, token, target, Window::new(since, checked.from)).await? else {
        return Ok(()); // nothing older is stored
    };
    let older = Window::new(window::floor_minute(first), checked.from);
    let jobs: Vec<Job> = older
        .split(window::MAX_CHUNK)
        .into_iter()
        .filter(|w| !w.is_empty())
        .map(|w| Job::Backfill { token, from: w.from, to: w.to, reason: Reason::Verify, force: false })
        .collect();
    if !jobs.is_empty() {
        tracing::info!(token = token.get(), from = %older.from, to = %older.to, "adjusted history: checking what is older");
        state.producer.clone().push_many(&jobs).await?;
    }
    Ok(())
}
