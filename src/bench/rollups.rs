//! `bench rollups`: what keeping the 5m, 15m, 1h and 1d rollups costs the writes.
//!
//! The same minutes — `instruments` instruments (indices, futures and options in turn) over the
//! NSE sessions of `days` weekdays — go three ways, each into a scratch database of its own:
//! - bare: the 1-minute upserts alone (plain tables), the baseline;
//! - with rollups: the same upserts and, in each transaction, the plain path's rollup upkeep;
//! - where the server can use TimescaleDB: the upserts into hypertables, then one refresh of every
//!   bar table's continuous aggregates over the whole span.
//!
//! Bare and with rollups are written job by job in turn, so whatever else the machine does falls
//! on both alike, in two shapes: one transaction per instrument for the whole span, as a sweep
//! plans the history of an instrument (the headline figures), and one per instrument and day.

use std::time::Instant;
use tickfill_jobs::InstrumentToken;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use sqlx::PgPool;

use super::Scratch;
use crate::{
    config::Settings,
    domain::market::{BarTarget, Candle, OptionType},
    queue, store,
    store::rollups,
};

pub struct RollupOptions {
    pub instruments: usize,
    pub days: u32,
}

pub async fn run(base: Settings, opts: RollupOptions) -> anyhow::Result<serde_json::Value> {
    let admin_url = base.store.database_url.expose().to_string();
    let redis = queue::connect(&base.redis).await?;
    let days = jobs(opts.instruments, opts.days);
    let minute_rows: usize = days.iter().flatten().map(|(_, _, c)| c.len()).sum();
    // The same minutes, one job per instrument.
    let mut windows: Vec<Job> = days[0].iter().map(|(t, target, _)| (*t, target.clone(), Vec::new())).collect();
    for day in &days {
        for (w, (_, _, candles)) in windows.iter_mut().zip(day) {
            w.2.extend_from_slice(candles);
        }
    }
    let window = plain(&admin_url, &redis, &windows).await?;
    let day = plain(&admin_url, &redis, &days.concat()).await?;
    let cagg = timescale_path(&admin_url, &redis, &windows).await?;
    let ms = |d: std::time::Duration| (d.as_secs_f64() * 10_000.0).round() / 10.0;
    let ratio = |m: &Measured| ((m.with.as_secs_f64() / m.bare.as_secs_f64()) * 100.0).round() / 100.0;
    Ok(serde_json::json!({
        "instruments": opts.instruments,
        "days": opts.days,
        "minute_rows": minute_rows,
        "transactions": windows.len(),
        "upsert_ms": ms(window.bare),
        "with_rollups_ms": ms(window.with),
        "ratio": ratio(&window),
        "rollup_rows": window.rollup_rows,
        "per_day": {
            "transactions": days.iter().map(Vec::len).sum::<usize>(),
            "upsert_ms": ms(day.bare),
            "with_rollups_ms": ms(day.with),
            "ratio": ratio(&day),
            "rollup_rows": day.rollup_rows,
        },
        "timescale_upsert_ms": cagg.map(|(w, _)| ms(w)),
        "cagg_refresh_ms": cagg.map(|(_, r)| ms(r)),
        "timescaledb": if cagg.is_some() { "used" } else { "not usable on this server: cagg figures are null" },
    }))
}

/// What one shape of jobs cost on the plain path, bare and with rollups.
struct Measured {
    bare: std::time::Duration,
    with: std::time::Duration,
    rollup_rows: u64,
}

/// Writes `jobs` bare and with rollup upkeep into two scratch databases, removed afterwards.
async fn plain(admin_url: &str, redis: &crate::queue::RedisConn, jobs: &[Job]) -> anyhow::Result<Measured> {
    let bare = Scratch::plain(admin_url, redis).await?;
    let with = Scratch::plain(admin_url, redis).await?;
    let measured = plain_paths(&bare.1, &with.1, jobs).await;
    bare.0.remove().await;
    with.0.remove().await;
    measured
}

type Job = (u32, BarTarget, Vec<Candle>);

impl Scratch {
    /// A scratch database with the plain path's tables, whatever the server offers.
    async fn plain(admin_url: &str, redis: &crate::queue::RedisConn) -> anyhow::Result<(Scratch, PgPool)> {
        let (scratch, pool) = Scratch::database(admin_url, redis).await?;
        store::MIGRATOR.run(&pool).await?;
        store::timescale::create_plain_rollups(&pool).await?;
        Ok((scratch, pool))
    }

    async fn database(admin_url: &str, redis: &crate::queue::RedisConn) -> anyhow::Result<(Scratch, PgPool)> {
        let id = format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let db_url = store::create_database(admin_url, &id).await?;
        let scratch = Scratch { admin_url: admin_url.to_string(), db: id.clone(), ns: id, redis: redis.clone() };
        Ok((scratch, store::connect(&db_url, 1).await?))
    }
}

/// The bare upserts into `bare` and the upserts with rollup upkeep into `with`, job by job in
/// turn (which goes first alternates).
async fn plain_paths(bare: &PgPool, with: &PgPool, jobs: &[Job]) -> anyhow::Result<Measured> {
    let mut m = Measured { bare: std::time::Duration::ZERO, with: std::time::Duration::ZERO, rollup_rows: 0 };
    for (i, job) in jobs.iter().enumerate() {
        for upkeep in if i % 2 == 0 { [false, true] } else { [true, false] } {
            let started = Instant::now();
            let rows = write(if upkeep { with } else { bare }, std::slice::from_ref(job), upkeep).await?;
            if upkeep {
                m.with += started.elapsed();
                m.rollup_rows += rows;
            } else {
                m.bare += started.elapsed();
            }
        }
    }
    Ok(m)
}

/// One transaction per job: the upsert and, with `upkeep`, the rollups of what it wrote.
async fn write(pool: &PgPool, jobs: &[Job], upkeep: bool) -> anyhow::Result<u64> {
    let mut rollup_rows = 0;
    for (token, target, candles) in jobs {
        let mut tx = pool.begin().await?;
        let up = store::bars::upsert_bars(&mut tx, super::tok(*token), target, candles).await?;
        if let (true, Some(touched)) = (upkeep, up.touched) {
            let family = rollups::bar_family(target.table()).expect("every bar table has rollups");
            rollup_rows += rollups::refresh_bars(&mut tx, family, super::tok(*token), candles, touched).await?;
        }
        tx.commit().await?;
    }
    Ok(rollup_rows)
}

/// Where the server can use TimescaleDB: the upserts into hypertables, then one refresh of every
/// bar table's continuous aggregates. `None` elsewhere.
async fn timescale_path(
    admin_url: &str,
    redis: &crate::queue::RedisConn,
    jobs: &[Job],
) -> anyhow::Result<Option<(std::time::Duration, std::time::Duration)>> {
    let (scratch, pool) = Scratch::database(admin_url, redis).await?;
    let result = async {
        if store::timescale::prepare(&pool).await?.is_err() {
            return Ok(None);
        }
        store::migrate(&pool, &Default::default()).await?;
        let started = Instant::now();
        write(&pool, jobs, false).await?;
        let writes = started.elapsed();
        let started = Instant::now();
        for family in [&rollups::MINUTE, &rollups::FUTURES, &rollups::OPTIONS] {
            for (_, rel) in family.relations() {
                sqlx::query(sqlx::AssertSqlSafe(format!("CALL refresh_continuous_aggregate('{rel}', NULL, NULL)")))
                    .execute(&pool)
                    .await?;
            }
        }
        Ok(Some((writes, started.elapsed())))
    }
    .await;
    pool.close().await;
    scratch.remove().await;
    result
}

/// One transaction per instrument and day: the session's 375 minutes, days oldest first, the
/// instruments of a day in turn.
fn jobs(instruments: usize, days: u32) -> Vec<Vec<Job>> {
    let mut sessions = Vec::new();
    let mut day = Utc::now().date_naive() - Duration::days(1);
    while sessions.len() < days as usize {
        if chrono::Datelike::weekday(&day).number_from_monday() <= 5 {
            sessions.push(session_open(day));
        }
        day -= Duration::days(1);
    }
    sessions.reverse();
    let expiry = Utc::now().date_naive() + Duration::days(30);
    let mut out = Vec::with_capacity(sessions.len());
    for open in sessions {
        let mut day = Vec::with_capacity(instruments);
        for i in 0..instruments {
            let token = 50_000_000 + i as u32;
            let target = match i % 3 {
                0 => BarTarget::Minute { symbol: format!("BENCH{i}") },
                1 => BarTarget::Future { contract: format!("BENCH{i}FUT"), symbol: "BENCH".into(), expiry },
                _ => BarTarget::Option {
                    contract: format!("BENCH{i}CE"),
                    symbol: "BENCH".into(),
                    expiry,
                    strike: 20_000.0 + 50.0 * i as f64,
                    option_type: OptionType::Call,
                },
            };
            let candles = (0..375).map(|m| candle(super::tok(token), open + Duration::minutes(m), &target)).collect();
            day.push((token, target, candles));
        }
        out.push(day);
    }
    out
}

/// 09:15 IST on `day`.
fn session_open(day: NaiveDate) -> DateTime<Utc> {
    let ist = chrono::FixedOffset::east_opt(19_800).expect("IST");
    ist.from_local_datetime(&day.and_hms_opt(9, 15, 0).expect("09:15")).unwrap().with_timezone(&Utc)
}

/// A deterministic candle of `token` at `t`.
fn candle(token: InstrumentToken, t: DateTime<Utc>, target: &BarTarget) -> Candle {
    let h = (t.timestamp() / 60).wrapping_mul(2_654_435_761).wrapping_add(i64::from(token.get())) & 0xffff;
    let base = 100.0 + (h % 1000) as f64 / 10.0;
    let derivative = !matches!(target, BarTarget::Minute { .. });
    let option = matches!(target, BarTarget::Option { .. });
    Candle {
        time: t,
        open: base,
        high: base + 1.5,
        low: base - 1.0,
        close: base + 0.5,
        volume: 1_000 + h,
        oi: derivative.then_some(75 * h),
        iv: option.then_some(12.0 + (h % 100) as f64 / 10.0),
        delta: option.then_some(0.5),
        gamma: option.then_some(0.001),
        theta: option.then_some(-5.0),
        vega: option.then_some(10.0),
        underlying: option.then_some(24_000.0 + base),
    }
}
