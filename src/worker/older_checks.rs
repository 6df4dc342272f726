//! After an adjustment: the checks of an instrument's older history (the rules that judge a
//! fetch's days are in `domain::days`).

use chrono::{DateTime, Utc};
use tickfill_jobs::{InstrumentToken, Job, Reason};

use super::WorkerState;
use crate::{
    domain::{
        market::BarTarget,
        window::{self, Window},
    },
    store::bars,
};

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
