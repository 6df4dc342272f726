//! `tickfill bench throughput`: subscription events for N instruments through bridge, queue,
//! worker processes and store with the rate limit lifted, against two floors measured in the
//! same run on this machine:
//!
//! - `redis_floor_per_s`: a bare Redis queue — LPUSH then RPOP of as many payloads of the size of
//!   our jobs, one round trip each, on one connection;
//! - `upsert_floor_rows_per_s`: the same rows written in the same per-job transactions (bars,
//!   coverage and run row, one transaction per instrument) over as many connections as the
//!   workers run jobs at once, with no queue and no HTTP.
//!
//! `worker_rss_mb` is the largest resident set of any worker process, sampled every 100 ms.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::Mutex;

use super::{
    procs::{self, wait_for, Fleet},
    sim_and_store, with_processes,
};
use crate::{
    config::Settings,
    domain::{market::Candle, window::Window},
    queue,
    shutdown::Shutdown,
    ticker::TickerClient,
};

/// What to run.
pub struct ThroughputOptions {
    pub instruments: usize,
    pub workers: usize,
    /// `TICKFILL_CONCURRENCY` of each worker.
    pub concurrency: usize,
}

pub async fn run(base: Settings, opts: ThroughputOptions) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(opts.instruments > 0 && opts.workers > 0, "--instruments and --workers must be at least 1");
    let (base, opts) = (&base, &opts);
    with_processes(base, "throughput", |db_url, id, dir| async move { run_in(base, &db_url, &id, &dir, opts).await })
        .await
}

/// One instrument's write in the upsert floor: token, table, window, candles.
type FloorJob = (crate::worker::BackfillCtx, Window, Vec<Candle>);

async fn run_in(
    base: &Settings,
    db_url: &str,
    id: &str,
    dir: &std::path::Path,
    opts: &ThroughputOptions,
) -> anyhow::Result<serde_json::Value> {
    let n = opts.instruments;
    // A warm-up round first, on instruments of its own: pools, prepared statements and HTTP
    // connections are made before the clock starts, as in a process that has been running.
    let warm = 2 * opts.workers * opts.concurrency;
    let shutdown = Shutdown::new();
    let connections = (opts.workers * opts.concurrency) as u32 + 2;
    let (sim_url, pool, mut tokens) = sim_and_store(db_url, n + warm, connections, &shutdown).await?;
    let warmup = tokens.split_off(n);
    let measured: Vec<i64> = tokens.iter().map(|t| *t as i64).collect();

    let concurrency = opts.concurrency.to_string();
    let extra = [
        ("TICKER_RATE_LIMIT", "0"),
        ("TICKER_RECONCILE", "false"),
        ("TICKFILL_CONCURRENCY", concurrency.as_str()),
        ("TICKFILL_SHUTDOWN_TIMEOUT", "2s"),
        ("LOG_LEVEL", "warn"),
    ];
    let mut fleet = Fleet::new(dir, db_url, &base.redis.target, id, &sim_url, &extra)?;
    fleet.add("bridge", &[])?;
    for _ in 0..opts.workers {
        fleet.add("worker", &[])?;
    }
    let mut conn = queue::connect(&base.redis).await?;
    let channel = format!("{id}:events");
    wait_for(30, "the bridge to subscribe", || {
        let (mut conn, channel) = (conn.clone(), channel.clone());
        async move { queue::subscribers(&mut conn, &channel).await.unwrap_or(0) >= 1 }
    })
    .await?;
    let publish_all = |tokens: &[u32]| {
        let mut pipe = redis::pipe();
        for token in tokens {
            let msg = json!({"event_type": "subscription_created", "instrument_token": token,
                             "metadata": {"account_id": "bench"}, "timestamp": Utc::now().timestamp()});
            pipe.cmd("PUBLISH").arg(&channel).arg(msg.to_string()).ignore();
        }
        pipe
    };
    publish_all(&warmup).query_async::<()>(&mut conn).await?;
    let stored = "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'";
    wait_for(60, "the warm-up backfills", || async {
        sqlx::query_scalar::<_, i64>(stored).fetch_one(&pool).await.is_ok_and(|c| c as usize >= warm)
    })
    .await?;
    let pids = fleet.pids("worker");
    let cpu_before: f64 = pids.iter().filter_map(|p| procs::cpu_s(*p)).sum();
    let own_before = procs::cpu_s(std::process::id()).unwrap_or(0.0);
    let bridge_before: f64 = fleet.pids("bridge").iter().filter_map(|p| procs::cpu_s(*p)).sum();

    // The pipeline: every event published at once; done when every backfill is committed.
    let started = Utc::now();
    let clock = Instant::now();
    publish_all(&tokens).query_async::<()>(&mut conn).await?;
    let mut rss_max: f64 = 0.0;
    loop {
        for pid in &pids {
            rss_max = rss_max.max(procs::memory_mb(*pid, "VmRSS").unwrap_or(0.0));
        }
        let done: i64 = sqlx::query_scalar::<_, i64>(stored).fetch_one(&pool).await? - warm as i64;
        if done as usize >= n {
            break;
        }
        anyhow::ensure!(clock.elapsed() < Duration::from_secs(300), "only {done} of {n} backfills in 300 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (rows, last): (i64, DateTime<Utc>) = sqlx::query_as(
        "SELECT sum(rows)::bigint, max(finished_at) FROM backfill_runs
         WHERE outcome = 'stored' AND instrument_token = ANY($1)",
    )
    .bind(&measured)
    .fetch_one(&pool)
    .await?;
    for pid in &pids {
        rss_max = rss_max.max(procs::memory_mb(*pid, "VmRSS").unwrap_or(0.0));
    }
    let worker_cpu: f64 = pids.iter().filter_map(|p| procs::cpu_s(*p)).sum::<f64>() - cpu_before;
    let bridge_cpu: f64 = fleet.pids("bridge").iter().filter_map(|p| procs::cpu_s(*p)).sum::<f64>() - bridge_before;
    // This process meanwhile: the simulator answering the workers, and the polling.
    let sim_cpu = procs::cpu_s(std::process::id()).unwrap_or(0.0) - own_before;
    fleet.stop_all(Duration::from_secs(5));
    let pipeline_s = (last - started).num_microseconds().unwrap_or(1) as f64 / 1e6;
    let windows: Vec<(i64, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT instrument_token, window_from, window_to FROM coverage WHERE instrument_token = ANY($1)",
    )
    .bind(&measured)
    .fetch_all(&pool)
    .await?;

    // Floor 1: a bare Redis queue of as many payloads of our jobs' size.
    let payload = "x".repeat(redis_payload_size(&mut conn, id).await.unwrap_or(400));
    let key = format!("{id}:floor");
    let t = Instant::now();
    for _ in 0..n {
        let _: i64 = redis::cmd("LPUSH").arg(&key).arg(&payload).query_async(&mut conn).await?;
    }
    for _ in 0..n {
        let _: Option<String> = redis::cmd("RPOP").arg(&key).query_async(&mut conn).await?;
    }
    let redis_floor = n as f64 / t.elapsed().as_secs_f64();

    // Floor 2: the same answers written by the worker's own write (bars, rollups, coverage,
    // suspects, days, run row: `worker::store_answer`), the same per-instrument transactions, no
    // queue and no HTTP.
    let mut settings = base.clone();
    settings.ticker.url = sim_url.clone();
    settings.ticker.rate_limit = 0;
    let client = TickerClient::new(&settings)?;
    let mut work: Vec<FloorJob> = Vec::with_capacity(n);
    for (token, from, to) in &windows {
        let token = *token as u32;
        let ctx = super::answer_ctx(&pool, super::tok(token)).await?;
        let window = Window::new(*from, *to);
        let candles = client.history(super::tok(token), window, Default::default()).await?;
        work.push((ctx, window, candles));
    }
    super::clear_written(&pool).await?;
    let expected: usize = work.iter().map(|w| w.2.len()).sum();
    // The workers' pools were open before their run; so are the floor's connections.
    let mut warm = Vec::new();
    for _ in 0..opts.workers * opts.concurrency {
        warm.push(pool.acquire().await?);
    }
    drop(warm);
    let queue = Arc::new(Mutex::new(work));
    let settings = Arc::new(settings);
    let t = Instant::now();
    let writers: Vec<_> = (0..opts.workers * opts.concurrency)
        .map(|i| {
            let (queue, pool, settings) = (queue.clone(), pool.clone(), settings.clone());
            tokio::spawn(async move {
                let mut written = 0u64;
                loop {
                    let Some((ctx, window, candles)) = queue.lock().await.pop() else { break };
                    let job_id = format!("floor-{i}-{}", ctx.token);
                    written += crate::worker::store_answer(&pool, &settings, &ctx, window, candles, &job_id).await?;
                }
                anyhow::Ok(written)
            })
        })
        .collect();
    let mut floor_rows = 0u64;
    for w in writers {
        floor_rows += w.await??;
    }
    let floor_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(floor_rows as usize == expected, "the floor wrote {floor_rows} of {expected} rows");
    shutdown.trigger();
    pool.close().await;

    let rows_per_s = rows as f64 / pipeline_s;
    let upsert_floor = floor_rows as f64 / floor_s;
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    Ok(json!({
        "instruments": n,
        "workers": opts.workers,
        "concurrency": opts.concurrency,
        "rows": rows,
        "seconds": r1(pipeline_s),
        "backfills_per_s": r1(n as f64 / pipeline_s),
        "rows_per_s": rows_per_s.round(),
        "redis_floor_per_s": redis_floor.round(),
        "upsert_floor_rows_per_s": upsert_floor.round(),
        "ratio_rows": (rows_per_s / upsert_floor * 100.0).round() / 100.0,
        "worker_rss_mb": r1(rss_max),
        "worker_cpu_s": (worker_cpu * 100.0).round() / 100.0,
        "bridge_cpu_s": (bridge_cpu * 100.0).round() / 100.0,
        "simulator_cpu_s": (sim_cpu * 100.0).round() / 100.0,
    }))
}

/// The stored size of one of the run's jobs (its payload in the urgent lane), if any is left.
async fn redis_payload_size(conn: &mut crate::queue::RedisConn, ns: &str) -> Option<usize> {
    let key = crate::queue::keys::LaneKeys::new(ns, tickfill_jobs::Lane::Urgent).data();
    let sizes: HashMap<String, Vec<u8>> = redis::cmd("HGETALL").arg(&key).query_async(conn).await.ok()?;
    let total: usize = sizes.values().map(Vec::len).sum();
    (!sizes.is_empty()).then(|| total / sizes.len())
}
