//! The simulator's lies, on request: answers that are wrong the ways real sources are, while
//! answering 200. Each is deterministic from `--seed`; the per-request faults (a truncated tail,
//! a hole) are drawn per request, so asking again can get the truth.
//!
//! - `--truncate-rate F`: an answer ends early by a random number of minutes;
//! - `--hole-rate F`: a run of up to 30 minutes is missing inside an answer;
//! - `--lag-minutes N`: the newest N minutes appear only N minutes later;
//! - `--illiquid-share F`: that share of the option contracts has no-trade minutes (about 40 % of
//!   them), never served, as Kite serves no candle for a minute without trades;
//! - `--adjust TOKEN:DATE:RATIO`: history before DATE (IST) is served with its prices multiplied
//!   by RATIO, as Kite back-adjusts an equity on its ex-date.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{NaiveDate, TimeZone};

use super::{
    candles::{splitmix64, SimCandle},
    universe::{ist, Kind, SimInstrument},
};

/// What the simulator lies about (nothing by default).
#[derive(Debug, Clone, Default)]
pub struct Lies {
    pub seed: u64,
    pub truncate_rate: f64,
    pub hole_rate: f64,
    pub lag_minutes: u32,
    pub illiquid_share: f64,
    pub adjust: Vec<Adjustment>,
}

/// `--adjust TOKEN:DATE:RATIO`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adjustment {
    pub token: u32,
    pub before: NaiveDate,
    pub ratio: f64,
}

/// Parses `TOKEN:DATE:RATIO`, e.g. `20000001:2026-11-20:0.5`.
pub fn parse_adjustment(s: &str) -> Result<Adjustment, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [token, date, ratio] = parts.as_slice() else { return Err("expected TOKEN:DATE:RATIO".into()) };
    let token = token.parse::<u32>().ok().filter(|t| *t > 0).ok_or_else(|| format!("{token:?} is not a token"))?;
    let before = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| format!("{date:?} is not a date"))?;
    let ratio = ratio
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| format!("{ratio:?} is not a positive ratio"))?;
    Ok(Adjustment { token, before, ratio })
}

/// How often each lie was told: answers truncated, holed and lagged, no-trade minutes withheld,
/// and the instrument-days served adjusted.
#[derive(Debug, Default)]
pub(super) struct Told {
    truncated: AtomicU64,
    holes: AtomicU64,
    lagged: AtomicU64,
    illiquid_minutes: AtomicU64,
    adjusted: std::sync::Mutex<std::collections::HashSet<(u32, NaiveDate)>>,
}

impl Told {
    pub(super) fn json(&self) -> serde_json::Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "truncated": n(&self.truncated),
            "holes": n(&self.holes),
            "lagged": n(&self.lagged),
            "illiquid_minutes": n(&self.illiquid_minutes),
            "adjusted": self.adjusted.lock().expect("told lock").len(),
        })
    }
}

/// A uniform draw in [0, 1) from a hash.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl Lies {
    /// Whether `inst` is one of the illiquid contracts.
    pub(super) fn illiquid(&self, inst: &SimInstrument) -> bool {
        matches!(inst.kind, Kind::Option { .. })
            && unit(splitmix64(self.seed ^ 0x1111 ^ inst.token as u64)) < self.illiquid_share
    }

    /// Whether an illiquid contract traded in the minute starting at `t`: the same answer for
    /// every request.
    fn traded(&self, inst: &SimInstrument, t: i64) -> bool {
        unit(splitmix64(self.seed ^ ((inst.token as u64) << 32) ^ (t.div_euclid(60) as u64) ^ 0x2222)) >= 0.4
    }

    /// The minutes (epoch seconds, in order) answer number `request` serves out of the true
    /// `minutes`, with the lies told counted in `told`; `now_minute` is the forming minute.
    pub(super) fn serve(
        &self,
        inst: &SimInstrument,
        mut minutes: Vec<i64>,
        request: u64,
        now_minute: i64,
        told: &Told,
    ) -> Vec<i64> {
        if self.lag_minutes > 0 {
            let before = minutes.len();
            let newest = now_minute - self.lag_minutes as i64 * 60;
            minutes.retain(|t| *t < newest);
            if minutes.len() < before {
                told.lagged.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.illiquid(inst) {
            let before = minutes.len();
            minutes.retain(|t| self.traded(inst, *t));
            told.illiquid_minutes.fetch_add((before - minutes.len()) as u64, Ordering::Relaxed);
        }
        let draw =
            |salt: u64| splitmix64(self.seed ^ request.wrapping_mul(0x9E37_79B9) ^ ((inst.token as u64) << 20) ^ salt);
        if minutes.len() >= 2 && unit(draw(1)) < self.truncate_rate {
            let cut = 1 + (draw(2) % (minutes.len() as u64 - 1)) as usize;
            minutes.truncate(minutes.len() - cut);
            told.truncated.fetch_add(1, Ordering::Relaxed);
        }
        if minutes.len() >= 3 && unit(draw(3)) < self.hole_rate {
            let len = 1 + (draw(4) % (minutes.len() as u64 - 2).min(30)) as usize;
            let start = 1 + (draw(5) % (minutes.len() - 1 - len) as u64) as usize;
            minutes.drain(start..start + len);
            told.holes.fetch_add(1, Ordering::Relaxed);
        }
        minutes
    }

    /// `c` (the minute starting at `t` of `inst`) as served: adjusted when an adjustment covers it.
    pub(super) fn adjust(&self, inst: &SimInstrument, t: i64, mut c: SimCandle, told: &Told) -> SimCandle {
        if self.adjust.is_empty() {
            return c;
        }
        let Some(day) = ist().timestamp_opt(t, 0).single().map(|d| d.date_naive()) else { return c };
        if let Some(a) = self.adjust.iter().find(|a| a.token == inst.token && day < a.before) {
            let r = |p: f64| (p * a.ratio * 20.0).round() / 20.0;
            (c.open, c.high, c.low, c.close) = (r(c.open), r(c.high), r(c.low), r(c.close));
            told.adjusted.lock().expect("told lock").insert((inst.token, day));
        }
        c
    }
}
