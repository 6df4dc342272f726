//! `tickfill instruments load FILE|URL|-`: upserts a Kite instrument-dump CSV into `instruments`.
//!
//! Columns are found by header name, so their order does not matter; CRLF and LF both work. A row
//! that cannot be read is reported with its line number and skipped; the others still load.

use std::io::Read;

use anyhow::Context;
use chrono::NaiveDate;
use futures::StreamExt;
use sqlx::PgPool;

use crate::{
    domain::instrument::{Instrument, Source},
    store::instruments,
};

/// Rows written per statement.
const BATCH: usize = 5000;

/// Statements in flight at once (the pool needs as many connections to use them).
const WRITERS: usize = 2;

/// A row that could not be read: its line number and why.
pub type RejectedRow = (u64, String);

/// What a load did. Every data row of the file is in exactly one of inserted, updated,
/// unchanged and rejected.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoadReport {
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: Vec<RejectedRow>,
    /// With `--full`: instruments of the file's segments that it no longer lists, now inactive.
    pub deactivated: Option<u64>,
    /// Why `--full` deactivated nothing, when it did not.
    pub full_skipped: Option<String>,
}

impl LoadReport {
    /// Rows written (inserted or updated).
    pub fn upserted(&self) -> u64 {
        self.inserted + self.updated
    }
}

/// Reads the dump from a file path, an http(s) URL, or `-` for stdin.
pub async fn read_source(source: &str) -> anyhow::Result<Vec<u8>> {
    if source.starts_with("http://") || source.starts_with("https://") {
        let resp = reqwest::get(source).await.with_context(|| format!("failed to fetch {source}"))?;
        let status = resp.status();
        anyhow::ensure!(status.is_success(), "fetching {source} answered {status}");
        return Ok(resp.bytes().await?.to_vec());
    }
    if source == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).context("failed to read stdin")?;
        return Ok(buf);
    }
    std::fs::read(source).with_context(|| format!("failed to read {source}"))
}

/// Parses a dump; rows that break are returned with their line numbers.
pub fn parse_dump(bytes: &[u8]) -> anyhow::Result<(Vec<Instrument>, Vec<RejectedRow>)> {
    // The csv reader miscounts lines on CRLF input, so line endings are made LF first.
    let lf: Vec<u8> = if bytes.contains(&b'\r') {
        let mut out = Vec::with_capacity(bytes.len());
        for (i, b) in bytes.iter().enumerate() {
            if !(*b == b'\r' && bytes.get(i + 1) == Some(&b'\n')) {
                out.push(*b);
            }
        }
        out
    } else {
        bytes.to_vec()
    };
    let mut rdr = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(lf.as_slice());
    // Header names are matched without regard to case: the rows are read by name through serde.
    let headers: csv::StringRecord =
        rdr.headers().context("the dump has no header row")?.iter().map(str::to_ascii_lowercase).collect();
    anyhow::ensure!(headers.iter().any(|h| h == "instrument_token"), "the dump has no instrument_token column");
    anyhow::ensure!(headers.iter().any(|h| h == "tradingsymbol"), "the dump has no tradingsymbol column");
    rdr.set_headers(headers.clone());
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for record in rdr.records() {
        let parsed = record.map_err(|e| (e.position().map(|p| p.line()).unwrap_or(0), e.to_string())).and_then(|r| {
            let line = r.position().map(|p| p.line()).unwrap_or(0);
            let row: DumpRow<'_> = r.deserialize(Some(&headers)).map_err(|e| (line, e.to_string()))?;
            parse_row(row).map(|i| (line, i)).map_err(|e| (line, e))
        });
        match parsed {
            Ok(ok) => good.push(ok),
            Err(err) => bad.push(err),
        }
    }
    // A token listed twice: the later row wins, the earlier is reported.
    let mut last_line: std::collections::HashMap<u32, u64> = std::collections::HashMap::with_capacity(good.len());
    for (line, i) in &good {
        last_line.insert(i.instrument_token, *line);
    }
    let mut kept = Vec::with_capacity(last_line.len());
    for (line, i) in good {
        let last = last_line[&i.instrument_token];
        if last == line {
            kept.push(i);
        } else {
            bad.push((
                line,
                format!("instrument_token {} appears again on line {last}, which is kept", i.instrument_token),
            ));
        }
    }
    bad.sort_by_key(|b| b.0);
    Ok((kept, bad))
}

/// One row of a Kite instrument dump, by column name; every field as text, so a bad value is
/// reported by [`parse_row`] naming its column. Columns the dump lacks are `None`.
/// The fields borrow from the record: no allocation until a value is kept.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct DumpRow<'a> {
    instrument_token: Option<&'a str>,
    exchange_token: Option<&'a str>,
    tradingsymbol: Option<&'a str>,
    name: Option<&'a str>,
    last_price: Option<&'a str>,
    expiry: Option<&'a str>,
    strike: Option<&'a str>,
    tick_size: Option<&'a str>,
    lot_size: Option<&'a str>,
    instrument_type: Option<&'a str>,
    segment: Option<&'a str>,
    exchange: Option<&'a str>,
}

/// A field's value, trimmed; `None` when it is missing or blank.
fn field<'a>(v: &Option<&'a str>) -> Option<&'a str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

fn parse_row(r: DumpRow<'_>) -> Result<Instrument, String> {
    let raw_token = r.instrument_token.unwrap_or_default();
    let token: u64 = field(&r.instrument_token)
        .ok_or("instrument_token is empty")?
        .parse()
        .map_err(|_| format!("instrument_token {raw_token:?} is not a number"))?;
    if token == 0 || token > u32::MAX as u64 {
        return Err(format!("instrument_token {token} is outside 1 … 4294967295"));
    }
    let tradingsymbol = field(&r.tradingsymbol).ok_or("tradingsymbol is empty")?.to_string();
    let num = |v: &Option<&str>, what: &str| -> Result<Option<f64>, String> {
        field(v).map(|v| v.parse::<f64>().map_err(|_| format!("{what} {v:?} is not a number"))).transpose()
    };
    let expiry = field(&r.expiry)
        .map(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| format!("expiry {v:?} is not YYYY-MM-DD")))
        .transpose()?;
    Ok(Instrument {
        instrument_token: token as u32,
        exchange_token: field(&r.exchange_token).and_then(|v| v.parse().ok()),
        tradingsymbol,
        name: field(&r.name).map(String::from),
        last_price: num(&r.last_price, "last_price")?,
        expiry,
        strike: num(&r.strike, "strike")?,
        tick_size: num(&r.tick_size, "tick_size")?,
        lot_size: field(&r.lot_size)
            .map(|v| v.parse::<f64>().map(|f| f as i32).map_err(|_| format!("lot_size {v:?} is not a number")))
            .transpose()?,
        instrument_type: field(&r.instrument_type).map(String::from),
        segment: field(&r.segment).map(String::from),
        exchange: field(&r.exchange).map(String::from),
    })
}

/// Loads a dump into `instruments`.
pub async fn load(pool: &PgPool, bytes: &[u8]) -> anyhow::Result<LoadReport> {
    load_with(pool, bytes, false, |_, _| {}).await
}

/// Loads a dump, calling `progress(rows done, rows)` after each batch. With `full`, the dump is
/// the whole list of its segments: their instruments it does not list become inactive (other
/// segments are left alone, so a partial dump never deactivates them). A dump with rejected rows
/// deactivates nothing: a row it could not read may be an instrument that still trades.
#[tracing::instrument(skip_all, fields(bytes = bytes.len(), full = full))]
pub async fn load_with(
    pool: &PgPool,
    bytes: &[u8],
    full: bool,
    mut progress: impl FnMut(usize, usize),
) -> anyhow::Result<LoadReport> {
    let (rows, rejected) = parse_dump(bytes)?;
    let mut report = LoadReport { rows: (rows.len() + rejected.len()) as u64, rejected, ..Default::default() };
    progress(0, rows.len());
    // Two batches in flight: the server works on one while the next is sent (tokens are unique,
    // so concurrent batches never touch the same row).
    let mut batches = futures::stream::iter(rows.chunks(BATCH))
        .map(|chunk| async move { (chunk.len(), instruments::upsert_counted(pool, chunk, Source::Dump).await) })
        .buffer_unordered(WRITERS);
    let mut done = 0;
    while let Some((n, c)) = batches.next().await {
        let c = c.context("failed to upsert instruments")?;
        report.inserted += c.inserted;
        report.updated += c.updated;
        report.unchanged += c.unchanged;
        done += n;
        progress(done, rows.len());
    }
    if full {
        let mut segments: Vec<String> = rows.iter().filter_map(|r| r.segment.clone()).collect();
        segments.sort();
        segments.dedup();
        if !report.rejected.is_empty() {
            report.full_skipped = Some(format!("{} row(s) rejected", report.rejected.len()));
        } else if segments.is_empty() {
            report.full_skipped = Some("the dump names no segment".into());
        } else {
            let keep: Vec<i64> = rows.iter().map(|r| r.instrument_token as i64).collect();
            report.deactivated = Some(instruments::deactivate_absent(pool, &segments, &keep).await?);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_dump_parses_and_bad_rows_carry_line_numbers() {
        let csv = "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange\r\n\
                   256265,1001,NIFTY 50,NIFTY 50,0.0,,0.0,0.0,0,EQ,INDICES,NSE\r\n\
                   abc,1,X,X,0,,0,0,0,EQ,NSE,NSE\r\n\
                   10000001,39063,NIFTY25NOVFUT,NIFTY,0.0,2025-11-25,0.0,0.05,75,FUT,NFO-FUT,NFO\r\n";
        let (good, bad) = parse_dump(csv.as_bytes()).unwrap();
        assert_eq!(good.len(), 2);
        assert_eq!(good[1].expiry, NaiveDate::from_ymd_opt(2025, 11, 25));
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 3);
    }
}
