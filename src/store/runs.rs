//! `backfill_runs`: one row per job, upserted so every attempt and a re-run update it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::domain::window::Window;
use sqlx::{PgPool, Postgres};

/// How a job ended, as stored in `backfill_runs.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Bars fetched and stored (possibly none: a closed market).
    Stored,
    /// The window was already covered; nothing was asked of the ticker.
    Covered,
    /// Backfill switched off by configuration.
    Disabled,
    /// The job failed and will be retried.
    Failed,
    /// The job failed for good and went to the dead set.
    Dead,
    /// A non-backfill job (subscription bookkeeping, a sweep) that completed.
    Done,
    /// A backfill for a token no longer subscribed.
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Stored => "stored",
            Outcome::Covered => "covered",
            Outcome::Disabled => "disabled",
            Outcome::Failed => "failed",
            Outcome::Dead => "dead",
            Outcome::Done => "done",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One `backfill_runs` row.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    pub job_id: &'a str,
    pub kind: &'a str,
    pub instrument_token: Option<u32>,
    pub reason: Option<&'a str>,
    pub window: Option<Window>,
    pub requested_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub attempts: i32,
    pub rows: i32,
    pub outcome: Outcome,
    pub error: Option<&'a str>,
    /// The accounts that answered its history requests, comma-separated.
    pub accounts: Option<&'a str>,
    /// A remark about the run (e.g. that its subscription's account is not configured).
    pub note: Option<&'a str>,
}

/// Upserts a run row; `finished_at` is the database clock at the statement, so it is the
/// commit-side instant latency figures are taken from.
#[tracing::instrument(level = "debug", skip_all, fields(job_id = run.job_id, outcome = run.outcome.as_str()))]
pub async fn upsert_run<'e, E>(exec: E, run: &Run<'_>) -> sqlx::Result<()>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    sqlx::query(
        "INSERT INTO backfill_runs (job_id, kind, instrument_token, reason, window_from, window_to,
             requested_at, started_at, finished_at, attempts, rows, outcome, error, accounts, note)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, clock_timestamp(), $9, $10, $11, $12, $13, $14)
         ON CONFLICT (job_id) DO UPDATE SET started_at = EXCLUDED.started_at,
             accounts = COALESCE(EXCLUDED.accounts, backfill_runs.accounts),
             note = COALESCE(EXCLUDED.note, backfill_runs.note),
             finished_at = EXCLUDED.finished_at, attempts = EXCLUDED.attempts, rows = EXCLUDED.rows,
             outcome = EXCLUDED.outcome, error = EXCLUDED.error,
             window_from = EXCLUDED.window_from, window_to = EXCLUDED.window_to",
    )
    .bind(run.job_id)
    .bind(run.kind)
    .bind(run.instrument_token.map(|t| t as i64))
    .bind(run.reason)
    .bind(run.window.map(|w| w.from))
    .bind(run.window.map(|w| w.to))
    .bind(run.requested_at)
    .bind(run.started_at)
    .bind(run.attempts)
    .bind(run.rows)
    .bind(run.outcome.as_str())
    .bind(run.error)
    .bind(run.accounts)
    .bind(run.note)
    .execute(exec)
    .await?;
    Ok(())
}

/// A failed or dead run, as the operator page lists it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct FailedRun {
    pub job_id: String,
    pub kind: String,
    pub token: Option<i64>,
    pub reason: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub outcome: String,
    pub error: Option<String>,
}

/// The newest `limit` failed or dead runs.
pub async fn recent_failures(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<FailedRun>> {
    sqlx::query_as(
        "SELECT job_id, kind, instrument_token AS token, reason, finished_at, attempts, outcome, error
         FROM backfill_runs WHERE outcome IN ('failed', 'dead') ORDER BY finished_at DESC NULLS LAST LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Of the runs of `job_ids`: how many have finished for good, their rows, and how many died.
pub async fn progress(pool: &PgPool, job_ids: &[String]) -> sqlx::Result<(usize, i64, usize)> {
    let rows: Vec<(String, i32)> = sqlx::query_as(
        "SELECT outcome, rows FROM backfill_runs
         WHERE job_id = ANY($1) AND outcome IN ('stored', 'covered', 'dead', 'skipped')",
    )
    .bind(job_ids)
    .fetch_all(pool)
    .await?;
    let dead = rows.iter().filter(|r| r.0 == "dead").count();
    Ok((rows.len(), rows.iter().map(|r| r.1 as i64).sum(), dead))
}

/// When each of `tokens` last had a backfill answered and stored (`stored`), if ever: what a sweep
/// keys a re-ask of the live edge by, so that a new answer makes a new request possible while one
/// still queued is not pushed twice. One index probe per token.
pub async fn last_stored(pool: &PgPool, tokens: &[u32]) -> sqlx::Result<HashMap<u32, DateTime<Utc>>> {
    let tokens: Vec<i64> = tokens.iter().map(|t| i64::from(*t)).collect();
    let rows: Vec<(i64, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT t.token, (SELECT r.finished_at FROM backfill_runs r
                          WHERE r.instrument_token = t.token AND r.outcome = 'stored' AND r.finished_at IS NOT NULL
                          ORDER BY r.finished_at DESC LIMIT 1)
         FROM unnest($1::bigint[]) AS t(token)",
    )
    .bind(&tokens)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(|(t, at)| Some((t as u32, at?))).collect())
}
