//! `tickfill status`: per active subscription, its newest bar and that bar's age, the coverage
//! holes in the lookback (trading minutes only), its days by state and the last run's outcome;
//! `tickfill quality`: one instrument's days; and the freshness and day figures the metrics
//! export.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};
use tickfill_jobs::InstrumentToken;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;

use crate::{
    config::Settings,
    domain::{
        days::{DayFacts, DayState},
        window::{floor_minute, Window},
    },
    store::{self, days::DaysOf},
    sweep,
};

/// One line of `tickfill status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubscriptionStatus {
    pub instrument_token: InstrumentToken,
    pub tradingsymbol: Option<String>,
    pub subscribed_at: DateTime<Utc>,
    pub newest_bar: Option<DateTime<Utc>>,
    pub newest_bar_age_s: Option<i64>,
    pub holes: usize,
    pub missing_minutes: i64,
    /// Trading minutes answers lacked, not yet found or confirmed empty.
    pub suspect_minutes: i64,
    /// Its days in the lookback, by state.
    pub days: BTreeMap<DayState, i64>,
    pub last_outcome: Option<String>,
    pub last_run_at: Option<DateTime<Utc>>,
}

/// Per active subscription: newest stored bar and its age, coverage holes in the lookback, and
/// the last run's outcome.
pub async fn status(pool: &PgPool, settings: &Settings, now: DateTime<Utc>) -> anyhow::Result<Vec<SubscriptionStatus>> {
    let rows = store::status::active_subscription_rows(pool).await?;
    // Every hole counts here, however short.
    let mut strict = settings.clone();
    strict.backfill.gap_threshold = Duration::ZERO;
    strict.backfill.subscription_aware = true;
    // Holes cut to trading sessions: a weekend or a holiday is never missing.
    let holes: HashMap<InstrumentToken, (usize, i64)> = sweep::find_holes(pool, &strict, now)
        .await?
        .into_iter()
        .map(|(token, holes)| (token, (holes.len(), holes.iter().map(Window::minutes).sum())))
        .collect();
    let suspect = store::suspects::counts(pool).await?;
    let days: HashMap<InstrumentToken, BTreeMap<DayState, i64>> = subscription_days(pool, settings, now)
        .await?
        .into_iter()
        .map(|(token, days)| (token, by_state(&days, now)))
        .collect();
    Ok(rows
        .into_iter()
        .map(|r| {
            let token = r.instrument_token;
            let (n, minutes) = holes.get(&token).copied().unwrap_or_default();
            SubscriptionStatus {
                instrument_token: token,
                tradingsymbol: r.tradingsymbol,
                subscribed_at: r.subscribed_at,
                newest_bar: r.newest_bar,
                newest_bar_age_s: r.newest_bar.map(|b| (now - b).num_seconds()),
                holes: n,
                missing_minutes: minutes,
                suspect_minutes: suspect.get(&token).copied().unwrap_or(0),
                days: days.get(&token).cloned().unwrap_or_default(),
                last_outcome: r.last_outcome,
                last_run_at: r.last_run_at,
            }
        })
        .collect())
}

/// Every active subscription's days in its wanted window (from its start in the lookback to now).
pub async fn subscription_days(
    pool: &PgPool,
    settings: &Settings,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<(InstrumentToken, Vec<DayFacts>)>> {
    let mut aware = settings.clone();
    aware.backfill.subscription_aware = true;
    let of: Vec<DaysOf> = sweep::find_targets(pool, &aware, now)
        .await?
        .into_iter()
        .filter(|t| t.start < now)
        .map(|t| DaysOf { token: t.token, segment: t.segment, window: Window::new(floor_minute(t.start), now) })
        .collect();
    store::days::facts(pool, settings, &of).await
}

/// How many of `days` are in each state at `now`.
pub fn by_state(days: &[DayFacts], now: DateTime<Utc>) -> BTreeMap<DayState, i64> {
    let mut out = BTreeMap::new();
    for d in days {
        *out.entry(d.state(now)).or_insert(0) += 1;
    }
    out
}

/// Every active subscription's days by state, for the metrics and the admin API.
pub async fn day_states(
    pool: &PgPool,
    settings: &Settings,
    now: DateTime<Utc>,
) -> sqlx::Result<BTreeMap<DayState, i64>> {
    let mut out: BTreeMap<DayState, i64> = DayState::ALL.iter().map(|s| (*s, 0)).collect();
    for (_, days) in subscription_days(pool, settings, now).await? {
        for (state, n) in by_state(&days, now) {
            *out.entry(state).or_insert(0) += n;
        }
    }
    Ok(out)
}

/// Where `tickfill quality` starts by default: the start of `token`'s wanted window when it is
/// subscribed (`BACKFILL_WINDOW_MINUTES` before, within the lookback), else the lookback's.
pub async fn wanted_start(
    pool: &PgPool,
    settings: &Settings,
    token: InstrumentToken,
    now: DateTime<Utc>,
) -> sqlx::Result<DateTime<Utc>> {
    let mut aware = settings.clone();
    aware.backfill.subscription_aware = true;
    let lookback = chrono::Duration::from_std(settings.backfill.lookback).unwrap_or_default();
    Ok(sweep::find_targets(pool, &aware, now)
        .await?
        .into_iter()
        .find(|t| t.token == token)
        .map_or(now - lookback, |t| floor_minute(t.start)))
}

/// One day of one instrument, as `tickfill quality` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DayQuality {
    pub state: DayState,
    pub bars: i64,
    #[serde(flatten)]
    pub facts: DayFacts,
}

/// The days of `token` in `window`, with their states and stored bars.
pub async fn quality(
    pool: &PgPool,
    settings: &Settings,
    token: InstrumentToken,
    window: Window,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<DayQuality>> {
    let segment = store::instruments::find_instrument(pool, token).await?.and_then(|i| i.segment);
    let of = [DaysOf { token, segment, window }];
    let facts = store::days::facts(pool, settings, &of).await?.pop().map(|(_, d)| d).unwrap_or_default();
    let bars: HashMap<NaiveDate, i64> =
        store::status::bars_per_day(pool, token, window.from, window.to).await?.into_iter().collect();
    Ok(facts
        .into_iter()
        .map(|f| DayQuality { state: f.state(now), bars: bars.get(&f.date).copied().unwrap_or(0), facts: f })
        .collect())
}

/// How fresh the active subscriptions are: the trading time since the end of each one's newest
/// bar (since it was subscribed, with none), so a weekend or a holiday makes nothing stale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Freshness {
    pub active: i64,
    /// The stalest subscription's age in trading seconds (0 with none).
    pub oldest_age_s: f64,
    /// Subscriptions older than the threshold asked for.
    pub stale: i64,
}

/// The freshness of every active subscription; `stale_after_s` (trading seconds) decides which
/// count as stale.
pub async fn freshness(
    pool: &PgPool,
    settings: &Settings,
    stale_after_s: f64,
    now: DateTime<Utc>,
) -> sqlx::Result<Freshness> {
    let rows = store::status::freshness_rows(pool).await?;
    let ages: Vec<f64> = rows
        .iter()
        .map(|(segment, since)| {
            let since = crate::domain::window::floor_minute(*since);
            let trading = settings.backfill.calendar.trading_windows(segment.as_deref(), Window::new(since, now));
            trading.iter().map(|w| (w.to - w.from).num_seconds()).sum::<i64>() as f64
        })
        .collect();
    Ok(Freshness {
        active: ages.len() as i64,
        oldest_age_s: ages.iter().copied().fold(0.0, f64::max),
        stale: ages.iter().filter(|a| **a > stale_after_s).count() as i64,
    })
}

/// How many past sweeps `GET /api/sweeps` and `tickfill sweeps` show.
pub const RECENT_SWEEPS: i64 = 60;

/// The scheduler as operators see it: its schedule, the last and next tick, whether sweeps are
/// paused, and the last sweeps (with the store).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sweeps {
    pub interval: String,
    pub last_tick: DateTime<Utc>,
    pub next_tick: DateTime<Utc>,
    pub paused: Option<crate::queue::controls::Pause>,
    pub recent: Vec<store::runs::SweepRun>,
}

pub async fn sweeps(
    settings: &Settings,
    conn: &mut crate::queue::RedisConn,
    pool: Option<&PgPool>,
) -> anyhow::Result<Sweeps> {
    let now = Utc::now();
    let last_tick = settings.backfill.sweep_interval.latest_tick(now);
    let recent = match pool {
        Some(p) => store::runs::recent_sweeps(p, RECENT_SWEEPS).await?,
        None => vec![],
    };
    Ok(Sweeps {
        interval: settings.backfill.sweep_interval.to_string(),
        last_tick,
        next_tick: settings.backfill.sweep_interval.next_tick(last_tick),
        paused: crate::queue::controls::read(conn, &settings.queue.name).await?.sweeps,
        recent,
    })
}

/// Pushes a sweep now (whether or not sweeps are paused); returns its tick.
pub async fn sweep_now(settings: &Settings, conn: crate::queue::RedisConn) -> anyhow::Result<DateTime<Utc>> {
    let tick = Utc::now();
    crate::queue::Producer::new(conn, settings).push(&tickfill_jobs::Job::Sweep { tick }).await?;
    Ok(tick)
}
