//! `tickfill bench oversize`: a worker process against a ticker whose every history answer is a
//! 200 of `body_mib` MiB, streamed without a length (as a broken upstream or proxy might send).
//!
//! Each answer must be refused as soon as it passes the most its window can legally hold, so the
//! worker never holds one: prints the worker's resident set before the jobs (`idle_rss_mb`) and
//! its peak while they run (`max_rss_mb`, the largest `VmHWM` read), how many jobs were refused
//! and how many bars and coverage rows were stored (0 is the only right answer).

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use tickfill_jobs::{InstrumentToken, Job, Reason};

use super::{
    procs::{self, Fleet},
    sim_and_store_with, with_processes,
};
use crate::{config::Settings, domain::window::immediate_window, queue, shutdown::Shutdown, sim};

pub struct OversizeOptions {
    pub body_mib: u64,
    pub jobs: usize,
    pub concurrency: usize,
}

pub async fn run(base: Settings, opts: OversizeOptions) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(opts.body_mib > 0 && opts.jobs > 0, "--body-mib and --jobs must be at least 1");
    let (base, opts) = (&base, &opts);
    with_processes(base, "oversize", |db_url, id, dir| async move { run_in(base, &db_url, &id, &dir, opts).await })
        .await
}

async fn run_in(
    base: &Settings,
    db_url: &str,
    id: &str,
    dir: &std::path::Path,
    opts: &OversizeOptions,
) -> anyhow::Result<serde_json::Value> {
    let shutdown = Shutdown::new();
    let sim_opts = sim::SimOptions { universe: opts.jobs, oversize_mib: opts.body_mib, ..Default::default() };
    let (sim_url, pool, tokens) = sim_and_store_with(db_url, sim_opts, 2, &shutdown).await?;

    let concurrency = opts.concurrency.to_string();
    let extra = [
        ("TICKER_RATE_LIMIT", "0"),
        ("TICKER_RECONCILE", "false"),
        ("TICKFILL_CONCURRENCY", concurrency.as_str()),
        ("TICKFILL_SHUTDOWN_TIMEOUT", "2s"),
    ];
    let mut fleet = Fleet::new(dir, db_url, &base.redis.target, id, &sim_url, &extra)?;
    fleet.add("worker", &[])?;
    let pid = *fleet.pids("worker").first().ok_or_else(|| anyhow::anyhow!("the worker did not start"))?;
    // Started and connected well within this; a worker that failed to start ends the run below.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let idle = procs::memory_mb(pid, "VmRSS").unwrap_or(0.0);

    let mut settings = base.clone();
    settings.queue.name = id.to_string();
    let mut producer = queue::Producer::new(queue::connect(&base.redis).await?, &settings);
    let crate::domain::window::Window { from, to } = immediate_window(Utc::now(), 120);
    let jobs: Vec<Job> = tokens
        .iter()
        .filter_map(|t| InstrumentToken::new((*t).into()).ok())
        .map(|token| Job::Backfill { token, from, to, reason: Reason::Manual, force: true })
        .collect();
    let started = Instant::now();
    producer.push_many(&jobs).await?;
    let dead = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM backfill_runs WHERE outcome = 'dead'").fetch_one(&pool).await
    };
    let mut max_rss: f64 = 0.0;
    while (dead().await? as usize) < jobs.len() {
        max_rss = max_rss.max(procs::memory_mb(pid, "VmHWM").unwrap_or(0.0));
        anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "the jobs did not all end within 120 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    max_rss = max_rss.max(procs::memory_mb(pid, "VmHWM").unwrap_or(0.0));
    let refused: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM backfill_runs WHERE outcome = 'dead' AND error LIKE '%refused unread (TICKER_MAX_BODY)%'",
    )
    .fetch_one(&pool)
    .await?;
    let bars: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM minute_bars) + (SELECT count(*) FROM futures_bars) + (SELECT count(*) FROM option_bars)",
    )
    .fetch_one(&pool)
    .await?;
    let coverage: i64 = sqlx::query_scalar("SELECT count(*) FROM coverage").fetch_one(&pool).await?;
    let served: serde_json::Value = reqwest::get(format!("{sim_url}/stats")).await?.json().await?;
    fleet.stop_all(Duration::from_secs(5));
    shutdown.trigger();
    pool.close().await;
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    Ok(json!({
        "body_mib": opts.body_mib,
        "jobs": jobs.len(),
        "concurrency": opts.concurrency,
        "refused": refused,
        "history_requests": served["history_requests"],
        "bars_stored": bars,
        "coverage_rows": coverage,
        "idle_rss_mb": r1(idle),
        "max_rss_mb": r1(max_rss),
        "seconds": (seconds * 100.0).round() / 100.0,
    }))
}
