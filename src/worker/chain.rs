//! Option-chain rebuilds: debounced after option backfills, run as `ChainMetrics` jobs.

use chrono::{NaiveDate, Utc};
use tickfill_jobs::Job;

use super::{
    job::{JobError, JobMeta},
    WorkerState,
};
use crate::{
    domain::{chain::STRIKE_TABLE, window::Window},
    metrics,
    store::runs::{self, Outcome, Run},
};

/// After an option backfill: ask for the chain to be rebuilt after `CHAIN_DEBOUNCE`, once per
/// (underlying, expiry, debounce bucket), so a burst of a whole chain's subscriptions costs a
/// rebuild or two rather than one per leg. Every backfill widens the pending window, so the one
/// rebuild covers what all of them wrote.
pub(super) async fn push_chain_rebuild(
    state: &WorkerState,
    underlying: &str,
    expiry: NaiveDate,
    window: Window,
) -> anyhow::Result<()> {
    let debounce = state.settings.backfill.chain_debounce;
    let bucket = Utc::now().timestamp_millis() / (debounce.as_millis() as i64).max(1);
    crate::queue::chain::widen_pending(
        &mut state.redis.clone(),
        &state.settings.queue.name,
        underlying,
        expiry,
        window,
    )
    .await?;
    let job = Job::ChainMetrics { underlying: underlying.to_string(), expiry, from: window.from, to: window.to };
    let key = format!("chain:{underlying}:{expiry}:{bucket}");
    state.producer.clone().push_as(&job, &key, Some(debounce)).await?;
    Ok(())
}

/// A `ChainMetrics` job: rebuild the chain over its window widened by what is pending.
pub(super) async fn rebuild_chain(
    state: &WorkerState,
    underlying: &str,
    expiry: NaiveDate,
    window: Window,
    meta: &JobMeta,
) -> Result<(), JobError> {
    let window = crate::queue::chain::take_pending(
        &mut state.redis.clone(),
        &state.settings.queue.name,
        underlying,
        expiry,
        window,
    )
    .await
    .map_err(|e| JobError::Retry(e.into()))?;
    let upkeep = state.rollups.get(&state.pool).await?;
    let rows = crate::store::chain::rebuild(&state.pool, underlying, expiry, window, upkeep).await?;
    metrics::get().rows_upserted.get_or_create(&metrics::l1("table", STRIKE_TABLE)).inc_by(rows);
    state.history.add("rows_stored", rows);
    let run = Run {
        job_id: &meta.id,
        kind: "chain_metrics",
        instrument_token: None,
        reason: Some(underlying),
        window: Some(window),
        requested_at: None,
        started_at: meta.started_at,
        attempts: meta.attempt.max(1) as i32,
        rows: rows.min(i32::MAX as u64) as i32,
        outcome: Outcome::Done,
        error: None,
        accounts: None,
        note: None,
    };
    runs::upsert_run(&state.pool, &run).await?;
    tracing::info!(underlying, %expiry, rows, from = %window.from, to = %window.to, "chain rebuilt");
    Ok(())
}
