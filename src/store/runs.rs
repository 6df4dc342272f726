//! `backfill_runs` (one row per job, upserted so a re-run updates it) and `coverage` (windows
//! fetched, with or without candles; an error is never coverage).

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

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
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub requested_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub attempts: i32,
    pub rows: i32,
    pub outcome: Outcome,
    pub error: Option<&'a str>,
}

/// Upserts a run row; `finished_at` is the database clock at the statement, so it is the
/// commit-side instant latency figures are taken from.
pub async fn upsert_run<'e, E>(exec: E, run: &Run<'_>) -> sqlx::Result<()>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    sqlx::query(
        "INSERT INTO backfill_runs (job_id, kind, instrument_token, reason, window_from, window_to,
             requested_at, started_at, finished_at, attempts, rows, outcome, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, clock_timestamp(), $9, $10, $11, $12)
         ON CONFLICT (job_id) DO UPDATE SET started_at = EXCLUDED.started_at,
             finished_at = EXCLUDED.finished_at, attempts = EXCLUDED.attempts, rows = EXCLUDED.rows,
             outcome = EXCLUDED.outcome, error = EXCLUDED.error,
             window_from = EXCLUDED.window_from, window_to = EXCLUDED.window_to",
    )
    .bind(run.job_id)
    .bind(run.kind)
    .bind(run.instrument_token.map(|t| t as i64))
    .bind(run.reason)
    .bind(run.window.map(|w| w.0))
    .bind(run.window.map(|w| w.1))
    .bind(run.requested_at)
    .bind(run.started_at)
    .bind(run.attempts)
    .bind(run.rows)
    .bind(run.outcome.as_str())
    .bind(run.error)
    .execute(exec)
    .await?;
    Ok(())
}

/// Records that `[from, to)` was fetched for `token`, with how many candles came back. Windows
/// that touch or overlap are merged into one row, so coverage stays one row per contiguous span
/// however many sweeps fill its tail; the merged row keeps the fetch time of its newest end, which
/// is what the settle rule looks at.
pub async fn insert_coverage(
    tx: &mut Transaction<'_, Postgres>,
    token: u32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    candles: i32,
) -> sqlx::Result<()> {
    sqlx::query(
        "WITH merged AS (
             DELETE FROM coverage WHERE instrument_token = $1 AND window_to >= $2 AND window_from <= $3
             RETURNING window_from, window_to, fetched_at, candles)
         INSERT INTO coverage (instrument_token, window_from, window_to, fetched_at, candles)
         SELECT $1, min(window_from), max(window_to),
                (array_agg(fetched_at ORDER BY window_to DESC, fetched_at DESC))[1], sum(candles)::int
         FROM (SELECT * FROM merged UNION ALL SELECT $2, $3, now(), $4) m
         ON CONFLICT (instrument_token, window_from, window_to)
         DO UPDATE SET fetched_at = now(), candles = EXCLUDED.candles",
    )
    .bind(token as i64)
    .bind(from)
    .bind(to)
    .bind(candles)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The trusted part of a coverage window fetched at `fetched_at`: its end pulled back to the
/// whole minute `settle` before the fetch (the last minutes before a fetch are not trusted, so a
/// minute the source published late is fetched again); `None` when nothing of it is left.
pub fn trusted(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    fetched_at: DateTime<Utc>,
    settle: std::time::Duration,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let settled =
        crate::domain::window::floor_minute(fetched_at - chrono::Duration::from_std(settle).unwrap_or_default());
    let end = to.min(settled);
    (from < end).then_some((from, end))
}

/// When a coverage window was fetched.
type CoverageAt = DateTime<Utc>;

/// Every coverage window ending after `since`, by token then start, [`trusted`] part only.
pub async fn coverage_since(
    pool: &PgPool,
    since: DateTime<Utc>,
    settle: std::time::Duration,
) -> sqlx::Result<Vec<(u32, DateTime<Utc>, DateTime<Utc>)>> {
    let rows: Vec<(i64, DateTime<Utc>, DateTime<Utc>, CoverageAt)> = sqlx::query_as(
        "SELECT instrument_token, window_from, window_to, fetched_at FROM coverage WHERE window_to > $1 ORDER BY 1, 2",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(|(t, a, b, at)| trusted(a, b, at, settle).map(|(a, b)| (t as u32, a, b))).collect())
}

/// Coverage windows of `token` that overlap `[from, to)`, sorted by start, [`trusted`] part only.
pub async fn find_coverage(
    pool: &PgPool,
    token: u32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    settle: std::time::Duration,
) -> sqlx::Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let rows: Vec<(DateTime<Utc>, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT window_from, window_to, fetched_at FROM coverage
         WHERE instrument_token = $1 AND window_to > $2 AND window_from < $3 ORDER BY window_from",
    )
    .bind(token as i64)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(|(a, b, at)| trusted(a, b, at, settle)).collect())
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
