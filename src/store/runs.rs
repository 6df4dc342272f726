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
    /// A non-backfill job (subscription bookkeeping) that completed.
    Done,
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

/// Records that `[from, to)` was fetched for `token`, with how many candles came back.
pub async fn insert_coverage(
    tx: &mut Transaction<'_, Postgres>,
    token: u32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    candles: i32,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO coverage (instrument_token, window_from, window_to, fetched_at, candles)
         VALUES ($1, $2, $3, now(), $4)
         ON CONFLICT (instrument_token, window_from, window_to) DO UPDATE SET fetched_at = now(), candles = EXCLUDED.candles",
    )
    .bind(token as i64)
    .bind(from)
    .bind(to)
    .bind(candles)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Coverage windows of `token` that overlap `[from, to)`, sorted by start.
pub async fn find_coverage(
    pool: &PgPool,
    token: u32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    sqlx::query_as(
        "SELECT window_from, window_to FROM coverage
         WHERE instrument_token = $1 AND window_to > $2 AND window_from < $3 ORDER BY window_from",
    )
    .bind(token as i64)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
}

/// The parts of `[from, to)` not covered by `covered` (sorted by start).
pub fn holes(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    covered: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(m: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + m * 60, 0).unwrap()
    }

    #[test]
    fn holes_are_what_coverage_leaves_out() {
        assert_eq!(holes(t(0), t(10), &[]), vec![(t(0), t(10))]);
        assert_eq!(holes(t(0), t(10), &[(t(0), t(10))]), vec![]);
        assert_eq!(
            holes(t(0), t(10), &[(t(-5), t(3)), (t(6), t(8))]),
            vec![(t(3), t(6)), (t(8), t(10))]
        );
        assert_eq!(
            holes(t(0), t(10), &[(t(2), t(4)), (t(3), t(12))]),
            vec![(t(0), t(2))]
        );
    }
}
