//! `fo_strike_distribution` and `fo_expiry_metrics`: reading an expiry's option bars into per-minute
//! chains, replacing a window's rows in one transaction (so rebuilding twice gives the same rows),
//! and the stored chain at a minute.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::domain::{
    chain::{metrics, Chain, Metrics, Side, StrikeRow},
    window::Window,
};

/// Reads the option bars of one underlying and expiry in `window` into per-minute chains.
pub async fn read_chain(pool: &PgPool, symbol: &str, expiry: NaiveDate, window: Window) -> sqlx::Result<Chain> {
    type Row = (DateTime<Utc>, f64, bool, f64, i64, Option<i64>, Option<f64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT time, strike, option_type = 'CE', close, volume, oi, iv FROM option_bars
         WHERE symbol = $1 AND expiry = $2 AND time >= $3 AND time < $4 ORDER BY time, strike",
    )
    .bind(symbol)
    .bind(expiry)
    .bind(window.from)
    .bind(window.to)
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
        window: Window,
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
    window: Window,
) -> sqlx::Result<()> {
    for table in ["fo_strike_distribution", "fo_expiry_metrics"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE symbol = $1 AND expiry = $2 AND time >= $3 AND time < $4"
        )))
        .bind(symbol)
        .bind(expiry)
        .bind(window.from)
        .bind(window.to)
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
             -- An index and an equity may share a name: the index's minute, else the lowest token's.
             LEFT JOIN LATERAL (SELECT b.close FROM minute_bars b LEFT JOIN instruments i USING (instrument_token)
                                WHERE b.symbol = $1 AND b.time = t.time
                                ORDER BY i.segment IS DISTINCT FROM 'INDICES', b.instrument_token LIMIT 1) b ON true",
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

/// Rebuilds one underlying and expiry over `window`: its rows (and, on the plain path, the
/// rollup buckets they fall in) are replaced in one transaction. Returns rows written.
#[tracing::instrument(skip_all, fields(symbol = symbol, %expiry, from = %window.from, to = %window.to))]
pub async fn rebuild(
    pool: &PgPool,
    symbol: &str,
    expiry: NaiveDate,
    window: Window,
    upkeep: super::rollups::Upkeep,
) -> sqlx::Result<u64> {
    let tables = upkeep == super::rollups::Upkeep::Tables;
    // With rollup tables, whole buckets: the chain read then holds every minute of each.
    let window = if tables { super::rollups::chain_window(window) } else { window };
    let mut tx = pool.begin().await?;
    // The old rows go while the bars are read (on another connection): the read costs no time.
    let (chain, deleted) =
        tokio::join!(read_chain(pool, symbol, expiry, window), delete_window(&mut tx, symbol, expiry, window));
    deleted?;
    let chain = chain?;
    let rows = Prepared::from_chain(&chain).insert(&mut tx, symbol, expiry).await?;
    if tables {
        super::rollups::refresh_chain(&mut tx, symbol, expiry, &chain, window).await?;
    }
    tx.commit().await?;
    Ok(rows)
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
    let Some((time, underlying_close, pcr_oi, pcr_volume, max_pain, call_oi, put_oi)) =
        latest_metrics(pool, symbol, expiry, at).await?
    else {
        return Ok(None);
    };
    let strikes = strikes_at(pool, symbol, expiry, time).await?;
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

/// An expiry's metrics row: its minute, underlying close, PCR by OI and volume, max pain, call and
/// put OI.
type MetricsRow = (DateTime<Utc>, Option<f64>, Option<f64>, Option<f64>, Option<f64>, i64, i64);

/// The newest metrics of an expiry at or before `at`.
async fn latest_metrics(
    pool: &PgPool,
    symbol: &str,
    expiry: NaiveDate,
    at: DateTime<Utc>,
) -> sqlx::Result<Option<MetricsRow>> {
    sqlx::query_as(
        "SELECT time, underlying_close, pcr_oi, pcr_volume, max_pain, call_oi, put_oi FROM fo_expiry_metrics
         WHERE symbol = $1 AND expiry = $2 AND time <= $3 ORDER BY time DESC LIMIT 1",
    )
    .bind(symbol)
    .bind(expiry)
    .bind(at)
    .fetch_optional(pool)
    .await
}

/// An expiry's strikes at minute `time`, lowest first.
async fn strikes_at(
    pool: &PgPool,
    symbol: &str,
    expiry: NaiveDate,
    time: DateTime<Utc>,
) -> sqlx::Result<Vec<ChainStrike>> {
    sqlx::query_as(
        "SELECT strike, call_close, call_volume, call_oi, call_iv, put_close, put_volume, put_oi, put_iv
         FROM fo_strike_distribution WHERE symbol = $1 AND expiry = $2 AND time = $3 ORDER BY strike",
    )
    .bind(symbol)
    .bind(expiry)
    .bind(time)
    .fetch_all(pool)
    .await
}
