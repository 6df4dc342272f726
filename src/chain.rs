//! Option-chain metrics: per minute of one underlying and expiry, the strike distribution (calls
//! and puts side by side), PCR by OI and by volume, and max pain.
//!
//! Definitions, over the legs that have a bar in that minute:
//! - PCR(OI) = Σ put OI / Σ call OI, PCR(volume) likewise; null when the denominator is 0.
//! - max pain = the strike K minimising Σ_s callOI(s)·max(0, K − s) + putOI(s)·max(0, s − K),
//!   over the strikes of the chain; the lowest such strike on a tie.
//! - `underlying_close` = the index's `minute_bars` close at that minute, null if absent.
//!
//! A rebuild replaces the window's rows in one transaction, so rebuilding twice gives the same rows.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgPool, Postgres, Transaction};

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

/// Reads the option bars of one underlying and expiry in `[from, to)` into per-minute chains.
pub async fn read_chain(
    pool: &PgPool,
    symbol: &str,
    expiry: NaiveDate,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Chain> {
    type Row = (DateTime<Utc>, f64, bool, f64, i64, Option<i64>, Option<f64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT time, strike, option_type = 'CE', close, volume, oi, iv FROM option_bars
         WHERE symbol = $1 AND expiry = $2 AND time >= $3 AND time < $4 ORDER BY time, strike",
    )
    .bind(symbol)
    .bind(expiry)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let mut chain = Chain::new();
    for (time, strike, is_call, close, volume, oi, iv) in rows {
        let minute = chain.entry(time).or_default();
        if minute.last().is_none_or(|r| r.strike != strike) {
            minute.push(StrikeRow { strike, ..Default::default() });
        }
        let row = minute.last_mut().expect("pushed above");
        let side = Side { close: Some(close), volume: Some(volume), oi, iv };
        if is_call {
            row.call = side;
        } else {
            row.put = side;
        }
    }
    Ok(chain)
}

/// A chain turned into the column arrays its rows are written from.
#[derive(Default)]
pub struct Prepared {
    strikes: StrikeColumns,
    metrics: MetricColumns,
}

impl Prepared {
    /// Computes every minute's metrics and lays the rows out for writing.
    pub fn from_chain(chain: &Chain) -> Self {
        let mut p = Prepared::default();
        for (time, rows) in chain {
            for r in rows {
                p.strikes.push(*time, r);
            }
            p.metrics.push(*time, &metrics(rows));
        }
        p
    }

    /// Rows this will write.
    pub fn len(&self) -> usize {
        self.strikes.time.len() + self.metrics.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the window's rows of both tables with these, in `tx`; returns rows written.
    pub async fn write(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        symbol: &str,
        expiry: NaiveDate,
        window: (DateTime<Utc>, DateTime<Utc>),
    ) -> sqlx::Result<u64> {
        delete_window(tx, symbol, expiry, window).await?;
        self.insert(tx, symbol, expiry).await
    }

    /// Inserts the rows (the window must be empty of them).
    pub async fn insert(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        symbol: &str,
        expiry: NaiveDate,
    ) -> sqlx::Result<u64> {
        let strikes = self.strikes.insert(tx, symbol, expiry).await?;
        let minutes = self.metrics.insert(tx, symbol, expiry).await?;
        Ok(strikes + minutes)
    }
}

/// Deletes the window's rows of both chain tables.
pub async fn delete_window(
    tx: &mut Transaction<'_, Postgres>,
    symbol: &str,
    expiry: NaiveDate,
    window: (DateTime<Utc>, DateTime<Utc>),
) -> sqlx::Result<()> {
    for table in ["fo_strike_distribution", "fo_expiry_metrics"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE symbol = $1 AND expiry = $2 AND time >= $3 AND time < $4"
        )))
        .bind(symbol)
        .bind(expiry)
        .bind(window.0)
        .bind(window.1)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[derive(Default)]
struct StrikeColumns {
    time: Vec<DateTime<Utc>>,
    strike: Vec<f64>,
    close: [Vec<Option<f64>>; 2],
    volume: [Vec<Option<i64>>; 2],
    oi: [Vec<Option<i64>>; 2],
    iv: [Vec<Option<f64>>; 2],
}

impl StrikeColumns {
    fn push(&mut self, time: DateTime<Utc>, r: &StrikeRow) {
        self.time.push(time);
        self.strike.push(r.strike);
        for (i, side) in [r.call, r.put].iter().enumerate() {
            self.close[i].push(side.close);
            self.volume[i].push(side.volume);
            self.oi[i].push(side.oi);
            self.iv[i].push(side.iv);
        }
    }

    async fn insert(&self, tx: &mut Transaction<'_, Postgres>, symbol: &str, expiry: NaiveDate) -> sqlx::Result<u64> {
        let done = sqlx::query(
            "INSERT INTO fo_strike_distribution (symbol, expiry, time, strike, call_close, put_close,
                 call_volume, put_volume, call_oi, put_oi, call_iv, put_iv)
             SELECT $1, $2, t.* FROM UNNEST($3::timestamptz[], $4::float8[], $5::float8[], $6::float8[],
                 $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::float8[], $12::float8[]) AS t",
        )
        .bind(symbol)
        .bind(expiry)
        .bind(&self.time)
        .bind(&self.strike)
        .bind(&self.close[0])
        .bind(&self.close[1])
        .bind(&self.volume[0])
        .bind(&self.volume[1])
        .bind(&self.oi[0])
        .bind(&self.oi[1])
        .bind(&self.iv[0])
        .bind(&self.iv[1])
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected())
    }
}

#[derive(Default)]
struct MetricColumns {
    time: Vec<DateTime<Utc>>,
    call_volume: Vec<i64>,
    put_volume: Vec<i64>,
    call_oi: Vec<i64>,
    put_oi: Vec<i64>,
    pcr_oi: Vec<Option<f64>>,
    pcr_volume: Vec<Option<f64>>,
    max_pain: Vec<Option<f64>>,
    strikes: Vec<i32>,
}

impl MetricColumns {
    fn push(&mut self, time: DateTime<Utc>, m: &Metrics) {
        self.time.push(time);
        self.call_volume.push(m.call_volume);
        self.put_volume.push(m.put_volume);
        self.call_oi.push(m.call_oi);
        self.put_oi.push(m.put_oi);
        self.pcr_oi.push(m.pcr_oi);
        self.pcr_volume.push(m.pcr_volume);
        self.max_pain.push(m.max_pain);
        self.strikes.push(m.strikes);
    }

    /// Inserts the metrics, taking `underlying_close` from the index's minute bars.
    async fn insert(&self, tx: &mut Transaction<'_, Postgres>, symbol: &str, expiry: NaiveDate) -> sqlx::Result<u64> {
        let done = sqlx::query(
            "INSERT INTO fo_expiry_metrics (symbol, expiry, time, underlying_close, call_volume, put_volume,
                 call_oi, put_oi, pcr_oi, pcr_volume, max_pain, strikes)
             SELECT $1, $2, t.time, b.close, t.cv, t.pv, t.co, t.po, t.pcr_oi, t.pcr_v, t.mp, t.n
             FROM UNNEST($3::timestamptz[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[],
                         $8::float8[], $9::float8[], $10::float8[], $11::int[])
                  AS t(time, cv, pv, co, po, pcr_oi, pcr_v, mp, n)
             LEFT JOIN minute_bars b ON b.symbol = $1 AND b.time = t.time",
        )
        .bind(symbol)
        .bind(expiry)
        .bind(&self.time)
        .bind(&self.call_volume)
        .bind(&self.put_volume)
        .bind(&self.call_oi)
        .bind(&self.put_oi)
        .bind(&self.pcr_oi)
        .bind(&self.pcr_volume)
        .bind(&self.max_pain)
        .bind(&self.strikes)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected())
    }
}

/// Rebuilds one underlying and expiry over `[from, to)`: its rows are replaced in one transaction.
/// Returns rows written.
pub async fn rebuild(
    pool: &PgPool,
    symbol: &str,
    expiry: NaiveDate,
    window: (DateTime<Utc>, DateTime<Utc>),
) -> sqlx::Result<u64> {
    let mut tx = pool.begin().await?;
    // The old rows go while the bars are read (on another connection): the read costs no time.
    let (chain, deleted) = tokio::join!(
        read_chain(pool, symbol, expiry, window.0, window.1),
        delete_window(&mut tx, symbol, expiry, window)
    );
    deleted?;
    let rows = Prepared::from_chain(&chain?).insert(&mut tx, symbol, expiry).await?;
    tx.commit().await?;
    Ok(rows)
}

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

/// One minute of a chain as `tickfill chain` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChainView {
    pub symbol: String,
    pub expiry: NaiveDate,
    pub time: DateTime<Utc>,
    pub underlying_close: Option<f64>,
    pub pcr_oi: Option<f64>,
    pub pcr_volume: Option<f64>,
    pub max_pain: Option<f64>,
    pub call_oi: i64,
    pub put_oi: i64,
    pub strikes: Vec<ChainStrike>,
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct ChainStrike {
    pub strike: f64,
    pub call_close: Option<f64>,
    pub call_volume: Option<i64>,
    pub call_oi: Option<i64>,
    pub call_iv: Option<f64>,
    pub put_close: Option<f64>,
    pub put_volume: Option<i64>,
    pub put_oi: Option<i64>,
    pub put_iv: Option<f64>,
}

/// The stored chain at the latest minute at or before `at`.
pub async fn view(
    pool: &PgPool,
    symbol: &str,
    expiry: NaiveDate,
    at: DateTime<Utc>,
) -> sqlx::Result<Option<ChainView>> {
    type Row = (DateTime<Utc>, Option<f64>, Option<f64>, Option<f64>, Option<f64>, i64, i64);
    let m: Option<Row> = sqlx::query_as(
        "SELECT time, underlying_close, pcr_oi, pcr_volume, max_pain, call_oi, put_oi FROM fo_expiry_metrics
         WHERE symbol = $1 AND expiry = $2 AND time <= $3 ORDER BY time DESC LIMIT 1",
    )
    .bind(symbol)
    .bind(expiry)
    .bind(at)
    .fetch_optional(pool)
    .await?;
    let Some((time, underlying_close, pcr_oi, pcr_volume, max_pain, call_oi, put_oi)) = m else { return Ok(None) };
    let strikes: Vec<ChainStrike> = sqlx::query_as(
        "SELECT strike, call_close, call_volume, call_oi, call_iv, put_close, put_volume, put_oi, put_iv
         FROM fo_strike_distribution WHERE symbol = $1 AND expiry = $2 AND time = $3 ORDER BY strike",
    )
    .bind(symbol)
    .bind(expiry)
    .bind(time)
    .fetch_all(pool)
    .await?;
    Ok(Some(ChainView {
        symbol: symbol.to_string(),
        expiry,
        time,
        underlying_close,
        pcr_oi,
        pcr_volume,
        max_pain,
        call_oi,
        put_oi,
        strikes,
    }))
}
