//! `Sweep` jobs.

use chrono::{DateTime, Utc};

use super::{
    job::{JobError, JobMeta},
    WorkerState,
};
use crate::store::runs::{self, Outcome, Run};

/// A `Sweep` job: reconcile, plan, push; its run row says how many backfills it pushed.
pub(super) async fn run_sweep(state: &WorkerState, tick: DateTime<Utc>, meta: &JobMeta) -> Result<(), JobError> {
    let mut producer = state.producer.clone();
    let report = crate::sweep::sweep(&state.pool, &state.ticker, &mut producer, &state.settings, Utc::now())
        .await
        .map_err(JobError::Retry)?;
    let run = Run {
        job_id: &meta.id,
        kind: "sweep",
        instrument_token: None,
        reason: Some("sweep"),
        window: None,
        requested_at: Some(tick),
        started_at: meta.started_at,
        attempts: meta.attempt.max(1) as i32,
        rows: (report.jobs + report.checks) as i32,
        outcome: Outcome::Done,
        error: None,
        accounts: None,
        note: None,
    };
    runs::upsert_run(&state.pool, &run).await?;
    let r = report.reconciled.as_ref();
    tracing::info!(
        %tick,
        targets = report.targets,
        jobs = report.jobs,
        checks = report.checks,
        added = r.map(|r| r.added.len()),
        deactivated = r.map(|r| r.deactivated.len()),
        "sweep done"
    );
    Ok(())
}
