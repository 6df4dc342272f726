//! `tickfill bench truth`: does the store converge to the truth against a source that lies?
//!
//! A simulator of its own tells every lie at once (answers cut short, holes inside, the newest
//! minutes late, illiquid options' no-trade minutes), with the rate limit lifted. `--instruments`
//! subscriptions (the index, its futures and options, the rest equities) each want `--days` days
//! of history; worker processes fill them. Then the equities' ex-date passes: the simulator is
//! restarted serving some equities' history before a date multiplied by a ratio, as Kite
//! back-adjusts, and a scheduler's sweeps and checks run until nothing is suspect and every
//! settled day is final, or 10 minutes pass. Every stored minute is then compared with a simulator
//! that does not lie (serving the adjusted history, the truth after the ex-date).
//!
//! Prints the lies told, the minutes missing, wrong and silently covered (the source has them, the
//! store lacks them and calls them covered), suspect minutes reported, revisions, the requests per
//! instrument-day and what they would take at 3 requests/s, and how long it took to settle.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use anyhow::Context;
use chrono::{DateTime, Duration as Span, NaiveDate, Utc};
use serde_json::json;
use sqlx::PgPool;
use tickfill_jobs::{EventType, InstrumentToken, Job, SubscriptionEvent};

use super::{
    procs::{wait_for, Fleet},
    with_processes,
};
use crate::{
    config::Settings,
    domain::{
        market::Candle,
        window::{floor_minute, Window},
    },
    load, queue,
    shutdown::Shutdown,
    sim::{
        self,
        lies::{Adjustment, Lies},
        SimOptions,
    },
    store,
    ticker::TickerClient,
};

/// What to run.
pub struct TruthOptions {
    pub instruments: usize,
    pub days: u32,
    pub workers: usize,
    pub seed: u64,
}

/// The simulator's instruments before its synthetic equities: the index, 2 futures, 84 options.
const NOT_EQUITIES: usize = 87;

/// How long the bench waits for the store to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(600);

/// The history requests per second the budget allows a Kite key.
const KITE_RPS: f64 = 3.0;

pub async fn run(base: Settings, opts: TruthOptions) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        opts.instruments > NOT_EQUITIES + 2,
        "--instruments must be more than {} (the index, futures and options, and some equities)",
        NOT_EQUITIES + 2
    );
    anyhow::ensure!((1..=30).contains(&opts.days), "--days must be 1 to 30");
    anyhow::ensure!(opts.workers > 0, "--workers must be at least 1");
    let (base, opts) = (&base, &opts);
    with_processes(base, "truth", |db_url, id, dir| async move { run_in(base, &db_url, &id, &dir, opts).await }).await
}

/// What is true of the universe: which option contracts do not trade every minute, and (after the
/// ex-date) which equities' history is adjusted. Not lies: a source that tells the truth has them.
fn facts(seed: u64, adjust: Vec<Adjustment>) -> Lies {
    Lies { seed, illiquid_share: 0.3, adjust, ..Default::default() }
}

/// The lies of the run, on top of the facts.
fn lies(seed: u64, adjust: Vec<Adjustment>) -> Lies {
    Lies { truncate_rate: 0.15, hole_rate: 0.15, lag_minutes: 2, ..facts(seed, adjust) }
}

async fn run_in(
    base: &Settings,
    db_url: &str,
    id: &str,
    dir: &std::path::Path,
    opts: &TruthOptions,
) -> anyhow::Result<serde_json::Value> {
    let started = Instant::now();
    let equities = opts.instruments - NOT_EQUITIES;
    let sim_opts = |lies: Lies| SimOptions { universe: equities, lies, ..Default::default() };
    let stop_a = Shutdown::new();
    let addr = sim::spawn("127.0.0.1:0".parse()?, sim_opts(lies(opts.seed, vec![])), stop_a.clone()).await?;
    let sim_url = format!("http://{addr}");
    let pool = store::connect(db_url, 4).await?;
    store::migrate(&pool, &Default::default()).await?;
    let dump = load::read_source(&format!("{sim_url}/instruments")).await?;
    load::load(&pool, &dump).await?;
    let tokens: Vec<u32> =
        super::universe_tokens(&dump)?.into_iter().take(opts.instruments).map(InstrumentToken::get).collect();
    anyhow::ensure!(tokens.len() == opts.instruments, "the simulator serves only {} instruments", tokens.len());

    // Phase 1, before the ex-date: the subscriptions' own backfills.
    let window_minutes = (opts.days * 1440).to_string();
    let lookback = format!("{}m", opts.days * 1440 + 1440);
    let extra = [
        ("TICKER_RATE_LIMIT", "0"),
        ("TICKER_RECONCILE", "false"),
        ("BACKFILL_WINDOW_MINUTES", window_minutes.as_str()),
        ("BACKFILL_LOOKBACK", lookback.as_str()),
        ("BACKFILL_VERIFY", "true"),
        ("SWEEP_INTERVAL", "1s"),
        ("TICKFILL_SHUTDOWN_TIMEOUT", "2s"),
    ];
    let mut fleet = Fleet::new(dir, db_url, &base.redis.target, id, &sim_url, &extra)?;
    for _ in 0..opts.workers {
        fleet.add("worker", &[])?;
    }
    let mut settings = base.clone();
    settings.queue.name = id.to_string();
    let mut producer = queue::Producer::new(queue::connect(&base.redis).await?, &settings);
    let t0 = Utc::now();
    let jobs: Vec<Job> = tokens
        .iter()
        .map(|t| {
            let event = SubscriptionEvent {
                event_type: EventType::SubscriptionCreated,
                instrument_token: InstrumentToken::new((*t).into()).expect("a simulator token"),
                tradingsymbol: None,
                segment: None,
                requested_mode: Some("full".into()),
                account_id: None,
                published_at: Some(t0.timestamp()),
                received_ms: t0.timestamp_millis(),
            };
            Job::Subscribed { event }
        })
        .collect();
    producer.push_many(&jobs).await?;
    let runs = |reason: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM backfill_runs WHERE reason = $1 AND outcome = 'stored'")
                .bind(reason)
                .fetch_one(&pool)
                .await
                .unwrap_or(0)
        }
    };
    wait_for(300, "the subscriptions' backfills", || async { runs("subscribe").await as usize >= tokens.len() })
        .await?;
    let told_before = stats(&sim_url).await?;

    // The ex-date: the simulator restarts serving some equities adjusted before two days ago.
    let ex_date = (t0 - Span::days(2)).with_timezone(&crate::domain::calendar::ist()).date_naive();
    let adjusted: Vec<Adjustment> = tokens[NOT_EQUITIES..]
        .iter()
        .take((equities / 50).max(2))
        .map(|t| Adjustment { token: *t, before: ex_date, ratio: 0.5 })
        .collect();
    // The instrument-days whose stored history the ex-date makes stale: each must be found.
    let ex_start = ex_date
        .and_hms_opt(0, 0, 0)
        .and_then(|d| d.and_local_timezone(crate::domain::calendar::ist()).single())
        .context("the ex-date's midnight")?;
    let stale: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT (instrument_token, ((time AT TIME ZONE 'UTC') + interval '5 hours 30 minutes')::date))
         FROM minute_bars WHERE instrument_token = ANY($1) AND time < $2",
    )
    .bind(adjusted.iter().map(|a| a.token as i64).collect::<Vec<_>>())
    .bind(ex_start)
    .fetch_one(&pool)
    .await?;
    stop_a.trigger();
    let stop_b = Shutdown::new();
    respawn(addr, sim_opts(lies(opts.seed, adjusted.clone())), &stop_b).await?;

    // Phase 2: sweeps and checks until the store settles.
    fleet.add("scheduler", &[])?;
    let windows = subscription_windows(&pool).await?;
    let cut = floor_minute(t0);
    let expected_final = final_days_wanted(&windows, cut);
    let mut peak_suspects = 0i64;
    let settled = loop {
        let suspects: i64 = sqlx::query_scalar("SELECT count(*) FROM suspect_minutes WHERE minute < $1")
            .bind(cut)
            .fetch_one(&pool)
            .await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM suspect_minutes").fetch_one(&pool).await?;
        peak_suspects = peak_suspects.max(total);
        let finals: i64 =
            sqlx::query_scalar("SELECT count(*) FROM day_checks WHERE checked_at IS NOT NULL AND day < $1::date")
                .bind(crate::domain::days::ist_date(cut))
                .fetch_one(&pool)
                .await?;
        let unproved = unproved_minutes(&pool, &windows, cut).await?;
        if suspects == 0 && unproved == 0 && finals >= expected_final && runs("verify").await > 0 {
            break Some(started.elapsed());
        }
        if started.elapsed() > SETTLE_LIMIT {
            type Left = (i64, DateTime<Utc>, i32, i32, DateTime<Utc>, bool);
            let left: Vec<Left> = sqlx::query_as(
                "SELECT instrument_token, minute, asks, inside, next_ask_at, tail FROM suspect_minutes
                 WHERE minute < $1 ORDER BY 1, 2 LIMIT 20",
            )
            .bind(cut)
            .fetch_all(&pool)
            .await?;
            // The days checked but not accepted (days never checked have no row).
            type Day = (i64, chrono::NaiveDate, i32, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
            let open_days: Vec<Day> = sqlx::query_as(
                "SELECT instrument_token, day, checks, last_check_at, stale_since FROM day_checks
                 WHERE checked_at IS NULL AND day < $1::date ORDER BY 1, 2 LIMIT 20",
            )
            .bind(crate::domain::days::ist_date(cut))
            .fetch_all(&pool)
            .await?;
            tracing::warn!(
                suspects,
                unproved,
                finals,
                expected_final,
                ?left,
                ?open_days,
                "the store did not settle in time"
            );
            break None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let told_after = stats(&sim_url).await?;
    fleet.stop_all(Duration::from_secs(5));
    stop_b.trigger();

    // The truth: a simulator that does not lie, after the ex-date.
    let stop_c = Shutdown::new();
    let truth_addr =
        sim::spawn("127.0.0.1:0".parse()?, sim_opts(facts(opts.seed, adjusted.clone())), stop_c.clone()).await?;
    let mut truth_settings = base.clone();
    truth_settings.ticker.url = format!("http://{truth_addr}");
    truth_settings.ticker.rate_limit = 0;
    let truth = TickerClient::new(&truth_settings)?;
    let mut cmp = Compared::default();
    for (token, window) in &windows {
        let window = Window::new(window.from, window.to.min(cut));
        let want = truth
            .history(super::tok(*token), window, Default::default())
            .await
            .map_err(|e| anyhow::anyhow!("truth for {token}: {e}"))?;
        compare(&pool, super::tok(*token), window, &want, &mut cmp).await?;
    }
    stop_c.trigger();
    let revisions = store::days::total_revisions(&pool).await?;
    let found: Vec<i64> =
        sqlx::query_scalar("SELECT DISTINCT instrument_token FROM day_checks WHERE adjustment IS NOT NULL ORDER BY 1")
            .fetch_all(&pool)
            .await?;
    let stale_found: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM day_checks WHERE instrument_token = ANY($1) AND day < $2 AND revisions > 0",
    )
    .bind(adjusted.iter().map(|a| a.token as i64).collect::<Vec<_>>())
    .bind(ex_date)
    .fetch_one(&pool)
    .await?;
    let other_revisions: Vec<(i64, NaiveDate, i32, i32)> = sqlx::query_as(
        "SELECT instrument_token, day, revisions, revised_minutes FROM day_checks
         WHERE revisions > 0 AND NOT (instrument_token = ANY($1) AND day < $2) ORDER BY 1, 2",
    )
    .bind(adjusted.iter().map(|a| a.token as i64).collect::<Vec<_>>())
    .bind(ex_date)
    .fetch_all(&pool)
    .await?;
    if !other_revisions.is_empty() {
        tracing::info!(?other_revisions, "revisions outside the adjusted days");
    }
    let confirmed_empty: i64 = sqlx::query_scalar("SELECT count(*) FROM confirmed_empty").fetch_one(&pool).await?;
    pool.close().await;
    let requests =
        told_before["history_requests"].as_u64().unwrap_or(0) + told_after["history_requests"].as_u64().unwrap_or(0);
    let fault =
        |k: &str| told_before["faults"][k].as_u64().unwrap_or(0) + told_after["faults"][k].as_u64().unwrap_or(0);
    let instrument_days = (windows.len() as u64 * opts.days as u64).max(1);
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    Ok(json!({
        "instrument_days": instrument_days,
        "faults": {
            "truncated": fault("truncated"),
            "holes": fault("holes"),
            "lagged": fault("lagged"),
            "illiquid_minutes": fault("illiquid_minutes"),
            "adjusted": stale,
        },
        "adjusted_days_served": told_after["faults"]["adjusted"],
        "missing_minutes": cmp.missing,
        "wrong_minutes": cmp.wrong,
        "silently_covered_minutes": cmp.silently_covered,
        "suspect_minutes_reported": peak_suspects,
        "confirmed_empty_minutes": confirmed_empty,
        "revisions": revisions,
        "stale_days_found": stale_found,
        "other_revised_days": other_revisions.len(),
        "adjustments": adjusted.len(),
        "adjustments_found": found.len(),
        "requests": requests,
        "requests_per_instrument_day": round(requests as f64 / instrument_days as f64),
        "budget_at_3rps_s": round(requests as f64 / KITE_RPS),
        "rate_limit": "lifted",
        "settle_s": settled.map(|d| round(d.as_secs_f64())),
        "compared_minutes": cmp.compared,
        "instruments": windows.len(),
        "seed": opts.seed,
    }))
}

/// Starts a simulator on `addr` again (the old one has stopped accepting, and may take a moment
/// to let the port go).
async fn respawn(addr: std::net::SocketAddr, opts: SimOptions, stop: &Shutdown) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match sim::spawn(addr, opts.clone(), stop.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < until => {
                tracing::debug!(error = %e, "the simulator's port is not free yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.context("restarting the simulator on its port")),
        }
    }
}

async fn stats(sim_url: &str) -> anyhow::Result<serde_json::Value> {
    Ok(reqwest::get(format!("{sim_url}/stats")).await?.json().await?)
}

/// Each subscription's window, as its backfill recorded it.
async fn subscription_windows(pool: &PgPool) -> sqlx::Result<Vec<(u32, Window)>> {
    let rows: Vec<(i64, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT instrument_token, window_from, window_to FROM backfill_runs WHERE reason = 'subscribe' ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(t, a, b)| (t as u32, Window::new(a, b))).collect())
}

/// Minutes of the windows before `cut` that coverage does not hold (neither stored nor confirmed
/// empty): holes still to fetch.
async fn unproved_minutes(pool: &PgPool, windows: &[(u32, Window)], cut: DateTime<Utc>) -> sqlx::Result<i64> {
    let rows: Vec<(i64, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT instrument_token, window_from, window_to FROM coverage WHERE window_from < $1 ORDER BY 1, 2",
    )
    .bind(cut)
    .fetch_all(pool)
    .await?;
    let mut by: HashMap<u32, Vec<Window>> = HashMap::new();
    for (t, a, b) in rows {
        by.entry(t as u32).or_default().push(Window::new(a, b));
    }
    let none = Vec::new();
    Ok(windows
        .iter()
        .map(|(t, w)| {
            let w = Window::new(w.from, w.to.min(cut));
            w.holes(by.get(t).unwrap_or(&none)).iter().map(Window::minutes).sum::<i64>()
        })
        .sum())
}

/// The instrument-days that must end final: every IST day of each window that ended before
/// `cut`'s day (every minute trades under the bench's calendar).
fn final_days_wanted(windows: &[(u32, Window)], cut: DateTime<Utc>) -> i64 {
    let today = crate::domain::days::ist_date(cut);
    windows
        .iter()
        .map(|(_, w)| {
            let first: NaiveDate = crate::domain::days::ist_date(w.from);
            first.iter_days().take_while(|d| *d < today).count() as i64
        })
        .sum()
}

/// What the comparison found.
#[derive(Debug, Default)]
struct Compared {
    compared: u64,
    missing: u64,
    wrong: u64,
    silently_covered: u64,
}

/// The stored bars of `token` in `window` against the true candles `want`.
async fn compare(
    pool: &PgPool,
    token: InstrumentToken,
    window: Window,
    want: &[Candle],
    cmp: &mut Compared,
) -> anyhow::Result<()> {
    type Row = (DateTime<Utc>, f64, f64, f64, f64, i64, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT time, open, high, low, close, volume, NULL::bigint FROM minute_bars
             WHERE instrument_token = $1 AND time >= $2 AND time < $3
         UNION ALL SELECT time, open, high, low, close, volume, oi FROM futures_bars
             WHERE instrument_token = $1 AND time >= $2 AND time < $3
         UNION ALL SELECT time, open, high, low, close, volume, oi FROM option_bars
             WHERE instrument_token = $1 AND time >= $2 AND time < $3",
    )
    .bind(i64::from(token.get()))
    .bind(window.from)
    .bind(window.to)
    .fetch_all(pool)
    .await?;
    let stored: HashMap<DateTime<Utc>, Row> = rows.into_iter().map(|r| (r.0, r)).collect();
    let coverage: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT window_from, window_to FROM coverage WHERE instrument_token = $1 AND window_to > $2 AND window_from < $3",
    )
    .bind(i64::from(token.get()))
    .bind(window.from)
    .bind(window.to)
    .fetch_all(pool)
    .await?;
    let empty: HashMap<DateTime<Utc>, String> = sqlx::query_as(
        "SELECT minute, reason FROM confirmed_empty WHERE instrument_token = $1 AND minute >= $2 AND minute < $3",
    )
    .bind(i64::from(token.get()))
    .bind(window.from)
    .bind(window.to)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let truth: HashSet<DateTime<Utc>> = want.iter().map(|c| c.time).collect();
    for c in want {
        cmp.compared += 1;
        match stored.get(&c.time) {
            None => {
                cmp.missing += 1;
                let covered = empty.contains_key(&c.time) || coverage.iter().any(|(a, b)| *a <= c.time && c.time < *b);
                cmp.silently_covered += u64::from(covered);
                if let Some(why) = empty.get(&c.time) {
                    tracing::warn!(token = token.get(), minute = %c.time, why, "a minute the source has was confirmed empty");
                }
            }
            Some(&(_, o, h, l, cl, v, oi)) => {
                let oi_differs = oi.is_some() && oi != c.oi;
                if (o, h, l, cl, v) != (c.open, c.high, c.low, c.close, c.volume) || oi_differs {
                    cmp.wrong += 1;
                }
            }
        }
    }
    // A stored minute the source does not have is wrong too.
    cmp.wrong += stored.keys().filter(|t| !truth.contains(t)).count() as u64;
    Ok(())
}
