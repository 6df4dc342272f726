//! Bar upserts, one statement per table, keyed on (instrument_token, time): two instruments that
//! share a name (NSE:INFY and BSE:INFY) never share a row. A row whose values
//! are unchanged is left alone; one that changed is a revision the caller counts.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use tickfill_jobs::InstrumentToken;

use crate::domain::{
    market::{BarTarget, Candle, OptionType},
    window::Window,
};

/// What an upsert did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upserted {
    /// Rows inserted or changed.
    pub written: u64,
    /// The minutes of rows that were stored already with other values.
    pub revised: Vec<DateTime<Utc>>,
    /// From the first written minute to the end of the last: what rollups must recompute.
    pub touched: Option<Window>,
}

/// The stored prices (open, high, low, close) of `token` in `window`, by minute.
pub async fn stored_prices(
    tx: &mut Transaction<'_, Postgres>,
    token: InstrumentToken,
    target: &BarTarget,
    window: Window,
) -> sqlx::Result<Vec<(DateTime<Utc>, [f64; 4])>> {
    // The table name is one of three constants, never input.
    let sql = format!(
        "SELECT time, open, high, low, close FROM {} WHERE instrument_token = $1 AND time >= $2 AND time < $3 ORDER BY time",
        target.table()
    );
    let rows: Vec<(DateTime<Utc>, f64, f64, f64, f64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(super::bind_token(token))
        .bind(window.from)
        .bind(window.to)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows.into_iter().map(|(t, o, h, l, c)| (t, [o, h, l, c])).collect())
}

/// The stored minutes of `token` in `window`.
pub async fn stored_minutes(
    pool: &sqlx::PgPool,
    token: InstrumentToken,
    target: &BarTarget,
    window: Window,
) -> sqlx::Result<Vec<DateTime<Utc>>> {
    // The table name is one of three constants, never input.
    let sql = format!("SELECT time FROM {} WHERE instrument_token = $1 AND time >= $2 AND time < $3", target.table());
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(super::bind_token(token))
        .bind(window.from)
        .bind(window.to)
        .fetch_all(pool)
        .await
}

/// The oldest stored minute of `token` in `window`.
pub async fn first_stored(
    pool: &sqlx::PgPool,
    token: InstrumentToken,
    target: &BarTarget,
    window: Window,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    // The table name is one of three constants, never input.
    let sql =
        format!("SELECT min(time) FROM {} WHERE instrument_token = $1 AND time >= $2 AND time < $3", target.table());
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(super::bind_token(token))
        .bind(window.from)
        .bind(window.to)
        .fetch_one(pool)
        .await
}

/// The bar table that holds `token`'s bars, if any does.
pub async fn table_of(pool: &sqlx::PgPool, token: InstrumentToken) -> sqlx::Result<Option<&'static str>> {
    for table in BarTarget::TABLES {
        // The table name is one of three constants, never input.
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE instrument_token = $1)");
        let found: bool =
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(super::bind_token(token)).fetch_one(pool).await?;
        if found {
            return Ok(Some(table));
        }
    }
    Ok(None)
}

/// The columns every bar table shares, one vector each (the statements bind them as arrays).
struct Columns {
    token: i64,
    time: Vec<DateTime<Utc>>,
    open: Vec<f64>,
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
    volume: Vec<i64>,
    oi: Vec<Option<i64>>,
}

impl Columns {
    /// Binds the six columns every bar table takes in this order: time, open, high, low, close,
    /// volume.
    fn bind_ohlcv<'q, O>(
        &'q self,
        q: sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments> {
        q.bind(&self.time).bind(&self.open).bind(&self.high).bind(&self.low).bind(&self.close).bind(&self.volume)
    }
}

/// A bar written: its minute, and whether it replaced a different stored one.
type Done = Vec<(DateTime<Utc>, bool)>;

/// Upserts the candles of one instrument into the table its target names.
#[tracing::instrument(level = "debug", skip_all, fields(token = token.get(), table = target.table(), candles = candles.len()))]
pub async fn upsert_bars(
    tx: &mut Transaction<'_, Postgres>,
    token: InstrumentToken,
    target: &BarTarget,
    candles: &[Candle],
) -> sqlx::Result<Upserted> {
    if candles.is_empty() {
        return Ok(Upserted::default());
    }
    let c = Columns {
        token: super::bind_token(token),
        time: candles.iter().map(|c| c.time).collect(),
        open: candles.iter().map(|c| c.open).collect(),
        high: candles.iter().map(|c| c.high).collect(),
        low: candles.iter().map(|c| c.low).collect(),
        close: candles.iter().map(|c| c.close).collect(),
        volume: candles.iter().map(|c| c.volume).collect(),
        oi: candles.iter().map(|c| c.oi).collect(),
    };
    let done = match target {
        BarTarget::Minute { symbol } => upsert_minute(tx, symbol, &c).await?,
        BarTarget::Future { contract, symbol, expiry } => upsert_future(tx, contract, symbol, *expiry, &c).await?,
        BarTarget::Option { contract, symbol, expiry, strike, option_type } => {
            let series = OptionSeries { contract, symbol, expiry: *expiry, strike: *strike, option_type: *option_type };
            upsert_option(tx, &series, candles, &c).await?
        }
    };
    let first = done.iter().map(|(t, _)| *t).min();
    let last = done.iter().map(|(t, _)| *t).max();
    Ok(Upserted {
        written: done.len() as u64,
        touched: first.zip(last).map(|(f, l)| Window::new(f, l + chrono::Duration::minutes(1))),
        revised: done.into_iter().filter(|(_, updated)| *updated).map(|(t, _)| t).collect(),
    })
}

async fn upsert_minute(tx: &mut Transaction<'_, Postgres>, symbol: &str, c: &Columns) -> sqlx::Result<Done> {
    let q = sqlx::query_as(
        "INSERT INTO minute_bars AS b (symbol, time, instrument_token, open, high, low, close, volume)
         SELECT $1, t.time, $2, t.o, t.h, t.l, t.c, t.v
         FROM UNNEST($3::timestamptz[], $4::float8[], $5::float8[], $6::float8[], $7::float8[], $8::bigint[])
              AS t(time, o, h, l, c, v)
         ON CONFLICT (instrument_token, time) DO UPDATE SET symbol = EXCLUDED.symbol,
             open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
             close = EXCLUDED.close, volume = EXCLUDED.volume
         WHERE (b.symbol, b.open, b.high, b.low, b.close, b.volume) IS DISTINCT FROM
               (EXCLUDED.symbol, EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close,
                EXCLUDED.volume)
         RETURNING b.time, (b.xmax::text <> '0')",
    )
    .bind(symbol)
    .bind(c.token);
    c.bind_ohlcv(q).fetch_all(&mut **tx).await
}

async fn upsert_future(
    tx: &mut Transaction<'_, Postgres>,
    contract: &str,
    symbol: &str,
    expiry: chrono::NaiveDate,
    c: &Columns,
) -> sqlx::Result<Done> {
    let q = sqlx::query_as(
        "INSERT INTO futures_bars AS b (contract, time, instrument_token, symbol, expiry, open, high, low, close, volume, oi)
         SELECT $1, t.time, $2, $3, $4, t.o, t.h, t.l, t.c, t.v, t.oi
         FROM UNNEST($5::timestamptz[], $6::float8[], $7::float8[], $8::float8[], $9::float8[], $10::bigint[], $11::bigint[])
              AS t(time, o, h, l, c, v, oi)
         ON CONFLICT (instrument_token, time) DO UPDATE SET contract = EXCLUDED.contract,
             symbol = EXCLUDED.symbol, expiry = EXCLUDED.expiry, open = EXCLUDED.open,
             high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
             volume = EXCLUDED.volume, oi = EXCLUDED.oi
         WHERE (b.contract, b.symbol, b.expiry, b.open, b.high, b.low, b.close, b.volume, b.oi)
               IS DISTINCT FROM (EXCLUDED.contract, EXCLUDED.symbol, EXCLUDED.expiry, EXCLUDED.open,
                EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume, EXCLUDED.oi)
         RETURNING b.time, (b.xmax::text <> '0')",
    )
    .bind(contract)
    .bind(c.token)
    .bind(symbol)
    .bind(expiry);
    c.bind_ohlcv(q).bind(&c.oi).fetch_all(&mut **tx).await
}

/// The contract an option's bars belong to.
struct OptionSeries<'a> {
    contract: &'a str,
    symbol: &'a str,
    expiry: chrono::NaiveDate,
    strike: f64,
    option_type: OptionType,
}

async fn upsert_option(
    tx: &mut Transaction<'_, Postgres>,
    o: &OptionSeries<'_>,
    candles: &[Candle],
    c: &Columns,
) -> sqlx::Result<Done> {
    let col = |f: fn(&Candle) -> Option<f64>| candles.iter().map(f).collect::<Vec<Option<f64>>>();
    let q = sqlx::query_as(
        "INSERT INTO option_bars AS b (contract, time, instrument_token, symbol, expiry, strike, option_type,
             open, high, low, close, volume, oi, iv, delta, gamma, theta, vega, underlying_price)
         SELECT $1, t.time, $2, $3, $4, $5, $6, t.o, t.h, t.l, t.c, t.v, t.oi, t.iv, t.d, t.g, t.th, t.ve, t.u
         FROM UNNEST($7::timestamptz[], $8::float8[], $9::float8[], $10::float8[], $11::float8[],
                     $12::bigint[], $13::bigint[], $14::float8[], $15::float8[], $16::float8[],
                     $17::float8[], $18::float8[], $19::float8[])
              AS t(time, o, h, l, c, v, oi, iv, d, g, th, ve, u)
         ON CONFLICT (instrument_token, time) DO UPDATE SET contract = EXCLUDED.contract,
             symbol = EXCLUDED.symbol, expiry = EXCLUDED.expiry, strike = EXCLUDED.strike,
             option_type = EXCLUDED.option_type, open = EXCLUDED.open, high = EXCLUDED.high,
             low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume, oi = EXCLUDED.oi,
             iv = EXCLUDED.iv, delta = EXCLUDED.delta, gamma = EXCLUDED.gamma,
             theta = EXCLUDED.theta, vega = EXCLUDED.vega, underlying_price = EXCLUDED.underlying_price
         WHERE (b.contract, b.symbol, b.expiry, b.strike, b.option_type, b.open, b.high, b.low,
                b.close, b.volume, b.oi, b.iv, b.delta, b.gamma, b.theta, b.vega, b.underlying_price)
               IS DISTINCT FROM (EXCLUDED.contract, EXCLUDED.symbol, EXCLUDED.expiry, EXCLUDED.strike,
                EXCLUDED.option_type, EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close,
                EXCLUDED.volume, EXCLUDED.oi, EXCLUDED.iv, EXCLUDED.delta, EXCLUDED.gamma, EXCLUDED.theta,
                EXCLUDED.vega, EXCLUDED.underlying_price)
         RETURNING b.time, (b.xmax::text <> '0')",
    )
    .bind(o.contract)
    .bind(c.token)
    .bind(o.symbol)
    .bind(o.expiry)
    .bind(o.strike)
    .bind(o.option_type.as_str());
    c.bind_ohlcv(q)
        .bind(&c.oi)
        .bind(col(|c| c.iv))
        .bind(col(|c| c.delta))
        .bind(col(|c| c.gamma))
        .bind(col(|c| c.theta))
        .bind(col(|c| c.vega))
        .bind(col(|c| c.underlying))
        .fetch_all(&mut **tx)
        .await
}
