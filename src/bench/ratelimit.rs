//! `tickfill bench ratelimit`: worker processes sharing one budget against a simulator, behind a
//! bulk backlog, with urgent subscriptions arriving at one per second.
//!
//! Prints the simulator's `peak_rps` (most requests in any one-second window, all of the run), the
//! mean rate over the measured window, and the p99 of urgent jobs' wait (the bridge's receipt to
//! the committed run row).

use std::time::{Duration, Instant};

use chrono::{Duration as Span, Utc};
use serde_json::json;
use tickfill_jobs::{EventType, Job, Reason, SubscriptionEvent};

use super::{
    percentile,
    procs::{wait_for, Fleet},
    sim_and_store, with_processes,
};
use crate::{config::Settings, domain::window::immediate_window, queue, shutdown::Shutdown};

/// What to run.
pub struct RateOptions {
    pub workers: usize,
    pub limit: u32,
    pub duration: Duration,
    pub backlog: usize,
}

pub async fn run(base: Settings, opts: RateOptions) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(opts.workers > 0 && opts.limit > 0, "--workers and --limit must be at least 1");
    let (base, opts) = (&base, &opts);
    with_processes(base, "ratelimit", |db_url, id, dir| async move { run_in(base, &db_url, &id, &dir, opts).await })
        .await
}

async fn run_in(
    base: &Settings,
    db_url: &str,
    id: &str,
    dir: &std::path::Path,
    opts: &RateOptions,
) -> anyhow::Result<serde_json::Value> {
    let urgent_n = opts.duration.as_secs().max(1) as usize;
    let shutdown = Shutdown::new();
    let (sim_url, pool, tokens) = sim_and_store(db_url, opts.backlog + urgent_n, 4, &shutdown).await?;
    let (bulk_tokens, urgent_tokens) = tokens.split_at(opts.backlog);

    // The backlog: a sweep's worth of gap fills for subscribed instruments, queued first.
    let mut settings = base.clone();
    settings.queue.name = id.to_string();
    let mut producer = queue::Producer::new(queue::connect(&base.redis).await?, &settings);
    let long_ago = Utc::now() - Span::days(2);
    super::subscribe_all(&pool, bulk_tokens, long_ago).await?;
    let crate::domain::window::Window { from, to } = immediate_window(long_ago + Span::hours(3), 60);
    let backlog: Vec<Job> = bulk_tokens
        .iter()
        .map(|t| Job::Backfill { token: sim_token(*t), from, to, reason: Reason::Sweep, force: false })
        .collect();
    producer.push_many(&backlog).await?;

    let limit = opts.limit.to_string();
    let extra =
        [("TICKER_RATE_LIMIT", limit.as_str()), ("TICKER_RECONCILE", "false"), ("TICKFILL_SHUTDOWN_TIMEOUT", "2s")];
    let mut fleet = Fleet::new(dir, db_url, &base.redis.target, id, &sim_url, &extra)?;
    for _ in 0..opts.workers {
        fleet.add("worker", &[])?;
    }
    let http = reqwest::Client::new();
    let requests = || async {
        let v: serde_json::Value = http.get(format!("{sim_url}/stats")).send().await?.json().await?;
        anyhow::Ok(v)
    };
    wait_for(30, "the workers to start on the backlog", || async {
        requests().await.is_ok_and(|s| s["history_requests"].as_u64().unwrap_or(0) >= opts.limit as u64)
    })
    .await?;

    // The measured window: urgent subscriptions at one per second.
    let before = requests().await?["history_requests"].as_u64().unwrap_or(0);
    let started = Instant::now();
    for (i, token) in urgent_tokens.iter().enumerate() {
        tokio::time::sleep_until((started + Duration::from_secs(i as u64)).into()).await;
        let event = SubscriptionEvent {
            event_type: EventType::SubscriptionCreated,
            instrument_token: sim_token(*token),
            tradingsymbol: None,
            segment: None,
            requested_mode: Some("full".into()),
            account_id: None,
            published_at: Some(Utc::now().timestamp()),
            received_ms: Utc::now().timestamp_millis(),
        };
        producer.push(&Job::Subscribed { event }).await?;
    }
    tokio::time::sleep_until((started + opts.duration).into()).await;
    let elapsed = started.elapsed().as_secs_f64();
    let after = requests().await?["history_requests"].as_u64().unwrap_or(0);
    // The last urgent jobs may still be finishing.
    let urgent_done = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM backfill_runs WHERE reason = 'subscribe'")
            .fetch_one(&pool)
            .await
            .is_ok_and(|n| n as usize >= urgent_tokens.len())
    };
    wait_for(60, "the urgent jobs to finish", urgent_done).await?;
    let stats = requests().await?;
    fleet.stop_all(Duration::from_secs(5));
    let waits: Vec<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM finished_at - requested_at)::float8 * 1000 FROM backfill_runs
         WHERE reason = 'subscribe' AND outcome = 'stored' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await?;
    let bulk_done: i64 =
        sqlx::query_scalar("SELECT count(*) FROM backfill_runs WHERE reason = 'sweep' AND outcome = 'stored'")
            .fetch_one(&pool)
            .await?;
    shutdown.trigger();
    pool.close().await;
    anyhow::ensure!(waits.len() == urgent_tokens.len(), "only {} of {} urgent jobs stored", waits.len(), urgent_n);
    let round = |x: f64| (x * 100.0).round() / 100.0;
    Ok(json!({
        "peak_rps": stats["peak_rps"],
        "mean_rps": round((after - before) as f64 / elapsed),
        "urgent_p50_ms": round(percentile(&waits, 50.0)),
        "urgent_p99_ms": round(percentile(&waits, 99.0)),
        "urgent_max_ms": round(waits.last().copied().unwrap_or(f64::NAN)),
        "urgent_jobs": waits.len(),
        "bulk_jobs_done": bulk_done,
        "backlog": opts.backlog,
        "limit_rps": opts.limit,
        "workers": opts.workers,
        "by_status": stats["by_status"],
    }))
}

/// A simulator token as the queue contract carries it (the simulator's tokens are all valid).
fn sim_token(t: u32) -> tickfill_jobs::InstrumentToken {
    tickfill_jobs::InstrumentToken::new(t.into()).expect("a simulator token")
}
