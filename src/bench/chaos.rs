//! `tickfill bench chaos`: the whole system under faults, on servers of its own.
//!
//! It starts a PostgreSQL cluster (initdb into a scratch directory) and a Redis server
//! (`appendonly yes`, `appendfsync always`) on free ports, the simulator with 502s, 429s and
//! latency, worker processes, two bridges and a scheduler — all real processes of this binary.
//! It subscribes instruments through the simulator while it SIGKILLs a random worker every few
//! seconds (and starts it again), and crashes one bridge, PostgreSQL and Redis once each (with
//! `--failover`: Redis is a primary, a replica and three sentinels; the primary is frozen for 30 s
//! and later the new primary is killed, and each failover's promotion and resumption are timed). Then it
//! waits until every subscription's window is stored and the queues are empty, or ten minutes
//! pass, and checks every stored candle against a clean simulator of the same universe.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::json;
use tickfill_jobs::Lane;

use super::procs::{free_port, wait_for, Fleet};
use crate::{domain::window::floor_minute, load, queue, shutdown::Shutdown, sim, store};

/// What to run.
pub struct ChaosOptions {
    pub events: usize,
    pub workers: usize,
    pub duration: Duration,
    /// `TICKER_RATE_LIMIT` of the fleet.
    pub limit: u32,
    pub window_minutes: u32,
    /// Redis behind Sentinel (1 primary, 1 replica, 3 sentinels) that fails over twice during the
    /// run, instead of one Redis restarted once.
    pub failover: bool,
}

/// How long the system gets, after the chaos, to become complete.
const SETTLE_DEADLINE: Duration = Duration::from_secs(600);

pub async fn run(opts: ChaosOptions) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(opts.events > 0 && opts.workers > 0, "--events and --workers must be at least 1");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("tickfill-chaos-{}", &id[..10]));
    std::fs::create_dir_all(&dir)?;
    tracing::info!(dir = %dir.display(), "chaos bench: scratch directory (logs of every process)");
    let result = run_in(&dir, &opts).await;
    match &result {
        Ok(_) => {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Err(_) => tracing::error!(dir = %dir.display(), "chaos bench failed; its logs are kept"),
    }
    result
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// The directory of PostgreSQL's server programs: the newest Debian install, else `PATH`.
fn postgres_bin() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("initdb").exists())
        .collect();
    versions.sort();
    if let Some((_, p)) = versions.pop() {
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
        .context("PostgreSQL's initdb and pg_ctl were not found (install Debian's postgresql package)")
}

/// A PostgreSQL cluster in a scratch directory, stopped on drop.
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Postgres {
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if self.as_postgres {
            // initdb and the server refuse to run as root.
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn start(dir: &Path) -> anyhow::Result<Postgres> {
        let root = dir.join("pg");
        std::fs::create_dir_all(&root)?;
        let as_postgres = running_as_root();
        if as_postgres {
            let ok = Command::new("chown").args(["-R", "postgres:"]).arg(&root).status()?.success();
            anyhow::ensure!(ok, "could not hand {} to the postgres user", root.display());
        }
        let pg = Postgres { bin: postgres_bin()?, data: root.join("data"), port: free_port()?, as_postgres };
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(&pg.data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .context("failed to run initdb")?;
        anyhow::ensure!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        pg.ctl(&["start"])?;
        Ok(pg)
    }

    fn ctl(&self, action: &[&str]) -> anyhow::Result<()> {
        let root = self.data.parent().expect("data has a parent");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400 -c shared_buffers=64MB",
            self.port,
            root.display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(root.join("server.log"))
            .args(["-o", &opts, "-w", "-t", "60"])
            .args(action)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .context("failed to run pg_ctl")?;
        anyhow::ensure!(out.status.success(), "pg_ctl {action:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.ctl(&["stop", "-m", "immediate"]);
    }
}

/// A Redis server with an append-only file in a scratch directory, killed on drop.
struct Redis {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start(dir: &Path) -> anyhow::Result<Redis> {
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir)?;
        let mut r = Redis { dir, port: free_port()?, child: None };
        r.spawn()?;
        Ok(r)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("failed to start redis-server (install Debian's redis-server package)")?;
        self.child = Some(child);
        Ok(())
    }

    fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.crash();
    }
}

async fn redis_up(url: &str) -> bool {
    match redis::Client::open(url) {
        Ok(c) => match c.get_multiplexed_async_connection().await {
            Ok(mut conn) => redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok(),
            Err(_) => false,
        },
        Err(_) => false,
    }
}

/// A thing the chaos does at a moment of the run.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillWorker,
    RestartBridge,
    RestartPostgres,
    RestartRedis,
    /// SIGSTOP the primary (it stays frozen until [`Fault::ThawPrimary`]).
    FreezePrimary,
    ThawPrimary,
    /// SIGKILL the primary, and start it again (a replica) a few seconds later.
    KillPrimary,
}

/// Where the bench's Redis is: one server, or a Sentinel topology.
enum BenchRedis {
    One(Redis),
    Ha(super::ha::Topology),
}

/// How long the frozen primary stays frozen.
const FREEZE: Duration = Duration::from_secs(30);

/// One failover as the bench saw it: when the sentinels promoted, and how long after that the
/// first job finished (on the new primary).
#[derive(Debug, Clone, Copy)]
struct Failover {
    promoted_s: f64,
    resume_s: Option<f64>,
}

/// Waits for the promotion that follows a fault on `old` (at `fault_at`), subscribes `probe` so
/// that there is work, and measures how long after the promotion a job first finishes.
async fn watch_failover(
    watcher: super::ha::Watcher,
    old: u16,
    fault_at: Instant,
    pool: sqlx::PgPool,
    http: reqwest::Client,
    sim_url: String,
    probe: u32,
) -> anyhow::Result<Failover> {
    let (_, promoted) = watcher.wait_switch(old, Duration::from_secs(60)).await?;
    let promoted_at = Utc::now();
    let probe_sent = http
        .post(format!("{sim_url}/subscriptions"))
        .json(&json!({"instrument_token": probe, "requested_mode": "full"}))
        .send()
        .await;
    if let Err(e) = probe_sent {
        tracing::warn!(error = %e, "failover probe not subscribed");
    }
    let mut resume_s = None;
    let deadline = promoted + Duration::from_secs(60);
    while Instant::now() < deadline {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM backfill_runs WHERE finished_at > $1")
            .bind(promoted_at)
            .fetch_one(&pool)
            .await
            .unwrap_or(0);
        if n > 0 {
            resume_s = Some(promoted.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let promoted_s = promoted.duration_since(fault_at).as_secs_f64();
    tracing::info!(promoted_s, ?resume_s, "failover");
    Ok(Failover { promoted_s, resume_s })
}

async fn run_in(dir: &Path, opts: &ChaosOptions) -> anyhow::Result<serde_json::Value> {
    let pg = Postgres::start(dir)?;
    let (mut redis, target) = if opts.failover {
        let topo = super::ha::Topology::start(&dir.join("ha")).await?;
        let target = topo.target();
        (BenchRedis::Ha(topo), target)
    } else {
        let redis = Redis::start(dir)?;
        let url = redis.url();
        wait_for(20, "the bench's Redis to answer", || redis_up(&url)).await?;
        (BenchRedis::One(redis), crate::config::RedisTarget::Url(crate::config::Secret::new(url)))
    };
    let redis_settings = crate::config::RedisSettings {
        target: target.clone(),
        response_timeout: crate::config::DEFAULT_RESPONSE_TIMEOUT,
        replay_window: crate::config::DEFAULT_REPLAY_WINDOW,
    };
    let db_url = store::create_database(&pg.url("postgres"), "chaos").await?;
    let pool = store::connect(&db_url, 4).await?;
    store::migrate(&pool, &Default::default()).await?;

    let ns = "chaos".to_string();
    let sim_port = free_port()?;
    let sim_url = format!("http://127.0.0.1:{sim_port}");
    let (limit, window) = (opts.limit.to_string(), opts.window_minutes.to_string());
    let mut fleet = Fleet::new(
        dir,
        &db_url,
        &target,
        &ns,
        &sim_url,
        &[
            ("TICKER_RATE_LIMIT", &limit),
            ("BACKFILL_WINDOW_MINUTES", &window),
            ("SWEEP_INTERVAL", "30s"),
            // The bench checks subscription windows; keeping the live edge fresh minute by minute
            // is the sweeps' other job and would add requests the goal does not count.
            ("BACKFILL_GAP_THRESHOLD", "1h"),
            ("TICKFILL_SHUTDOWN_TIMEOUT", "5s"),
            ("LOG_LEVEL", "info"),
        ],
    )?;
    // Two more instruments than events: the failovers' probes.
    let universe = (opts.events + 2).to_string();
    let listen = format!("127.0.0.1:{sim_port}");
    let sim_args = [
        "--listen",
        &listen,
        "--universe",
        &universe,
        "--error-rate",
        "0.2",
        "--throttle-rate",
        "0.1",
        "--latency-ms",
        "5..200",
    ];
    fleet.add("sim", &sim_args)?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let instruments_url = format!("{sim_url}/instruments");
    wait_for(20, "the simulator to answer", || async { http.get(&instruments_url).send().await.is_ok() }).await?;
    let dump = load::read_source(&instruments_url).await?;
    load::load(&pool, &dump).await?;
    let all: Vec<u32> =
        load::parse_dump(&dump)?.0.iter().map(|r| r.instrument_token.get()).take(opts.events + 2).collect();
    anyhow::ensure!(all.len() == opts.events + 2, "the simulator's universe has only {} instruments", all.len());
    let (tokens, probes) = (all[..opts.events].to_vec(), [all[opts.events], all[opts.events + 1]]);

    let workers: Vec<usize> = (0..opts.workers).map(|_| fleet.add("worker", &[])).collect::<Result<_, _>>()?;
    let bridges: Vec<usize> = (0..2).map(|_| fleet.add("bridge", &[])).collect::<Result<_, _>>()?;
    fleet.add("scheduler", &[])?;
    let mut conn = queue::connect(&redis_settings).await?;
    let channel = queue::keys::events_channel(&ns);
    wait_for(30, "both bridges to subscribe", || {
        let (mut conn, channel) = (conn.clone(), channel.clone());
        async move {
            let r: redis::RedisResult<(String, i64)> =
                redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).query_async(&mut conn).await;
            r.is_ok_and(|(_, n)| n >= 2)
        }
    })
    .await?;

    // Subscriptions through the simulator, spread over the first half of the chaos.
    let started = Instant::now();
    let spacing = opts.duration / 2 / opts.events as u32;
    let subscriber = {
        let (http, sim_url, tokens) = (http.clone(), sim_url.clone(), tokens.clone());
        tokio::spawn(async move {
            for (i, token) in tokens.iter().enumerate() {
                let due = started + spacing * i as u32;
                tokio::time::sleep_until(due.into()).await;
                loop {
                    let r = http
                        .post(format!("{sim_url}/subscriptions"))
                        .json(&json!({"instrument_token": token, "requested_mode": "full"}))
                        .send()
                        .await;
                    match r {
                        Ok(resp) if resp.status().is_success() => break,
                        Ok(resp) => tracing::warn!(token, status = %resp.status(), "subscription refused; again"),
                        Err(e) => tracing::warn!(token, error = %e, "subscription failed; again"),
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        })
    };

    // The faults: a worker killed every 3–8 s, and each dependency once.
    let d = opts.duration.as_secs_f64();
    let at = |share: f64| Duration::from_secs_f64(d * share);
    let mut plan: Vec<(Duration, Fault)> = vec![(at(0.3), Fault::RestartBridge), (at(0.5), Fault::RestartPostgres)];
    if opts.failover {
        // The primary frozen for 30 s (its replica is promoted meanwhile; resumed, it turns
        // replica), and later the new primary killed.
        plan.push((at(0.2), Fault::FreezePrimary));
        plan.push((at(0.2) + FREEZE, Fault::ThawPrimary));
        plan.push((at(0.75).max(at(0.2) + FREEZE + Duration::from_secs(15)), Fault::KillPrimary));
    } else {
        plan.push((at(0.7), Fault::RestartRedis));
    }
    let mut rng = rand::rng();
    let mut t = Duration::from_secs(rng.random_range(3..=8));
    while t < opts.duration {
        plan.push((t, Fault::KillWorker));
        t += Duration::from_secs(rng.random_range(3..=8));
    }
    plan.sort_by_key(|(t, _)| *t);
    let mut faults: BTreeMap<&str, u32> = BTreeMap::new();
    let mut frozen: Option<u16> = None;
    let mut killed: Option<(u16, Instant)> = None;
    let mut watches = Vec::new();
    let mut rejoin: Option<tokio::task::JoinHandle<Option<f64>>> = None;
    for (at, fault) in plan {
        tokio::time::sleep_until((started + at).into()).await;
        tracing::info!(?fault, at_s = at.as_secs(), "chaos");
        match fault {
            Fault::KillWorker => {
                let w = workers[rng.random_range(0..workers.len())];
                fleet.restart(w)?;
                *faults.entry("workers_killed").or_default() += 1;
            }
            Fault::RestartBridge => {
                fleet.kill(bridges[0]);
                tokio::time::sleep(Duration::from_secs(2)).await;
                fleet.start(bridges[0], &[])?;
                *faults.entry("bridge_restarts").or_default() += 1;
            }
            Fault::RestartPostgres => {
                tokio::task::block_in_place(|| pg.ctl(&["restart", "-m", "immediate"]))?;
                *faults.entry("postgres_restarts").or_default() += 1;
            }
            Fault::RestartRedis => {
                let BenchRedis::One(r) = &mut redis else { continue };
                r.crash();
                tokio::time::sleep(Duration::from_secs(3)).await;
                r.spawn()?;
                let url = r.url();
                wait_for(30, "the bench's Redis to come back", || redis_up(&url)).await?;
                *faults.entry("redis_restarts").or_default() += 1;
            }
            Fault::FreezePrimary | Fault::KillPrimary => {
                let BenchRedis::Ha(topo) = &mut redis else { continue };
                let primary = topo.primary().await.context("the sentinels name no primary")?;
                let watch = watch_failover(
                    topo.watcher(),
                    primary,
                    Instant::now(),
                    pool.clone(),
                    http.clone(),
                    sim_url.clone(),
                    probes[watches.len().min(1)],
                );
                if matches!(fault, Fault::FreezePrimary) {
                    topo.freeze(primary)?;
                    frozen = Some(primary);
                    *faults.entry("primary_frozen_30s").or_default() += 1;
                } else {
                    topo.kill(primary)?;
                    killed = Some((primary, Instant::now()));
                    *faults.entry("primary_killed").or_default() += 1;
                }
                watches.push(tokio::spawn(watch));
            }
            Fault::ThawPrimary => {
                let BenchRedis::Ha(topo) = &mut redis else { continue };
                if let Some(p) = frozen.take() {
                    topo.thaw(p)?;
                    // The split-brain window: the old primary takes writes until it turns replica.
                    rejoin = Some(tokio::spawn(async move {
                        let thawed = Instant::now();
                        while thawed.elapsed() < Duration::from_secs(60) {
                            if super::ha::role(p).await.as_deref() == Some("slave") {
                                return Some(thawed.elapsed().as_secs_f64());
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        None
                    }));
                }
            }
        }
        // A killed primary comes back a few seconds later, as a replica.
        if let (Some((p, when)), BenchRedis::Ha(topo)) = (killed, &mut redis) {
            if when.elapsed() >= Duration::from_secs(5) {
                topo.restart(p)?;
                killed = None;
            }
        }
    }
    if let (Some((p, _)), BenchRedis::Ha(topo)) = (killed.take(), &mut redis) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        topo.restart(p)?;
    }
    let mut failovers = Vec::new();
    for w in watches {
        failovers.push(w.await??);
    }
    let old_primary_replica_after_thaw_s = match rejoin {
        Some(r) => r.await?,
        None => None,
    };
    tokio::time::sleep_until((started + opts.duration).into()).await;
    subscriber.await?;
    let chaos_end = Instant::now();

    // Settle: every window stored and nothing left in the queues, or the deadline.
    let mut check = Check::default();
    let deadline = chaos_end + SETTLE_DEADLINE;
    loop {
        check = completeness(&pool, &tokens, opts.window_minutes, None).await.unwrap_or(check);
        let pending = queue_load(&mut conn, &ns).await.unwrap_or(u64::MAX);
        if check.instruments_complete == tokens.len() && pending == 0 {
            break;
        }
        if Instant::now() > deadline {
            tracing::warn!(pending, complete = check.instruments_complete, "chaos bench: deadline passed");
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let settle_s = chaos_end.elapsed().as_secs_f64();
    let runs: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT coalesce(reason, kind), outcome, count(*) FROM backfill_runs GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_default();
    let runs: BTreeMap<String, i64> = runs.into_iter().map(|(r, o, n)| (format!("{r}:{o}"), n)).collect();
    let stats: serde_json::Value = http.get(format!("{sim_url}/stats")).send().await?.json().await?;
    let replayed: i64 = queue::counters(&mut conn, &ns)
        .await
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "events_replayed")
        .map_or(0, |(_, n)| n);
    fleet.stop_all(Duration::from_secs(10));
    let jobs_stuck = queue_load(&mut conn, &ns).await?;
    let dead_jobs = queue::dead::list(&mut conn, &ns).await?;
    let mut dead_reasons: BTreeMap<String, u32> = BTreeMap::new();
    for d in &dead_jobs {
        *dead_reasons.entry(reason_class(d.error.as_deref().unwrap_or("unknown"))).or_default() += 1;
    }

    // Every stored candle against a clean simulator of the same universe.
    let clean = Shutdown::new();
    let sim_opts = sim::SimOptions { universe: opts.events + 2, ..Default::default() };
    let clean_addr = sim::spawn("127.0.0.1:0".parse()?, sim_opts, clean.clone()).await?;
    let final_check =
        completeness(&pool, &tokens, opts.window_minutes, Some((&http, &format!("http://{clean_addr}")))).await?;
    clean.trigger();
    pool.close().await;
    drop(fleet);
    drop(redis);
    drop(pg);

    let requests = stats["history_requests"].as_u64().unwrap_or(0);
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let mut answer = json!({
        "events": tokens.len(),
        "instruments": final_check.instruments,
        "instruments_complete": final_check.instruments_complete,
        "rows_missing": final_check.rows_missing,
        "rows_wrong": final_check.rows_wrong,
        "duplicate_rows": final_check.duplicate_rows,
        "jobs_stuck": jobs_stuck,
        "jobs_dead": dead_jobs.len(),
        "dead_reasons": dead_reasons,
        "requests_per_instrument": (requests as f64 / tokens.len() as f64 * 100.0).round() / 100.0,
        "history_requests": requests,
        "by_status": stats["by_status"],
        "peak_rps": stats["peak_rps"],
        "limit_rps": opts.limit,
        "settle_s": (settle_s * 10.0).round() / 10.0,
        "faults": faults,
        "runs": runs,
        "workers": opts.workers,
        "duration_s": opts.duration.as_secs(),
    });
    if opts.failover {
        answer["failovers"] = json!(failovers.len());
        answer["promoted_after_fault_s"] = json!(failovers.iter().map(|f| round(f.promoted_s)).collect::<Vec<_>>());
        // A failover after which no job finished within a minute shows as null.
        answer["resume_after_promotion_s"] = json!(failovers.iter().map(|f| f.resume_s.map(round)).collect::<Vec<_>>());
        answer["events_replayed"] = json!(replayed);
        answer["old_primary_replica_after_thaw_s"] = json!(old_primary_replica_after_thaw_s.map(round));
    }
    Ok(answer)
}

/// Jobs waiting, scheduled or running in the namespace's lanes.
async fn queue_load(conn: &mut crate::queue::RedisConn, ns: &str) -> anyhow::Result<u64> {
    let mut n = 0;
    for lane in Lane::ALL {
        let d = queue::stats::lane_depths(conn, ns, lane).await?;
        n += d.active + d.scheduled + d.running;
    }
    Ok(n)
}

/// A dead job's error without the parts that differ between jobs (tokens, times, ids).
fn reason_class(error: &str) -> String {
    let last = error.rsplit("; ").next().unwrap_or(error);
    let words: Vec<&str> = last.split_whitespace().filter(|w| !w.chars().any(|c| c.is_ascii_digit())).collect();
    words.join(" ").chars().take(80).collect()
}

/// A stored bar: time, open, high, low, close, volume.
type Bar = (DateTime<Utc>, f64, f64, f64, f64, i64);

#[derive(Debug, Default, Clone)]
struct Check {
    instruments: usize,
    instruments_complete: usize,
    rows_missing: u64,
    rows_wrong: u64,
    duplicate_rows: u64,
}

/// Each subscribed token's window `[subscribed_at − window, subscribed_at)`, minute by minute,
/// against the stored bars of every bar table; with `reference`, every candle compared to it.
async fn completeness(
    pool: &sqlx::PgPool,
    tokens: &[u32],
    window_minutes: u32,
    reference: Option<(&reqwest::Client, &str)>,
) -> anyhow::Result<Check> {
    const BARS: &str = "(SELECT instrument_token, time, open, high, low, close, volume FROM minute_bars
                         UNION ALL SELECT instrument_token, time, open, high, low, close, volume FROM futures_bars
                         UNION ALL SELECT instrument_token, time, open, high, low, close, volume FROM option_bars)";
    let subs: Vec<(i64, DateTime<Utc>)> =
        sqlx::query_as("SELECT instrument_token, subscribed_at FROM subscriptions WHERE status = 'active'")
            .fetch_all(pool)
            .await?;
    let subs: BTreeMap<u32, DateTime<Utc>> = subs.into_iter().map(|(t, at)| (t as u32, at)).collect();
    let mut check = Check { instruments: subs.len(), ..Default::default() };
    let span = chrono::Duration::minutes(window_minutes as i64);
    for token in tokens {
        let Some(at) = subs.get(token) else {
            check.rows_missing += window_minutes as u64;
            continue;
        };
        let (from, to) = (floor_minute(*at) - span, floor_minute(*at));
        let rows: Vec<Bar> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT time, open, high, low, close, volume FROM {BARS} b
             WHERE instrument_token = $1 AND time >= $2 AND time < $3 ORDER BY time"
        )))
        .bind(*token as i64)
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
        let mut times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.0).collect();
        times.dedup();
        check.duplicate_rows += (rows.len() - times.len()) as u64;
        let missing = (window_minutes as u64).saturating_sub(times.len() as u64);
        check.rows_missing += missing;
        if missing == 0 {
            check.instruments_complete += 1;
        }
        if let Some((http, base)) = reference {
            let z = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
            let body: serde_json::Value = http
                .get(format!("{base}/history"))
                .query(&[("instrument_token", token.to_string()), ("from_ts", z(from)), ("to_ts", z(to))])
                .send()
                .await?
                .json()
                .await?;
            let want = body["candles"].as_array().cloned().unwrap_or_default();
            let stored: BTreeMap<i64, &Bar> = rows.iter().map(|r| (r.0.timestamp(), r)).collect();
            for c in &want {
                let t = c["date"].as_str().and_then(|d| DateTime::parse_from_rfc3339(d).ok()).map(|d| d.timestamp());
                let Some(row) = t.and_then(|t| stored.get(&t)) else { continue };
                let same = [("open", row.1), ("high", row.2), ("low", row.3), ("close", row.4)]
                    .iter()
                    .all(|(k, v)| c[*k].as_f64().is_some_and(|x| (x - v).abs() < 1e-9))
                    && c["volume"].as_i64() == Some(row.5);
                if !same {
                    check.rows_wrong += 1;
                }
            }
        }
    }
    // Across tables too: one instrument-minute stored twice under different keys.
    let across: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM (SELECT 1 FROM {BARS} b GROUP BY instrument_token, time HAVING count(*) > 1) d"
    )))
    .fetch_one(pool)
    .await?;
    check.duplicate_rows = check.duplicate_rows.max(across as u64);
    Ok(check)
}
