//! `tickfill bench accounts`: a refill of N instruments (one history request each) by worker
//! processes against a simulator that holds each account to `--limit` requests a second, run with
//! one account and then with `--accounts` in the same run.
//!
//! Prints `speedup` (the one-account wall time over the many-account one), the simulator's
//! `peak_rps_per_account` (most requests of any account in any one-second window, both runs),
//! `mean_rps_per_account` (of the many-account run, the lowest account's requests over the time
//! the refill took), `throttled` (429s, both runs) and `jobs_dead`.

use std::time::{Duration, Instant};

use chrono::{Duration as Span, Utc};
use serde_json::{json, Value};
use tickfill_jobs::{InstrumentToken, Job, Reason};

use super::{
    procs::{wait_for, Fleet},
    sim_and_store_with, with_processes,
};
use crate::{config::Settings, domain::window::immediate_window, queue, shutdown::Shutdown, sim};

/// What to run.
pub struct AccountsOptions {
    pub accounts: usize,
    pub instruments: usize,
    pub limit: u32,
    pub workers: usize,
}

/// The simulator's names of the accounts.
fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("acct{i}")).collect()
}

pub async fn run(base: Settings, opts: AccountsOptions) -> anyhow::Result<Value> {
    anyhow::ensure!(
        (2..=16).contains(&opts.accounts) && opts.instruments > 0 && opts.limit > 0 && opts.workers > 0,
        "--accounts must be 2 to 16; --instruments, --limit and --workers at least 1"
    );
    let one = phase(&base, &opts, 1).await?;
    let many = phase(&base, &opts, opts.accounts).await?;
    let wall = |p: &Value| p["wall_s"].as_f64().unwrap_or(f64::NAN);
    let round = |x: f64| (x * 100.0).round() / 100.0;
    let peak = [&one, &many].iter().filter_map(|p| p["peak_rps_per_account"].as_u64()).max().unwrap_or(0);
    Ok(json!({
        "speedup": round(wall(&one) / wall(&many)),
        "peak_rps_per_account": peak,
        "mean_rps_per_account": many["mean_rps_lowest_account"],
        "throttled": one["throttled"].as_u64().unwrap_or(0) + many["throttled"].as_u64().unwrap_or(0),
        "jobs_dead": one["jobs_dead"].as_u64().unwrap_or(0) + many["jobs_dead"].as_u64().unwrap_or(0),
        "instruments": opts.instruments,
        "limit_rps": opts.limit,
        "accounts": opts.accounts,
        "workers": opts.workers,
        "one_account": one,
        "many_accounts": many,
    }))
}

/// One refill with the first `k` accounts configured.
async fn phase(base: &Settings, opts: &AccountsOptions, k: usize) -> anyhow::Result<Value> {
    with_processes(base, "accounts", |db_url, id, dir| async move {
        let shutdown = Shutdown::new();
        let sim_opts = sim::SimOptions {
            universe: opts.instruments,
            max_rps: Some(opts.limit),
            accounts: names(opts.accounts),
            ..Default::default()
        };
        let (sim_url, pool, tokens) = sim_and_store_with(&db_url, sim_opts, 4, &shutdown).await?;
        let long_ago = Utc::now() - Span::days(2);
        super::subscribe_all(&pool, &tokens, long_ago).await?;

        let accounts = names(k).join(",");
        let limit = opts.limit.to_string();
        let extra = [
            ("TICKFILL_ACCOUNTS", accounts.as_str()),
            ("TICKER_RATE_LIMIT", limit.as_str()),
            ("TICKER_RECONCILE", "false"),
            ("TICKFILL_SHUTDOWN_TIMEOUT", "2s"),
        ];
        let mut fleet = Fleet::new(&dir, &db_url, &base.redis.target, &id, &sim_url, &extra)?;
        for _ in 0..opts.workers {
            fleet.add("worker", &[])?;
        }
        let mut settings = base.clone();
        settings.queue.name = id.clone();
        let mut redis = queue::connect(&base.redis).await?;
        // The workers are up once each has registered its lanes with apalis.
        let ns = id.clone();
        wait_for(60, "the workers to start", || {
            let (mut redis, ns) = (redis.clone(), ns.clone());
            async move {
                let keys: Vec<String> =
                    redis::cmd("KEYS").arg(format!("{ns}:bulk:*")).query_async(&mut redis).await.unwrap_or_default();
                !keys.is_empty()
            }
        })
        .await?;

        // The refill: one window of one hour for each instrument, on the bulk lane.
        let crate::domain::window::Window { from, to } = immediate_window(long_ago + Span::hours(3), 60);
        let jobs: Vec<Job> = tokens
            .iter()
            .map(|t| Job::Backfill {
                token: InstrumentToken::new((*t).into()).expect("a simulator token"),
                from,
                to,
                reason: Reason::Sweep,
                force: false,
            })
            .collect();
        let started = Instant::now();
        queue::Producer::new(redis.clone(), &settings).push_many(&jobs).await?;
        let done = || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM backfill_runs WHERE outcome IN ('stored', 'dead')")
                .fetch_one(&pool)
                .await
                .is_ok_and(|n| n as usize >= tokens.len())
        };
        // Generous: one account at the limit, plus start-up.
        let deadline = 120 + 2 * (opts.instruments as u64 / opts.limit as u64);
        wait_for(deadline, "the refill to finish", done).await?;
        let wall = started.elapsed().as_secs_f64();
        let stats: Value = reqwest::get(format!("{sim_url}/stats")).await?.json().await?;
        fleet.stop_all(Duration::from_secs(5));
        // Per account: its requests over the span from the refill's first start to its last
        // commit (every account had work waiting all along).
        let per_account: Vec<(Option<String>, i64, f64)> = sqlx::query_as(
            "SELECT accounts, count(*), EXTRACT(EPOCH FROM max(finished_at) - min(started_at))::float8
             FROM backfill_runs WHERE outcome = 'stored' GROUP BY accounts ORDER BY accounts",
        )
        .fetch_all(&pool)
        .await?;
        let dead: i64 =
            sqlx::query_scalar("SELECT count(*) FROM backfill_runs WHERE outcome = 'dead'").fetch_one(&pool).await?;
        let dead_set = queue::stats::stats(&mut redis, &id).await?.iter().map(|l| l.dead).sum::<u64>();
        shutdown.trigger();
        pool.close().await;
        let round = |x: f64| (x * 100.0).round() / 100.0;
        let by_account = &stats["by_account"];
        let used = names(k);
        let peak = used.iter().filter_map(|a| by_account[a]["peak_rps"].as_u64()).max().unwrap_or(0);
        let throttled = stats["by_status"]["429"].as_u64().unwrap_or(0);
        let means: Vec<(String, f64)> = per_account
            .iter()
            .map(|(a, n, span)| (a.clone().unwrap_or_default(), round(*n as f64 / span.max(1e-3))))
            .collect();
        let lowest = means.iter().map(|(_, m)| *m).fold(f64::INFINITY, f64::min);
        Ok(json!({
            "accounts": k,
            "wall_s": round(wall),
            "peak_rps_per_account": peak,
            "mean_rps_lowest_account": round(lowest),
            "mean_rps": means.into_iter().map(|(a, m)| (a, json!(m))).collect::<serde_json::Map<String, Value>>(),
            "requests": used.iter().map(|a| (a.clone(), by_account[a]["history_requests"].clone())).collect::<serde_json::Map<_, _>>(),
            "throttled": throttled,
            "jobs_dead": dead.max(dead_set as i64),
        }))
    })
    .await
}
