//! Operator commands: hand backfills (and cancelling them) and the per-subscription status.

use std::{collections::HashMap, io::Write, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tickfill_jobs::{Job, Reason};

use crate::{
    config::Settings,
    domain::window::{self, floor_minute, Window},
    queue::Producer,
    sweep,
};

/// Pushes a hand backfill of `[from, to)` for `token`, in chunks the ticker accepts. Each run
/// gets keys of its own: a second hand backfill of the same window is a deliberate rebuild and
/// must not be swallowed by the first one's idempotency keys.
pub async fn push_backfill(
    producer: &mut Producer,
    token: u32,
    window: Window,
    force: bool,
) -> anyhow::Result<Vec<(Window, String)>> {
    let window = (floor_minute(window.0), floor_minute(window.1));
    anyhow::ensure!(window.0 < window.1, "--from must be before --to (after rounding down to the minute)");
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut pushed = Vec::new();
    for (from, to) in window::split(window, window::MAX_CHUNK) {
        let job = Job::Backfill { token, from, to, reason: Reason::Manual, force };
        let key = format!("manual:{run}:{}", job.idempotency_key());
        let id = producer.push_as(&job, &key, None).await?;
        pushed.push(((from, to), id));
    }
    Ok(pushed)
}

/// How many of the jobs have finished for good, their rows, and how many of them died.
async fn progress(pool: &PgPool, job_ids: &[String]) -> sqlx::Result<(usize, i64, usize)> {
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

/// Draws `[####----] done/total what` over the current line of stderr; ends the line when done.
pub fn draw_progress(done: usize, total: usize, what: &str) {
    let mut err = std::io::stderr();
    let width = 30;
    let filled = done.min(total) * width / total.max(1);
    let _ = write!(err, "\r[{}{}] {done}/{total} {what}", "#".repeat(filled), "-".repeat(width - filled));
    if done >= total {
        let _ = writeln!(err);
    }
    let _ = err.flush();
}

/// Draws a progress bar on stderr until every chunk has finished; returns (rows, dead chunks).
pub async fn wait_for_backfill(pool: &PgPool, job_ids: &[String]) -> anyhow::Result<(i64, usize)> {
    loop {
        let (done, rows, dead) = progress(pool, job_ids).await?;
        let failed = if dead > 0 { format!("  {dead} failed") } else { String::new() };
        draw_progress(done, job_ids.len(), &format!("chunks  {rows} rows{failed}"));
        if done >= job_ids.len() {
            return Ok((rows, dead));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One line of `tickfill status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubscriptionStatus {
    pub instrument_token: u32,
    pub tradingsymbol: Option<String>,
    pub subscribed_at: DateTime<Utc>,
    pub newest_bar: Option<DateTime<Utc>>,
    pub newest_bar_age_s: Option<i64>,
    pub holes: usize,
    pub missing_minutes: i64,
    pub last_outcome: Option<String>,
    pub last_run_at: Option<DateTime<Utc>>,
}

/// Per active subscription: newest stored bar and its age, coverage holes in the lookback, and
/// the last run's outcome.
pub async fn status(pool: &PgPool, settings: &Settings, now: DateTime<Utc>) -> anyhow::Result<Vec<SubscriptionStatus>> {
    type Row = (i64, Option<String>, DateTime<Utc>, Option<DateTime<Utc>>, Option<String>, Option<DateTime<Utc>>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT s.instrument_token, s.tradingsymbol, s.subscribed_at,
                GREATEST((SELECT max(time) FROM minute_bars b WHERE b.instrument_token = s.instrument_token),
                         (SELECT max(time) FROM futures_bars b WHERE b.instrument_token = s.instrument_token),
                         (SELECT max(time) FROM option_bars b WHERE b.instrument_token = s.instrument_token)),
                r.outcome, r.finished_at
         FROM subscriptions s
         LEFT JOIN LATERAL (SELECT outcome, finished_at FROM backfill_runs r
                            WHERE r.instrument_token = s.instrument_token
                            ORDER BY finished_at DESC NULLS LAST LIMIT 1) r ON true
         WHERE s.status = 'active' ORDER BY s.instrument_token",
    )
    .fetch_all(pool)
    .await?;
    // Every hole counts here, however short.
    let mut strict = settings.clone();
    strict.gap_threshold = Duration::ZERO;
    strict.backfill_subscription_aware = true;
    let mut holes: HashMap<u32, (usize, i64)> = HashMap::new();
    for gap in sweep::find_gaps(pool, &strict, now).await? {
        let e = holes.entry(gap.token).or_default();
        e.0 += 1;
        e.1 += (gap.window.1 - gap.window.0).num_minutes();
    }
    Ok(rows
        .into_iter()
        .map(|(t, sym, at, newest, outcome, last)| {
            let (n, minutes) = holes.get(&(t as u32)).copied().unwrap_or_default();
            SubscriptionStatus {
                instrument_token: t as u32,
                tradingsymbol: sym,
                subscribed_at: at,
                newest_bar: newest,
                newest_bar_age_s: newest.map(|b| (now - b).num_seconds()),
                holes: n,
                missing_minutes: minutes,
                last_outcome: outcome,
                last_run_at: last,
            }
        })
        .collect())
}
