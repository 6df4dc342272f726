//! The SQL of the rollups, generated from each family's description: the plain path's table,
//! views and upkeep statements, and TimescaleDB's continuous aggregates.

use super::{Agg, Col, Family, Scope};
use crate::domain::timeframe::Timeframe;

impl Family {
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
        let keys: Vec<&str> = self.keys.iter().map(|(k, _)| *k).collect();
        let (series, within) = keys.split_at(keys.len() - self.within_bucket);
        let pk: Vec<&str> = series.iter().copied().chain(["tf", "time"]).chain(within.iter().copied()).collect();
        format!("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))", self.table(), cols.join(", "), pk.join(", "))
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
        let aggs = self.agg_list(|c| format!("first({c}, time)"), |c| format!("last({c}, time)"));
        format!(
            "CREATE MATERIALIZED VIEW {rel} WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
             SELECT {keys}, {bucket} AS time, {aggs} FROM {src} GROUP BY {keys}, {bucket} WITH NO DATA",
            rel = self.relation(tf),
            keys = self.key_list(),
            src = self.source,
        )
    }

    /// The plain path's statement that recomputes `tf`'s buckets of one series from the finer
    /// relation: `$1` (and `$2` for an expiry) select the series, the last two parameters the
    /// span, which must be whole buckets of `tf`.
    pub(super) fn refresh_sql(&self, tf: Timeframe) -> String {
        self.upsert_sql(
            tf,
            match self.scope {
                Scope::Token => "instrument_token = $1 AND time >= $2 AND time < $3",
                Scope::Expiry => "symbol = $1 AND expiry = $2 AND time >= $3 AND time < $4",
            },
        )
    }

    /// The statement that deletes `tf`'s buckets of one expiry inside a span, with the parameters of
    /// [`Family::refresh_sql`] for an expiry: `$1` symbol, `$2` expiry, `$3`…`$4` the span.
    pub(super) fn clear_expiry_sql(&self, tf: Timeframe) -> String {
        format!(
            "DELETE FROM {} WHERE symbol = $1 AND expiry = $2 AND tf = {} AND time >= $3 AND time < $4",
            self.table(),
            tf.minutes()
        )
    }

    /// Upserts `tf`'s buckets computed from the finer relation's rows that match `filter`.
    pub(super) fn upsert_sql(&self, tf: Timeframe, filter: &str) -> String {
        self.upsert_from_sql(tf, &self.relation(tf.source()), filter)
    }

    /// The plain path's one statement that recomputes, for one instrument, every rollup bucket
    /// holding a minute an upsert wrote. Level by level, each timeframe from the one below
    /// (`Timeframe::source`):
    /// - 5-minute buckets the answer filled arrive computed (`$11` their starts, then one array
    ///   per column); the others holding one of its minutes (`$10`: the edges and holes of the
    ///   answer) are rolled up from the stored minutes;
    /// - each coarser level recomputes the buckets inside its span (`$2`, `$3` for the first
    ///   timeframe, `$4`, `$5` for the next, …) from the level below: the rows just recomputed,
    ///   and the stored rest of that level (which the statement does not change).
    ///
    /// One insert writes every level. One round trip, and no minute is read twice.
    pub(super) fn refresh_token_sql(&self) -> String {
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
        let aggs = self.agg_list(|c| format!("(array_agg({c}))[1]"), |c| format!("(array_agg({c}))[count(*)]"));
        format!(
            "SELECT {keys}, bucket AS time, {aggs}
             FROM (SELECT *, date_bin(INTERVAL '{width}', time, TIMESTAMPTZ '2000-01-03 00:00:00+00' + INTERVAL '{off} seconds') AS bucket
                   FROM {src} WHERE {filter} ORDER BY {keys}, bucket, time) s
             GROUP BY {keys}, bucket",
            keys = self.key_list(),
            width = tf.interval_sql(),
            off = tf.offset_seconds(),
        )
    }

    /// The family's columns as aggregates over a bucket's rows, `… AS name`, joined; `first` and
    /// `last` say how each path takes a column of the bucket's first and last row.
    fn agg_list(&self, first: impl Fn(&str) -> String, last: impl Fn(&str) -> String) -> String {
        let aggs: Vec<String> = self
            .cols
            .iter()
            .map(|c| {
                let e = match c.agg {
                    Agg::First => first(c.name),
                    Agg::Last => last(c.name),
                    Agg::Max => format!("max({})", c.name),
                    Agg::Min => format!("min({})", c.name),
                    Agg::Sum => sum_sql(c),
                    Agg::Ratio(n, d) => format!("sum({n})::float8 / nullif(sum({d}), 0)::float8"),
                };
                format!("{e} AS {}", c.name)
            })
            .collect();
        aggs.join(", ")
    }

    /// An upsert's conflict clause: a bucket whose values are unchanged is left alone.
    pub(super) fn on_conflict_sql(&self) -> String {
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
