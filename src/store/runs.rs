//! `backfill_runs`: one row per job, upserted so every attempt and a re-run update it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::domain::window::Window;
use sqlx::{PgPool, Postgres};
use tickfill_jobs::InstrumentToken;

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
    pub instrument_token: Option<tickfill_jobs::InstrumentToken>,
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
    .bind(run.instrument_token.map(super::bind_token))
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
pub async fn last_stored(
    pool: &PgPool,
    tokens: &[tickfill_jobs::InstrumentToken],
) -> sqlx::Result<HashMap<tickfill_jobs::InstrumentToken, DateTime<Utc>>> {
    let tokens: Vec<i64> = tokens.iter().map(|t| super::bind_token(*t)).collect();
    let rows: Vec<(i64, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT t.token, (SELECT r.finished_at FROM backfill_runs r
                          WHERE r.instrument_token = t.token AND r.outcome = 'stored' AND r.finished_at IS NOT NULL
                          ORDER BY r.finished_at DESC LIMIT 1)
         FROM unnest($1::bigint[]) AS t(token)",
    )
    .bind(&tokens)
    .fetch_all(pool)
    .await?;
    rows.into_iter().filter_map(|(t, at)| Some((t, at?))).map(|(t, at)| Ok((super::token_from_db(t)?, at))).collect()
}

/// The outcomes of a finished run, as the explorer's `finished` state lists them (a failed run is
/// retried as a queued job; a dead one is in the dead set).
pub const FINISHED: [&str; 5] = ["stored", "covered", "skipped", "done", "disabled"];

/// The finished runs as jobs, narrowed by a filter: `$1` outcomes, `$2` tokens, `$3`/`$4`
/// finished from/to, `$5` least attempts, `$6` error text (LIKE-escaped), `$7` job kind, `$8`
/// lane. A run's kind is the job's (`subscribed` for a subscription's backfill) and its lane the
/// one its job ran on; its time is to the millisecond, as the explorer's cursors are.
macro_rules! finished_runs {
    () => {
        "WITH r AS (
            SELECT job_id, instrument_token, attempts, error, outcome,
                   date_trunc('milliseconds', finished_at) AS finished_at,
                   CASE WHEN kind = 'backfill' AND reason = 'subscribe' THEN 'subscribed' ELSE kind END AS job_kind,
                   CASE WHEN (kind = 'backfill' AND reason IN ('subscribe', 'reconcile')) OR kind = 'chain_metrics'
                        THEN 'urgent' ELSE 'bulk' END AS lane
            FROM backfill_runs
            WHERE outcome = ANY($1) AND finished_at IS NOT NULL
              AND ($2::bigint[] IS NULL OR instrument_token = ANY($2))
              AND ($3::timestamptz IS NULL OR finished_at >= $3)
              AND ($4::timestamptz IS NULL OR finished_at < $4)
              AND ($5::int IS NULL OR attempts >= $5)
              AND ($6::text IS NULL OR error ILIKE '%' || $6 || '%')
         )
         SELECT job_id, instrument_token, attempts, error, outcome, finished_at, job_kind, lane FROM r
         WHERE ($7::text IS NULL OR job_kind = $7) AND ($8::text IS NULL OR lane = $8)"
    };
}

/// Binds a filter to `$1` … `$8` of [`finished_runs`].
macro_rules! bind_filter {
    ($q:expr, $f:expr, $tokens:expr, $error:expr) => {
        $q.bind(&FINISHED[..])
            .bind($tokens)
            .bind($f.from)
            .bind($f.to)
            .bind($f.min_attempts.map(|n| n as i32))
            .bind($error)
            .bind($f.kind.map(|k| k.as_str()))
            .bind($f.lane.map(|l| l.as_str()))
    };
}

/// Finished runs that `filter` lets through (`tokens`: the tokens it allows, when it names any),
/// newest first, after `before` (the cursor: a run's `at` and id): how many match in all, and the
/// first `limit`.
pub async fn explore(
    pool: &PgPool,
    filter: &crate::domain::filter::JobFilter,
    tokens: Option<&[InstrumentToken]>,
    before: Option<(DateTime<Utc>, &str)>,
    limit: i64,
) -> sqlx::Result<(i64, Vec<crate::domain::filter::JobRow>)> {
    use crate::domain::filter::{JobRow, JobState};
    let tokens: Option<Vec<i64>> = tokens.map(|t| t.iter().map(|t| super::bind_token(*t)).collect());
    let error = filter.error.as_ref().map(|e| e.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    let rows = explore_page(pool, filter, tokens.clone(), error.clone(), before, limit).await?;
    let matched = explore_count(pool, filter, tokens, error).await?;
    let out = rows
        .into_iter()
        .map(|(id, token, attempts, error, outcome, at, kind, lane)| {
            Ok(JobRow {
                id,
                state: JobState::Finished,
                lane: Some(if lane == "urgent" { tickfill_jobs::Lane::Urgent } else { tickfill_jobs::Lane::Bulk }),
                kind,
                token: token.map(super::token_from_db).transpose()?,
                attempts: attempts.max(0) as u32,
                error,
                at: Some(at),
                outcome: Some(outcome),
                worker: None,
            })
        })
        .collect::<sqlx::Result<_>>()?;
    Ok((matched, out))
}

/// A finished run as the explorer lists it: id, token, attempts, error, outcome, finished at,
/// kind, lane.
type ExploredRun = (String, Option<i64>, i32, Option<String>, String, DateTime<Utc>, String, String);

/// One page of the finished runs a filter lets through, newest first, after `before`.
async fn explore_page(
    pool: &PgPool,
    filter: &crate::domain::filter::JobFilter,
    tokens: Option<Vec<i64>>,
    error: Option<String>,
    before: Option<(DateTime<Utc>, &str)>,
    limit: i64,
) -> sqlx::Result<Vec<ExploredRun>> {
    const PAGE: &str = concat!(
        "SELECT * FROM (",
        finished_runs!(),
        ") p WHERE ($9::timestamptz IS NULL OR (finished_at, job_id) < ($9, $10))
         ORDER BY finished_at DESC, job_id DESC LIMIT $11"
    );
    bind_filter!(sqlx::query_as(PAGE), filter, tokens, error)
        .bind(before.map(|b| b.0))
        .bind(before.map(|b| b.1))
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// How many finished runs a filter lets through.
async fn explore_count(
    pool: &PgPool,
    filter: &crate::domain::filter::JobFilter,
    tokens: Option<Vec<i64>>,
    error: Option<String>,
) -> sqlx::Result<i64> {
    const COUNT: &str = concat!("SELECT count(*) FROM (", finished_runs!(), ") c");
    bind_filter!(sqlx::query_scalar(COUNT), filter, tokens, error).fetch_one(pool).await
}

/// One sweep as `GET /api/sweeps` lists it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct SweepRun {
    pub job_id: String,
    /// The tick it was pushed for.
    pub tick: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<f64>,
    /// Backfills and checks it pushed.
    pub jobs_pushed: i32,
    pub outcome: String,
    pub error: Option<String>,
}

/// The newest `limit` sweeps.
pub async fn recent_sweeps(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<SweepRun>> {
    sqlx::query_as(
        "SELECT job_id, requested_at AS tick, started_at, finished_at,
                EXTRACT(EPOCH FROM finished_at - started_at)::float8 * 1000 AS duration_ms,
                rows AS jobs_pushed, outcome, error
         FROM backfill_runs WHERE kind = 'sweep' ORDER BY finished_at DESC NULLS LAST LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// One run row in full, as a job's page shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct RunRow {
    pub job_id: String,
    pub kind: String,
    pub instrument_token: Option<i64>,
    pub reason: Option<String>,
    pub window_from: Option<DateTime<Utc>>,
    pub window_to: Option<DateTime<Utc>>,
    pub requested_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub rows: i32,
    pub outcome: String,
    pub error: Option<String>,
    pub accounts: Option<String>,
    pub note: Option<String>,
}

/// The run row of the job first pushed as `job_id`.
pub async fn find(pool: &PgPool, job_id: &str) -> sqlx::Result<Option<RunRow>> {
    sqlx::query_as(
        "SELECT job_id, kind, instrument_token, reason, window_from, window_to, requested_at, started_at,
                finished_at, attempts, rows, outcome, error, accounts, note
         FROM backfill_runs WHERE job_id = $1",
    )
    .bind(job_id)
    .fetch_optional(pool)
    .await
}
