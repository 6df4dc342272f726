//! Bar upserts, one statement per table, keyed on (symbol or contract, time).

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

use crate::domain::market::{BarTarget, Candle};

/// Upserts the candles of one instrument into the table its target names; returns rows written.
#[tracing::instrument(level = "debug", skip_all, fields(token = token, table = target.table(), candles = candles.len()))]
pub async fn upsert_bars(
    tx: &mut Transaction<'_, Postgres>,
    token: u32,
    target: &BarTarget,
    candles: &[Candle],
) -> sqlx::Result<u64> {
    if candles.is_empty() {
        return Ok(0);
    }
    let time: Vec<DateTime<Utc>> = candles.iter().map(|c| c.time).collect();
    let open: Vec<f64> = candles.iter().map(|c| c.open).collect();
    let high: Vec<f64> = candles.iter().map(|c| c.high).collect();
    let low: Vec<f64> = candles.iter().map(|c| c.low).collect();
    let close: Vec<f64> = candles.iter().map(|c| c.close).collect();
    let volume: Vec<i64> = candles.iter().map(|c| c.volume).collect();
    let token = token as i64;
    let done = match target {
        BarTarget::Minute { symbol } => {
            sqlx::query(
                "INSERT INTO minute_bars (symbol, time, instrument_token, open, high, low, close, volume)
                 SELECT $1, t.time, $2, t.o, t.h, t.l, t.c, t.v
                 FROM UNNEST($3::timestamptz[], $4::float8[], $5::float8[], $6::float8[], $7::float8[], $8::bigint[])
                      AS t(time, o, h, l, c, v)
                 ON CONFLICT (symbol, time) DO UPDATE SET instrument_token = EXCLUDED.instrument_token,
                     open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
                     close = EXCLUDED.close, volume = EXCLUDED.volume",
            )
            .bind(symbol)
            .bind(token)
            .bind(&time)
            .bind(&open)
            .bind(&high)
            .bind(&low)
            .bind(&close)
            .bind(&volume)
            .execute(&mut **tx)
            .await?
        }
        BarTarget::Future { contract, symbol, expiry } => {
            let oi: Vec<Option<i64>> = candles.iter().map(|c| c.oi).collect();
            sqlx::query(
                "INSERT INTO futures_bars (contract, time, instrument_token, symbol, expiry, open, high, low, close, volume, oi)
                 SELECT $1, t.time, $2, $3, $4, t.o, t.h, t.l, t.c, t.v, t.oi
                 FROM UNNEST($5::timestamptz[], $6::float8[], $7::float8[], $8::float8[], $9::float8[], $10::bigint[], $11::bigint[])
                      AS t(time, o, h, l, c, v, oi)
                 ON CONFLICT (contract, time) DO UPDATE SET instrument_token = EXCLUDED.instrument_token,
                     symbol = EXCLUDED.symbol, expiry = EXCLUDED.expiry, open = EXCLUDED.open,
                     high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
                     volume = EXCLUDED.volume, oi = EXCLUDED.oi",
            )
            .bind(contract)
            .bind(token)
            .bind(symbol)
            .bind(expiry)
            .bind(&time)
            .bind(&open)
            .bind(&high)
            .bind(&low)
            .bind(&close)
            .bind(&volume)
            .bind(&oi)
            .execute(&mut **tx)
            .await?
        }
        BarTarget::Option { contract, symbol, expiry, strike, option_type } => {
            let col = |f: fn(&Candle) -> Option<f64>| candles.iter().map(f).collect::<Vec<Option<f64>>>();
            let oi: Vec<Option<i64>> = candles.iter().map(|c| c.oi).collect();
            sqlx::query(
                "INSERT INTO option_bars (contract, time, instrument_token, symbol, expiry, strike, option_type,
                     open, high, low, close, volume, oi, iv, delta, gamma, theta, vega, underlying_price)
                 SELECT $1, t.time, $2, $3, $4, $5, $6, t.o, t.h, t.l, t.c, t.v, t.oi, t.iv, t.d, t.g, t.th, t.ve, t.u
                 FROM UNNEST($7::timestamptz[], $8::float8[], $9::float8[], $10::float8[], $11::float8[],
                             $12::bigint[], $13::bigint[], $14::float8[], $15::float8[], $16::float8[],
                             $17::float8[], $18::float8[], $19::float8[])
                      AS t(time, o, h, l, c, v, oi, iv, d, g, th, ve, u)
                 ON CONFLICT (contract, time) DO UPDATE SET instrument_token = EXCLUDED.instrument_token,
                     symbol = EXCLUDED.symbol, expiry = EXCLUDED.expiry, strike = EXCLUDED.strike,
                     option_type = EXCLUDED.option_type, open = EXCLUDED.open, high = EXCLUDED.high,
                     low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume, oi = EXCLUDED.oi,
                     iv = EXCLUDED.iv, delta = EXCLUDED.delta, gamma = EXCLUDED.gamma,
                     theta = EXCLUDED.theta, vega = EXCLUDED.vega, underlying_price = EXCLUDED.underlying_price",
            )
            .bind(contract)
            .bind(token)
            .bind(symbol)
            .bind(expiry)
            .bind(strike)
            .bind(option_type.as_str())
            .bind(&time)
            .bind(&open)
            .bind(&high)
            .bind(&low)
            .bind(&close)
            .bind(&volume)
            .bind(&oi)
            .bind(col(|c| c.iv))
            .bind(col(|c| c.delta))
            .bind(col(|c| c.gamma))
            .bind(col(|c| c.theta))
            .bind(col(|c| c.vega))
            .bind(col(|c| c.underlying))
            .execute(&mut **tx)
            .await?
        }
    };
    Ok(done.rows_affected())
}
