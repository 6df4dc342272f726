//! `tickfill sim`: a stand-in for the ticker service, for development, tests and benches.
//!
//! It is an outside system on purpose: it shares no code with the worker's ticker client or the
//! store, so a format bug cannot hide in both. Routes (the real service's API):
//! `GET /history`, `GET|POST /subscriptions`, `DELETE /subscriptions/{token}`, plus
//! `GET /instruments` (the universe as a Kite instrument-dump CSV), Kite's own history route
//! `GET /instruments/historical/{token}/minute` and `GET /stats`.
//!
//! # Universe
//! NIFTY 50 (256265, INDICES); the two nearest monthly NIFTY futures (tokens 10000001, 10000002,
//! expiring on the last Tuesday of their month); an option chain of the 21 strikes 24000 … 25000
//! (step 50) × CE/PE for each of the next two weekly expiries (Tuesdays; tokens
//! `11000000 + 1000·e + 2·s + (0 for CE, 1 for PE)`, e the expiry index, s the strike index);
//! and with `--universe N`, N synthetic NSE equities `SIM000001 …` with tokens `20000001 …`.
//! Expiries are reckoned from the IST date the simulator starts on.
//!
//! # Candles: a pure function of token and minute
//! For minute start `t` (epoch seconds, UTC) let `k = t / 60` and `h = splitmix64(token << 32 ^ k)`.
//! `r(x)` rounds to the 0.05 tick. The path of a series with base `B` and phase
//! `φ = 2π·(token mod 1000)/1000` is
//! `p(k) = B·(1 + 0.004·sin(2πk/375) + 0.0015·sin(2πk/47 + φ))`.
//! Bases: the index 24500, future number f (0, 1) 24560 + 60·f, equity i `100 + (token mod 900)`.
//! For those: `open = r(p(k))`, `close = r(p(k+1))`,
//! `high = r(max(open, close) + B·0.0004·(1 + u1))`, `low = r(min(open, close) − B·0.0004·(1 + u2))`
//! with `u1 = (h & 0xffff)/65536`, `u2 = ((h >> 16) & 0xffff)/65536`;
//! `volume = 1000 + (h >> 32) mod 9000`; futures add `oi = 10000000 + (h >> 40) mod 500000`.
//! Options price off the index path `U(k) = p_index(k)` (unrounded) with Black-Scholes (r = 0,
//! `σ = 0.12 + 0.5·((K − U)/U)²`, time to expiry 15:30 IST on the expiry date, at least one
//! minute): `open = max(0.05, r(BS(U(k))))`, `close = max(0.05, r(BS(U(k+1))))`, high/low as above
//! with `B = 0.02·U(k)·0.05` capped below at 0.05 for low; `volume` as above;
//! `oi = 75·(1000 + (h >> 40) mod 20000)`; with `oi=true` also `iv = 100σ`, `delta`, `gamma`,
//! `theta` (per day), `vega` (per 1 % of σ) at `U(k+1)`, each rounded to 4 decimals, and
//! `underlying = r(U(k+1))`.
//! `--calendar always` serves every minute; `--calendar nse` only 09:15–15:30 IST on weekdays.
//! No candle is served for the current (forming) minute or later.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    f64::consts::PI,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{Path, Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::{delete, get},
    Json, Router,
};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Timelike, Utc, Weekday};
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::shutdown::Shutdown;

/// The longest window `/history` serves for minute candles, like the real service.
pub const MAX_WINDOW_DAYS: i64 = 60;
pub const NIFTY_TOKEN: u32 = 256265;
const INDEX_BASE: f64 = 24500.0;
const STRIKE_LOW: u32 = 24000;
const STRIKE_STEP: u32 = 50;
const STRIKES: u32 = 21;
const LOT: i64 = 75;

fn ist() -> FixedOffset {
    FixedOffset::east_opt(5 * 3600 + 1800).expect("IST offset")
}

/// Which minutes have candles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Calendar {
    /// Every minute of every day, so a demo at night has data.
    Always,
    /// NSE F&O hours: 09:15–15:30 IST, Monday to Friday.
    Nse,
}

/// How the simulator misbehaves on the history route, and where it publishes events.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub universe: usize,
    pub calendar: Calendar,
    pub error_rate: f64,
    pub throttle_rate: f64,
    pub latency_ms: (u64, u64),
    pub max_rps: Option<u32>,
    pub redis_url: Option<String>,
    pub channel_prefix: String,
    /// The only access token Kite's route accepts (`None`: any non-empty one); any other is
    /// answered 403 `TokenException`, as an expired session is.
    pub kite_access_token: Option<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            universe: 0,
            calendar: Calendar::Always,
            error_rate: 0.0,
            throttle_rate: 0.0,
            latency_ms: (0, 0),
            max_rps: None,
            redis_url: None,
            channel_prefix: "ticker:nifty".into(),
            kite_access_token: None,
        }
    }
}

/// Parses `--latency-ms 5..200` or `--latency-ms 20`.
pub fn parse_latency(s: &str) -> Result<(u64, u64), String> {
    let parse = |x: &str| x.trim().parse::<u64>().map_err(|_| format!("{x:?} is not a whole number of ms"));
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b)?);
            if a <= b {
                Ok((a, b))
            } else {
                Err("MIN must not exceed MAX".into())
            }
        }
        None => parse(s).map(|v| (v, v)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Index,
    Future { n: u32 },
    Option { strike: f64, call: bool },
    Equity,
}

#[derive(Debug, Clone)]
struct SimInstrument {
    token: u32,
    tradingsymbol: String,
    name: String,
    expiry: Option<NaiveDate>,
    segment: &'static str,
    exchange: &'static str,
    instrument_type: &'static str,
    kind: Kind,
}

fn last_tuesday(year: i32, month: u32) -> NaiveDate {
    let (ny, nm) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let mut d = NaiveDate::from_ymd_opt(ny, nm, 1).expect("valid date").pred_opt().expect("valid date");
    while d.weekday() != Weekday::Tue {
        d = d.pred_opt().expect("valid date");
    }
    d
}

const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];

/// Kite's option symbol: monthly `NIFTY25NOV24500CE`, weekly `NIFTY25N1124500CE` (month 1-9, O, N, D).
fn option_symbol(expiry: NaiveDate, strike: u32, call: bool) -> String {
    let yy = expiry.year() % 100;
    let cp = if call { "CE" } else { "PE" };
    if expiry == last_tuesday(expiry.year(), expiry.month()) {
        format!("NIFTY{yy:02}{}{strike}{cp}", MONTHS[expiry.month0() as usize])
    } else {
        let m = match expiry.month() {
            10 => 'O',
            11 => 'N',
            12 => 'D',
            n => char::from_digit(n, 10).expect("month digit"),
        };
        format!("NIFTY{yy:02}{m}{:02}{strike}{cp}", expiry.day())
    }
}

fn build_universe(today: NaiveDate, synthetic: usize) -> Vec<SimInstrument> {
    let mut all = vec![SimInstrument {
        token: NIFTY_TOKEN,
        tradingsymbol: "NIFTY 50".into(),
        name: "NIFTY 50".into(),
        expiry: None,
        segment: "INDICES",
        exchange: "NSE",
        instrument_type: "EQ",
        kind: Kind::Index,
    }];
    let (mut y, mut m) = (today.year(), today.month());
    if last_tuesday(y, m) < today {
        (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    }
    for n in 0..2u32 {
        let e = last_tuesday(y, m);
        all.push(SimInstrument {
            token: 10_000_001 + n,
            tradingsymbol: format!("NIFTY{:02}{}FUT", e.year() % 100, MONTHS[e.month0() as usize]),
            name: "NIFTY".into(),
            expiry: Some(e),
            segment: "NFO-FUT",
            exchange: "NFO",
            instrument_type: "FUT",
            kind: Kind::Future { n },
        });
        (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    }
    let mut tuesday = today;
    while tuesday.weekday() != Weekday::Tue {
        tuesday = tuesday.succ_opt().expect("valid date");
    }
    for e in 0..2u32 {
        let expiry = tuesday + chrono::Duration::days(7 * e as i64);
        for s in 0..STRIKES {
            let strike = STRIKE_LOW + STRIKE_STEP * s;
            for (t, call) in [(0, true), (1, false)] {
                all.push(SimInstrument {
                    token: 11_000_000 + 1000 * e + 2 * s + t,
                    tradingsymbol: option_symbol(expiry, strike, call),
                    name: "NIFTY".into(),
                    expiry: Some(expiry),
                    segment: "NFO-OPT",
                    exchange: "NFO",
                    instrument_type: if call { "CE" } else { "PE" },
                    kind: Kind::Option { strike: strike as f64, call },
                });
            }
        }
    }
    for i in 0..synthetic as u32 {
        all.push(SimInstrument {
            token: 20_000_001 + i,
            tradingsymbol: format!("SIM{:06}", i + 1),
            name: format!("SIMULATED EQUITY {}", i + 1),
            expiry: None,
            segment: "NSE",
            exchange: "NSE",
            instrument_type: "EQ",
            kind: Kind::Equity,
        });
    }
    all
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn tick(x: f64) -> f64 {
    (x * 20.0).round() / 20.0
}

fn path(base: f64, token: u32, k: i64) -> f64 {
    let phase = 2.0 * PI * (token % 1000) as f64 / 1000.0;
    let k = k as f64;
    base * (1.0 + 0.004 * (2.0 * PI * k / 375.0).sin() + 0.0015 * (2.0 * PI * k / 47.0 + phase).sin())
}

/// Standard normal CDF (Abramowitz–Stegun 7.1.26 through erf).
fn norm_cdf(x: f64) -> f64 {
    let z = x.abs() / 2f64.sqrt();
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    if x >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

fn norm_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * PI).sqrt()
}

struct Greeks {
    price: f64,
    iv: f64,
    delta: f64,
    gamma: f64,
    theta: f64,
    vega: f64,
}

fn black_scholes(u: f64, strike: f64, call: bool, years: f64) -> Greeks {
    let sigma = 0.12 + 0.5 * ((strike - u) / u).powi(2);
    let sq = sigma * years.sqrt();
    let d1 = ((u / strike).ln() + 0.5 * sigma * sigma * years) / sq;
    let d2 = d1 - sq;
    let (price, delta) = if call {
        (u * norm_cdf(d1) - strike * norm_cdf(d2), norm_cdf(d1))
    } else {
        (strike * norm_cdf(-d2) - u * norm_cdf(-d1), norm_cdf(d1) - 1.0)
    };
    let gamma = norm_pdf(d1) / (u * sq);
    let theta = -(u * norm_pdf(d1) * sigma) / (2.0 * years.sqrt()) / 365.0;
    let vega = u * norm_pdf(d1) * years.sqrt() / 100.0;
    Greeks { price, iv: sigma * 100.0, delta, gamma, theta, vega }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// One candle as the API serves it (fields absent from the JSON are `None`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
struct SimCandle {
    date: String,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    oi: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iv: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gamma: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    theta: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vega: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    underlying: Option<f64>,
}

/// `t` (epoch seconds) as IST wall clock, `2025-11-04T09:15:00` followed by `offset`.
fn ist_date(t: i64, offset: &str) -> String {
    let local = ist().timestamp_opt(t, 0).single().expect("valid instant");
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{offset}",
        local.year(),
        local.month(),
        local.day(),
        local.hour(),
        local.minute(),
        local.second()
    )
}

/// The candle of `inst` for the minute starting at `t` (epoch seconds).
fn candle(inst: &SimInstrument, t: i64, with_oi: bool) -> SimCandle {
    let k = t.div_euclid(60);
    let h = splitmix64(((inst.token as u64) << 32) ^ (k as u64));
    let u1 = (h & 0xffff) as f64 / 65536.0;
    let u2 = ((h >> 16) & 0xffff) as f64 / 65536.0;
    let volume = 1000 + (h >> 32) % 9000;
    let date = ist_date(t, "+05:30");
    let series = |base: f64| {
        let (open, close) = (tick(path(base, inst.token, k)), tick(path(base, inst.token, k + 1)));
        let high = tick(open.max(close) + base * 0.0004 * (1.0 + u1));
        let low = tick(open.min(close) - base * 0.0004 * (1.0 + u2));
        (open, high, low, close)
    };
    match inst.kind {
        Kind::Index | Kind::Equity | Kind::Future { .. } => {
            let base = match inst.kind {
                Kind::Index => INDEX_BASE,
                Kind::Future { n } => 24560.0 + 60.0 * n as f64,
                _ => 100.0 + (inst.token % 900) as f64,
            };
            let (open, high, low, close) = series(base);
            let oi = match (inst.kind, with_oi) {
                (Kind::Future { .. }, true) => Some((10_000_000 + (h >> 40) % 500_000) as i64),
                _ => None,
            };
            SimCandle { date, open, high, low, close, volume, oi, ..Default::default() }
        }
        Kind::Option { strike, call } => {
            let expiry = inst.expiry.expect("options have expiries");
            let close_at = ist()
                .from_local_datetime(&expiry.and_hms_opt(15, 30, 0).expect("valid time"))
                .single()
                .expect("valid instant")
                .timestamp();
            let years = |at: i64| ((close_at - at).max(60)) as f64 / (365.0 * 86_400.0);
            let (u0, u1x) = (path(INDEX_BASE, NIFTY_TOKEN, k), path(INDEX_BASE, NIFTY_TOKEN, k + 1));
            let g0 = black_scholes(u0, strike, call, years(t));
            let g1 = black_scholes(u1x, strike, call, years(t + 60));
            let open = tick(g0.price).max(0.05);
            let close = tick(g1.price).max(0.05);
            let spread = (0.001 * u0 * 0.05).max(0.05);
            let high = tick(open.max(close) + spread * (1.0 + u1));
            let low = tick(open.min(close) - spread * (1.0 + u2)).max(0.05).min(open.min(close));
            let mut c = SimCandle { date, open, high, low, close, volume, ..Default::default() };
            if with_oi {
                c.oi = Some(LOT * (1000 + ((h >> 40) % 20_000) as i64));
                c.iv = Some(round4(g1.iv));
                c.delta = Some(round4(g1.delta));
                c.gamma = Some(round4(g1.gamma));
                c.theta = Some(round4(g1.theta));
                c.vega = Some(round4(g1.vega));
                c.underlying = Some(tick(u1x));
            }
            c
        }
    }
}

fn in_calendar(calendar: Calendar, t: i64) -> bool {
    match calendar {
        Calendar::Always => true,
        Calendar::Nse => {
            let local = ist().timestamp_opt(t, 0).single().expect("valid instant");
            let minute = local.hour() * 60 + local.minute();
            !matches!(local.weekday(), Weekday::Sat | Weekday::Sun) && (9 * 60 + 15..15 * 60 + 30).contains(&minute)
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
struct SubRecord {
    instrument_token: u32,
    tradingsymbol: String,
    segment: String,
    status: &'static str,
    requested_mode: String,
    account_id: String,
    created_at: String,
    updated_at: String,
}

#[derive(Default)]
struct Stats {
    history_requests: u64,
    by_status: BTreeMap<u16, u64>,
    recent: VecDeque<Instant>,
    peak_rps: usize,
}

struct Sim {
    opts: SimOptions,
    universe: HashMap<u32, SimInstrument>,
    order: Vec<u32>,
    subs: Mutex<BTreeMap<u32, SubRecord>>,
    stats: Mutex<Stats>,
    redis: Option<redis::aio::ConnectionManager>,
}

type Shared = Arc<Sim>;

fn error(status: StatusCode, detail: impl Into<String>) -> Response {
    (status, Json(json!({"detail": detail.into()}))).into_response()
}

/// Builds the simulator's routes.
async fn router(opts: SimOptions) -> anyhow::Result<Router> {
    let today = Utc::now().with_timezone(&ist()).date_naive();
    let list = build_universe(today, opts.universe);
    let order = list.iter().map(|i| i.token).collect();
    let redis = match &opts.redis_url {
        Some(url) => Some(crate::queue::connect(url).await?),
        None => None,
    };
    let sim = Arc::new(Sim {
        universe: list.into_iter().map(|i| (i.token, i)).collect(),
        order,
        opts,
        subs: Mutex::new(BTreeMap::new()),
        stats: Mutex::new(Stats::default()),
        redis,
    });
    Ok(Router::new()
        .route("/history", get(history))
        .route("/instruments/historical/{token}/{interval}", get(kite_history))
        .route("/subscriptions", get(list_subscriptions).post(create_subscription))
        .route("/subscriptions/{token}", delete(delete_subscription))
        .route("/instruments", get(instruments))
        .route("/stats", get(stats))
        .with_state(sim))
}

/// Serves the simulator on an already bound listener until `shutdown` fires.
pub async fn serve(listener: tokio::net::TcpListener, opts: SimOptions, shutdown: Shutdown) -> anyhow::Result<()> {
    let app = router(opts).await?;
    tracing::info!(addr = %listener.local_addr()?, "simulator listening");
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.wait().await }).await?;
    Ok(())
}

/// Binds `addr` and serves in the background; returns the bound address (use port 0 in tests).
pub async fn spawn(addr: SocketAddr, opts: SimOptions, shutdown: Shutdown) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(opts).await?;
    tokio::spawn(async move {
        let r = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.wait().await }).await;
        if let Err(e) = r {
            tracing::error!(error = %e, "simulator stopped");
        }
    });
    Ok(local)
}

#[derive(Deserialize)]
struct HistoryQuery {
    instrument_token: Option<String>,
    from_ts: Option<String>,
    to_ts: Option<String>,
    interval: Option<String>,
    oi: Option<String>,
}

fn note_arrival(sim: &Sim) -> usize {
    let mut st = sim.stats.lock().expect("stats lock");
    let now = Instant::now();
    st.history_requests += 1;
    while st.recent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
        st.recent.pop_front();
    }
    st.recent.push_back(now);
    st.peak_rps = st.peak_rps.max(st.recent.len());
    st.recent.len()
}

fn note_status(sim: &Sim, status: StatusCode) {
    *sim.stats.lock().expect("stats lock").by_status.entry(status.as_u16()).or_default() += 1;
}

async fn history(State(sim): State<Shared>, Query(q): Query<HistoryQuery>) -> Response {
    let in_last_second = note_arrival(&sim);
    let resp = history_response(&sim, q, in_last_second).await;
    note_status(&sim, resp.status());
    resp
}

/// A fault the simulator answers a history request with instead of candles.
enum Fault {
    /// 429: over `--max-rps`, or drawn at `--throttle-rate`.
    Throttle,
    /// 502, drawn at `--error-rate`.
    Fail,
}

/// Waits the configured latency, then draws the request's fault, if any (both history routes).
async fn fault(o: &SimOptions, in_last_second: usize) -> Option<Fault> {
    if o.latency_ms.1 > 0 {
        let ms = rand::rng().random_range(o.latency_ms.0..=o.latency_ms.1);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if o.max_rps.is_some_and(|n| in_last_second > n as usize) {
        return Some(Fault::Throttle);
    }
    let roll: f64 = rand::rng().random();
    if roll < o.throttle_rate {
        Some(Fault::Throttle)
    } else if roll < o.throttle_rate + o.error_rate {
        Some(Fault::Fail)
    } else {
        None
    }
}

#[allow(clippy::result_large_err)]
async fn history_response(sim: &Sim, q: HistoryQuery, in_last_second: usize) -> Response {
    let o = &sim.opts;
    match fault(o, in_last_second).await {
        Some(Fault::Throttle) => {
            let body = error(StatusCode::TOO_MANY_REQUESTS, "too many requests");
            return ([(header::RETRY_AFTER, "1")], body).into_response();
        }
        Some(Fault::Fail) => return error(StatusCode::BAD_GATEWAY, "upstream failure (simulated)"),
        None => {}
    }
    let Some(token) = q.instrument_token.as_deref().and_then(|t| t.trim().parse::<u32>().ok()) else {
        return error(StatusCode::BAD_REQUEST, "instrument_token must be a positive integer");
    };
    let parse = |s: &Option<String>, name: &str| {
        s.as_deref()
            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
            .map(|d| d.with_timezone(&Utc))
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, format!("{name} must be an ISO-8601 timestamp")))
    };
    let (from, to) = match (parse(&q.from_ts, "from_ts"), parse(&q.to_ts, "to_ts")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if q.interval.as_deref().unwrap_or("minute") != "minute" {
        return error(StatusCode::BAD_REQUEST, "only interval=minute is served");
    }
    if to <= from {
        return error(StatusCode::BAD_REQUEST, "to_ts must be after from_ts");
    }
    if to - from > chrono::Duration::days(MAX_WINDOW_DAYS) {
        return error(StatusCode::BAD_REQUEST, format!("window exceeds {MAX_WINDOW_DAYS} days for minute candles"));
    }
    let Some(inst) = sim.universe.get(&token) else {
        return error(StatusCode::NOT_FOUND, format!("unknown instrument_token {token}"));
    };
    let with_oi = matches!(q.oi.as_deref(), Some("true" | "1"));
    let now_minute = Utc::now().timestamp().div_euclid(60) * 60;
    let first = (from.timestamp() + 59).div_euclid(60) * 60;
    let end = to.timestamp().min(now_minute);
    let candles: Vec<SimCandle> =
        (first..end).step_by(60).filter(|t| in_calendar(o.calendar, *t)).map(|t| candle(inst, t, with_oi)).collect();
    #[derive(serde::Serialize)]
    struct Body<'a> {
        instrument_token: u32,
        tradingsymbol: &'a str,
        segment: &'a str,
        interval: &'static str,
        from_ts: Option<String>,
        to_ts: Option<String>,
        candles: Vec<SimCandle>,
    }
    Json(Body {
        instrument_token: token,
        tradingsymbol: &inst.tradingsymbol,
        segment: inst.segment,
        interval: "minute",
        from_ts: q.from_ts,
        to_ts: q.to_ts,
        candles,
    })
    .into_response()
}

#[derive(Deserialize)]
struct KiteQuery {
    from: Option<String>,
    to: Option<String>,
    oi: Option<String>,
}

fn kite_error(status: StatusCode, error_type: &str, message: impl Into<String>) -> Response {
    let body = json!({"status": "error", "message": message.into(), "data": null, "error_type": error_type});
    (status, Json(body)).into_response()
}

/// Kite's `GET /instruments/historical/{token}/{interval}`: IST wall-clock `from`/`to`, both
/// inclusive; candles as arrays `[time(+0530), open, high, low, close, volume(, oi with oi=1)]`.
async fn kite_history(
    State(sim): State<Shared>,
    Path((token, interval)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    Query(q): Query<KiteQuery>,
) -> Response {
    let in_last_second = note_arrival(&sim);
    let resp = kite_history_response(&sim, &token, &interval, &headers, q, in_last_second).await;
    note_status(&sim, resp.status());
    resp
}

async fn kite_history_response(
    sim: &Sim,
    token: &str,
    interval: &str,
    headers: &axum::http::HeaderMap,
    q: KiteQuery,
    in_last_second: usize,
) -> Response {
    let o = &sim.opts;
    match fault(o, in_last_second).await {
        // Kite's 429 carries no Retry-After.
        Some(Fault::Throttle) => {
            return kite_error(StatusCode::TOO_MANY_REQUESTS, "NetworkException", "Too many requests")
        }
        Some(Fault::Fail) => {
            return kite_error(StatusCode::BAD_GATEWAY, "NetworkException", "upstream failure (simulated)")
        }
        None => {}
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    if header("x-kite-version") != "3" {
        return kite_error(StatusCode::BAD_REQUEST, "InputException", "X-Kite-Version: 3 is required");
    }
    let session = header("authorization").strip_prefix("token ").and_then(|c| c.split_once(':'));
    let valid = match (session, &o.kite_access_token) {
        (Some((key, access)), wanted) => {
            !key.is_empty() && !access.is_empty() && wanted.as_deref().is_none_or(|w| w == access)
        }
        (None, _) => false,
    };
    if !valid {
        return kite_error(StatusCode::FORBIDDEN, "TokenException", "Incorrect `api_key` or `access_token`.");
    }
    if interval != "minute" {
        return kite_error(StatusCode::BAD_REQUEST, "InputException", "only the minute interval is served");
    }
    let Some(inst) = token.parse::<u32>().ok().and_then(|t| sim.universe.get(&t)) else {
        return kite_error(StatusCode::BAD_REQUEST, "InputException", format!("invalid token {token}"));
    };
    let parse = |v: &Option<String>| {
        let v = v.as_deref()?;
        let naive = chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S")
            .ok()
            .or_else(|| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))?;
        ist().from_local_datetime(&naive).single().map(|t| t.timestamp())
    };
    let (Some(from), Some(to)) = (parse(&q.from), parse(&q.to)) else {
        return kite_error(StatusCode::BAD_REQUEST, "InputException", "invalid from or to date");
    };
    if to < from {
        return kite_error(StatusCode::BAD_REQUEST, "InputException", "from date is after to date");
    }
    if to - from > MAX_WINDOW_DAYS * 86_400 {
        return kite_error(StatusCode::BAD_REQUEST, "InputException", "interval exceeds max limit: 60 days");
    }
    let with_oi = matches!(q.oi.as_deref(), Some("1" | "true"));
    let now_minute = Utc::now().timestamp().div_euclid(60) * 60;
    let first = (from + 59).div_euclid(60) * 60;
    let last = to.div_euclid(60) * 60; // inclusive
    let candles: Vec<Value> = (first..=last)
        .step_by(60)
        .filter(|t| *t < now_minute && in_calendar(o.calendar, *t))
        .map(|t| {
            let c = candle(inst, t, true);
            let mut row = vec![json!(ist_date(t, "+0530")), json!(c.open), json!(c.high), json!(c.low)];
            row.extend([json!(c.close), json!(c.volume)]);
            if with_oi {
                row.push(json!(c.oi.unwrap_or(0)));
            }
            Value::Array(row)
        })
        .collect();
    Json(json!({"status": "success", "data": {"candles": candles}})).into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

async fn list_subscriptions(State(sim): State<Shared>, Query(q): Query<ListQuery>) -> Response {
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        _ => return error(StatusCode::BAD_REQUEST, "limit must be between 1 and 1000"),
    };
    let offset = match q.offset.as_deref().map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        _ => return error(StatusCode::BAD_REQUEST, "offset must be a non-negative integer"),
    };
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s @ ("active" | "inactive")) => Some(s.to_string()),
        Some(other) => return error(StatusCode::BAD_REQUEST, format!("unknown status {other:?}")),
    };
    let subs = sim.subs.lock().expect("subs lock");
    let page: Vec<&SubRecord> =
        subs.values().filter(|r| status.as_deref().is_none_or(|s| r.status == s)).skip(offset).take(limit).collect();
    Json(json!(page)).into_response()
}

#[derive(Deserialize)]
struct CreateBody {
    instrument_token: Value,
    requested_mode: Option<String>,
    account_id: Option<String>,
}

async fn publish(sim: &Sim, event_type: &str, rec: &SubRecord) {
    let Some(conn) = &sim.redis else { return };
    let msg = json!({
        "event_type": event_type,
        "instrument_token": rec.instrument_token,
        "metadata": {"tradingsymbol": rec.tradingsymbol, "segment": rec.segment,
                     "requested_mode": rec.requested_mode, "account_id": rec.account_id},
        "timestamp": Utc::now().timestamp(),
    });
    let channel = format!("{}:events", sim.opts.channel_prefix);
    let r: redis::RedisResult<i64> =
        redis::cmd("PUBLISH").arg(&channel).arg(msg.to_string()).query_async(&mut conn.clone()).await;
    if let Err(e) = r {
        tracing::warn!(error = %e, channel, "simulator could not publish an event");
    }
}

async fn create_subscription(
    State(sim): State<Shared>,
    body: Result<Json<CreateBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "body must be JSON {instrument_token, requested_mode?, account_id?}");
    };
    let token = match &body.instrument_token {
        Value::Number(n) => n.as_u64().and_then(|t| u32::try_from(t).ok()),
        Value::String(s) => s.parse::<u32>().ok(),
        _ => None,
    };
    let Some(token) = token.filter(|t| *t > 0) else {
        return error(StatusCode::BAD_REQUEST, "instrument_token must be an integer 1 … 4294967295");
    };
    let Some(inst) = sim.universe.get(&token) else {
        return error(StatusCode::NOT_FOUND, format!("unknown instrument_token {token}"));
    };
    let now = Utc::now().to_rfc3339();
    let rec = {
        let mut subs = sim.subs.lock().expect("subs lock");
        let rec = subs.entry(token).or_insert_with(|| SubRecord {
            instrument_token: token,
            tradingsymbol: inst.tradingsymbol.clone(),
            segment: inst.segment.to_string(),
            status: "active",
            requested_mode: "FULL".into(),
            account_id: "primary".into(),
            created_at: now.clone(),
            updated_at: now.clone(),
        });
        rec.status = "active";
        rec.updated_at = now;
        if let Some(m) = body.requested_mode {
            rec.requested_mode = m;
        }
        if let Some(a) = body.account_id {
            rec.account_id = a;
        }
        rec.clone()
    };
    publish(&sim, "subscription_created", &rec).await;
    (StatusCode::CREATED, Json(json!(rec))).into_response()
}

async fn delete_subscription(State(sim): State<Shared>, Path(token): Path<String>) -> Response {
    let Ok(token) = token.parse::<u32>() else {
        return error(StatusCode::BAD_REQUEST, "token must be an integer");
    };
    let rec = {
        let mut subs = sim.subs.lock().expect("subs lock");
        let Some(rec) = subs.get_mut(&token) else {
            return error(StatusCode::NOT_FOUND, format!("no subscription for {token}"));
        };
        rec.status = "inactive";
        rec.updated_at = Utc::now().to_rfc3339();
        rec.clone()
    };
    publish(&sim, "subscription_removed", &rec).await;
    Json(json!(rec)).into_response()
}

async fn instruments(State(sim): State<Shared>) -> Response {
    let mut csv = String::from("instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange\n");
    for token in &sim.order {
        let i = &sim.universe[token];
        let (strike, lot) = match i.kind {
            Kind::Option { strike, .. } => (strike, LOT),
            Kind::Future { .. } => (0.0, LOT),
            _ => (0.0, 1),
        };
        let expiry = i.expiry.map(|e| e.to_string()).unwrap_or_default();
        csv.push_str(&format!(
            "{},{},{},{},0.0,{},{},0.05,{},{},{},{}\n",
            i.token,
            i.token >> 8,
            i.tradingsymbol,
            i.name,
            expiry,
            strike,
            lot,
            i.instrument_type,
            i.segment,
            i.exchange
        ));
    }
    ([(header::CONTENT_TYPE, "text/csv")], csv).into_response()
}

async fn stats(State(sim): State<Shared>) -> Response {
    let st = sim.stats.lock().expect("stats lock");
    let by_status: BTreeMap<String, u64> = st.by_status.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    Json(json!({"history_requests": st.history_requests, "by_status": by_status, "peak_rps": st.peak_rps}))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_follow_kite() {
        let monthly = NaiveDate::from_ymd_opt(2025, 11, 25).unwrap();
        assert_eq!(last_tuesday(2025, 11), monthly);
        assert_eq!(option_symbol(monthly, 24500, true), "NIFTY25NOV24500CE");
        assert_eq!(option_symbol(NaiveDate::from_ymd_opt(2025, 11, 11).unwrap(), 24500, false), "NIFTY25N1124500PE");
        assert_eq!(
            option_symbol(NaiveDate::from_ymd_opt(2026, 3, 3).unwrap(), 24000, true),
            "NIFTY26303 24000CE".replace(' ', "")
        );
    }

    #[test]
    fn candles_are_pure_and_consistent() {
        let u = build_universe(NaiveDate::from_ymd_opt(2025, 11, 4).unwrap(), 2);
        assert_eq!(u.len(), 1 + 2 + 84 + 2);
        for inst in &u {
            for t in [1_762_227_900i64, 1_762_227_960] {
                let a = candle(inst, t, true);
                assert_eq!(a, candle(inst, t, true));
                let (o, h, l, c) = (a.open, a.high, a.low, a.close);
                assert!(h >= o.max(c) && l <= o.min(c) && l > 0.0, "{} {a:?}", inst.tradingsymbol);
            }
        }
        // 09:15 IST is 03:45 UTC.
        assert_eq!(candle(&u[0], 1_762_227_900, false).date, "2025-11-04T09:15:00+05:30");
        assert_eq!(ist_date(1_762_227_900, "+0530"), "2025-11-04T09:15:00+0530");
    }

    #[test]
    fn the_nse_calendar_is_weekday_market_hours() {
        assert!(in_calendar(Calendar::Nse, 1_762_227_900)); // Tue 09:15 IST
        assert!(!in_calendar(Calendar::Nse, 1_762_227_840)); // 09:14
        assert!(!in_calendar(Calendar::Nse, 1_762_227_900 + 375 * 60)); // 15:30
        assert!(!in_calendar(Calendar::Nse, 1_762_573_500)); // Sat
    }
}
