//! `tickfill bench console`: the job explorer over a large deployment. `--dead` dead jobs in
//! Redis (spread over 1,000 instruments) and `--runs` run rows in PostgreSQL; then, repeated, the
//! explorer's filter and count of one instrument's jobs (dead and finished) beside the raw read of
//! the same keys and rows (every dead id and payload, the same count of runs: what the filter
//! cannot do without), and a bulk retry of 1,000 matched dead jobs.
//!
//! Prints `filter_p50_ms`, `filter_p99_ms`, `raw_p99_ms`, `ratio` (filter p99 over raw p99) and
//! `bulk_retry_1000_ms`.

use std::time::Instant;

use chrono::{Duration as Span, Utc};
use serde_json::json;
use tickfill_jobs::{Envelope, InstrumentToken, Job, Lane, Reason};

use super::{percentile, with_processes};
use crate::{
    config::Settings,
    domain::filter::{JobFilter, JobState},
    explore, queue,
    queue::keys::LaneKeys,
    store,
};

/// How many instruments the jobs and runs are spread over.
const INSTRUMENTS: u32 = 1000;
/// The first of their tokens.
const FIRST: u32 = 20_000_001;
/// How often each figure is measured.
const ROUNDS: usize = 30;

pub struct ConsoleOptions {
    pub dead: usize,
    pub runs: usize,
}

pub async fn run(base: Settings, opts: ConsoleOptions) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(opts.dead >= 1000, "--dead must be at least 1000 (the bulk retry takes 1,000)");
    let (base, opts) = (&base, &opts);
    with_processes(base, "console", |db_url, ns, _dir| async move { run_in(base, &db_url, &ns, opts).await }).await
}

async fn run_in(base: &Settings, db_url: &str, ns: &str, opts: &ConsoleOptions) -> anyhow::Result<serde_json::Value> {
    let pool = store::connect(db_url, 4).await?;
    store::migrate(&pool, &Default::default()).await?;
    let mut conn = queue::connect(&base.redis).await?;
    let mut settings = base.clone();
    settings.queue.name = ns.to_string();

    // The dead set: backfills of unknown instruments, as the worker leaves them.
    let k = LaneKeys::new(ns, Lane::Bulk);
    let started = Instant::now();
    let to = crate::domain::window::floor_minute(Utc::now());
    let done_at = Utc::now().timestamp();
    for chunk in (0..opts.dead).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            let token = FIRST + (*i as u32 % INSTRUMENTS);
            let job = Job::Backfill {
                token: InstrumentToken::new(token.into()).expect("a token"),
                from: to - Span::hours(1) - Span::minutes(*i as i64 % 600),
                to,
                reason: Reason::Sweep,
                force: false,
            };
            let id = ulid::Ulid::new().to_string();
            let payload = serde_json::to_string(&Envelope::new(&job))?;
            let result = format!("{{\"Err\":\"AbortError: unknown instrument {token}: not in instruments\"}}");
            pipe.hset(k.data(), &id, payload).ignore();
            pipe.sadd(k.dead(), &id).ignore();
            pipe.hset_multiple(
                k.meta(&id),
                &[("attempts", "1".to_string()), ("result", result), ("done_at", done_at.to_string())],
            )
            .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
    }
    let seeded_dead_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO backfill_runs (job_id, kind, instrument_token, reason, window_from, window_to, requested_at,
                                    started_at, finished_at, attempts, rows, outcome)
         SELECT 'bench-' || g, 'backfill', $2 + g % $3, 'sweep', now() - interval '2 hours', now() - interval '1 hour',
                now() - g * interval '1 second', now() - g * interval '1 second', now() - g * interval '1 second',
                1, 60, 'stored'
         FROM generate_series(1, $1) AS g",
    )
    .bind(opts.runs as i64)
    .bind(FIRST as i64)
    .bind(INSTRUMENTS as i64)
    .execute(&pool)
    .await?;
    sqlx::query("ANALYZE backfill_runs").execute(&pool).await?;
    let seeded_runs_s = started.elapsed().as_secs_f64();

    // One instrument's jobs, through the explorer, and the raw reads it cannot do without.
    let token = FIRST + 7;
    let filter = JobFilter { token: Some(super::tok(token)), ..Default::default() };
    let mut filtered = Vec::with_capacity(ROUNDS);
    let mut raw = Vec::with_capacity(ROUNDS);
    let mut matched = 0;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let page = explore::list(&mut conn, ns, Some(&pool), &filter, explore::DEFAULT_LIMIT, None).await?;
        filtered.push(t.elapsed().as_secs_f64() * 1000.0);
        matched = page.matched;

        let t = Instant::now();
        let ids: Vec<String> = redis::cmd("SMEMBERS").arg(k.dead()).query_async(&mut conn).await?;
        let mut bytes = 0usize;
        for chunk in ids.chunks(1000) {
            let payloads: Vec<Option<Vec<u8>>> =
                redis::cmd("HMGET").arg(k.data()).arg(chunk).query_async(&mut conn).await?;
            bytes += payloads.iter().flatten().map(Vec::len).sum::<usize>();
        }
        let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM backfill_runs WHERE instrument_token = $1")
            .bind(token as i64)
            .fetch_one(&pool)
            .await?;
        raw.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(bytes > 0 && runs > 0, "the raw read found nothing");
    }
    filtered.sort_by(f64::total_cmp);
    raw.sort_by(f64::total_cmp);
    let per_token_dead = opts.dead.div_ceil(INSTRUMENTS as usize) as u64;
    let per_token_runs = (opts.runs / INSTRUMENTS as usize) as u64;
    anyhow::ensure!(
        matched >= per_token_dead - 1 + per_token_runs,
        "the filter matched {matched}, want about {} dead and {per_token_runs} runs",
        per_token_dead
    );

    // A count of every finished run, for scale (no token to narrow it).
    let every = JobFilter { state: Some(JobState::Finished), ..Default::default() };
    let t = Instant::now();
    let all_runs = explore::list(&mut conn, ns, Some(&pool), &every, explore::DEFAULT_LIMIT, None).await?.matched;
    let count_all_runs_ms = t.elapsed().as_secs_f64() * 1000.0;

    // A bulk retry of 1,000 matched dead jobs (the oldest, by the default cap).
    let mut producer = queue::Producer::new(conn.clone(), &settings);
    let retry =
        JobFilter { error: Some("unknown instrument".into()), state: Some(JobState::Dead), ..Default::default() };
    let t = Instant::now();
    let answer =
        explore::bulk(&mut conn, ns, Some(&pool), &mut producer, explore::Action::Retry, &retry, false, 1000, false)
            .await?;
    let bulk_ms = t.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(answer.acted == Some(1000), "the bulk retry acted on {:?} of 1000", answer.acted);
    pool.close().await;

    let round = |x: f64| (x * 100.0).round() / 100.0;
    let raw_p99 = percentile(&raw, 99.0);
    let filter_p99 = percentile(&filtered, 99.0);
    Ok(json!({
        "filter_p50_ms": round(percentile(&filtered, 50.0)),
        "filter_p99_ms": round(filter_p99),
        "raw_p50_ms": round(percentile(&raw, 50.0)),
        "raw_p99_ms": round(raw_p99),
        "ratio": round(filter_p99 / raw_p99),
        "bulk_retry_1000_ms": round(bulk_ms),
        "matched": matched,
        "count_all_runs_ms": round(count_all_runs_ms),
        "all_runs": all_runs,
        "dead": opts.dead,
        "runs": opts.runs,
        "rounds": ROUNDS,
        "seeded_dead_s": round(seeded_dead_s),
        "seeded_runs_s": round(seeded_runs_s),
    }))
}
