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
    universe_tokens, Scratch,
};
use crate::{config::Settings, load, queue, shutdown::Shutdown, sim, store, windows::immediate_window};

/// What to run.
pub struct RateOptions {
    pub workers: usize,
    pub limit: u32,
    pub duration: Duration,
    pub backlog: usize,
}

pub async fn run(base: Settings, opts: RateOptions) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(opts.workers > 0 && opts.limit > 0, "--workers and --limit must be at least 1");
    let id = format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let db_url = store::create_database(base.database_url.expose(), &id).await?;
    let redis = queue::connect(base.redis_url.expose()).await?;
    let scratch = Scratch { admin_url: base.database_url.expose().to_string(), db: id.clone(), ns: id.clone(), redis };
    let dir = std::env::temp_dir().join(format!("tickfill-{id}"));
    std::fs::create_dir_all(&dir)?;
    let result = run_in(&base, &db_url, &id, &dir, &opts).await;
    scratch.remove().await;
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        tracing::error!(dir = %dir.display(), "ratelimit bench failed; worker logs kept");
    }
    result
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
    let sim_opts = sim::SimOptions { universe: opts.backlog + urgent_n, ..Default::default() };
    let sim_addr = sim::spawn("127.0.0.1:0".parse()?, sim_opts, shutdown.clone()).await?;
    let sim_url = format!("http://{sim_addr}");
    let pool = store::connect(db_url, 4).await?;
    store::migrate(&pool).await?;
    let dump = load::read_source(&format!("{sim_url}/instruments")).await?;
    load::load(&pool, &dump).await?;
    let tokens: Vec<u32> = universe_tokens(&dump)?.into_iter().rev().take(opts.backlog + urgent_n).collect();
    anyhow::ensure!(tokens.len() == opts.backlog + urgent_n, "the simulator's universe is too small");
    let (bulk_tokens, urgent_tokens) = tokens.split_at(opts.backlog);

    // The backlog: a sweep's worth of gap fills for subscribed instruments, queued first.
    let mut settings = base.clone();
    settings.queue = id.to_string();
    let mut producer = queue::Producer::new(queue::connect(base.redis_url.expose()).await?, &settings);
    let long_ago = Utc::now() - Span::days(2);
    sqlx::query(
        "INSERT INTO subscriptions (instrument_token, status, subscribed_at, source)
         SELECT t, 'active', $2, 'event' FROM UNNEST($1::bigint[]) AS t",
    )
    .bind(bulk_tokens.iter().map(|t| *t as i64).collect::<Vec<_>>())
    .bind(long_ago)
    .execute(&pool)
    .await?;
    let (from, to) = immediate_window(long_ago + Span::hours(3), 60);
    let backlog: Vec<Job> = bulk_tokens
        .iter()
        .map(|t| Job::Backfill { token: *t, from, to, reason: Reason::Sweep, force: false })
        .collect();
    producer.push_many(&backlog).await?;

    let env: Vec<(String, String)> = [
        ("DATABASE_URL", db_url),
        ("REDIS_URL", base.redis_url.expose()),
        ("TICKFILL_QUEUE", id),
        ("REDIS_CHANNEL_PREFIX", id),
        ("TICKER_SERVICE_URL", &sim_url),
        ("TICKER_RATE_LIMIT", &opts.limit.to_string()),
        ("TICKER_RECONCILE", "false"),
        ("ADMIN_LISTEN", "127.0.0.1:0"),
        ("TICKFILL_SHUTDOWN_TIMEOUT", "2s"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut fleet = Fleet { exe: std::env::current_exe()?, dir: dir.to_path_buf(), env, procs: Vec::new() };
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
            instrument_token: *token,
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
