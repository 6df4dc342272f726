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

use crate::domain::{market::Candle, timeframe::Timeframe, window::Window};

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
};

pub const FUTURES: Family = Family {
    source: "futures_bars",
    keys: &[("instrument_token", "bigint")],
    cols: &[OHLCV[0], OHLCV[1], OHLCV[2], OHLCV[3], OHLCV[4], col("oi", "bigint", Agg::Last)],
    timeframes: &Timeframe::ROLLUPS,
    scope: Scope::Token,
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

    /// The plain path's one table holding every timeframe of the family, told apart by `tf` (the
    /// bucket's length in minutes)
    /// (one insert writes them all; the per-timeframe relations are views on it).
    pub fn table(&self) -> String {
        format!("{}_rollup", self.source)
    }

    /// `CREATE TABLE` of the plain path's [`Self::table`].
    pub fn create_table_sql(&self) -> String {
        let mut cols: Vec<String> = self.keys.iter().map(|(k, t)| format!("{k} {t} NOT NULL")).collect();
        cols.push("tf smallint NOT NULL".into());
        cols.push("time timestamptz NOT NULL".into());
        cols.extend(self.cols.iter().map(|c| format!("{} {}", c.name, c.ty)));
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}, tf, time))",
            self.table(),
            cols.join(", "),
            self.key_list()
        )
    }

    /// The plain path's relation of `tf`: a view on [`Self::table`] with the columns of the
    /// continuous aggregate of the same name.
    pub fn create_view_sql(&self, tf: Timeframe) -> String {
        format!(
            "CREATE OR REPLACE VIEW {} AS SELECT {}, time, {} FROM {} WHERE tf = {}",
            self.relation(tf),
            self.key_list(),
            self.col_list(),
            self.table(),
            tf.minutes()
        )
    }

    /// The continuous aggregate of `tf` on TimescaleDB, built from the source table.
    pub fn create_continuous_sql(&self, tf: Timeframe) -> String {
        let bucket = match tf.offset_seconds() {
            0 => format!("time_bucket(INTERVAL '{}', time)", tf.interval_sql()),
            off => {
                format!("time_bucket(INTERVAL '{}', time, \"offset\" => INTERVAL '{off} seconds')", tf.interval_sql())
            }
        };
        let aggs: Vec<String> = self
            .cols
            .iter()
            .map(|c| {
                let e = match c.agg {
                    Agg::First => format!("first({}, time)", c.name),
                    Agg::Last => format!("last({}, time)", c.name),
                    Agg::Max => format!("max({})", c.name),
                    Agg::Min => format!("min({})", c.name),
                    Agg::Sum => sum_sql(c),
                    Agg::Ratio(n, d) => format!("sum({n})::float8 / nullif(sum({d}), 0)::float8"),
                };
                format!("{e} AS {}", c.name)
            })
            .collect();
        format!(
            "CREATE MATERIALIZED VIEW {rel} WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
             SELECT {keys}, {bucket} AS time, {aggs} FROM {src} GROUP BY {keys}, {bucket} WITH NO DATA",
            rel = self.relation(tf),
            keys = self.key_list(),
            aggs = aggs.join(", "),
            src = self.source,
        )
    }

    /// The plain path's statement that recomputes `tf`'s buckets of one series from the finer
    /// relation: `$1` (and `$2` for an expiry) select the series, the last two parameters the
    /// span, which must be whole buckets of `tf`.
    fn refresh_sql(&self, tf: Timeframe) -> String {
        self.upsert_sql(
            tf,
            match self.scope {
                Scope::Token => "instrument_token = $1 AND time >= $2 AND time < $3",
                Scope::Expiry => "symbol = $1 AND expiry = $2 AND time >= $3 AND time < $4",
            },
        )
    }

    /// Upserts `tf`'s buckets computed from the finer relation's rows that match `filter`.
    fn upsert_sql(&self, tf: Timeframe, filter: &str) -> String {
        self.upsert_from_sql(tf, &self.relation(tf.source()), filter)
    }

    /// The plain path's one statement that recomputes, for one instrument, every rollup bucket
    /// holding a minute an upsert wrote. Level by level, each timeframe from the one below
    /// (`Timeframe::source`):
    /// - 5-minute buckets the answer held whole arrive computed (`$11` times, then one array per
    ///   column); the others (`$10`, the edges and holes of the answer) are rolled up from the
    ///   stored minutes;
    /// - each level's buckets are those inside its span (`$2`, `$3` for the first timeframe,
    ///   `$4`, `$5` for the next, …), rolled up from the level below, whose own rows outside its
    ///   span are read from its table (the statement does not change them).
    ///
    /// One insert writes every level. One round trip, and no minute is read twice.
    fn refresh_token_sql(&self) -> String {
        let cols = self.col_list();
        let keys = self.key_list();
        let span = |i: usize| (2 + 2 * i, 3 + 2 * i);
        let n = self.timeframes.len();
        let given = 2 + 2 * n + 1;
        let arrays: Vec<String> =
            self.cols.iter().enumerate().map(|(i, c)| format!("${}::{}[]", given + 1 + i, c.ty)).collect();
        let first = self.timeframes[0];
        let mut parts = vec![
            format!(
                "l{src} AS (SELECT x.instrument_token, x.time, {cols} FROM unnest(${incomplete}::timestamptz[]) AS b(start)
                 JOIN {table} x ON x.instrument_token = $1 AND x.time >= b.start AND x.time < b.start + INTERVAL '{width}')",
                src = first.source().as_str(),
                incomplete = given - 1,
                table = self.source,
                width = first.interval_sql(),
            ),
            format!(
                "l{tf} AS MATERIALIZED (SELECT $1::bigint AS instrument_token, k.* FROM UNNEST(${given}::timestamptz[], {arrays})
                     AS k(time, {cols})
                 UNION ALL {level})",
                tf = first.as_str(),
                arrays = arrays.join(", "),
                level = self.level_sql(first, &format!("l{}", first.source().as_str()), "true"),
            ),
        ];
        let mut levels = Vec::new();
        for (i, tf) in self.timeframes.iter().enumerate() {
            let (from, to) = span(i);
            let level = format!("l{}", tf.as_str());
            if i > 0 {
                let below = format!("l{}_all", tf.source().as_str());
                let filter = format!("time >= ${from} AND time < ${to}");
                parts.push(format!("{level} AS MATERIALIZED ({})", self.level_sql(*tf, &below, &filter)));
            }
            levels.push(format!("SELECT {keys}, {}::smallint, time, {cols} FROM {level}", tf.minutes()));
            // The spans of the levels built from this one: its rows there, recomputed or stored.
            let above: Vec<(usize, usize)> = (0..n).filter(|j| self.timeframes[*j].source() == *tf).map(span).collect();
            if !above.is_empty() {
                let lo = above.iter().map(|(f, _)| format!("${f}")).collect::<Vec<_>>().join(", ");
                let hi = above.iter().map(|(_, t)| format!("${t}")).collect::<Vec<_>>().join(", ");
                parts.push(format!(
                    "{level}_all AS MATERIALIZED (SELECT {keys}, time, {cols} FROM {level} UNION ALL
                     SELECT {keys}, time, {cols} FROM {table} WHERE instrument_token = $1 AND tf = {minutes}
                         AND time >= least({lo}) AND time < greatest({hi}) AND time NOT IN (SELECT time FROM {level}))",
                    table = self.table(),
                    minutes = tf.minutes(),
                ));
            }
        }
        format!(
            "WITH {} INSERT INTO {} AS r ({keys}, tf, time, {cols}) {} {}",
            parts.join(",\n"),
            self.table(),
            levels.join(" UNION ALL "),
            self.on_conflict_sql()
        )
    }

    /// [`Self::upsert_sql`] from the rows of `src`.
    fn upsert_from_sql(&self, tf: Timeframe, src: &str, filter: &str) -> String {
        format!(
            "INSERT INTO {table} AS r ({keys}, tf, time, {cols}) SELECT {keys}, {minutes}::smallint, time, {cols} FROM ({level}) l {conflict}",
            minutes = tf.minutes(),
            table = self.table(),
            keys = self.key_list(),
            cols = self.col_list(),
            level = self.level_sql(tf, src, filter),
            conflict = self.on_conflict_sql(),
        )
    }

    /// The buckets of `tf` computed from the rows of `src` (a relation with the family's keys,
    /// `time` and columns) that match `filter`: keys, `time` (the bucket's start), columns.
    ///
    /// First and last values are taken from arrays aggregated in time order: the rows come from a
    /// subquery sorted by the grouping keys, the bucket and then time, which the aggregation
    /// consumes in that order (grouped by a prefix of it, so nothing re-sorts them). One sort per
    /// timeframe, where an `ORDER BY` inside each aggregate would sort once per column and bucket.
    fn level_sql(&self, tf: Timeframe, src: &str, filter: &str) -> String {
        let aggs: Vec<String> = self
            .cols
            .iter()
            .map(|c| {
                let e = match c.agg {
                    Agg::First => format!("(array_agg({}))[1]", c.name),
                    Agg::Last => format!("(array_agg({}))[count(*)]", c.name),
                    Agg::Max => format!("max({})", c.name),
                    Agg::Min => format!("min({})", c.name),
                    Agg::Sum => sum_sql(c),
                    Agg::Ratio(n, d) => format!("sum({n})::float8 / nullif(sum({d}), 0)::float8"),
                };
                format!("{e} AS {}", c.name)
            })
            .collect();
        format!(
            "SELECT {keys}, bucket AS time, {aggs}
             FROM (SELECT *, date_bin(INTERVAL '{width}', time, TIMESTAMPTZ '2000-01-03 00:00:00+00' + INTERVAL '{off} seconds') AS bucket
                   FROM {src} WHERE {filter} ORDER BY {keys}, bucket, time) s
             GROUP BY {keys}, bucket",
            keys = self.key_list(),
            width = tf.interval_sql(),
            off = tf.offset_seconds(),
            aggs = aggs.join(", "),
        )
    }

    /// An upsert's conflict clause: a bucket whose values are unchanged is left alone.
    fn on_conflict_sql(&self) -> String {
        let sets: Vec<String> = self.cols.iter().map(|c| format!("{0} = EXCLUDED.{0}", c.name)).collect();
        let old: Vec<String> = self.cols.iter().map(|c| format!("r.{}", c.name)).collect();
        let new: Vec<String> = self.cols.iter().map(|c| format!("EXCLUDED.{}", c.name)).collect();
        format!(
            "ON CONFLICT ({}, tf, time) DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})",
            self.key_list(),
            sets.join(", "),
            old.join(", "),
            new.join(", ")
        )
    }
}

/// A sum of a bigint column. The ticker accepts minute volumes up to 9·10¹⁵, so a day of absurd
/// but accepted minutes could pass the largest bigint; the sum is held there rather than failing
/// the write of the minutes themselves.
fn sum_sql(c: &Col) -> String {
    if c.ty == "bigint" {
        format!("least(sum({}), 9223372036854775807)::bigint", c.name)
    } else {
        format!("sum({})::{}", c.name, c.ty)
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

/// Recomputes, in `tx`, every rollup bucket of `token` in the bar table of `family` that holds a
/// minute of `touched` (the minutes an upsert of `candles` wrote). Returns the rollup rows
/// written.
#[tracing::instrument(level = "debug", skip_all, fields(token, table = family.source))]
pub async fn refresh_bars(
    tx: &mut Transaction<'_, Postgres>,
    family: &Family,
    token: u32,
    candles: &[Candle],
    touched: Window,
) -> sqlx::Result<u64> {
    let first = family.timeframes[0];
    let (whole, partial) = whole_buckets(family, first, candles, first.cover(touched));
    if whole.time.is_empty() && partial.is_empty() {
        return Ok(0);
    }
    // Planning this statement costs about a third of running it, and the plan does not depend on
    // the values: keep the generic plan (for the rest of this transaction, whose statements are
    // as plain).
    sqlx::query("SET LOCAL plan_cache_mode = force_generic_plan").execute(&mut **tx).await?;
    let mut q = sqlx::query(sqlx::AssertSqlSafe(family.refresh_token_sql())).bind(token as i64);
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

/// One rollup column's values, typed for binding.
enum Column {
    F(Vec<Option<f64>>),
    I(Vec<Option<i64>>),
}

/// Buckets computed from an answer, one array per column of the family.
struct Whole {
    time: Vec<DateTime<Utc>>,
    cols: Vec<Column>,
}

/// A candle's value of a rollup column (`None` for a column it does not carry).
fn value(c: &Candle, name: &str) -> Option<Value> {
    Some(match name {
        "open" => Value::F(Some(c.open)),
        "high" => Value::F(Some(c.high)),
        "low" => Value::F(Some(c.low)),
        "close" => Value::F(Some(c.close)),
        "volume" => Value::I(Some(c.volume)),
        "oi" => Value::I(c.oi),
        "iv" => Value::F(c.iv),
        "underlying_price" => Value::F(c.underlying),
        _ => return None,
    })
}

#[derive(Clone, Copy)]
enum Value {
    F(Option<f64>),
    I(Option<i64>),
}

/// Splits the buckets of `tf` that hold a minute of `candles` inside `span` into those the
/// candles fill, computed here, and the rest (their starts), which the statement rolls up from
/// the stored minutes.
fn whole_buckets(family: &Family, tf: Timeframe, candles: &[Candle], span: Window) -> (Whole, Vec<DateTime<Utc>>) {
    let mut by_bucket: std::collections::BTreeMap<DateTime<Utc>, Vec<&Candle>> = Default::default();
    for c in candles.iter().filter(|c| span.from <= c.time && c.time < span.to) {
        by_bucket.entry(tf.floor(c.time)).or_default().push(c);
    }
    let minutes = (tf.seconds() / 60) as usize;
    let mut whole = Whole {
        time: Vec::new(),
        cols: family
            .cols
            .iter()
            .map(|c| if c.ty == "bigint" { Column::I(Vec::new()) } else { Column::F(Vec::new()) })
            .collect(),
    };
    let mut partial = Vec::new();
    // Only buckets holding a minute of the answer: the others hold no minute it wrote.
    for (start, rows) in by_bucket.iter_mut() {
        rows.sort_by_key(|c| c.time);
        rows.dedup_by_key(|c| c.time);
        match Some(&*rows).filter(|v| v.len() == minutes).and_then(|v| aggregate(family, v)) {
            Some(values) => {
                whole.time.push(*start);
                for (col, v) in whole.cols.iter_mut().zip(values) {
                    match (col, v) {
                        (Column::F(a), Value::F(x)) => a.push(x),
                        (Column::I(a), Value::I(x)) => a.push(x),
                        _ => unreachable!("a column's type is fixed by the family"),
                    }
                }
            }
            None => partial.push(*start),
        }
    }
    (whole, partial)
}

/// One bucket's values from its minutes (sorted, one per minute), as the SQL rolls them up;
/// `None` when a column cannot be computed here (the statement then does it).
fn aggregate(family: &Family, rows: &[&Candle]) -> Option<Vec<Value>> {
    let (first, last) = (rows.first()?, rows.last()?);
    family
        .cols
        .iter()
        .map(|c| {
            let all = || rows.iter().map(|r| value(r, c.name));
            match c.agg {
                Agg::First => value(first, c.name),
                Agg::Last => value(last, c.name),
                Agg::Max | Agg::Min => {
                    let xs: Option<Vec<f64>> = all()
                        .map(|v| match v {
                            Some(Value::F(Some(x))) => Some(x),
                            _ => None,
                        })
                        .collect();
                    let xs = xs?;
                    let pick = if matches!(c.agg, Agg::Max) { f64::max } else { f64::min };
                    xs.into_iter().reduce(pick).map(|x| Value::F(Some(x)))
                }
                Agg::Sum => all()
                    .try_fold(0i64, |acc, v| match v {
                        // As `sum_sql`: held at the largest bigint rather than failing.
                        Some(Value::I(Some(x))) => Some(acc.saturating_add(x)),
                        _ => None,
                    })
                    .map(|x| Value::I(Some(x))),
                Agg::Ratio(..) => None,
            }
        })
        .collect()
}

/// Rebuilds, in `tx`, the chain rollups of one underlying and expiry for the buckets holding a
/// minute of `window` (whose rows were just replaced): buckets left without minutes go.
#[tracing::instrument(level = "debug", skip_all, fields(symbol, %expiry))]
pub async fn refresh_chain(
    tx: &mut Transaction<'_, Postgres>,
    symbol: &str,
    expiry: NaiveDate,
    window: Window,
) -> sqlx::Result<u64> {
    let mut rows = 0;
    for family in [&STRIKES, &EXPIRY_METRICS] {
        for tf in family.timeframes {
            let span = tf.cover(window);
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {} WHERE symbol = $1 AND expiry = $2 AND tf = {} AND time >= $3 AND time < $4",
                family.table(),
                tf.minutes()
            )))
            .bind(symbol)
            .bind(expiry)
            .bind(span.from)
            .bind(span.to)
            .execute(&mut **tx)
            .await?;
            rows += sqlx::query(sqlx::AssertSqlSafe(family.refresh_sql(*tf)))
                .bind(symbol)
                .bind(expiry)
                .bind(span.from)
                .bind(span.to)
                .execute(&mut **tx)
                .await?
                .rows_affected();
        }
    }
    Ok(rows)
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
    token: u32,
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
        .bind(token as i64)
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
#[cfg(test)]
mod print_sql {
    #[test]
    fn print() {
        if std::env::var("PRINT_SQL").is_ok() {
            println!("{}", super::OPTIONS.refresh_token_sql());
        }
    }
}
