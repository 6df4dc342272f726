//! `tickfill bench …`: measurements that start what they measure (simulator, bridge, workers, a
//! scratch database and queue namespace), clean up after themselves and print one JSON line.

use std::{collections::HashMap, time::Duration};

use anyhow::Context;
use chrono::{DateTime, Utc};
use tickfill_jobs::InstrumentToken;

use crate::{bridge, config::Settings, domain::window::Window, load, queue, shutdown::Shutdown, sim, store, worker};

pub mod accounts;
pub mod chaos;
pub mod console;
pub mod ha;
pub mod instruments;
pub mod oversize;
mod procs;
pub mod ratelimit;
pub mod rollups;
pub mod throughput;
pub mod traced;
pub mod truth;

/// A simulator's token as the store and the ticker client take it (the simulator serves only
/// valid ones).
pub(crate) fn tok(t: u32) -> InstrumentToken {
    InstrumentToken::new(u64::from(t)).expect("the simulator's tokens are 1 or more")
}

/// Tokens of the simulator's universe in serving order, for a universe of at least `n`.
pub(crate) fn universe_tokens(csv: &[u8]) -> anyhow::Result<Vec<InstrumentToken>> {
    let (rows, _) = load::parse_dump(csv)?;
    Ok(rows.iter().map(|r| r.instrument_token).collect())
}

/// Scratch resources of one bench run, removed by [`Scratch::remove`].
pub(crate) struct Scratch {
    pub admin_url: String,
    pub db: String,
    pub ns: String,
    pub redis: crate::queue::RedisConn,
}

impl Scratch {
    pub async fn remove(mut self) {
        if let Err(e) = store::drop_database(&self.admin_url, &self.db).await {
            tracing::warn!(error = %e, "failed to drop the scratch database");
        }
        let _ = queue::delete_namespace(&mut self.redis, &self.ns).await;
    }
}

/// Runs a bench that starts processes of its own (`procs::Fleet`) in a scratch database and
/// queue namespace (`run(database_url, namespace, log_dir)`), then removes them; the processes'
/// logs are kept when the bench failed.
pub(crate) async fn with_processes<F, Fut>(base: &Settings, bench: &str, run: F) -> anyhow::Result<serde_json::Value>
where
    F: FnOnce(String, String, std::path::PathBuf) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<serde_json::Value>>,
{
    let id = format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let db_url = store::create_database(base.store.database_url.expose(), &id).await?;
    let redis = queue::connect(&base.redis).await?;
    let scratch =
        Scratch { admin_url: base.store.database_url.expose().to_string(), db: id.clone(), ns: id.clone(), redis };
    let dir = std::env::temp_dir().join(format!("tickfill-{id}"));
    std::fs::create_dir_all(&dir)?;
    let result = run(db_url, id, dir.clone()).await;
    scratch.remove().await;
    if result.is_ok() && std::env::var_os("KEEPLOGS").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        tracing::error!(dir = %dir.display(), "{bench} bench failed; the processes' logs are kept");
    }
    result
}

/// A simulator with `n` synthetic equities on a free port, and a migrated store in `db_url`
/// with its universe loaded; returns the simulator's URL, the pool and the `n` synthetic tokens
/// (one table, 120 rows per window each).
pub(crate) async fn sim_and_store(
    db_url: &str,
    n: usize,
    connections: u32,
    shutdown: &Shutdown,
) -> anyhow::Result<(String, sqlx::PgPool, Vec<u32>)> {
    sim_and_store_with(db_url, sim::SimOptions { universe: n, ..Default::default() }, connections, shutdown).await
}

/// [`sim_and_store`] with a simulator of these options (`opts.universe` synthetic equities).
pub(crate) async fn sim_and_store_with(
    db_url: &str,
    opts: sim::SimOptions,
    connections: u32,
    shutdown: &Shutdown,
) -> anyhow::Result<(String, sqlx::PgPool, Vec<u32>)> {
    let n = opts.universe;
    let sim_url = format!("http://{}", sim::spawn("127.0.0.1:0".parse()?, opts, shutdown.clone()).await?);
    let pool = store::connect(db_url, connections).await?;
    store::migrate(&pool, &Default::default()).await?;
    let dump = load::read_source(&format!("{sim_url}/instruments")).await?;
    load::load(&pool, &dump).await?;
    // The synthetic equities are the end of the universe.
    let tokens: Vec<u32> = universe_tokens(&dump)?.into_iter().rev().take(n).map(InstrumentToken::get).collect();
    anyhow::ensure!(tokens.len() == n, "the simulator's universe has only {} synthetic instruments", tokens.len());
    Ok((sim_url, pool, tokens))
}

/// Records `tokens` as subscribed (by events) since `at`, as a bench's backlog wants them.
pub(crate) async fn subscribe_all(pool: &sqlx::PgPool, tokens: &[u32], at: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO subscriptions (instrument_token, status, subscribed_at, source)
         SELECT t, 'active', $2, 'event' FROM UNNEST($1::bigint[]) AS t",
    )
    .bind(tokens.iter().map(|t| i64::from(*t)).collect::<Vec<_>>())
    .bind(at)
    .execute(pool)
    .await
    .map(|_| ())
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `bench latency`: publish one subscription event per instrument for `events` distinct
/// instruments at `rate` per second (rate limit lifted) and measure PUBLISH → committed rows.
pub async fn latency(base: Settings, events: usize, rate: f64) -> anyhow::Result<serde_json::Value> {
    let id = format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let db_url = store::create_database(base.store.database_url.expose(), &id).await?;
    let redis = queue::connect(&base.redis).await?;
    let scratch =
        Scratch { admin_url: base.store.database_url.expose().to_string(), db: id.clone(), ns: id.clone(), redis };
    let result = latency_in(&base, &db_url, &id, events, rate).await;
    scratch.remove().await;
    result
}

async fn latency_in(
    base: &Settings,
    db_url: &str,
    id: &str,
    events: usize,
    rate: f64,
) -> anyhow::Result<serde_json::Value> {
    let shutdown = Shutdown::new();
    let opts = sim::SimOptions { universe: events, ..Default::default() };
    let sim_addr = sim::spawn("127.0.0.1:0".parse()?, opts, shutdown.clone()).await?;
    let mut settings = base.clone();
    settings.store.database_url = crate::config::Secret::new(db_url);
    settings.queue.name = id.to_string();
    settings.events.channel_prefix = id.to_string();
    settings.ticker.url = format!("http://{sim_addr}");
    settings.ticker.rate_limit = 0;

    let pool = store::connect(db_url, 4).await?;
    store::migrate(&pool, &settings.store.timescale).await?;
    let dump = load::read_source(&format!("{}/instruments", settings.ticker.url)).await?;
    load::load(&pool, &dump).await?;
    let tokens: Vec<u32> = universe_tokens(&dump)?.into_iter().take(events).map(InstrumentToken::get).collect();
    anyhow::ensure!(tokens.len() == events, "the simulator's universe has only {} instruments", tokens.len());

    let state = worker::build_state(settings.clone(), None).await?;
    let bridge_task = tokio::spawn(bridge::run(settings.clone(), shutdown.clone()));
    let worker_task = tokio::spawn(worker::run(state, shutdown.clone()));
    let mut conn = queue::connect(&settings.redis).await?;
    let channel = queue::keys::events_channel(&settings.events.channel_prefix);
    let ready = tokio::time::timeout(Duration::from_secs(15), async {
        while queue::subscribers(&mut conn, &channel).await.unwrap_or(0) < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    anyhow::ensure!(ready.is_ok(), "the bridge did not subscribe within 15 s");
    // Let the workers register before the first event, so start-up is not measured.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let gap = Duration::from_secs_f64(1.0 / rate);
    let mut published: HashMap<u32, DateTime<Utc>> = HashMap::new();
    let mut ticker = tokio::time::interval(gap);
    for token in &tokens {
        ticker.tick().await;
        let msg = serde_json::json!({
            "event_type": "subscription_created", "instrument_token": token,
            "metadata": {"account_id": "bench"}, "timestamp": Utc::now().timestamp(),
        });
        published.insert(*token, Utc::now());
        let _: i64 = redis::cmd("PUBLISH").arg(&channel).arg(msg.to_string()).query_async(&mut conn).await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    type Row = (i64, DateTime<Utc>, DateTime<Utc>, DateTime<Utc>);
    let rows: Vec<Row> = loop {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT instrument_token, finished_at, requested_at, started_at FROM backfill_runs
             WHERE outcome = 'stored' AND reason = 'subscribe'",
        )
        .fetch_all(&pool)
        .await?;
        if rows.len() >= events || tokio::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let direct = direct_baseline(&settings, &pool, &tokens[..tokens.len().min(100)], gap).await?;
    shutdown.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let _ = bridge_task.await;
        let _ = worker_task.await;
    })
    .await;
    pool.close().await;
    anyhow::ensure!(rows.len() >= events, "only {} of {events} backfills committed within 60 s", rows.len());
    let ms = |a: DateTime<Utc>, b: DateTime<Utc>| (b - a).num_microseconds().unwrap_or(0) as f64 / 1000.0;
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v
    };
    let lat = sorted(rows.iter().filter_map(|r| published.get(&(r.0 as u32)).map(|p| ms(*p, r.1))).collect());
    // Where the time goes: publish → bridge receipt, receipt → job start, job start → commit.
    let bridge = sorted(rows.iter().filter_map(|r| published.get(&(r.0 as u32)).map(|p| ms(*p, r.2))).collect());
    let queue = sorted(rows.iter().map(|r| ms(r.2, r.3)).collect());
    let work = sorted(rows.iter().map(|r| ms(r.3, r.1)).collect());
    let first = published.values().min().context("no events")?;
    let last = rows.iter().map(|r| r.1).max().context("no rows")?;
    tracing::info!(
        bridge_p99_ms = percentile(&bridge, 99.0),
        queue_p99_ms = percentile(&queue, 99.0),
        work_p99_ms = percentile(&work, 99.0),
        "latency by stage"
    );
    let span = (last - *first).num_milliseconds().max(1) as f64 / 1000.0;
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    let p50 = percentile(&lat, 50.0);
    let direct_p50 = percentile(&direct, 50.0);
    Ok(serde_json::json!({
        "events": events,
        "p50_ms": r1(p50),
        "p95_ms": r1(percentile(&lat, 95.0)),
        "p99_ms": r1(percentile(&lat, 99.0)),
        "max_ms": r1(lat.last().copied().unwrap_or(f64::NAN)),
        "events_per_s": r1(events as f64 / span),
        "stages_p99_ms": {
            "publish_to_bridge": r1(percentile(&bridge, 99.0)),
            "bridge_to_job_start": r1(percentile(&queue, 99.0)),
            "job_start_to_commit": r1(percentile(&work, 99.0)),
        },
        "direct_p50_ms": r1(direct_p50),
        "direct_p99_ms": r1(percentile(&direct, 99.0)),
        "p50_vs_direct": r1(p50 / direct_p50),
        "p99_vs_direct": r1(percentile(&lat, 99.0) / percentile(&direct, 99.0)),
    }))
}

/// The raw floor: the same history request and upsert transaction, called directly with no
/// pub/sub, queue or worker in between, at the same pace (a window a day earlier, so the rows are
/// new). Returns ms per backfill, sorted.
/// What a backfill of `token` is, as the worker builds it for an answer of a subscription job.
pub(crate) async fn answer_ctx(
    pool: &sqlx::PgPool,
    token: InstrumentToken,
) -> anyhow::Result<crate::worker::BackfillCtx> {
    let inst = store::instruments::find_instrument(pool, token).await?.context("instrument missing")?;
    let target = crate::domain::market::classify(&inst).map_err(anyhow::Error::msg)?;
    Ok(crate::worker::BackfillCtx {
        token,
        target,
        reason: tickfill_jobs::Reason::Subscribe,
        requested_at: Some(Utc::now()),
        force: false,
        segment: inst.segment,
        rollups: store::rollups::upkeep(pool).await?,
        prefer: None,
        note: None,
    })
}

/// Empties what a backfill writes (bars, their rollups, coverage, suspects, days, runs), so that a
/// floor writes into the same empty store the pipeline did.
pub(crate) async fn clear_written(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let mut tables: Vec<String> = [
        "minute_bars",
        "futures_bars",
        "option_bars",
        "coverage",
        "backfill_runs",
        "suspect_minutes",
        "confirmed_empty",
        "day_checks",
        "source_lag",
    ]
    .map(String::from)
    .into();
    if store::rollups::upkeep(pool).await? == store::rollups::Upkeep::Tables {
        tables.extend([&store::rollups::MINUTE, &store::rollups::FUTURES, &store::rollups::OPTIONS].map(|f| f.table()));
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("TRUNCATE {}", tables.join(", ")))).execute(pool).await?;
    Ok(())
}

async fn direct_baseline(
    settings: &Settings,
    pool: &sqlx::PgPool,
    tokens: &[u32],
    gap: Duration,
) -> anyhow::Result<Vec<f64>> {
    let client = crate::ticker::TickerClient::new(settings)?;
    let window = crate::domain::window::immediate_window(
        Utc::now() - chrono::Duration::days(1),
        settings.backfill.window_minutes,
    );
    let mut out = Vec::with_capacity(tokens.len());
    let mut pace = tokio::time::interval(gap);
    for token in tokens {
        pace.tick().await;
        let ctx = answer_ctx(pool, tok(*token)).await?;
        let started = std::time::Instant::now();
        let candles = client.history(tok(*token), window, Default::default()).await?;
        // The worker's own write of an answer, as its subscription job does it.
        crate::worker::store_answer(pool, settings, &ctx, window, candles, &format!("direct-{token}")).await?;
        out.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    out.sort_by(|a, b| a.total_cmp(b));
    Ok(out)
}

/// `bench sweep`: how long planning the sweep of `n` active subscriptions with 2 hours of
/// history each takes, and how many backfills it pushes when nothing is missing (goal 0) and
/// when every instrument misses its last 10 minutes (goal n). The raw baseline is reading the
/// same subscriptions and coverage rows with no planning. With `holes`, a third store: a week of
/// coverage per subscription with that many half-hour holes in it, whose sweep should push one
/// job per instrument (`jobs`, goal n), planned in `holes_gap_ms`.
pub async fn sweep(base: Settings, n: usize, holes: usize) -> anyhow::Result<serde_json::Value> {
    let id = format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let db_url = store::create_database(base.store.database_url.expose(), &id).await?;
    let redis = queue::connect(&base.redis).await?;
    let scratch =
        Scratch { admin_url: base.store.database_url.expose().to_string(), db: id.clone(), ns: id.clone(), redis };
    let result = sweep_in(&base, &db_url, &id, n, holes).await;
    scratch.remove().await;
    result
}

async fn sweep_in(
    base: &Settings,
    db_url: &str,
    id: &str,
    n: usize,
    holes: usize,
) -> anyhow::Result<serde_json::Value> {
    let mut settings = base.clone();
    settings.store.database_url = crate::config::Secret::new(db_url);
    settings.queue.name = id.to_string();
    settings.ticker.reconcile = false;
    let pool = store::connect(db_url, 4).await?;
    store::migrate(&pool, &settings.store.timescale).await?;
    let now = crate::domain::window::floor_minute(Utc::now());
    let subscribed_at = now;
    sqlx::query(
        "INSERT INTO subscriptions (instrument_token, tradingsymbol, segment, status, subscribed_at, source)
         SELECT 20000000 + g, 'SIM' || g, 'NSE', 'active', $1, 'event' FROM generate_series(1, $2) g",
    )
    .bind(subscribed_at)
    .bind(n as i32)
    .execute(&pool)
    .await?;
    // Each subscription's own backfill has run, as it would have by the time a sweep looks.
    sqlx::query(
        "INSERT INTO backfill_runs (job_id, kind, instrument_token, reason, started_at, finished_at, attempts, rows, outcome)
         SELECT 'bench-' || g, 'backfill', 20000000 + g, 'subscribe', $1, $1, 1, 120, 'stored'
         FROM generate_series(1, $2) g",
    )
    .bind(subscribed_at)
    .bind(n as i32)
    .execute(&pool)
    .await?;
    let set_coverage = |to: DateTime<Utc>| {
        sqlx::query(
            "INSERT INTO coverage (instrument_token, window_from, window_to, fetched_at, candles)
             SELECT 20000000 + g, $1, $2, $2, 120 FROM generate_series(1, $3) g",
        )
        .bind(now - chrono::Duration::minutes(settings.backfill.window_minutes as i64 + 5))
        .bind(to)
        .bind(n as i32)
    };
    let mut conn = queue::connect(&settings.redis).await?;
    let mut producer = queue::Producer::new(conn.clone(), &settings);
    let ticker = crate::ticker::TickerClient::new(&settings)?;
    let pending = |d: [queue::stats::Depths; 2]| d.iter().map(|d| d.pending()).sum::<u64>();

    // Nothing missing: coverage up to now, fetched now.
    set_coverage(now).execute(&pool).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let (planned, gap, read) = time_planning(&pool, &settings, now).await?;
    anyhow::ensure!(planned == 0, "a complete store planned {planned} backfills");
    let complete = crate::sweep::sweep(&pool, &ticker, &mut producer, &settings, now).await?;
    let queued_complete = pending([
        queue::stats::lane_depths(&mut conn, id, tickfill_jobs::Lane::Urgent).await?,
        queue::stats::lane_depths(&mut conn, id, tickfill_jobs::Lane::Bulk).await?,
    ]);

    // Every instrument missed its last 10 minutes.
    sqlx::query("DELETE FROM coverage").execute(&pool).await?;
    set_coverage(now - chrono::Duration::minutes(10)).execute(&pool).await?;
    let t = std::time::Instant::now();
    let tail = crate::sweep::sweep(&pool, &ticker, &mut producer, &settings, now).await?;
    let sweep_ms = t.elapsed().as_secs_f64() * 1000.0;
    let queued_tail = pending([
        queue::stats::lane_depths(&mut conn, id, tickfill_jobs::Lane::Urgent).await?,
        queue::stats::lane_depths(&mut conn, id, tickfill_jobs::Lane::Bulk).await?,
    ]);
    let holed = if holes > 0 {
        Some(sweep_holes(&pool, &settings, &mut producer, &ticker, n, holes, now).await?)
    } else {
        None
    };
    pool.close().await;
    anyhow::ensure!(queued_complete as usize == complete.jobs, "pushed {} but {queued_complete} queued", complete.jobs);
    anyhow::ensure!(queued_tail as usize == tail.jobs, "pushed {} but {queued_tail} queued", tail.jobs);
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    Ok(serde_json::json!({
        "subscriptions": n,
        "gap_ms": r1(gap),
        "jobs_complete": complete.jobs,
        "jobs_tail_missing": tail.jobs,
        "read_ms": r1(read),
        "gap_vs_read": r1(gap / read),
        "sweep_with_push_ms": r1(sweep_ms),
        "holes": holes,
        "jobs": holed.map_or(tail.jobs, |h| h.0),
        "holes_gap_ms": holed.map(|h| r1(h.1)),
        "holes_gap_vs_read": holed.map(|h| r1(h.1 / h.2)),
    }))
}

/// The third store of `bench sweep`: every subscription started 8 days ago, its last week
/// covered but for `holes` half-hours spread over it. Returns the jobs its sweep pushed, the
/// median planning time and the median time to read the same rows without planning.
async fn sweep_holes(
    pool: &sqlx::PgPool,
    settings: &Settings,
    producer: &mut queue::Producer,
    ticker: &crate::ticker::TickerClient,
    n: usize,
    holes: usize,
    now: DateTime<Utc>,
) -> anyhow::Result<(usize, f64, f64)> {
    let week = chrono::Duration::from_std(settings.backfill.lookback)?;
    sqlx::query("UPDATE subscriptions SET subscribed_at = $1")
        .bind(now - week - chrono::Duration::days(1))
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM coverage").execute(pool).await?;
    // Hole k starts k+1 parts into the week (the week cut into holes+1 parts), 30 minutes long.
    let start = now - week;
    let part = (now - start) / (holes as i32 + 1);
    let mut edges = vec![start];
    for k in 1..=holes {
        let at = crate::domain::window::floor_minute(start + part * k as i32);
        edges.push(at);
        edges.push(at + chrono::Duration::minutes(30));
    }
    edges.push(now);
    for pair in edges.chunks(2) {
        sqlx::query(
            "INSERT INTO coverage (instrument_token, window_from, window_to, fetched_at, candles)
             SELECT 20000000 + g, $1, $2, $3, 0 FROM generate_series(1, $4) g",
        )
        .bind(pair[0])
        .bind(pair[1])
        .bind(now)
        .bind(n as i32)
        .execute(pool)
        .await?;
    }
    let (_, plan, read) = time_planning(pool, settings, now).await?;
    let report = crate::sweep::sweep(pool, ticker, producer, settings, now).await?;
    Ok((report.jobs, plan, read))
}

/// Plans the sweep (`find_gaps`) five times, and reads the same subscriptions and coverage rows
/// without planning five times: the gaps planned, and the median milliseconds of each.
async fn time_planning(
    pool: &sqlx::PgPool,
    settings: &Settings,
    now: DateTime<Utc>,
) -> anyhow::Result<(usize, f64, f64)> {
    let since = now - chrono::Duration::from_std(settings.backfill.lookback)?;
    let (mut plan_ms, mut read_ms, mut gaps) = (Vec::new(), Vec::new(), 0);
    for _ in 0..5 {
        let t = std::time::Instant::now();
        gaps = crate::sweep::find_gaps(pool, settings, now).await?.len();
        plan_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = std::time::Instant::now();
        let _ = store::subscriptions::active_subscriptions(pool).await?;
        let _ = store::coverage::coverage_since(pool, since, settings.backfill.settle).await?;
        read_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((gaps, median(plan_ms), median(read_ms)))
}

/// The median of measurements in any order.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    percentile(&v, 50.0)
}

/// `bench chain`: rebuilding one expiry of `strikes` strikes × CE/PE over `minutes` minutes
/// (read the option bars, compute every minute, replace the rows in one transaction) beside the
/// raw baseline of writing the same output rows, prepared in advance, the same way.
pub async fn chain(base: Settings, strikes: usize, minutes: usize) -> anyhow::Result<serde_json::Value> {
    let id = format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let db_url = store::create_database(base.store.database_url.expose(), &id).await?;
    let redis = queue::connect(&base.redis).await?;
    let scratch =
        Scratch { admin_url: base.store.database_url.expose().to_string(), db: id.clone(), ns: id.clone(), redis };
    let result = chain_in(&db_url, strikes, minutes).await;
    scratch.remove().await;
    result
}

async fn chain_in(db_url: &str, strikes: usize, minutes: usize) -> anyhow::Result<serde_json::Value> {
    let pool = store::connect(db_url, 4).await?;
    store::migrate(&pool, &Default::default()).await?;
    let expiry = chrono::NaiveDate::from_ymd_opt(2025, 11, 25).expect("valid date");
    let from = DateTime::parse_from_rfc3339("2025-11-18T03:45:00Z")?.with_timezone(&Utc);
    let to = from + chrono::Duration::minutes(minutes as i64);
    // Deterministic legs: prices and OI from a hash of (strike, type, minute).
    sqlx::query(
        "INSERT INTO option_bars (contract, time, instrument_token, symbol, expiry, strike, option_type,
             open, high, low, close, volume, oi, iv)
         SELECT 'BENCH' || k || t, $1 + make_interval(mins => m), 30000000 + k * 2 + (t = 'PE')::int, 'BENCH', $2,
                20000 + 50 * k, t, 100, 110, 90, 100 + (h % 1000) / 100.0, 1000 + h % 9000, 75 * (h % 20000), 12 + (h % 500) / 100.0
         FROM generate_series(0, $3 - 1) k, (VALUES ('CE'), ('PE')) AS ty(t), generate_series(0, $4 - 1) m,
              LATERAL (SELECT abs(hashtext(k || t || m)::bigint) AS h) x",
    )
    .bind(from)
    .bind(expiry)
    .bind(strikes as i32)
    .bind(minutes as i32)
    .execute(&pool)
    .await?;
    sqlx::query("ANALYZE option_bars").execute(&pool).await?;
    let mut rebuild = Vec::new();
    let mut raw = Vec::new();
    let mut compute = Vec::new();
    let mut rows = 0;
    let upkeep = store::rollups::upkeep(&pool).await?;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        rows = crate::store::chain::rebuild(&pool, "BENCH", expiry, Window::new(from, to), upkeep).await?;
        rebuild.push(t.elapsed().as_secs_f64() * 1000.0);

        let t = std::time::Instant::now();
        let chain = crate::store::chain::read_chain(&pool, "BENCH", expiry, Window::new(from, to)).await?;
        let prepared = crate::store::chain::Prepared::from_chain(&chain);
        compute.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = std::time::Instant::now();
        let mut tx = pool.begin().await?;
        prepared.write(&mut tx, "BENCH", expiry, Window::new(from, to)).await?;
        tx.commit().await?;
        raw.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    pool.close().await;
    rebuild.sort_by(|a, b| a.total_cmp(b));
    raw.sort_by(|a, b| a.total_cmp(b));
    compute.sort_by(|a, b| a.total_cmp(b));
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    let (rb, rw) = (rebuild[2], raw[2]);
    Ok(serde_json::json!({
        "strikes": strikes,
        "minutes": minutes,
        "option_bars": strikes * 2 * minutes,
        "rows_written": rows,
        "rebuild_ms": r1(rb),
        "raw_write_ms": r1(rw),
        "read_and_compute_ms": r1(compute[2]),
        "ratio": (rb / rw * 100.0).round() / 100.0,
    }))
}
