//! `tickfill bench …`: the measurements, each printing one JSON line.

use clap::Subcommand;
use tickfill::{bench, config::Settings};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// PUBLISH → committed rows latency for distinct instruments; and the same with the bridge and
    /// a worker as processes, exporting traces to a receiver of the bench's own and not.
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
        /// Redis as a primary, a replica and three sentinels of its own: the primary frozen for
        /// 30 s, later the new primary killed; prints failovers, resume_after_promotion_s and
        /// events_replayed too.
        #[arg(long)]
        failover: bool,
    },
    /// The job explorer over many dead jobs and run rows, beside a raw read of the same; and a
    /// bulk retry of 1,000 matched jobs.
    Console {
        #[arg(long, default_value_t = 100_000)]
        dead: usize,
        #[arg(long, default_value_t = 1_000_000)]
        runs: usize,
    },
    /// A refill of N instruments against a simulator holding each account to --limit/s, with one
    /// account and then with --accounts.
    Accounts {
        #[arg(long, default_value_t = 3)]
        accounts: usize,
        #[arg(long, default_value_t = 600)]
        instruments: usize,
        #[arg(long, default_value_t = 3)]
        limit: u32,
        #[arg(long, default_value_t = 2)]
        workers: usize,
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
        /// Also time a `--full` reload (retiring what the dump no longer lists) beside the plain one.
        #[arg(long)]
        full: bool,
    },
    /// A worker against a ticker answering every history request with a huge streamed body:
    /// the answers refused, nothing stored, and the worker's memory.
    Oversize {
        #[arg(long, default_value_t = 200)]
        body_mib: u64,
        #[arg(long, default_value_t = 32)]
        jobs: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// The store against a simulator telling every lie (cut-short, holed, late and illiquid
    /// answers, then back-adjusted equities): sweeps and checks until it settles, then every
    /// stored minute compared with a simulator that does not lie.
    Truth {
        #[arg(long, default_value_t = 300)]
        instruments: usize,
        #[arg(long, default_value_t = 5)]
        days: u32,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Seeds the simulator's lies.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// The 1-minute upserts of N instruments over D days bare, then with the plain path's
    /// rollup upkeep, and the continuous-aggregate refresh where TimescaleDB can be used.
    Rollups {
        #[arg(long, default_value_t = 200)]
        instruments: usize,
        #[arg(long, default_value_t = 5)]
        days: u32,
    },
    /// Time to plan the sweep of N subscriptions, and the jobs it pushes.
    Sweep {
        #[arg(long, default_value_t = 2000)]
        subscriptions: usize,
        /// Also plan a store where each subscription misses this many half-hours in the last week.
        #[arg(long, default_value_t = 0)]
        holes: usize,
    },
}

pub async fn run(mut settings: Settings, command: BenchCommand) -> anyhow::Result<()> {
    // Every bench runs its own simulator, which serves every minute: so does the store's calendar.
    settings.backfill.calendar = tickfill::domain::calendar::TradingCalendar::Always;
    let line = match command {
        BenchCommand::Chain { strikes, minutes } => {
            anyhow::ensure!(strikes > 0 && minutes > 0, "--strikes and --minutes must be positive");
            bench::chain(settings, strikes, minutes).await?
        }
        BenchCommand::Sweep { subscriptions, holes } => {
            anyhow::ensure!(subscriptions > 0, "--subscriptions must be positive");
            anyhow::ensure!(holes <= 100, "--holes must be at most 100");
            bench::sweep(settings, subscriptions, holes).await?
        }
        BenchCommand::Chaos { events, workers, duration, limit, failover } => {
            anyhow::ensure!(limit > 0, "--limit must be positive");
            let window_minutes = settings.backfill.window_minutes;
            let opts = bench::chaos::ChaosOptions { events, workers, duration, limit, window_minutes, failover };
            bench::chaos::run(opts).await?
        }
        BenchCommand::Console { dead, runs } => {
            bench::console::run(settings, bench::console::ConsoleOptions { dead, runs }).await?
        }
        BenchCommand::Accounts { accounts, instruments, limit, workers } => {
            let opts = bench::accounts::AccountsOptions { accounts, instruments, limit, workers };
            bench::accounts::run(settings, opts).await?
        }
        BenchCommand::Ratelimit { workers, limit, duration, backlog } => {
            bench::ratelimit::run(settings, bench::ratelimit::RateOptions { workers, limit, duration, backlog }).await?
        }
        BenchCommand::Throughput { instruments, workers } => {
            let concurrency = settings.queue.concurrency;
            let opts = bench::throughput::ThroughputOptions { instruments, workers, concurrency };
            bench::throughput::run(settings, opts).await?
        }
        BenchCommand::Oversize { body_mib, jobs, concurrency } => {
            bench::oversize::run(settings, bench::oversize::OversizeOptions { body_mib, jobs, concurrency }).await?
        }
        BenchCommand::Instruments { rows, full } => bench::instruments::run(settings, rows, full).await?,
        BenchCommand::Truth { instruments, days, workers, seed } => {
            bench::truth::run(settings, bench::truth::TruthOptions { instruments, days, workers, seed }).await?
        }
        BenchCommand::Rollups { instruments, days } => {
            anyhow::ensure!((1..=100_000).contains(&instruments), "--instruments must be 1 … 100000");
            anyhow::ensure!((1..=60).contains(&days), "--days must be 1 … 60");
            bench::rollups::run(settings, bench::rollups::RollupOptions { instruments, days }).await?
        }
        BenchCommand::Latency { events, rate } => {
            anyhow::ensure!(events > 0 && rate > 0.0, "--events and --rate must be positive");
            let mut line = bench::latency(settings.clone(), events, rate).await?;
            // Beside it, the same path as processes with traces exported and without.
            let traced = bench::traced::overhead(&settings, events, rate).await?;
            if let (Some(l), Some(t)) = (line.as_object_mut(), traced.as_object()) {
                l.extend(t.clone());
            }
            line
        }
    };
    say!("{line}");
    Ok(())
}
