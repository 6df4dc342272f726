//! `tickfill sim`: a stand-in for the ticker service, for development, tests and benches.
//!
//! It is an outside system on purpose: it shares no code with the worker's ticker client or the
//! store, so a format bug cannot hide in both. Routes (the real service's API):
//! `GET /history`, `GET|POST /subscriptions`, `DELETE /subscriptions/{token}`, plus
//! `GET /instruments` (the universe as a Kite instrument-dump CSV), Kite's own history route
//! `GET /instruments/historical/{token}/minute`, Kite's session routes (`accounts`) and
//! `GET /stats`.
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
//!
//! Layout: this file holds the options, the routes of the ticker service's own API and the fault
//! injection; `universe` the instruments; `candles` the candle formulas and the calendar; `kite`
//! Kite's historical route; `accounts` several accounts, each its own limit, and Kite sessions.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
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
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::shutdown::Shutdown;

pub use candles::Calendar;
use candles::{candle, in_calendar, SimCandle};
pub use universe::NIFTY_TOKEN;
use universe::{build_universe, ist, Kind, SimInstrument, LOT};

mod accounts;
mod candles;
mod kite;
pub mod lies;
mod universe;

/// The longest window `/history` serves for minute candles, like the real service.
pub const MAX_WINDOW_DAYS: i64 = 60;

/// How the simulator misbehaves on the history route, and where it publishes events.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub universe: usize,
    pub calendar: Calendar,
    pub error_rate: f64,
    pub throttle_rate: f64,
    pub latency_ms: (u64, u64),
    pub max_rps: Option<u32>,
    pub redis: Option<crate::config::RedisSettings>,
    pub channel_prefix: String,
    /// The only access token Kite's route accepts (`None`: any non-empty one); any other is
    /// answered 403 `TokenException`, as an expired session is.
    pub kite_access_token: Option<String>,
    /// When above 0: every history answer is a 200 of this many MiB, streamed (chunked, no
    /// length), JSON-shaped but padded: what a broken upstream or proxy might send.
    pub oversize_mib: u64,
    /// Wrong answers on request (`lies`): truncated, holed, lagged, illiquid, adjusted.
    pub lies: lies::Lies,
    /// The accounts (`accounts`): each held to `max_rps` on its own; empty: one budget for all.
    pub accounts: Vec<String>,
    /// When every Kite session of the accounts ends.
    pub session_expires_at: Option<DateTime<Utc>>,
    /// Kite's route answers a throttle as a 200 carrying Kite's error envelope, as Kite also does.
    pub kite_throttle_200: bool,
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
            redis: None,
            channel_prefix: "ticker:nifty".into(),
            kite_access_token: None,
            oversize_mib: 0,
            lies: lies::Lies::default(),
            accounts: Vec::new(),
            session_expires_at: None,
            kite_throttle_200: false,
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
    /// The `traceparent` headers of the last [`TRACEPARENTS_KEPT`] history requests that had one.
    traceparents: VecDeque<String>,
}

/// How many `traceparent` headers `GET /stats` lists.
const TRACEPARENTS_KEPT: usize = 1000;

struct Sim {
    opts: SimOptions,
    universe: HashMap<u32, SimInstrument>,
    order: Vec<u32>,
    subs: Mutex<BTreeMap<u32, SubRecord>>,
    stats: Mutex<Stats>,
    told: lies::Told,
    redis: Option<crate::redis_conn::RedisConn>,
    accounts: accounts::Accounts,
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
    let redis = match &opts.redis {
        // Its own connection, not the queue's: the simulator is an outside system (one that
        // publishes on the primary its sentinels name, as a Sentinel-aware service does).
        Some(r) => Some(crate::redis_conn::connect(r).await?),
        None => None,
    };
    let sim = Arc::new(Sim {
        accounts: accounts::Accounts::new(opts.accounts.clone(), opts.session_expires_at),
        universe: list.into_iter().map(|i| (i.token, i)).collect(),
        order,
        opts,
        subs: Mutex::new(BTreeMap::new()),
        stats: Mutex::new(Stats::default()),
        told: lies::Told::default(),
        redis,
    });
    Ok(Router::new()
        .route("/history", get(history))
        .route("/instruments/historical/{token}/{interval}", get(kite::kite_history))
        .route("/subscriptions", get(list_subscriptions).post(create_subscription))
        .route("/subscriptions/{token}", delete(delete_subscription))
        .route("/instruments", get(instruments))
        .route("/stats", get(stats))
        .route("/session/token", axum::routing::post(accounts::session_token))
        .route("/user/profile", get(accounts::profile))
        .route("/sim/login", axum::routing::post(accounts::login))
        .route("/sim/expire", axum::routing::post(accounts::expire))
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
    account_id: Option<String>,
}

/// Counts a history request; returns how many arrived in the last second and its number.
fn note_arrival(sim: &Sim) -> (usize, u64) {
    let mut st = sim.stats.lock().expect("stats lock");
    let now = Instant::now();
    st.history_requests += 1;
    while st.recent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
        st.recent.pop_front();
    }
    st.recent.push_back(now);
    st.peak_rps = st.peak_rps.max(st.recent.len());
    (st.recent.len(), st.history_requests)
}

fn note_status(sim: &Sim, status: StatusCode) {
    *sim.stats.lock().expect("stats lock").by_status.entry(status.as_u16()).or_default() += 1;
}

async fn history(State(sim): State<Shared>, headers: axum::http::HeaderMap, Query(q): Query<HistoryQuery>) -> Response {
    let (mut in_last_second, request) = note_arrival(&sim);
    // The request's trace, as sent (a W3C traceparent is 55 characters; anything odd is dropped).
    if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()).filter(|v| v.len() <= 128) {
        let mut st = sim.stats.lock().expect("stats lock");
        st.traceparents.push_back(tp.to_string());
        while st.traceparents.len() > TRACEPARENTS_KEPT {
            st.traceparents.pop_front();
        }
    }
    let account = match sim.accounts.of_ticker_request(q.account_id.as_deref()) {
        Ok(a) => a,
        Err(why) => {
            let resp = error(StatusCode::BAD_REQUEST, why);
            note_status(&sim, resp.status());
            return resp;
        }
    };
    // With accounts, each is held to --max-rps on its own.
    if let Some(a) = &account {
        in_last_second = sim.accounts.note_request(a);
    }
    let resp = history_response(&sim, q, in_last_second, request).await;
    if let (Some(a), StatusCode::TOO_MANY_REQUESTS) = (&account, resp.status()) {
        sim.accounts.note_throttled(a);
    }
    note_status(&sim, resp.status());
    resp
}

/// A fault the simulator answers a history request with instead of candles.
enum Fault {
    /// 429: over `--max-rps`, or drawn at `--throttle-rate`.
    Throttle,
    /// 502, drawn at `--error-rate`.
    Fail,
    /// A 200 of this many MiB (`--oversize-mib`).
    Oversize(u64),
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
    if o.oversize_mib > 0 {
        return Some(Fault::Oversize(o.oversize_mib));
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

/// A 200 of `mib` MiB, made as it is sent: `{"candles":[` then spaces, never held in memory.
pub(super) fn oversize_answer(mib: u64) -> Response {
    const CHUNK: usize = 64 * 1024;
    let chunks = mib * 16;
    let pad = axum::body::Bytes::from(vec![b' '; CHUNK]);
    let body = futures::stream::iter(
        std::iter::once(axum::body::Bytes::from_static(b"{\"candles\":["))
            .chain((0..chunks).map(move |_| pad.clone()))
            .chain(std::iter::once(axum::body::Bytes::from_static(b"]}")))
            .map(Ok::<_, std::convert::Infallible>),
    );
    ([(header::CONTENT_TYPE, "application/json")], axum::body::Body::from_stream(body)).into_response()
}

#[allow(clippy::result_large_err)]
async fn history_response(sim: &Sim, q: HistoryQuery, in_last_second: usize, request: u64) -> Response {
    let o = &sim.opts;
    match fault(o, in_last_second).await {
        Some(Fault::Throttle) => {
            let body = error(StatusCode::TOO_MANY_REQUESTS, "too many requests");
            return ([(header::RETRY_AFTER, "1")], body).into_response();
        }
        Some(Fault::Fail) => return error(StatusCode::BAD_GATEWAY, "upstream failure (simulated)"),
        Some(Fault::Oversize(mib)) => return oversize_answer(mib),
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
    let minutes = (first..end).step_by(60).filter(|t| in_calendar(o.calendar, *t)).collect();
    let candles: Vec<SimCandle> = o
        .lies
        .serve(inst, minutes, request, now_minute, &sim.told)
        .into_iter()
        .map(|t| o.lies.adjust(inst, t, candle(inst, t, with_oi), &sim.told))
        .collect();
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
    Json(json!({
        "history_requests": st.history_requests,
        "by_status": by_status,
        "peak_rps": st.peak_rps,
        "traceparents": st.traceparents,
        "faults": sim.told.json(),
        "by_account": sim.accounts.json(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candles::ist_date;
    use chrono::NaiveDate;
    use universe::{last_tuesday, option_symbol};

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
