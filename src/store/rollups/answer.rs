//! The finest rollup buckets an answer fills, computed from its candles before the upkeep
//! statement runs, so that statement reads only what the answer cannot tell.

use chrono::{DateTime, Utc};

use super::{Agg, Family};
use crate::domain::{market::Candle, timeframe::Timeframe, window::Window};

/// One rollup column's values, typed for binding.
pub(super) enum Column {
    F(Vec<Option<f64>>),
    I(Vec<Option<i64>>),
}

/// Buckets computed from an answer, one array per column of the family.
pub(super) struct Whole {
    pub(super) time: Vec<DateTime<Utc>>,
    pub(super) cols: Vec<Column>,
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
pub(super) fn whole_buckets(
    family: &Family,
    tf: Timeframe,
    candles: &[Candle],
    span: Window,
) -> (Whole, Vec<DateTime<Utc>>) {
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
