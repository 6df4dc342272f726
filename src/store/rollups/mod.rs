//! Rollups: 5m, 15m, 1h and 1d bars of the three bar tables, and 5m and 15m buckets of the
//! option-chain tables, under one name per table and timeframe (`minute_bars_5m`,
//! `fo_expiry_metrics_15m`, …) with the same columns whichever path the store took:
//! - on TimescaleDB, continuous aggregates over the hypertables, refreshed by policies and
//!   answering in real time past their last refresh (`store::timescale` creates them);
//! - on plain PostgreSQL, tables the worker keeps, in the transaction that wrote the minutes, for
//!   the buckets those minutes fall in ([`refresh_bars`], [`refresh_chain`]).
//!
//! Every relation is described once, by a [`Family`]: its source, its grouping keys and how each
//! column aggregates. Both paths' SQL is generated from that description, so they cannot drift.
//! A bucket takes the open of its first minute, the close (and OI, IV, underlying price, PCR of
//! OI, max pain) of its last, the high and low over its minutes, volumes summed, and PCR of volume
//! from the summed volumes. On the plain path 15m buckets are built from 5m ones and hours and
//! days from 15m ones, which gives the same values with a fraction of the reading.

use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use sqlx::{PgPool, Postgres, Transaction};
use tickfill_jobs::InstrumentToken;

use crate::domain::{market::Candle, timeframe::Timeframe, window::Window};

mod answer;
mod sql;
pub mod strikes;

use answer::{whole_buckets, Column};

/// How a rollup column is made from its source's rows in one bucket.
#[derive(Debug, Clone, Copy)]
pub enum Agg {
    /// The value of the bucket's first row.
    First,
    /// The value of the bucket's last row (NULL when that row has none).
    Last,
    Max,
    Min,
    Sum,
    /// Σ numerator / Σ denominator over the bucket; NULL when the denominator sums to 0.
    Ratio(&'static str, &'static str),
}

/// One column of a rollup.
#[derive(Debug, Clone, Copy)]
pub struct Col {
    pub name: &'static str,
    pub ty: &'static str,
    pub agg: Agg,
}

const fn col(name: &'static str, ty: &'static str, agg: Agg) -> Col {
    Col { name, ty, agg }
}

/// What selects one series' rows: one instrument of a bar table, or one underlying and expiry of
/// a chain table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Token,
    Expiry,
}

/// A table and its rollups.
#[derive(Debug)]
pub struct Family {
    pub source: &'static str,
    /// Grouping columns (name, type), besides the bucket.
    pub keys: &'static [(&'static str, &'static str)],
    pub cols: &'static [Col],
    pub timeframes: &'static [Timeframe],
    pub scope: Scope,
    /// How many of the last `keys` follow `time` in the plain table's primary key: rows written
    /// together (a minute's strikes) then land side by side at the index's end.
    pub within_bucket: usize,
}

const OHLCV: [Col; 5] = [
    col("open", "double precision", Agg::First),
    col("high", "double precision", Agg::Max),
    col("low", "double precision", Agg::Min),
    col("close", "double precision", Agg::Last),
    col("volume", "bigint", Agg::Sum),
];

pub const MINUTE: Family = Family {
    source: "minute_bars",
    keys: &[("instrument_token", "bigint")],
    cols: &OHLCV,
    timeframes: &Timeframe::ROLLUPS,
    scope: Scope::Token,
    within_bucket: 0,
};

pub const FUTURES: Family = Family {
    source: "futures_bars",
    keys: &[("instrument_token", "bigint")],
    cols: &[OHLCV[0], OHLCV[1], OHLCV[2], OHLCV[3], OHLCV[4], col("oi", "bigint", Agg::Last)],
    timeframes: &Timeframe::ROLLUPS,
    scope: Scope::Token,
    within_bucket: 0,
};

pub const OPTIONS: Family = Family {
    source: "option_bars",
    keys: &[("instrument_token", "bigint")],
    cols: &[
        OHLCV[0],
        OHLCV[1],
        OHLCV[2],
        OHLCV[3],
        OHLCV[4],
        col("oi", "bigint", Agg::Last),
        col("iv", "double precision", Agg::Last),
        col("underlying_price", "double precision", Agg::Last),
    ],
    timeframes: &Timeframe::ROLLUPS,
    scope: Scope::Token,
    within_bucket: 0,
};

pub const STRIKES: Family = Family {
    source: "fo_strike_distribution",
    keys: &[("symbol", "text"), ("expiry", "date"), ("strike", "double precision")],
    cols: &[
        col("call_close", "double precision", Agg::Last),
        col("put_close", "double precision", Agg::Last),
        col("call_volume", "bigint", Agg::Sum),
        col("put_volume", "bigint", Agg::Sum),
        col("call_oi", "bigint", Agg::Last),
        col("put_oi", "bigint", Agg::Last),
        col("call_iv", "double precision", Agg::Last),
        col("put_iv", "double precision", Agg::Last),
    ],
    timeframes: &Timeframe::CHAIN_ROLLUPS,
    scope: Scope::Expiry,
    within_bucket: 1,
};

pub const EXPIRY_METRICS: Family = Family {
    source: "fo_expiry_metrics",
    keys: &[("symbol", "text"), ("expiry", "date")],
    cols: &[
        col("underlying_close", "double precision", Agg::Last),
        col("call_volume", "bigint", Agg::Sum),
        col("put_volume", "bigint", Agg::Sum),
        col("call_oi", "bigint", Agg::Last),
        col("put_oi", "bigint", Agg::Last),
        col("pcr_oi", "double precision", Agg::Last),
        col("pcr_volume", "double precision", Agg::Ratio("put_volume", "call_volume")),
        col("max_pain", "double precision", Agg::Last),
        col("strikes", "integer", Agg::Last),
    ],
    timeframes: &Timeframe::CHAIN_ROLLUPS,
    scope: Scope::Expiry,
    within_bucket: 0,
};

/// Every family, bars first.
pub const FAMILIES: [&Family; 5] = [&MINUTE, &FUTURES, &OPTIONS, &STRIKES, &EXPIRY_METRICS];

/// The family of a bar table.
pub fn bar_family(table: &str) -> Option<&'static Family> {
    [&MINUTE, &FUTURES, &OPTIONS].into_iter().find(|f| f.source == table)
}
impl Family {
    /// The relation holding `tf` (the source itself for one minute).
    pub fn relation(&self, tf: Timeframe) -> String {
        match tf {
            Timeframe::M1 => self.source.to_string(),
            tf => format!("{}_{}", self.source, tf.as_str()),
        }
    }

    /// Every rollup relation of the family.
    pub fn relations(&self) -> impl Iterator<Item = (Timeframe, String)> + '_ {
        self.timeframes.iter().map(|tf| (*tf, self.relation(*tf)))
    }

    fn key_list(&self) -> String {
        self.keys.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
    }

    fn col_list(&self) -> String {
        self.cols.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
    }
}

/// How this database keeps its rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upkeep {
    /// Plain tables: the worker refreshes the buckets it writes into.
    Tables,
    /// TimescaleDB continuous aggregates: policies refresh them, nothing for the worker to do.
    Continuous,
    /// No rollups (the migrations have not run since they were added).
    Missing,
}

/// Tells how the rollups are kept: the plain path's table, or continuous aggregates alone.
pub async fn upkeep(pool: &PgPool) -> sqlx::Result<Upkeep> {
    let (table, view): (bool, bool) = sqlx::query_as("SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL")
        .bind(MINUTE.table())
        .bind(MINUTE.relation(Timeframe::M5))
        .fetch_one(pool)
        .await?;
    Ok(match (table, view) {
        (true, _) => Upkeep::Tables,
        (false, true) => Upkeep::Continuous,
        (false, false) => Upkeep::Missing,
    })
}

/// [`upkeep`], asked until it is known and then remembered (a worker may start before the
/// migrations that add the rollups have run).
#[derive(Debug, Default)]
pub struct UpkeepCache(std::sync::OnceLock<Upkeep>);

impl UpkeepCache {
    pub async fn get(&self, pool: &PgPool) -> sqlx::Result<Upkeep> {
        if let Some(u) = self.0.get() {
            return Ok(*u);
        }
        let u = upkeep(pool).await?;
        if u != Upkeep::Missing {
            let _ = self.0.set(u);
        }
        Ok(u)
    }
}

/// Planning a refresh costs about a third of running it, and its plan does not depend on the
/// values: keep the generic plan (for the rest of the transaction, whose statements are as plain).
async fn prefer_generic_plans(tx: &mut Transaction<'_, Postgres>) -> sqlx::Result<()> {
    sqlx::query("SET LOCAL plan_cache_mode = force_generic_plan").execute(&mut **tx).await.map(drop)
}

/// Recomputes, in `tx`, every rollup bucket of `token` in the bar table of `family` that holds a
/// minute of `touched` (the minutes an upsert of `candles` wrote). Returns the rollup rows
/// written.
#[tracing::instrument(level = "debug", skip_all, fields(token, table = family.source))]
pub async fn refresh_bars(
    tx: &mut Transaction<'_, Postgres>,
    family: &Family,
    token: InstrumentToken,
    candles: &[Candle],
    touched: Window,
) -> sqlx::Result<u64> {
    let first = family.timeframes[0];
    let (whole, partial) = whole_buckets(family, first, candles, first.cover(touched));
    if whole.time.is_empty() && partial.is_empty() {
        return Ok(0);
    }
    prefer_generic_plans(tx).await?;
    let mut q = sqlx::query(sqlx::AssertSqlSafe(family.refresh_token_sql())).bind(crate::store::bind_token(token));
    for tf in family.timeframes {
        let w = tf.cover(touched);
        q = q.bind(w.from).bind(w.to);
    }
    q = q.bind(partial).bind(whole.time);
    for col in whole.cols {
        q = match col {
            Column::F(v) => q.bind(v),
            Column::I(v) => q.bind(v),
        };
    }
    Ok(q.execute(&mut **tx).await?.rows_affected())
}

/// Rebuilds, in `tx`, the chain rollups of one underlying and expiry for `window`, whose rows
/// were just replaced by those of `chain`: `window` must be whole buckets of every chain
/// timeframe ([`chain_window`]). Strike buckets come from `chain` itself; the expiry's, which
/// take the underlying's close from the index's bars, from the rows just written.
#[tracing::instrument(level = "debug", skip_all, fields(symbol, %expiry))]
pub async fn refresh_chain(
    tx: &mut Transaction<'_, Postgres>,
    symbol: &str,
    expiry: NaiveDate,
    chain: &crate::domain::chain::Chain,
    window: Window,
) -> sqlx::Result<u64> {
    let mut rows = strikes::write(tx, symbol, expiry, chain, window).await?;
    for tf in EXPIRY_METRICS.timeframes {
        in_expiry_window(tx, EXPIRY_METRICS.clear_expiry_sql(*tf), symbol, expiry, window).await?;
        rows += in_expiry_window(tx, EXPIRY_METRICS.refresh_sql(*tf), symbol, expiry, window).await?;
    }
    Ok(rows)
}

/// Runs one statement on an expiry's metrics inside `window` (`$1` the symbol, `$2` the expiry,
/// `$3`…`$4` the window): clearing them, or rebuilding them from the strikes. Returns the rows it
/// touched.
async fn in_expiry_window(
    tx: &mut Transaction<'_, Postgres>,
    sql: String,
    symbol: &str,
    expiry: NaiveDate,
    window: Window,
) -> sqlx::Result<u64> {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(symbol)
        .bind(expiry)
        .bind(window.from)
        .bind(window.to)
        .execute(&mut **tx)
        .await
        .map(|r| r.rows_affected())
}

/// The window a chain rebuild of `window` covers when the plain rollups are kept: widened to
/// whole buckets of the coarsest chain timeframe, so the chain read holds every minute of each.
pub fn chain_window(window: Window) -> Window {
    let coarsest = STRIKES.timeframes.iter().max_by_key(|tf| tf.seconds()).copied().unwrap_or(Timeframe::M15);
    coarsest.cover(window)
}

/// Computes every bucket of `tf` from the finer relation (a new plain rollup table on a store
/// that holds bars already). Returns the rows written.
pub async fn rebuild_all(tx: &mut Transaction<'_, Postgres>, family: &Family, tf: Timeframe) -> sqlx::Result<u64> {
    Ok(sqlx::query(sqlx::AssertSqlSafe(family.upsert_sql(tf, "true"))).execute(&mut **tx).await?.rows_affected())
}

/// One bar as `tickfill bars` prints it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Bar {
    pub time: DateTime<Utc>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oi: Option<Option<i64>>,
}

/// Streams `token`'s bars of `tf` from `family` whose bucket starts in `window`, oldest first,
/// to `each`. The rows are never all held: a year of minutes prints in constant memory.
pub async fn read_bars(
    pool: &PgPool,
    family: &Family,
    tf: Timeframe,
    token: InstrumentToken,
    window: Window,
    mut each: impl FnMut(Bar) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let has_oi = family.cols.iter().any(|c| c.name == "oi");
    let oi = if has_oi { "oi" } else { "NULL::bigint" };
    let sql = format!(
        "SELECT time, open, high, low, close, volume, {oi} FROM {} WHERE instrument_token = $1 AND time >= $2 AND time < $3 ORDER BY time",
        family.relation(tf)
    );
    type Row = (DateTime<Utc>, f64, f64, f64, f64, i64, Option<i64>);
    let mut rows = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql))
        .bind(crate::store::bind_token(token))
        .bind(window.from)
        .bind(window.to)
        .fetch(pool);
    let mut n = 0;
    while let Some((time, open, high, low, close, volume, o)) = rows.try_next().await? {
        each(Bar { time, open, high, low, close, volume, oi: has_oi.then_some(o) })?;
        n += 1;
    }
    Ok(n)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_paths_name_the_same_columns_in_the_same_order() {
        // The columns of a `SELECT a, b AS c, …` list, by their output names.
        fn names(select: &str) -> Vec<String> {
            let list = &select[select.find("SELECT").unwrap() + 6..select.find(" FROM ").unwrap()];
            let mut out = Vec::new();
            let (mut depth, mut item) = (0, String::new());
            for ch in list.chars().chain([',']) {
                match ch {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    ',' if depth == 0 => {
                        let name = item.trim().rsplit(' ').next().unwrap().to_string();
                        out.push(name);
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(ch);
            }
            out
        }
        for f in FAMILIES {
            for tf in f.timeframes {
                assert_eq!(names(&f.create_view_sql(*tf)), names(&f.create_continuous_sql(*tf)), "{}", f.relation(*tf));
            }
        }
    }

    #[test]
    fn coarser_plain_rollups_read_the_finer_ones() {
        let sql = MINUTE.refresh_sql(Timeframe::D1);
        assert!(sql.contains("FROM minute_bars_15m WHERE"), "{sql}");
        assert!(sql.contains("INTERVAL '66600 seconds'"), "{sql}");
        assert!(MINUTE.refresh_sql(Timeframe::M5).contains("FROM minute_bars WHERE"));
        assert_eq!(bar_family("option_bars").unwrap().relation(Timeframe::H1), "option_bars_1h");
    }
}
