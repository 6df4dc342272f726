//! The `tickfill` binary: one subcommand per process or operator task.

use std::net::SocketAddr;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tickfill::{
    bench, bridge, chain,
    config::Settings,
    dead, dev, load, ops, queue, scheduler,
    shutdown::{patiently, Shutdown},
    sim, store, telemetry, worker,
};

#[derive(Parser)]
#[command(name = "tickfill", version, about = "Durable 1-minute history backfill for subscribed instruments")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply database migrations.
    Migrate,
    /// Turn subscription events on Redis pub/sub into jobs.
    Bridge,
    /// Run the worker pool.
    Worker,
    /// Push a sweep job at every tick of SWEEP_INTERVAL.
    Scheduler,
    /// Backfill a window of one instrument by hand (or `backfill cancel`).
    Backfill(BackfillArgs),
    /// An option chain at a minute: per-strike calls and puts, PCR and max pain.
    Chain {
        #[arg(long)]
        underlying: String,
        #[arg(long)]
        expiry: chrono::NaiveDate,
        /// The minute to show (RFC 3339); default the latest.
        #[arg(long, value_parser = instant)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long)]
        json: bool,
    },
    /// Per active subscription: newest bar, its age, coverage holes, last outcome.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Run the whole pipeline locally (migrations, simulator, instruments, bridge, worker).
    Dev,
    /// Serve the ticker-service simulator.
    Sim(SimArgs),
    /// Instrument dump operations.
    Instruments {
        #[command(subcommand)]
        command: InstrumentsCommand,
    },
    /// Queue operations: dead letters and figures.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Event operations.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Measurements (each prints one JSON line).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct BackfillArgs {
    #[command(subcommand)]
    command: Option<BackfillCommand>,
    #[arg(long)]
    token: Option<u32>,
    /// Start (RFC 3339), inclusive.
    #[arg(long, value_parser = instant)]
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// End (RFC 3339), exclusive.
    #[arg(long, value_parser = instant)]
    to: Option<chrono::DateTime<chrono::Utc>>,
    /// Fetch again even where coverage says the window is stored (the source revises candles).
    #[arg(long)]
    force: bool,
    /// Push the jobs and return without waiting for them.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Subcommand)]
enum BackfillCommand {
    /// Drop the pending backfills of a token.
    Cancel {
        #[arg(long)]
        token: u32,
    },
}

fn instant(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("expected an RFC 3339 instant such as 2025-11-04T09:15:00+05:30 ({e})"))
}

#[derive(clap::Args)]
struct SimArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Add N synthetic instruments to the universe.
    #[arg(long, default_value_t = 0)]
    universe: usize,
    #[arg(long, value_enum, default_value = "always")]
    calendar: sim::Calendar,
    /// Fraction of history requests answered 502.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    error_rate: f64,
    /// Fraction of history requests answered 429 with Retry-After: 1.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    throttle_rate: f64,
    /// Added latency, MIN..MAX or one value, in ms.
    #[arg(long, value_parser = sim::parse_latency)]
    latency_ms: Option<(u64, u64)>,
    /// Answer 429 to history requests above N per second.
    #[arg(long)]
    max_rps: Option<u32>,
    /// The only access token Kite's route accepts (others get 403 TokenException).
    #[arg(long)]
    kite_access_token: Option<String>,
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err("expected a fraction between 0 and 1".into()),
    }
}

#[derive(Subcommand)]
enum InstrumentsCommand {
    /// Upsert a Kite instrument dump (file path, http(s) URL, or - for stdin).
    Load {
        source: String,
        /// The dump lists all of its segments: their instruments it omits become inactive.
        #[arg(long)]
        full: bool,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Per lane: pending, scheduled, running, done, dead, oldest pending age.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Jobs that failed for good.
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
    /// Lift a pause of history requests (after renewing an expired Kite session).
    Resume,
}

#[derive(Subcommand)]
enum DeadCommand {
    /// id, kind, token, attempts, error, failed at.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One dead job in full (payload and metadata), as JSON.
    Show { id: String },
    /// Push dead jobs again as new jobs.
    Retry {
        /// The job to retry.
        id: Option<String>,
        #[arg(long, conflicts_with_all = ["id", "kind"])]
        all: bool,
        /// Every dead job of this kind (subscribed, backfill, sweep, …).
        #[arg(long, conflicts_with = "id")]
        kind: Option<String>,
    },
    /// Forget dead jobs.
    Purge {
        /// Those that failed longer ago than this (90s, 5m, 2h, 7d).
        #[arg(long, value_parser = tickfill::config::parse_duration, conflicts_with = "all")]
        older_than: Option<std::time::Duration>,
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Show the newest rejected events (reason, size, first bytes) and the counts by reason.
    Rejected {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 50)]
        limit: isize,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// PUBLISH → committed rows latency for distinct instruments.
    Latency {
        #[arg(long, default_value_t = 200)]
        events: usize,
        /// Events published per second.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
    },
    /// Rebuilding one expiry's chain for a day beside a bare write of the same rows.
    Chain {
        #[arg(long, default_value_t = 100)]
        strikes: usize,
        #[arg(long, default_value_t = 375)]
        minutes: usize,
    },
    /// The whole system under faults, on a PostgreSQL and a Redis of its own: worker kills,
    /// restarts of a bridge, PostgreSQL and Redis; then completeness against the simulator.
    Chaos {
        #[arg(long, default_value_t = 500)]
        events: usize,
        #[arg(long, default_value_t = 3)]
        workers: usize,
        #[arg(long, default_value = "120s", value_parser = tickfill::config::parse_duration)]
        duration: std::time::Duration,
        /// The fleet's TICKER_RATE_LIMIT during the run.
        #[arg(long, default_value_t = 3)]
        limit: u32,
    },
    /// Worker processes sharing one rate budget behind a bulk backlog, urgent jobs at 1/s.
    Ratelimit {
        #[arg(long, default_value_t = 3)]
        workers: usize,
        #[arg(long, default_value_t = 3)]
        limit: u32,
        #[arg(long, default_value = "60s", value_parser = tickfill::config::parse_duration)]
        duration: std::time::Duration,
        /// Bulk jobs queued ahead of the urgent ones.
        #[arg(long, default_value_t = 1000)]
        backlog: usize,
    },
    /// Events for N instruments through bridge, queue, workers and store, beside a bare Redis
    /// queue and a bare upsert of the same rows.
    Throughput {
        #[arg(long, default_value_t = 2000)]
        instruments: usize,
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
    /// Reloading an instrument dump over an existing table, beside a raw COPY of the same file.
    Instruments {
        #[arg(long, default_value_t = 100_000)]
        rows: usize,
    },
    /// Time to plan the sweep of N subscriptions, and the jobs it pushes.
    Sweep {
        #[arg(long, default_value_t = 2000)]
        subscriptions: usize,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tickfill: configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log_level, settings.log_format);
    match run(cli.command, settings).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tickfill: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    match command {
        Command::Migrate => {
            let pool = store::connect(settings.database_url.expose(), 1).await?;
            store::migrate(&pool).await?;
            println!("migrations applied; bar tables: {:?}", store::bar_storage(&pool).await?);
        }
        Command::Bridge => {
            shutdown.on_signals();
            serve_admin(&settings, None, &shutdown).await?;
            bridge::run(settings, shutdown).await?;
        }
        Command::Worker => {
            shutdown.on_signals();
            let state =
                patiently("PostgreSQL and Redis", &shutdown, || worker::build_state(settings.clone(), None)).await?;
            serve_admin(&state.settings, Some(state.pool.clone()), &shutdown).await?;
            worker::run(state, shutdown).await?;
        }
        Command::Scheduler => {
            shutdown.on_signals();
            serve_admin(&settings, None, &shutdown).await?;
            scheduler::run(settings, shutdown).await?;
        }
        Command::Backfill(a) => backfill(settings, a).await?,
        Command::Status { json } => {
            let pool = store::connect(settings.database_url.expose(), 2).await?;
            let rows = ops::status(&pool, &settings, chrono::Utc::now()).await?;
            if json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                print_status(&rows);
            }
        }
        Command::Chain { underlying, expiry, at, json } => {
            let pool = store::connect(settings.database_url.expose(), 2).await?;
            let symbol = tickfill::market::normalise_underlying(&underlying);
            let view = chain::view(&pool, &symbol, expiry, at.unwrap_or_else(chrono::Utc::now)).await?;
            match (view, json) {
                (None, true) => println!("null"),
                (None, false) => println!("no chain metrics for {symbol} {expiry}"),
                (Some(v), true) => println!("{}", serde_json::to_string(&v)?),
                (Some(v), false) => print_chain(&v),
            }
        }
        Command::Dev => {
            shutdown.on_signals();
            let pool = store::connect(settings.database_url.expose(), 2).await?;
            serve_admin(&settings, Some(pool), &shutdown).await?;
            dev::run(settings, shutdown).await?;
        }
        Command::Sim(a) => {
            shutdown.on_signals();
            let opts = sim::SimOptions {
                universe: a.universe,
                calendar: a.calendar,
                error_rate: a.error_rate,
                throttle_rate: a.throttle_rate,
                latency_ms: a.latency_ms.unwrap_or((0, 0)),
                max_rps: a.max_rps,
                kite_access_token: a.kite_access_token,
                redis_url: Some(settings.redis_url.expose().to_string()),
                channel_prefix: settings.channel_prefix.clone(),
            };
            let listener = tokio::net::TcpListener::bind(a.listen)
                .await
                .with_context(|| format!("failed to bind {}", a.listen))?;
            sim::serve(listener, opts, shutdown).await?;
        }
        Command::Instruments { command: InstrumentsCommand::Load { source, full } } => {
            let pool = store::connect(settings.database_url.expose(), 2).await?;
            let bytes = load::read_source(&source).await?;
            let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let report = load::load_with(&pool, &bytes, full, |done, total| {
                if interactive {
                    tickfill::ops::draw_progress(done, total, "rows");
                }
            })
            .await?;
            for (line, why) in &report.rejected {
                eprintln!("line {line}: {why}");
            }
            println!(
                "{} rows read: {} inserted, {} updated, {} unchanged, {} rejected",
                report.rows,
                report.inserted,
                report.updated,
                report.unchanged,
                report.rejected.len()
            );
            match (&report.deactivated, &report.full_skipped) {
                (Some(n), _) => {
                    println!("--full: {n} instrument(s) of the dump's segments no longer listed, now inactive")
                }
                (None, Some(why)) => println!("--full: nothing deactivated: {why}"),
                _ => {}
            }
        }
        Command::Jobs { command } => jobs(settings, command).await?,
        Command::Events { command: EventsCommand::Rejected { json, limit } } => {
            let mut conn = queue::connect(settings.redis_url.expose()).await?;
            let list = bridge::list_rejected(&mut conn, &settings.queue, limit).await?;
            if json {
                println!("{}", serde_json::Value::Array(list));
            } else {
                let counts = queue::counters(&mut conn, &settings.queue).await?;
                for (name, n) in counts.iter().filter(|(k, _)| k.starts_with("events_")) {
                    println!("{name}: {n}");
                }
                for e in &list {
                    println!(
                        "{}  {:<18} {:>6} B  {}  {}",
                        e["at"].as_str().unwrap_or(""),
                        e["code"].as_str().unwrap_or(""),
                        e["bytes"],
                        e["reason"].as_str().unwrap_or(""),
                        e["message"].as_str().unwrap_or("").chars().take(80).collect::<String>().escape_debug()
                    );
                }
                if list.is_empty() {
                    println!("no rejected events");
                }
            }
        }
        Command::Bench { command: BenchCommand::Chain { strikes, minutes } } => {
            anyhow::ensure!(strikes > 0 && minutes > 0, "--strikes and --minutes must be positive");
            println!("{}", bench::chain(settings, strikes, minutes).await?);
        }
        Command::Bench { command: BenchCommand::Sweep { subscriptions } } => {
            anyhow::ensure!(subscriptions > 0, "--subscriptions must be positive");
            println!("{}", bench::sweep(settings, subscriptions).await?);
        }
        Command::Bench { command: BenchCommand::Chaos { events, workers, duration, limit } } => {
            anyhow::ensure!(limit > 0, "--limit must be positive");
            let opts = bench::chaos::ChaosOptions {
                events,
                workers,
                duration,
                limit,
                window_minutes: settings.window_minutes,
            };
            println!("{}", bench::chaos::run(opts).await?);
        }
        Command::Bench { command: BenchCommand::Ratelimit { workers, limit, duration, backlog } } => {
            let opts = bench::ratelimit::RateOptions { workers, limit, duration, backlog };
            println!("{}", bench::ratelimit::run(settings, opts).await?);
        }
        Command::Bench { command: BenchCommand::Throughput { instruments, workers } } => {
            let concurrency = settings.concurrency;
            let opts = bench::throughput::ThroughputOptions { instruments, workers, concurrency };
            println!("{}", bench::throughput::run(settings, opts).await?);
        }
        Command::Bench { command: BenchCommand::Instruments { rows } } => {
            println!("{}", bench::instruments::run(settings, rows).await?);
        }
        Command::Bench { command: BenchCommand::Latency { events, rate } } => {
            anyhow::ensure!(events > 0 && rate > 0.0, "--events and --rate must be positive");
            let out = bench::latency(settings, events, rate).await?;
            println!("{out}");
        }
    }
    Ok(())
}

async fn backfill(settings: Settings, a: BackfillArgs) -> anyhow::Result<()> {
    let mut conn = queue::connect(settings.redis_url.expose()).await?;
    if let Some(BackfillCommand::Cancel { token }) = a.command {
        let n = ops::cancel_backfills(&mut conn, &settings.queue, token).await?;
        println!("cancelled {n} pending backfill(s) of {token}");
        return Ok(());
    }
    let (Some(token), Some(from), Some(to)) = (a.token, a.from, a.to) else {
        anyhow::bail!("backfill needs --token, --from and --to (or: backfill cancel --token T)");
    };
    anyhow::ensure!(token > 0, "--token must be 1 … 4294967295");
    let mut producer = queue::Producer::new(conn, &settings);
    let chunks = ops::push_backfill(&mut producer, token, (from, to), a.force).await?;
    println!("pushed {} backfill job(s) for {token}", chunks.len());
    let job_ids: Vec<String> = chunks.into_iter().map(|(_, id)| id).collect();
    if a.no_wait {
        return Ok(());
    }
    let pool = store::connect(settings.database_url.expose(), 2).await?;
    let (rows, dead) = ops::wait_for_backfill(&pool, &job_ids).await?;
    println!("{rows} rows stored");
    anyhow::ensure!(dead == 0, "{dead} chunk(s) failed: see `tickfill status` and backfill_runs.error");
    Ok(())
}

fn print_status(rows: &[ops::SubscriptionStatus]) {
    if rows.is_empty() {
        println!("no active subscriptions");
        return;
    }
    println!(
        "{:>10}  {:<22} {:<20} {:>9}  {:>5} {:>8}  last run",
        "token", "symbol", "newest bar (UTC)", "age", "holes", "missing"
    );
    for r in rows {
        println!(
            "{:>10}  {:<22} {:<20} {:>9}  {:>5} {:>7}m  {}",
            r.instrument_token,
            r.tradingsymbol.as_deref().unwrap_or("?"),
            r.newest_bar.map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_else(|| "-".into()),
            r.newest_bar_age_s.map(|s| format!("{}m{:02}s", s / 60, s % 60)).unwrap_or_else(|| "-".into()),
            r.holes,
            r.missing_minutes,
            r.last_outcome.as_deref().unwrap_or("-"),
        );
    }
}

fn print_chain(v: &chain::ChainView) {
    let f = |x: Option<f64>| x.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
    let i = |x: Option<i64>| x.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
    println!(
        "{} {}  at {}  underlying {}  PCR(OI) {}  PCR(vol) {}  max pain {}",
        v.symbol,
        v.expiry,
        v.time.format("%Y-%m-%d %H:%M UTC"),
        f(v.underlying_close),
        v.pcr_oi.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into()),
        v.pcr_volume.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into()),
        f(v.max_pain)
    );
    println!(
        "{:>10} {:>8} {:>10} {:>6} | {:>9} | {:>6} {:>10} {:>8} {:>10}",
        "call OI", "vol", "close", "IV", "strike", "IV", "close", "vol", "put OI"
    );
    for s in &v.strikes {
        let mark = if Some(s.strike) == v.max_pain { "*" } else { " " };
        println!(
            "{:>10} {:>8} {:>10} {:>6} |{mark}{:>8.1} | {:>6} {:>10} {:>8} {:>10}",
            i(s.call_oi),
            i(s.call_volume),
            f(s.call_close),
            f(s.call_iv),
            s.strike,
            f(s.put_iv),
            f(s.put_close),
            i(s.put_volume),
            i(s.put_oi)
        );
    }
    println!("{:>10} total call OI, {} total put OI; * = max pain", v.call_oi, v.put_oi);
}

async fn jobs(settings: Settings, command: JobsCommand) -> anyhow::Result<()> {
    let mut conn = queue::connect(settings.redis_url.expose()).await?;
    let ns = settings.queue.clone();
    match command {
        JobsCommand::Resume => {
            if queue::resume(&mut conn, &ns).await? {
                println!("history requests resumed");
            } else {
                println!("history requests were not paused");
            }
        }
        JobsCommand::Stats { json } => {
            let stats = dead::stats(&mut conn, &ns).await?;
            if json {
                println!("{}", serde_json::to_string(&stats)?);
            } else {
                if let Some(p) = &queue::paused(&mut conn, &ns).await? {
                    println!(
                        "PAUSED: {} (since {}); renew the session, then run `tickfill jobs resume`\n",
                        p["reason"].as_str().unwrap_or("?"),
                        p["since"].as_str().unwrap_or("?")
                    );
                }
                println!(
                    "{:<7} {:>8} {:>9} {:>8} {:>8} {:>6}  oldest pending",
                    "lane", "pending", "scheduled", "running", "done", "dead"
                );
                for s in stats {
                    let age = s.oldest_pending_age_s.map(|a| format!("{a:.1}s")).unwrap_or_else(|| "-".into());
                    println!(
                        "{:<7} {:>8} {:>9} {:>8} {:>8} {:>6}  {age}",
                        s.lane, s.pending, s.scheduled, s.running, s.done, s.dead
                    );
                }
            }
        }
        JobsCommand::Dead { command: DeadCommand::List { json } } => {
            let list = dead::list(&mut conn, &ns).await?;
            if json {
                println!("{}", serde_json::to_string(&list)?);
            } else if list.is_empty() {
                println!("no dead jobs");
            } else {
                for d in list {
                    println!(
                        "{}  {:<6} {:<13} {:>10}  attempts {}  {}  {}",
                        d.id,
                        d.lane,
                        d.kind,
                        d.token.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                        d.attempts,
                        d.failed_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into()),
                        d.error.unwrap_or_default()
                    );
                }
            }
        }
        JobsCommand::Dead { command: DeadCommand::Show { id } } => match dead::show(&mut conn, &ns, &id).await? {
            Some(d) => println!("{}", serde_json::to_string_pretty(&d)?),
            None => anyhow::bail!("no dead job {id}"),
        },
        JobsCommand::Dead { command: DeadCommand::Retry { id, all, kind } } => {
            let list = dead::list(&mut conn, &ns).await?;
            let chosen: Vec<dead::DeadJob> = match (id, all, kind) {
                (Some(id), _, _) => {
                    let one: Vec<_> = list.into_iter().filter(|d| d.id == id).collect();
                    anyhow::ensure!(!one.is_empty(), "no dead job {id}");
                    one
                }
                (None, true, _) => list,
                (None, false, Some(k)) => list.into_iter().filter(|d| d.kind == k).collect(),
                (None, false, None) => anyhow::bail!("say which: an ID, --all or --kind K"),
            };
            let mut producer = queue::Producer::new(conn.clone(), &settings);
            let ids = dead::retry(&mut conn, &mut producer, &ns, &chosen).await?;
            println!("retried {} dead job(s)", ids.len());
        }
        JobsCommand::Dead { command: DeadCommand::Purge { older_than, all } } => {
            anyhow::ensure!(all || older_than.is_some(), "say which: --older-than DUR or --all");
            let before = older_than.map(|d| chrono::Utc::now() - chrono::Duration::from_std(d).unwrap_or_default());
            let n = dead::purge(&mut conn, &ns, before).await?;
            println!("purged {n} dead job(s)");
        }
    }
    Ok(())
}

/// Serves the admin API on `ADMIN_LISTEN` for a long-running process.
async fn serve_admin(settings: &Settings, pool: Option<sqlx::PgPool>, shutdown: &Shutdown) -> anyhow::Result<()> {
    let redis = queue::connect(settings.redis_url.expose()).await?;
    let state = tickfill::admin::AdminState { settings: settings.clone(), redis, pool };
    tickfill::admin::spawn(state, shutdown.clone())
        .await
        .with_context(|| format!("ADMIN_LISTEN={}: cannot listen there", settings.admin_listen))?;
    Ok(())
}
