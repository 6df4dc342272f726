//! Candles as a pure function of token and minute (the formulas are in the module docs of
//! `sim`), and the trading calendar the simulator serves.

use std::f64::consts::PI;

use chrono::{Datelike, TimeZone, Timelike};

use crate::domain::calendar::{Calendars, Exchange};

use super::universe::{ist, Kind, SimInstrument, INDEX_BASE, LOT, NIFTY_TOKEN};

/// Which minutes have candles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Calendar {
    /// Every minute of every day, so a demo at night has data.
    Always,
    /// NSE F&O sessions as the repository's calendar data has them: 09:15–15:30 IST on trading
    /// days, holidays closed, special sessions open.
    Nse,
}

pub(super) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub(super) fn tick(x: f64) -> f64 {
    (x * 20.0).round() / 20.0
}

pub(super) fn path(base: f64, token: u32, k: i64) -> f64 {
    let phase = 2.0 * PI * (token % 1000) as f64 / 1000.0;
    let k = k as f64;
    base * (1.0 + 0.004 * (2.0 * PI * k / 375.0).sin() + 0.0015 * (2.0 * PI * k / 47.0 + phase).sin())
}

/// Standard normal CDF (Abramowitz–Stegun 7.1.26 through erf).
pub(super) fn norm_cdf(x: f64) -> f64 {
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

pub(super) fn norm_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * PI).sqrt()
}

pub(super) struct Greeks {
    pub(super) price: f64,
    pub(super) iv: f64,
    pub(super) delta: f64,
    pub(super) gamma: f64,
    pub(super) theta: f64,
    pub(super) vega: f64,
}

pub(super) fn black_scholes(u: f64, strike: f64, call: bool, years: f64) -> Greeks {
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

pub(super) fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// One candle as the API serves it (fields absent from the JSON are `None`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(super) struct SimCandle {
    pub(super) date: String,
    pub(super) open: f64,
    pub(super) high: f64,
    pub(super) low: f64,
    pub(super) close: f64,
    pub(super) volume: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) oi: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) iv: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) delta: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) gamma: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) theta: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) vega: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) underlying: Option<f64>,
}

/// `t` (epoch seconds) as IST wall clock, `2025-11-04T09:15:00` followed by `offset`.
pub(super) fn ist_date(t: i64, offset: &str) -> String {
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
pub(super) fn candle(inst: &SimInstrument, t: i64, with_oi: bool) -> SimCandle {
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

pub(super) fn in_calendar(calendar: Calendar, t: i64) -> bool {
    match calendar {
        Calendar::Always => true,
        Calendar::Nse => {
            // NSE's sessions and holidays as the repository's calendar data has them.
            static NSE: std::sync::OnceLock<Calendars> = std::sync::OnceLock::new();
            let local = ist().timestamp_opt(t, 0).single().expect("valid instant");
            let time = local.time();
            NSE.get_or_init(Calendars::built_in)
                .day(Exchange::Nse, local.date_naive())
                .sessions
                .iter()
                .any(|s| s.open <= time && time < s.close)
        }
    }
}
