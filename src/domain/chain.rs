//! Option-chain metrics: per minute of one underlying and expiry, the strike distribution (calls
//! and puts side by side), PCR by OI and by volume, and max pain.
//!
//! Definitions, over the legs that have a bar in that minute:
//! - PCR(OI) = Σ put OI / Σ call OI, PCR(volume) likewise; null when the denominator is 0.
//! - max pain = the strike K minimising Σ_s callOI(s)·max(0, K − s) + putOI(s)·max(0, s − K),
//!   over the strikes of the chain; the lowest such strike on a tie.
//! - `underlying_close` = the index's `minute_bars` close at that minute, null if absent.

//!
//! The math only: reading and writing the rows is `store::chain`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// The table a rebuild's per-strike rows go to (its row counts are reported under this name).
pub const STRIKE_TABLE: &str = "fo_strike_distribution";

/// One leg of the chain in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Side {
    pub close: Option<f64>,
    pub volume: Option<i64>,
    pub oi: Option<i64>,
    pub iv: Option<f64>,
}

/// Calls and puts of one strike in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StrikeRow {
    pub strike: f64,
    pub call: Side,
    pub put: Side,
}

/// The chain's totals and metrics in one minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    pub call_volume: i64,
    pub put_volume: i64,
    pub call_oi: i64,
    pub put_oi: i64,
    pub pcr_oi: Option<f64>,
    pub pcr_volume: Option<f64>,
    pub max_pain: Option<f64>,
    pub strikes: i32,
}

/// Strikes in integer hundredths, so sums of OI × distance are exact and ties are real ties.
fn cents(strike: f64) -> i128 {
    (strike * 100.0).round() as i128
}

/// Max pain over `(strike, call OI, put OI)`; the lowest strike wins a tie. O(n log n): with
/// strikes sorted, the pain at each strike follows from running sums of OI and OI × strike.
pub fn max_pain(chain: &[(f64, i64, i64)]) -> Option<f64> {
    let mut legs: Vec<(i128, i128, i128, f64)> =
        chain.iter().map(|(k, c, p)| (cents(*k), *c as i128, *p as i128, *k)).collect();
    legs.sort_by_key(|l| l.0);
    let (total_put, total_put_k): (i128, i128) = legs.iter().fold((0, 0), |(p, pk), l| (p + l.2, pk + l.2 * l.0));
    // Below: calls at strikes < K; above: puts at strikes > K (a leg at K itself pays nothing).
    let (mut call_below, mut call_k_below) = (0i128, 0i128);
    let (mut put_through, mut put_k_through) = (0i128, 0i128);
    let mut best: Option<(i128, f64)> = None;
    let mut i = 0;
    while i < legs.len() {
        let k = legs[i].0;
        let mut j = i;
        while j < legs.len() && legs[j].0 == k {
            put_through += legs[j].2;
            put_k_through += legs[j].2 * legs[j].0;
            j += 1;
        }
        let calls = k * call_below - call_k_below;
        let puts = (total_put_k - put_k_through) - k * (total_put - put_through);
        let pain = calls + puts;
        if best.is_none_or(|(b, _)| pain < b) {
            best = Some((pain, legs[i].3));
        }
        for l in &legs[i..j] {
            call_below += l.1;
            call_k_below += l.1 * l.0;
        }
        i = j;
    }
    best.map(|(_, k)| k)
}

fn ratio(num: i64, den: i64) -> Option<f64> {
    (den != 0).then(|| num as f64 / den as f64)
}

/// The metrics of one minute's strike rows.
pub fn metrics(rows: &[StrikeRow]) -> Metrics {
    let sum = |f: fn(&StrikeRow) -> Option<i64>| rows.iter().filter_map(f).sum::<i64>();
    let call_oi = sum(|r| r.call.oi);
    let put_oi = sum(|r| r.put.oi);
    let call_volume = sum(|r| r.call.volume);
    let put_volume = sum(|r| r.put.volume);
    let chain: Vec<(f64, i64, i64)> =
        rows.iter().map(|r| (r.strike, r.call.oi.unwrap_or(0), r.put.oi.unwrap_or(0))).collect();
    Metrics {
        call_volume,
        put_volume,
        call_oi,
        put_oi,
        pcr_oi: ratio(put_oi, call_oi),
        pcr_volume: ratio(put_volume, call_volume),
        max_pain: max_pain(&chain),
        strikes: rows.len() as i32,
    }
}

/// A whole rebuild's output: per minute, its strike rows and metrics.
pub type Chain = BTreeMap<DateTime<Utc>, Vec<StrikeRow>>;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The definition, computed the slow way: every candidate strike, every leg.
    fn brute_force(chain: &[(f64, i64, i64)]) -> Option<f64> {
        let mut best: Option<(f64, f64)> = None;
        for (k, _, _) in chain {
            let pain: f64 =
                chain.iter().map(|(s, c, p)| *c as f64 * (k - s).max(0.0) + *p as f64 * (s - k).max(0.0)).sum();
            match best {
                Some((b, bk)) if pain > b || (pain == b && bk <= *k) => {}
                _ => best = Some((pain, *k)),
            }
        }
        best.map(|b| b.1)
    }

    #[test]
    fn the_worked_example_gives_max_pain_100_and_pcr_0_7468() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let path = format!("{dir}/maxpain/worked_example.json");
        let text = std::fs::read_to_string(&path).expect("tests/fixtures/maxpain/worked_example.json");
        let ex: serde_json::Value = serde_json::from_str(&text).unwrap();
        let strikes: Vec<f64> = serde_json::from_value(ex["strikes"].clone()).unwrap();
        let calls: Vec<i64> = serde_json::from_value(ex["call_oi"].clone()).unwrap();
        let puts: Vec<i64> = serde_json::from_value(ex["put_oi"].clone()).unwrap();
        let rows: Vec<StrikeRow> = (0..strikes.len())
            .map(|i| StrikeRow {
                strike: strikes[i],
                call: Side { oi: Some(calls[i]), volume: Some(0), ..Default::default() },
                put: Side { oi: Some(puts[i]), volume: Some(0), ..Default::default() },
            })
            .collect();
        let m = metrics(&rows);
        assert_eq!(m.max_pain, ex["max_pain"].as_f64());
        assert!((m.pcr_oi.unwrap() - ex["pcr_oi"].as_f64().unwrap()).abs() < 1e-12);
        assert_eq!(format!("{:.4}", m.pcr_oi.unwrap()), "0.7468");
        assert_eq!(m.pcr_volume, None, "no call volume: PCR(volume) is null");
    }

    #[test]
    fn max_pain_matches_brute_force_on_random_chains_with_ties() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(20261126);
        for case in 0..5000 {
            let n = rng.random_range(1..25);
            let step = [0.5, 1.0, 50.0, 100.0][rng.random_range(0..4)];
            let base = rng.random_range(1..500) as f64 * step;
            // Small OI ranges and symmetric chains make ties frequent.
            let hi = [3, 10, 1_000_000][rng.random_range(0..3)];
            let mut chain: Vec<(f64, i64, i64)> =
                (0..n).map(|i| (base + i as f64 * step, rng.random_range(0..hi), rng.random_range(0..hi))).collect();
            if case % 3 == 0 {
                let len = chain.len();
                for i in 0..len / 2 {
                    let (c, p) = (chain[i].1, chain[i].2);
                    chain[len - 1 - i].1 = p;
                    chain[len - 1 - i].2 = c;
                }
            }
            if case % 5 == 0 {
                for leg in chain.iter_mut() {
                    leg.1 = 0;
                    leg.2 = 0;
                }
            }
            let want = brute_force(&chain);
            assert_eq!(max_pain(&chain), want, "case {case}: {chain:?}");
        }
        assert_eq!(max_pain(&[]), None);
    }
}
