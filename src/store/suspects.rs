//! `suspect_minutes` and `confirmed_empty`: the trading minutes answers lacked, until a candle
//! arrives or enough answers confirm the source has none (see `domain::proof`).

use std::collections::HashMap;
use tickfill_jobs::InstrumentToken;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::domain::{
    market::Candle,
    proof::{Misses, Suspect, Verdict},
    window::Window,
};

/// How many answers have lacked each suspect minute of `token` in `window`.
pub async fn prior_asks(
    pool: &PgPool,
    token: InstrumentToken,
    window: Window,
) -> sqlx::Result<HashMap<DateTime<Utc>, Misses>> {
    type Row = (DateTime<Utc>, i32, i32, bool, Option<DateTime<Utc>>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT minute, asks, inside, tail_agrees, tail_end FROM suspect_minutes
         WHERE instrument_token = $1 AND minute >= $2 AND minute < $3",
    )
    .bind(super::bind_token(token))
    .bind(window.from)
    .bind(window.to)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(m, a, i, agrees, end)| {
            (m, Misses { asks: a.max(0) as u32, inside: i.max(0) as u32, tail_end: agrees.then_some(end) })
        })
        .collect())
}

/// Applies what an answer for `window` proved: a minute confirmed empty that the answer did serve
/// (`candles`) is not empty after all, its suspects replace those it covered (noting the source's
/// lag), and its confirmed-empty minutes are kept with their reasons. `gap`: from the end of the
/// answer's newest candle to the moment it was judged, when it asked up to the present (a sample
/// of the lag).
pub async fn apply_verdict(
    tx: &mut Transaction<'_, Postgres>,
    token: InstrumentToken,
    window: Window,
    v: &Verdict,
    candles: &[Candle],
    gap: Option<chrono::Duration>,
) -> sqlx::Result<()> {
    let served: Vec<DateTime<Utc>> = candles.iter().map(|c| c.time).collect();
    unconfirm_served(tx, token, &served).await?;
    clear_window_noting_lag(tx, token, window, gap).await?;
    insert_suspects(tx, token, &v.suspects).await?;
    confirm_empty(tx, token, &v.confirmed).await
}

/// Minutes confirmed empty that an answer served are not empty after all.
async fn unconfirm_served(
    tx: &mut Transaction<'_, Postgres>,
    token: InstrumentToken,
    served: &[DateTime<Utc>],
) -> sqlx::Result<()> {
    if served.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM confirmed_empty WHERE instrument_token = $1 AND minute = ANY($2)")
        .bind(super::bind_token(token))
        .bind(served)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// The suspects of `window` give way to a new answer's. Beside that, the gap between the present
/// and this answer's newest candle (`gap`, when it asked up to the present) keeps the instrument's
/// smallest gap of the hour: the source's lag.
async fn clear_window_noting_lag(
    tx: &mut Transaction<'_, Postgres>,
    token: InstrumentToken,
    window: Window,
    gap: Option<chrono::Duration>,
) -> sqlx::Result<()> {
    sqlx::query(
        "WITH gone AS (DELETE FROM suspect_minutes WHERE instrument_token = $1 AND minute >= $2 AND minute < $3)
         INSERT INTO source_lag AS l (instrument_token, lag, since)
         SELECT $1, make_interval(secs => $4), now() WHERE $4 IS NOT NULL
         ON CONFLICT (instrument_token) DO UPDATE SET
             lag = CASE WHEN l.since > now() - INTERVAL '1 hour' THEN least(l.lag, EXCLUDED.lag) ELSE EXCLUDED.lag END,
             since = CASE WHEN l.since > now() - INTERVAL '1 hour' THEN l.since ELSE now() END",
    )
    .bind(super::bind_token(token))
    .bind(window.from)
    .bind(window.to)
    .bind(gap.map(|g| g.num_milliseconds().max(0) as f64 / 1000.0))
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Adds an answer's suspect minutes (its window's were cleared first).
async fn insert_suspects(
    tx: &mut Transaction<'_, Postgres>,
    token: InstrumentToken,
    suspects: &[Suspect],
) -> sqlx::Result<()> {
    if suspects.is_empty() {
        return Ok(());
    }
    let minutes: Vec<DateTime<Utc>> = suspects.iter().map(|s| s.minute).collect();
    let asks: Vec<i32> = suspects.iter().map(|s| s.asks.min(i32::MAX as u32) as i32).collect();
    let inside: Vec<i32> = suspects.iter().map(|s| s.inside.min(i32::MAX as u32) as i32).collect();
    let next: Vec<DateTime<Utc>> = suspects.iter().map(|s| s.next_ask_at).collect();
    let tails: Vec<bool> = suspects.iter().map(|s| s.tail).collect();
    let agrees: Vec<bool> = suspects.iter().map(|s| s.tail_end.is_some()).collect();
    let ends: Vec<Option<DateTime<Utc>>> = suspects.iter().map(|s| s.tail_end.flatten()).collect();
    sqlx::query(
        "INSERT INTO suspect_minutes (instrument_token, minute, asks, inside, next_ask_at, tail, tail_agrees,
                                      tail_end)
         SELECT $1, * FROM UNNEST($2::timestamptz[], $3::int[], $4::int[], $5::timestamptz[], $6::bool[],
                                  $7::bool[], $8::timestamptz[])",
    )
    .bind(super::bind_token(token))
    .bind(minutes)
    .bind(asks)
    .bind(inside)
    .bind(next)
    .bind(tails)
    .bind(agrees)
    .bind(ends)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Keeps minutes an answer confirmed empty, with their reasons.
async fn confirm_empty(
    tx: &mut Transaction<'_, Postgres>,
    token: InstrumentToken,
    confirmed: &[(DateTime<Utc>, &'static str)],
) -> sqlx::Result<()> {
    if confirmed.is_empty() {
        return Ok(());
    }
    let minutes: Vec<DateTime<Utc>> = confirmed.iter().map(|c| c.0).collect();
    let reasons: Vec<&str> = confirmed.iter().map(|c| c.1).collect();
    sqlx::query(
        "INSERT INTO confirmed_empty (instrument_token, minute, reason)
         SELECT $1, * FROM UNNEST($2::timestamptz[], $3::text[])
         ON CONFLICT (instrument_token, minute) DO UPDATE SET reason = EXCLUDED.reason, confirmed_at = now()",
    )
    .bind(super::bind_token(token))
    .bind(minutes)
    .bind(reasons)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// One suspect minute, as a sweep plans with it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SuspectRow {
    #[sqlx(try_from = "i64")]
    pub token: InstrumentToken,
    pub minute: DateTime<Utc>,
    pub asks: i32,
    pub next_ask_at: DateTime<Utc>,
}

/// Every suspect minute, by token then minute.
pub async fn all(pool: &PgPool) -> sqlx::Result<Vec<SuspectRow>> {
    sqlx::query_as("SELECT instrument_token AS token, minute, asks, next_ask_at FROM suspect_minutes ORDER BY 1, 2")
        .fetch_all(pool)
        .await
}

/// Suspect minutes by token.
pub async fn counts(pool: &PgPool) -> sqlx::Result<HashMap<InstrumentToken, i64>> {
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT instrument_token, count(*) FROM suspect_minutes GROUP BY 1").fetch_all(pool).await?;
    rows.into_iter().map(|(t, n)| Ok((super::token_from_db(t)?, n))).collect()
}

/// Every suspect minute.
pub async fn total(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM suspect_minutes").fetch_one(pool).await
}

/// How late the source publishes: the smallest gap any instrument's recent answers left between
/// their newest candle and the present (zero when none was seen in the last two hours). Answers
/// cut short or illiquid instruments only widen a gap, so the smallest is the source's own lag.
pub async fn observed_lag(pool: &PgPool) -> sqlx::Result<chrono::Duration> {
    let secs: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM min(lag))::float8 FROM source_lag WHERE since > now() - INTERVAL '2 hours'",
    )
    .fetch_one(pool)
    .await?;
    Ok(chrono::Duration::milliseconds((secs.unwrap_or(0.0).max(0.0) * 1000.0) as i64))
}
