//! The strike-distribution rollups of a chain rebuild, computed from the chain in hand: the
//! rebuild reads every minute of the buckets it touches, so nothing needs reading back.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{Postgres, Transaction};

use super::STRIKES;
use crate::domain::{
    chain::{Chain, Side},
    timeframe::Timeframe,
    window::Window,
};

/// One strike's bucket: the last minute's sides, with the volumes of every minute summed.
#[derive(Default)]
struct Bucket {
    call: Side,
    put: Side,
    call_volume: Option<i64>,
    put_volume: Option<i64>,
}

/// A bucket's stored values, in the order of [`Bucket::values`].
type Values = (Option<f64>, Option<f64>, Option<i64>, Option<i64>, Option<i64>, Option<i64>, Option<f64>, Option<f64>);

impl Bucket {
    fn values(&self) -> Values {
        let (c, p) = (&self.call, &self.put);
        (c.close, p.close, self.call_volume, self.put_volume, c.oi, p.oi, c.iv, p.iv)
    }
}

/// The stored buckets of `tf` in `window`, by start and strike.
async fn stored(
    tx: &mut Transaction<'_, Postgres>,
    symbol: &str,
    expiry: NaiveDate,
    tf: Timeframe,
    window: Window,
) -> sqlx::Result<BTreeMap<(DateTime<Utc>, u64), Values>> {
    type Row = (
        DateTime<Utc>,
        f64,
        Option<f64>,
        Option<f64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<f64>,
        Option<f64>,
    );
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT time, strike, call_close, put_close, call_volume, put_volume, call_oi, put_oi, call_iv, put_iv
         FROM {} WHERE symbol = $1 AND expiry = $2 AND tf = {} AND time >= $3 AND time < $4",
        STRIKES.table(),
        tf.minutes()
    )))
    .bind(symbol)
    .bind(expiry)
    .bind(window.from)
    .bind(window.to)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(t, k, cc, pc, cv, pv, co, po, ci, pi)| ((t, k.to_bits()), (cc, pc, cv, pv, co, po, ci, pi)))
        .collect())
}

/// Σ of the volumes present (`None` when none is), held at the largest bigint as the SQL sums are.
fn add(sum: Option<i64>, v: Option<i64>) -> Option<i64> {
    match (sum, v) {
        (Some(s), Some(v)) => Some(s.saturating_add(v)),
        (s, v) => s.or(v),
    }
}

/// The buckets of `tf` of `chain`, by start and strike (positive strikes order like their bits).
/// A chain's buckets of one timeframe by (time, strike bits), each with its strike.
type Buckets = BTreeMap<(DateTime<Utc>, u64), (f64, Bucket)>;

fn buckets(chain: &Chain, tf: Timeframe) -> Buckets {
    let mut out: Buckets = BTreeMap::new();
    // Minutes in time order: each minute's sides replace the last, volumes add up.
    for (minute, rows) in chain {
        let start = tf.floor(*minute);
        for r in rows {
            let (_, b) = out.entry((start, r.strike.to_bits())).or_insert_with(|| (r.strike, Bucket::default()));
            b.call = r.call;
            b.put = r.put;
            b.call_volume = add(b.call_volume, r.call.volume);
            b.put_volume = add(b.put_volume, r.put.volume);
        }
    }
    out
}

/// Makes, in `tx`, the strike-distribution buckets of one underlying and expiry in `window`
/// (whole buckets of every timeframe, all of whose minutes `chain` holds) those of `chain`.
/// Returns the rows written.
pub async fn write(
    tx: &mut Transaction<'_, Postgres>,
    symbol: &str,
    expiry: NaiveDate,
    chain: &Chain,
    window: Window,
) -> sqlx::Result<u64> {
    let mut rows = 0;
    for tf in STRIKES.timeframes {
        let mut b = buckets(chain, *tf);
        // What is stored already: a chain is rebuilt after each of its legs, and most of its
        // buckets come out the same. Those are left alone, and buckets the chain no longer has go.
        let stored = stored(tx, symbol, expiry, *tf, window).await?;
        let mut gone: (Vec<DateTime<Utc>>, Vec<f64>) = Default::default();
        for (key, values) in &stored {
            match b.get(key) {
                Some((_, new)) if new.values() == *values => {
                    b.remove(key);
                }
                Some(_) => {}
                None => {
                    gone.0.push(key.0);
                    gone.1.push(f64::from_bits(key.1));
                }
            }
        }
        if !gone.0.is_empty() {
            delete(tx, symbol, expiry, *tf, &gone).await?;
        }
        if b.is_empty() {
            continue;
        }
        rows += insert(tx, symbol, expiry, *tf, &b).await?;
    }
    Ok(rows)
}

/// Deletes the buckets (time, strike) of one timeframe a chain no longer has.
async fn delete(
    tx: &mut Transaction<'_, Postgres>,
    symbol: &str,
    expiry: NaiveDate,
    tf: Timeframe,
    gone: &(Vec<DateTime<Utc>>, Vec<f64>),
) -> sqlx::Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {} WHERE symbol = $1 AND expiry = $2 AND tf = {}
             AND (time, strike) IN (SELECT * FROM UNNEST($3::timestamptz[], $4::float8[]))",
        STRIKES.table(),
        tf.minutes()
    )))
    .bind(symbol)
    .bind(expiry)
    .bind(&gone.0)
    .bind(&gone.1)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Writes the buckets of one timeframe that changed or are new; returns the rows written.
async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    symbol: &str,
    expiry: NaiveDate,
    tf: Timeframe,
    b: &Buckets,
) -> sqlx::Result<u64> {
    let time: Vec<DateTime<Utc>> = b.keys().map(|(t, _)| *t).collect();
    let strike: Vec<f64> = b.values().map(|(k, _)| *k).collect();
    let col = |f: fn(&Bucket) -> Option<f64>| b.values().map(|(_, x)| f(x)).collect::<Vec<_>>();
    let int = |f: fn(&Bucket) -> Option<i64>| b.values().map(|(_, x)| f(x)).collect::<Vec<_>>();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {table} AS r (symbol, expiry, strike, tf, time, call_close, put_close, call_volume, put_volume,
                 call_oi, put_oi, call_iv, put_iv)
             SELECT $1, $2, t.strike, {minutes}, t.time, t.cc, t.pc, t.cv, t.pv, t.co, t.po, t.ci, t.pi
             FROM UNNEST($3::timestamptz[], $4::float8[], $5::float8[], $6::float8[], $7::bigint[], $8::bigint[],
                         $9::bigint[], $10::bigint[], $11::float8[], $12::float8[])
                  AS t(time, strike, cc, pc, cv, pv, co, po, ci, pi)
             {conflict}",
        table = STRIKES.table(),
        minutes = tf.minutes(),
        conflict = STRIKES.on_conflict_sql(),
    )))
    .bind(symbol)
    .bind(expiry)
    .bind(&time)
    .bind(&strike)
    .bind(col(|x| x.call.close))
    .bind(col(|x| x.put.close))
    .bind(int(|x| x.call_volume))
    .bind(int(|x| x.put_volume))
    .bind(int(|x| x.call.oi))
    .bind(int(|x| x.put.oi))
    .bind(col(|x| x.call.iv))
    .bind(col(|x| x.put.iv))
    .execute(&mut **tx)
    .await
    .map(|r| r.rows_affected())
}
