//! The `tickfill` binary: one subcommand per process or operator task.

use std::net::SocketAddr;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tickfill::{
    bench, bridge, config::Settings, dev, load, queue, shutdown::Shutdown, sim, store, telemetry,
    worker,
};

#[derive(Parser)]
#[command(
    name = "tickfill",
    version,
    about = "Durable 1-minute history backfill for subscribed instruments"
)]
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
    /// Run the whole pipeline locally (migrations, simulator, instruments, bridge, worker).
    Dev,
    /// Serve the ticker-service simulator.
    Sim(SimArgs),
    /// Instrument dump operations.
    Instruments {
        #[command(subcommand)]
        command: InstrumentsCommand,
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
    Load { source: String },
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
            println!(
                "migrations applied; bar tables: {:?}",
                store::bar_storage(&pool).await?
            );
        }
        Command::Bridge => {
            shutdown.on_signals();
            bridge::run(settings, shutdown).await?;
        }
        Command::Worker => {
            shutdown.on_signals();
            let state = worker::build_state(settings, None).await?;
            worker::run(state, shutdown).await?;
        }
        Command::Dev => {
            shutdown.on_signals();
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
                redis_url: Some(settings.redis_url.expose().to_string()),
                channel_prefix: settings.channel_prefix.clone(),
            };
            let listener = tokio::net::TcpListener::bind(a.listen)
                .await
                .with_context(|| format!("failed to bind {}", a.listen))?;
            sim::serve(listener, opts, shutdown).await?;
        }
        Command::Instruments {
            command: InstrumentsCommand::Load { source },
        } => {
            let pool = store::connect(settings.database_url.expose(), 2).await?;
            let bytes = load::read_source(&source).await?;
            let report = load::load(&pool, &bytes).await?;
            for (line, why) in &report.rejected {
                eprintln!("line {line}: {why}");
            }
            println!(
                "{} rows read, {} upserted, {} rejected",
                report.rows,
                report.upserted,
                report.rejected.len()
            );
        }
        Command::Events {
            command: EventsCommand::Rejected { json, limit },
        } => {
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
                        e["message"]
                            .as_str()
                            .unwrap_or("")
                            .chars()
                            .take(80)
                            .collect::<String>()
                            .escape_debug()
                    );
                }
                if list.is_empty() {
                    println!("no rejected events");
                }
            }
        }
        Command::Bench {
            command: BenchCommand::Latency { events, rate },
        } => {
            anyhow::ensure!(
                events > 0 && rate > 0.0,
                "--events and --rate must be positive"
            );
            let out = bench::latency(settings, events, rate).await?;
            println!("{out}");
        }
    }
    Ok(())
}
