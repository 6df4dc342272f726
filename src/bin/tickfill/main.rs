//! The `tickfill` binary: parses the command line and hands it to the module of its command
//! group. One process or operator task per subcommand; the work itself lives in the library.

/// `println!` that ends the process quietly when stdout is a closed pipe (`… | head -1`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("tickfill: cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }};
}

mod accounts;
mod args;
mod audit;
mod backfill;
mod bars;
mod bench;
mod calendar;
mod events;
mod instruments;
mod jobs;
mod processes;
mod sim;
mod status;
mod sweeps;

use clap::{Parser, Subcommand};
use tickfill::{config::Settings, telemetry};

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
    Backfill(backfill::BackfillArgs),
    /// One instrument's bars at a timeframe: 1m, or the 5m, 15m, 1h and 1d rollups.
    Bars(bars::BarsArgs),
    /// An option chain at a minute: per-strike calls and puts, PCR and max pain.
    Chain {
        #[arg(long)]
        underlying: String,
        #[arg(long)]
        expiry: chrono::NaiveDate,
        /// The minute to show (RFC 3339); default the latest.
        #[arg(long, value_parser = args::instant)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long)]
        json: bool,
    },
    /// Per active subscription: newest bar, its age, coverage holes, suspect minutes, days by
    /// state, last outcome.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// One instrument's days: state, trading, stored, suspect and confirmed-empty minutes,
    /// checks and revisions.
    Quality(status::QualityArgs),
    /// An exchange's trading calendar for a year: sessions, holidays, special sessions.
    Calendar(calendar::CalendarArgs),
    /// Run the whole pipeline locally (migrations, simulator, instruments, bridge, worker).
    Dev,
    /// Serve the ticker-service simulator.
    Sim(sim::SimArgs),
    /// Instrument dump operations.
    Instruments {
        #[command(subcommand)]
        command: instruments::InstrumentsCommand,
    },
    /// Queue operations: dead letters and figures.
    Jobs {
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// Event operations.
    Events {
        #[command(subcommand)]
        command: events::EventsCommand,
    },
    /// Every account: limit, grants of the last minute, waiting requests, session, breaker.
    Accounts {
        /// A JSON array, one object per account.
        #[arg(long)]
        json: bool,
    },
    /// Kite sessions: log an account in, or set its session by hand.
    Kite {
        #[command(subcommand)]
        command: accounts::KiteCommand,
    },
    /// The sweeps: schedule, last and next tick, last 60; `now`, `pause`, `resume`.
    Sweeps {
        #[command(subcommand)]
        command: Option<sweeps::SweepsCommand>,
        #[arg(long)]
        json: bool,
    },
    /// Every change made through the admin API or the CLI, newest first: who, what, how many.
    Audit {
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Measurements (each prints one JSON line).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
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
    let service = match &cli.command {
        Command::Bridge => "bridge",
        Command::Worker => "worker",
        Command::Scheduler => "scheduler",
        Command::Dev => "dev",
        Command::Sim(_) => "sim",
        Command::Bench { .. } => "bench",
        _ => "cli",
    };
    let _traces = telemetry::init(&settings.log.level, settings.log.format, service);
    match dispatch(cli.command, settings).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tickfill: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Migrate => processes::migrate(settings).await,
        Command::Calendar(a) => calendar::run(&settings, a),
        Command::Bridge => processes::bridge(settings).await,
        Command::Worker => processes::worker(settings).await,
        Command::Scheduler => processes::scheduler(settings).await,
        Command::Dev => processes::dev(settings).await,
        Command::Sim(a) => sim::run(settings, a).await,
        Command::Backfill(a) => backfill::run(settings, a).await,
        Command::Bars(a) => bars::run(settings, a).await,
        Command::Status { json } => status::run_status(settings, json).await,
        Command::Quality(a) => status::run_quality(settings, a).await,
        Command::Chain { underlying, expiry, at, json } => {
            status::run_chain(settings, &underlying, expiry, at, json).await
        }
        Command::Instruments { command } => instruments::run(settings, command).await,
        Command::Jobs { command } => jobs::run(settings, command).await,
        Command::Events { command } => events::run(settings, command).await,
        Command::Bench { command } => bench::run(settings, command).await,
        Command::Audit { limit, json } => audit::run(settings, limit, json).await,
        Command::Sweeps { command, json } => sweeps::run(settings, command, json).await,
        Command::Accounts { json } => accounts::run_accounts(settings, json).await,
        Command::Kite { command } => accounts::run_kite(settings, command).await,
    }
}
