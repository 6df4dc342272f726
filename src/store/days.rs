//! Per instrument and IST day: what the store knows of its trading minutes (`coverage`,
//! `suspect_minutes`, `confirmed_empty`) and its checks (`day_checks`), as [`DayFacts`].

use std::collections::HashMap;
use tickfill_jobs::InstrumentToken;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use super::coverage;
use crate::{
    config::Settings,
    domain::{
        days::{ist_date, DayCheck, DayFacts},
        window::Window,
    },
};

/// One instrument to read days for: its token, segment (its calendar) and the window asked about.
#[derive(Debug, Clone)]
pub struct DaysOf {
    pub token: InstrumentToken,
    pub segment: Option<String>,
    pub window: Window,
}

/// Every day of every `of`, in order, read in four statements whatever their number.
pub async fn facts(
    pool: &PgPool,
    settings: &Settings,
    of: &[DaysOf],
) -> sqlx::Result<Vec<(InstrumentToken, Vec<DayFacts>)>> {
    let Some(since) = of.iter().map(|o| o.window.from).min() else { return Ok(vec![]) };
    let tokens: Vec<i64> = of.iter().map(|o| super::bind_token(o.token)).collect();
    let mut covered: HashMap<InstrumentToken, Vec<Window>> = HashMap::new();
    for (t, w) in coverage::coverage_since(pool, since, settings.backfill.settle).await? {
        covered.entry(t).or_default().push(w);
    }
    let suspect = minutes_of(pool, "suspect_minutes", &tokens, since).await?;
    let confirmed = minutes_of(pool, "confirmed_empty", &tokens, since).await?;
    type CheckRow = (
        i64,
        NaiveDate,
        Option<DateTime<Utc>>,
        i32,
        i32,
        Option<f64>,
        i32,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    let checks: Vec<CheckRow> = sqlx::query_as(
        "SELECT instrument_token, day, checked_at, revisions, revised_minutes, adjustment, checks, last_check_at,
                stale_since
         FROM day_checks WHERE instrument_token = ANY($1) AND day >= $2",
    )
    .bind(&tokens)
    .bind(ist_date(since))
    .fetch_all(pool)
    .await?;
    let checks: HashMap<(i64, NaiveDate), CheckRow> = checks.into_iter().map(|r| ((r.0, r.1), r)).collect();
    let none = Vec::new();
    let mut out = Vec::with_capacity(of.len());
    for o in of {
        let cov = covered.get(&o.token).unwrap_or(&none);
        let inside = |m: &DateTime<Utc>, w: &Window| w.from <= *m && *m < w.to;
        let days = settings
            .backfill
            .calendar
            .days(o.segment.as_deref(), o.window)
            .into_iter()
            .map(|d| {
                let count = |by: &HashMap<i64, Vec<DateTime<Utc>>>| {
                    by.get(&super::bind_token(o.token))
                        .map_or(0, |ms| ms.iter().filter(|m| d.sessions.iter().any(|s| inside(m, s))).count() as i64)
                };
                let covered_minutes: i64 = d
                    .sessions
                    .iter()
                    .map(|s| s.minutes() - s.holes(cov).iter().map(Window::minutes).sum::<i64>())
                    .sum();
                let check = checks.get(&(super::bind_token(o.token), d.date));
                DayFacts {
                    date: d.date,
                    trading_minutes: d.minutes(),
                    covered_minutes,
                    suspect_minutes: count(&suspect),
                    confirmed_empty_minutes: count(&confirmed),
                    session_end: d.session_end,
                    checks: check.map_or(0, |c| c.6 as i64),
                    checked_at: check.and_then(|c| c.2),
                    last_check_at: check.and_then(|c| c.7),
                    stale_since: check.and_then(|c| c.8),
                    revisions: check.map_or(0, |c| c.3 as i64),
                    revised_minutes: check.map_or(0, |c| c.4 as i64),
                    adjustment: check.and_then(|c| c.5),
                }
            })
            .collect();
        out.push((o.token, days));
    }
    Ok(out)
}

/// The minutes of `tokens` from `since` in `table` (`suspect_minutes` or `confirmed_empty`).
async fn minutes_of(
    pool: &PgPool,
    table: &'static str,
    tokens: &[i64],
    since: DateTime<Utc>,
) -> sqlx::Result<HashMap<i64, Vec<DateTime<Utc>>>> {
    let sql = format!("SELECT instrument_token, minute FROM {table} WHERE instrument_token = ANY($1) AND minute >= $2");
    let rows: Vec<(i64, DateTime<Utc>)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tokens).bind(since).fetch_all(pool).await?;
    let mut by: HashMap<i64, Vec<DateTime<Utc>>> = HashMap::new();
    for (t, m) in rows {
        by.entry(t).or_default().push(m);
    }
    Ok(by)
}

/// Days of `token` whose last check was not accepted and is too recent to ask again: each
/// unaccepted check doubles the wait from `first`.
pub async fn checks_not_due(
    pool: &PgPool,
    now: DateTime<Utc>,
    first: Duration,
) -> sqlx::Result<std::collections::HashSet<(InstrumentToken, NaiveDate)>> {
    // A suspect day (stale since a later adjustment) whose check since then was not accepted
    // waits the same doubling backoff, with no cap: it must be checked again some day.
    let rows: Vec<(i64, NaiveDate, i32, DateTime<Utc>, bool)> = sqlx::query_as(
        "SELECT instrument_token, day, checks, last_check_at, stale_since IS NOT NULL FROM day_checks
         WHERE checks > 0 AND last_check_at IS NOT NULL
           AND (checked_at IS NULL OR last_check_at >= stale_since)",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .filter(|(_, _, n, at, stale)| {
            let wait = crate::domain::proof::backoff(first, *n as u32);
            now < *at + wait || (!stale && *n as u32 >= MAX_CHECKS)
        })
        .map(|(t, d, ..)| Ok((super::token_from_db(t)?, d)))
        .collect()
}

/// Checks a day gets at most before it is left `complete` for an operator to look at: the source
/// keeps lacking minutes the store holds.
pub const MAX_CHECKS: u32 = 6;

/// Adds what one fetch found of its days to their `day_checks` rows.
pub async fn add_checks(
    tx: &mut Transaction<'_, Postgres>,
    token: InstrumentToken,
    found: &[DayCheck],
) -> sqlx::Result<()> {
    let found: Vec<&DayCheck> = found.iter().filter(|c| c.checked || c.revised_minutes > 0).collect();
    if found.is_empty() {
        return Ok(());
    }
    let day: Vec<NaiveDate> = found.iter().map(|c| c.day).collect();
    let checks: Vec<i32> = found.iter().map(|c| i32::from(c.checked)).collect();
    let accepted: Vec<bool> = found.iter().map(|c| c.accepted).collect();
    let revisions: Vec<i32> = found.iter().map(|c| i32::from(c.revised_minutes > 0)).collect();
    let revised: Vec<i32> = found.iter().map(|c| c.revised_minutes.min(i32::MAX as i64) as i32).collect();
    let adjustment: Vec<Option<f64>> = found.iter().map(|c| c.adjustment).collect();
    sqlx::query(
        "INSERT INTO day_checks AS d (instrument_token, day, checks, last_check_at, checked_at, revisions,
                                     revised_minutes, adjustment)
         SELECT $1, t.day, t.checks, CASE WHEN t.checks > 0 THEN now() END, CASE WHEN t.accepted THEN now() END,
                t.revisions, t.revised, t.adjustment
         FROM UNNEST($2::date[], $3::int[], $4::bool[], $5::int[], $6::int[], $7::float8[])
              AS t(day, checks, accepted, revisions, revised, adjustment)
         ON CONFLICT (instrument_token, day) DO UPDATE SET
             checks = d.checks + EXCLUDED.checks,
             last_check_at = coalesce(EXCLUDED.last_check_at, d.last_check_at),
             checked_at = coalesce(EXCLUDED.checked_at, d.checked_at),
             stale_since = CASE WHEN EXCLUDED.checked_at IS NOT NULL THEN NULL ELSE d.stale_since END,
             revisions = d.revisions + EXCLUDED.revisions,
             revised_minutes = d.revised_minutes + EXCLUDED.revised_minutes,
             adjustment = coalesce(EXCLUDED.adjustment, d.adjustment)",
    )
    .bind(super::bind_token(token))
    .bind(day)
    .bind(checks)
    .bind(accepted)
    .bind(revisions)
    .bind(revised)
    .bind(adjustment)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Whether any of `days` of `token` is suspect (stale since a later adjustment).
pub async fn any_stale(
    tx: &mut Transaction<'_, Postgres>,
    token: InstrumentToken,
    days: &[NaiveDate],
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM day_checks WHERE instrument_token = $1 AND day = ANY($2)
                        AND stale_since IS NOT NULL)",
    )
    .bind(super::bind_token(token))
    .bind(days)
    .fetch_one(&mut **tx)
    .await
}

/// Marks suspect every day of `token` with bars in `table` before `before` (an adjustment found
/// there makes their stored prices doubtful); returns how many days.
pub async fn mark_stale(
    tx: &mut Transaction<'_, Postgres>,
    token: InstrumentToken,
    table: &'static str,
    before: DateTime<Utc>,
) -> sqlx::Result<u64> {
    // The table name is one of three constants, never input.
    let sql = format!(
        "INSERT INTO day_checks AS d (instrument_token, day, stale_since)
         SELECT DISTINCT $1::bigint, (time AT TIME ZONE 'Asia/Kolkata')::date, now() FROM {table}
         WHERE instrument_token = $1 AND time < $2
         ON CONFLICT (instrument_token, day) DO UPDATE SET stale_since = now()"
    );
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(super::bind_token(token))
        .bind(before)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// Revisions found, over every instrument and day.
pub async fn total_revisions(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT coalesce(sum(revisions), 0)::bigint FROM day_checks").fetch_one(pool).await
}
