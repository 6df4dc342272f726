//! `instruments`: the Kite instrument-dump columns plus `active`, `source` and `updated_at`.

use chrono::NaiveDate;
use sqlx::{PgPool, Postgres, Row, Transaction};
use tickfill_jobs::InstrumentToken;

use crate::domain::{
    instrument::{Instrument, Source},
    window::Window,
};

/// Upserts a batch of instruments in one statement; returns the rows written.
pub async fn upsert_instruments(pool: &PgPool, rows: &[Instrument], source: Source) -> sqlx::Result<u64> {
    let c = upsert_counted(pool, rows, source).await?;
    Ok(c.inserted + c.updated)
}

/// What an upsert did to its rows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Upserted {
    pub inserted: u64,
    pub updated: u64,
    /// Rows already stored exactly so (and active): left untouched, not rewritten.
    pub unchanged: u64,
}

/// Upserts instruments (tokens unique within `rows`), rewriting only rows that differ.
pub async fn upsert_counted(pool: &PgPool, rows: &[Instrument], source: Source) -> sqlx::Result<Upserted> {
    let mut cols = Columns::default();
    for r in rows {
        cols.push(r);
    }
    let done = sqlx::query(
        "INSERT INTO instruments (instrument_token, exchange_token, tradingsymbol, name, last_price,
             expiry, strike, tick_size, lot_size, instrument_type, segment, exchange, active, source, updated_at)
         SELECT t.*, true, $13, now() FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[],
             $5::float8[], $6::date[], $7::float8[], $8::float8[], $9::int[], $10::text[], $11::text[], $12::text[]) AS t
         ON CONFLICT (instrument_token) DO UPDATE SET exchange_token = EXCLUDED.exchange_token,
             tradingsymbol = EXCLUDED.tradingsymbol, name = EXCLUDED.name, last_price = EXCLUDED.last_price,
             expiry = EXCLUDED.expiry, strike = EXCLUDED.strike, tick_size = EXCLUDED.tick_size,
             lot_size = EXCLUDED.lot_size, instrument_type = EXCLUDED.instrument_type,
             segment = EXCLUDED.segment, exchange = EXCLUDED.exchange, active = true,
             source = EXCLUDED.source, updated_at = now()
         WHERE (instruments.exchange_token, instruments.tradingsymbol, instruments.name, instruments.last_price,
                instruments.expiry, instruments.strike, instruments.tick_size, instruments.lot_size,
                instruments.instrument_type, instruments.segment, instruments.exchange, instruments.active,
                instruments.source)
               IS DISTINCT FROM
               (EXCLUDED.exchange_token, EXCLUDED.tradingsymbol, EXCLUDED.name, EXCLUDED.last_price,
                EXCLUDED.expiry, EXCLUDED.strike, EXCLUDED.tick_size, EXCLUDED.lot_size,
                EXCLUDED.instrument_type, EXCLUDED.segment, EXCLUDED.exchange, true, EXCLUDED.source)
         RETURNING (xmax = 0)",
    )
    .bind(cols.token)
    .bind(cols.exchange_token)
    .bind(cols.tradingsymbol)
    .bind(cols.name)
    .bind(cols.last_price)
    .bind(cols.expiry)
    .bind(cols.strike)
    .bind(cols.tick_size)
    .bind(cols.lot_size)
    .bind(cols.instrument_type)
    .bind(cols.segment)
    .bind(cols.exchange)
    .bind(source.as_str())
    .fetch_all(pool)
    .await?;
    let inserted = done.iter().filter(|r| r.get::<bool, _>(0)).count() as u64;
    let updated = done.len() as u64 - inserted;
    Ok(Upserted { inserted, updated, unchanged: rows.len() as u64 - inserted - updated })
}

/// What [`deactivate_absent`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retire {
    /// This many instruments are now inactive.
    Done(u64),
    /// Nothing changed: `segment` would have lost `gone` of its `active` instruments, over the limit.
    Refused { segment: String, gone: u64, active: u64 },
}

/// Marks inactive the active instruments of `segments` whose tokens `listed` refuses: for a full
/// dump, what the exchange no longer lists is gone. With `max_share`, nothing changes when any
/// segment would lose more than that share of its active instruments.
///
/// In time proportional to the table: the active instruments of those segments are streamed once
/// and looked up in the dump's tokens here (a hash set the loader holds anyway), and only the few that are
/// gone are written, by key. Asking PostgreSQL for the anti-join instead ships the whole dump's
/// tokens back to it and hashes them again (`NOT IN (subquery)` past `work_mem` is quadratic).
pub async fn deactivate_absent(
    pool: &PgPool,
    segments: &[String],
    listed: impl Fn(InstrumentToken) -> bool,
    max_share: Option<f64>,
) -> sqlx::Result<Retire> {
    let mut tx = pool.begin().await?;
    lock_full_load(&mut tx).await?;
    let (active, gone) = active_and_unlisted(&mut tx, segments, listed).await?;
    let gone = retire(&mut tx, &gone, segments).await?;
    if let Some(max) = max_share {
        for (segment, n) in &gone {
            let of = active.get(segment).copied().unwrap_or(0);
            if *n as f64 > max * of as f64 {
                tx.rollback().await?;
                return Ok(Retire::Refused { segment: segment.clone(), gone: *n as u64, active: of });
            }
        }
    }
    tx.commit().await?;
    Ok(Retire::Done(gone.iter().map(|(_, n)| *n as u64).sum()))
}

/// Taken first by a full load: a concurrent load of the same segments waits instead of both
/// deciding on what neither sees of the other.
async fn lock_full_load(tx: &mut Transaction<'_, Postgres>) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tickfill instruments full load'))")
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// The active instruments of `segments`, counted by segment, and the tokens of those the dump no
/// longer lists.
async fn active_and_unlisted(
    tx: &mut Transaction<'_, Postgres>,
    segments: &[String],
    listed: impl Fn(InstrumentToken) -> bool,
) -> sqlx::Result<(std::collections::HashMap<String, u64>, Vec<i64>)> {
    use futures::TryStreamExt;
    let mut active: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut gone: Vec<i64> = Vec::new();
    let mut rows = sqlx::query_as::<_, (i64, String)>(
        "SELECT instrument_token, segment FROM instruments WHERE active AND segment = ANY($1)",
    )
    .bind(segments)
    .fetch(&mut **tx);
    while let Some((token, segment)) = rows.try_next().await? {
        if !super::token_from_db(token).is_ok_and(&listed) {
            gone.push(token);
        }
        *active.entry(segment).or_insert(0) += 1;
    }
    Ok((active, gone))
}

/// Marks the instruments `gone` of `segments` inactive; returns how many per segment, most first.
async fn retire(
    tx: &mut Transaction<'_, Postgres>,
    gone: &[i64],
    segments: &[String],
) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "WITH gone AS (
             UPDATE instruments SET active = false, updated_at = now()
             WHERE instrument_token = ANY($1) AND active AND segment = ANY($2)
             RETURNING segment)
         SELECT segment, count(*) FROM gone GROUP BY segment ORDER BY count(*) DESC, segment",
    )
    .bind(gone)
    .bind(segments)
    .fetch_all(&mut **tx)
    .await
}

/// Records an instrument learnt from an event's metadata, unless the dump already knows it.
pub async fn insert_instrument_if_absent(
    tx: &mut Transaction<'_, Postgres>,
    inst: &Instrument,
    source: Source,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO instruments (instrument_token, tradingsymbol, name, expiry, strike, instrument_type, segment, exchange, source)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (instrument_token) DO NOTHING",
    )
    .bind(super::bind_token(inst.instrument_token))
    .bind(&inst.tradingsymbol)
    .bind(&inst.name)
    .bind(inst.expiry)
    .bind(inst.strike)
    .bind(&inst.instrument_type)
    .bind(&inst.segment)
    .bind(&inst.exchange)
    .bind(source.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The instrument with this token, if the store knows it.
pub async fn find_instrument(pool: &PgPool, token: InstrumentToken) -> sqlx::Result<Option<Instrument>> {
    let row: Option<InstrumentRow> = sqlx::query_as(
        "SELECT instrument_token, exchange_token, tradingsymbol, name, last_price, expiry, strike,
                tick_size, lot_size, instrument_type, segment, exchange
         FROM instruments WHERE instrument_token = $1",
    )
    .bind(super::bind_token(token))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Into::into))
}

/// The instrument of `token` (if the store has it) and the coverage of `window` as
/// [`super::coverage::find_coverage`] reads it, in one round trip: what a subscription job needs
/// before it fetches.
#[tracing::instrument(level = "debug", skip_all, fields(token = token.get()))]
pub async fn find_with_coverage(
    pool: &PgPool,
    token: InstrumentToken,
    window: Window,
    settle: std::time::Duration,
) -> sqlx::Result<(Option<Instrument>, Vec<Window>)> {
    let row = sqlx::query(
        "SELECT i.instrument_token, i.exchange_token, i.tradingsymbol, i.name, i.last_price, i.expiry, i.strike,
                i.tick_size, i.lot_size, i.instrument_type, i.segment, i.exchange, c.cov_from, c.cov_to, c.cov_at
         FROM (VALUES ($1::bigint)) AS q(t)
         LEFT JOIN instruments i ON i.instrument_token = q.t
         CROSS JOIN (SELECT coalesce(array_agg(window_from ORDER BY window_from), '{}') AS cov_from,
                            coalesce(array_agg(window_to ORDER BY window_from), '{}') AS cov_to,
                            coalesce(array_agg(fetched_at ORDER BY window_from), '{}') AS cov_at
                     FROM coverage WHERE instrument_token = $1 AND window_to > $2 AND window_from < $3) c",
    )
    .bind(super::bind_token(token))
    .bind(window.from)
    .bind(window.to)
    .fetch_one(pool)
    .await?;
    // The instrument columns are all null when the store does not know the token.
    let inst = match row.try_get::<Option<String>, _>("tradingsymbol")? {
        Some(_) => Some(<InstrumentRow as sqlx::FromRow<_>>::from_row(&row)?.into()),
        None => None,
    };
    let a: Vec<chrono::DateTime<chrono::Utc>> = row.try_get("cov_from")?;
    let b: Vec<chrono::DateTime<chrono::Utc>> = row.try_get("cov_to")?;
    let at: Vec<chrono::DateTime<chrono::Utc>> = row.try_get("cov_at")?;
    let covered =
        a.into_iter().zip(b).zip(at).filter_map(|((a, b), at)| super::coverage::trusted(a, b, at, settle)).collect();
    Ok((inst, covered))
}

#[derive(sqlx::FromRow)]
struct InstrumentRow {
    #[sqlx(try_from = "i64")]
    instrument_token: InstrumentToken,
    exchange_token: Option<i64>,
    tradingsymbol: String,
    name: Option<String>,
    last_price: Option<f64>,
    expiry: Option<NaiveDate>,
    strike: Option<f64>,
    tick_size: Option<f64>,
    lot_size: Option<i32>,
    instrument_type: Option<String>,
    segment: Option<String>,
    exchange: Option<String>,
}

impl From<InstrumentRow> for Instrument {
    fn from(r: InstrumentRow) -> Self {
        Instrument {
            instrument_token: r.instrument_token,
            exchange_token: r.exchange_token,
            tradingsymbol: r.tradingsymbol,
            name: r.name,
            last_price: r.last_price,
            expiry: r.expiry,
            strike: r.strike,
            tick_size: r.tick_size,
            lot_size: r.lot_size,
            instrument_type: r.instrument_type,
            segment: r.segment,
            exchange: r.exchange,
        }
    }
}

/// Column arrays for an UNNEST upsert.
#[derive(Default)]
struct Columns {
    token: Vec<i64>,
    exchange_token: Vec<Option<i64>>,
    tradingsymbol: Vec<String>,
    name: Vec<Option<String>>,
    last_price: Vec<Option<f64>>,
    expiry: Vec<Option<NaiveDate>>,
    strike: Vec<Option<f64>>,
    tick_size: Vec<Option<f64>>,
    lot_size: Vec<Option<i32>>,
    instrument_type: Vec<Option<String>>,
    segment: Vec<Option<String>>,
    exchange: Vec<Option<String>>,
}

impl Columns {
    fn push(&mut self, r: &Instrument) {
        self.token.push(super::bind_token(r.instrument_token));
        self.exchange_token.push(r.exchange_token);
        self.tradingsymbol.push(r.tradingsymbol.clone());
        self.name.push(r.name.clone());
        self.last_price.push(r.last_price);
        self.expiry.push(r.expiry);
        self.strike.push(r.strike);
        self.tick_size.push(r.tick_size);
        self.lot_size.push(r.lot_size);
        self.instrument_type.push(r.instrument_type.clone());
        self.segment.push(r.segment.clone());
        self.exchange.push(r.exchange.clone());
    }
}

/// The instruments named `tradingsymbol` (on any exchange), lowest token first, with their
/// exchange: several when exchanges list one name (NSE:INFY and BSE:INFY).
pub async fn find_by_tradingsymbol(
    pool: &PgPool,
    tradingsymbol: &str,
) -> sqlx::Result<Vec<(InstrumentToken, Option<String>)>> {
    let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT instrument_token, coalesce(exchange, segment) FROM instruments WHERE tradingsymbol = $1
         ORDER BY instrument_token",
    )
    .bind(tradingsymbol)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(|(t, e)| Ok((super::token_from_db(t)?, e))).collect()
}

/// The tokens a filter's `symbol` names: the instruments of that tradingsymbol, and every
/// contract whose underlying (the dump's `name` of a future or option) it is.
pub async fn tokens_of_symbol(pool: &PgPool, symbol: &str) -> sqlx::Result<Vec<InstrumentToken>> {
    let rows: Vec<i64> = sqlx::query_scalar(
        "SELECT instrument_token FROM instruments WHERE tradingsymbol = $1
         UNION
         SELECT instrument_token FROM instruments
         WHERE upper(name) = $1 AND instrument_type IN ('FUT', 'CE', 'PE')
         ORDER BY 1",
    )
    .bind(symbol)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(super::token_from_db).collect()
}

/// Every active instrument's token and segment.
pub async fn active_instruments(pool: &PgPool) -> sqlx::Result<Vec<(InstrumentToken, Option<String>)>> {
    let rows: Vec<(i64, Option<String>)> =
        sqlx::query_as("SELECT instrument_token, segment FROM instruments WHERE active ORDER BY 1")
            .fetch_all(pool)
            .await?;
    rows.into_iter().map(|(t, seg)| Ok((super::token_from_db(t)?, seg))).collect()
}
