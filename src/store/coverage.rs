//! `coverage`: what answers have shown the store holds, per instrument, as merged windows, and
//! the settle rule that decides which part of a window is trusted.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use tickfill_jobs::InstrumentToken;

use crate::domain::window::{floor_minute, Window};

/// The class of the advisory locks that serialize one instrument's coverage merges.
const COVERAGE_LOCK: i64 = 0x7466_636f;

/// Takes, for the rest of `tx`, the lock on `token`'s coverage: two transactions merging windows
/// of one instrument take turns, so the second sees the first's row and merges with it instead of
/// leaving two overlapping rows. Take it before the transaction's first write of the instrument.
pub async fn lock_token(tx: &mut Transaction<'_, Postgres>, token: InstrumentToken) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind((COVERAGE_LOCK << 32) | super::bind_token(token))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records that `window` was fetched for `token`, with the candles the answer held in it (their
/// minutes). Windows that touch or overlap are merged into one row, so coverage stays one row per
/// contiguous span however many sweeps fill its tail; the merged row keeps the fetch time of its
/// newest end, which is what the settle rule looks at, and counts each minute's candle once (a
/// candle inside a merged row was counted there already). Callers hold [`lock_token`].
#[tracing::instrument(level = "debug", skip_all, fields(token = token.get(), from = %window.from, to = %window.to))]
pub async fn insert_coverage(
    tx: &mut Transaction<'_, Postgres>,
    token: InstrumentToken,
    window: Window,
    candles: &[DateTime<Utc>],
) -> sqlx::Result<()> {
    sqlx::query(
        "WITH merged AS (
             DELETE FROM coverage WHERE instrument_token = $1 AND window_to >= $2 AND window_from <= $3
             RETURNING window_from, window_to, fetched_at, candles),
         fresh AS (
             SELECT count(*)::int AS n FROM unnest($4::timestamptz[]) c(t)
             WHERE NOT EXISTS (SELECT 1 FROM merged m WHERE c.t >= m.window_from AND c.t < m.window_to))
         INSERT INTO coverage (instrument_token, window_from, window_to, fetched_at, candles)
         SELECT $1, min(window_from), max(window_to),
                (array_agg(fetched_at ORDER BY window_to DESC, fetched_at DESC))[1], sum(candles)::int
         FROM (SELECT window_from, window_to, fetched_at, candles FROM merged
               UNION ALL SELECT $2, $3, now(), n FROM fresh) m
         ON CONFLICT (instrument_token, window_from, window_to)
         DO UPDATE SET fetched_at = now(), candles = EXCLUDED.candles",
    )
    .bind(super::bind_token(token))
    .bind(window.from)
    .bind(window.to)
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
) -> Option<Window> {
    let settled = floor_minute(fetched_at - chrono::Duration::from_std(settle).unwrap_or_default());
    let end = to.min(settled);
    (from < end).then_some(Window::new(from, end))
}

/// When a coverage window was fetched.
type CoverageAt = DateTime<Utc>;

/// Every coverage window ending after `since`, by token then start, [`trusted`] part only.
pub async fn coverage_since(
    pool: &PgPool,
    since: DateTime<Utc>,
    settle: std::time::Duration,
) -> sqlx::Result<Vec<(InstrumentToken, Window)>> {
    let rows: Vec<(i64, DateTime<Utc>, DateTime<Utc>, CoverageAt)> = sqlx::query_as(
        "SELECT instrument_token, window_from, window_to, fetched_at FROM coverage WHERE window_to > $1 ORDER BY 1, 2",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .filter_map(|(t, a, b, at)| trusted(a, b, at, settle).map(|w| (t, w)))
        .map(|(t, w)| Ok((super::token_from_db(t)?, w)))
        .collect()
}

/// Coverage windows of `token` that overlap `window`, sorted by start, [`trusted`] part only.
#[tracing::instrument(level = "debug", skip_all, fields(token = token.get()))]
pub async fn find_coverage(
    pool: &PgPool,
    token: InstrumentToken,
    window: Window,
    settle: std::time::Duration,
) -> sqlx::Result<Vec<Window>> {
    let rows: Vec<(DateTime<Utc>, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT window_from, window_to, fetched_at FROM coverage
         WHERE instrument_token = $1 AND window_to > $2 AND window_from < $3 ORDER BY window_from",
    )
    .bind(super::bind_token(token))
    .bind(window.from)
    .bind(window.to)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(|(a, b, at)| trusted(a, b, at, settle)).collect())
}
