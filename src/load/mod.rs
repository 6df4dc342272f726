//! `tickfill instruments load FILE|URL|-`: upserts a Kite instrument-dump CSV into `instruments`.
//!
//! The dump is streamed: read a line at a time (at most [`dump::MAX_LINE_BYTES`] each), written in
//! batches while the next is read, so memory stays flat whatever the file's size. Columns are
//! found by header name; CRLF and LF both work. A row that cannot be read is refused alone, with
//! its line number and the reason, and the others still load.

pub mod dump;

use std::collections::{HashMap, HashSet, VecDeque};

use anyhow::Context;
use futures::TryStreamExt;
use sqlx::PgPool;
use tickfill_jobs::InstrumentToken;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use crate::{
    domain::instrument::{Instrument, Source},
    store::instruments::{self, Retire},
};
use dump::{Header, RowParser, MAX_LINE_BYTES};

/// Rows written per statement.
const BATCH: usize = 5000;

/// Statements in flight at once (the pool needs as many connections to use them).
const WRITERS: usize = 2;

/// Rejected rows kept in a [`LoadReport`]; every one is counted and handed to the caller.
const KEPT_REJECTS: usize = 1000;

/// The most lines one record may span (a quoted field holding line breaks).
pub const MAX_JOINED_LINES: usize = 16;

/// The share of a segment's active instruments `--full` may retire without `--force`.
pub const DEFAULT_MAX_RETIRE_SHARE: f64 = 0.5;

/// A row that could not be read: its line number and why.
pub type RejectedRow = (u64, String);

/// What a load did. Every data row of the file is in exactly one of inserted, updated,
/// unchanged and rejected.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct LoadReport {
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
    /// The first rejected rows (up to 1,000), in file order.
    pub rejects: Vec<RejectedRow>,
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

/// `--full`: the dump lists the whole of each segment it names.
#[derive(Debug, Clone, Copy)]
pub struct Full {
    /// The largest share of a segment's active instruments that may be retired…
    pub max_share: f64,
    /// …unless forced.
    pub force: bool,
}

impl Default for Full {
    fn default() -> Self {
        Full { max_share: DEFAULT_MAX_RETIRE_SHARE, force: false }
    }
}

/// What a load tells its caller as it goes.
pub enum Progress<'a> {
    /// After each batch written: rows written so far and bytes read.
    Written { rows: u64, bytes: u64 },
    /// A row refused, as soon as it is read.
    Rejected { line: u64, why: &'a str },
}

/// A dump to read and, where known, its length in bytes.
pub struct DumpSource {
    pub reader: Box<dyn AsyncRead + Unpin + Send>,
    pub len: Option<u64>,
}

/// Opens a dump: a file path, an http(s) URL, or `-` for stdin. Nothing is read yet.
pub async fn open_source(source: &str) -> anyhow::Result<DumpSource> {
    if source.starts_with("http://") || source.starts_with("https://") {
        // The URL may carry credentials: messages show it redacted, and reqwest's errors without it.
        let shown = crate::store::redact_url(source);
        let resp = reqwest::get(source)
            .await
            .map_err(|e| anyhow::Error::new(e.without_url()).context(format!("failed to fetch {shown}")))?;
        let status = resp.status();
        anyhow::ensure!(status.is_success(), "fetching {shown} answered {status}");
        let len = resp.content_length();
        let body = resp.bytes_stream().map_err(|e| std::io::Error::other(e.without_url()));
        return Ok(DumpSource { reader: Box::new(tokio_util::io::StreamReader::new(body)), len });
    }
    if source == "-" {
        return Ok(DumpSource { reader: Box::new(tokio::io::stdin()), len: None });
    }
    let file = tokio::fs::File::open(source).await.with_context(|| format!("failed to open {source}"))?;
    let len = file.metadata().await.ok().map(|m| m.len());
    Ok(DumpSource { reader: Box::new(file), len })
}

/// Reads a whole (small) dump into memory: the simulator's, for `dev` and the benches.
pub async fn read_source(source: &str) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    open_source(source)
        .await?
        .reader
        .read_to_end(&mut buf)
        .await
        .with_context(|| format!("failed to read {source}"))?;
    Ok(buf)
}

/// Lines of a stream, each at most [`MAX_LINE_BYTES`]: a longer one is skipped to its end
/// without being held.
struct Lines<R> {
    inner: BufReader<R>,
    /// The current line (without its line break) and its number.
    buf: Vec<u8>,
    number: u64,
    bytes: u64,
    /// The last line ended at a CR: an LF right after it belongs to that line break.
    after_cr: bool,
}

enum Line {
    Eof,
    /// In `buf`.
    Read,
    /// Longer than the cap: its length in bytes.
    TooLong(usize),
}

impl<R: AsyncRead + Unpin> Lines<R> {
    fn new(inner: R) -> Self {
        Lines {
            inner: BufReader::with_capacity(64 * 1024, inner),
            buf: Vec::new(),
            number: 0,
            bytes: 0,
            after_cr: false,
        }
    }

    /// The next line. A line ends at LF, CRLF or a lone CR (old Mac files, or a dump mangled by
    /// a tool: read as lines, not as one line over the cap).
    async fn next(&mut self) -> std::io::Result<Line> {
        self.buf.clear();
        let mut len = 0;
        let mut any = false;
        loop {
            let avail = self.inner.fill_buf().await?;
            if avail.is_empty() {
                if !any {
                    return Ok(Line::Eof);
                }
                break;
            }
            if std::mem::take(&mut self.after_cr) && avail[0] == b'\n' {
                self.inner.consume(1);
                self.bytes += 1;
                continue;
            }
            any = true;
            let (take, ends) = match avail.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => (i, Some(avail[i])),
                None => (avail.len(), None),
            };
            if len + take <= MAX_LINE_BYTES {
                self.buf.extend_from_slice(&avail[..take]);
            }
            len += take;
            let used = take + usize::from(ends.is_some());
            self.inner.consume(used);
            self.bytes += used as u64;
            if let Some(end) = ends {
                self.after_cr = end == b'\r';
                break;
            }
        }
        self.number += 1;
        if len > MAX_LINE_BYTES {
            return Ok(Line::TooLong(len));
        }
        Ok(Line::Read)
    }
}

/// The rows of one dump as they are read: refusals, first-seen tokens, segments.
struct Rows {
    parser: RowParser,
    /// Lines of a record whose quoted field holds a line break (RFC 4180), until its quote closes.
    pending: Vec<(u64, Vec<u8>)>,
    /// Token → the line that listed it first.
    seen: HashMap<InstrumentToken, u32>,
    segments: HashSet<String>,
    report: LoadReport,
}

impl Rows {
    fn new(header: &[u8]) -> anyhow::Result<Rows> {
        let header = Header::parse(header).map_err(anyhow::Error::msg)?;
        Ok(Rows {
            parser: RowParser::new(header),
            pending: Vec::new(),
            seen: HashMap::new(),
            segments: HashSet::new(),
            report: LoadReport::default(),
        })
    }

    /// One line of the dump: the instruments it completes (none, while a quoted field runs on to
    /// the next line; more than one when a record that looked open turns out broken and the lines
    /// held for it are read on their own).
    ///
    /// A quoted field may hold line breaks (RFC 4180): a line whose quote is still open is joined
    /// with the next ones, up to [`MAX_JOINED_LINES`] and [`MAX_LINE_BYTES`], as long as the record
    /// can still close. Once it closes into the header's number of fields it is one row (its breaks
    /// kept as LF). If it never does, the first line is refused alone ("a quote that is never
    /// closed") and the lines after it are read as the rows they are: a broken quote spoils its own
    /// row only.
    fn feed(
        &mut self,
        number: u64,
        line: Result<&[u8], usize>,
        progress: &mut impl FnMut(Progress<'_>),
    ) -> Vec<Instrument> {
        let mut out = Vec::new();
        if self.pending.is_empty() {
            match line {
                Ok(l) if self.parser.opens_record(l) => self.pending.push((number, l.to_vec())),
                _ => out.extend(self.take(number, line, progress)),
            }
            return out;
        }
        if let Ok(l) = line {
            self.pending.push((number, l.to_vec()));
            let joined = self.pending.iter().map(|(_, l)| l.as_slice()).collect::<Vec<_>>().join(&b'\n');
            let fits = joined.len() <= MAX_LINE_BYTES && self.pending.len() <= MAX_JOINED_LINES;
            if fits && self.parser.opens_record(&joined) {
                return out; // still open: wait for the next line
            }
            if fits && self.parser.closes_record(&joined) {
                let first = self.pending[0].0;
                self.pending.clear();
                out.extend(self.take(first, Ok(&joined), progress));
                return out;
            }
        } else {
            self.pending.push((number, Vec::new()));
        }
        let too_long = line.err().map(|len| (number, len));
        out.extend(self.release(too_long, progress));
        out
    }

    /// The lines held for a record that never closed: the first is refused alone, the others are
    /// read afresh (`too_long`: the line, by number, that was over the cap, and its length).
    fn release(&mut self, too_long: Option<(u64, usize)>, progress: &mut impl FnMut(Progress<'_>)) -> Vec<Instrument> {
        let mut out = Vec::new();
        let mut held = std::mem::take(&mut self.pending).into_iter();
        let Some((first, text)) = held.next() else { return out };
        out.extend(self.take(first, Ok(&text), progress));
        for (n, text) in held {
            let again = match too_long {
                Some((at, len)) if at == n => Err(len),
                _ => Ok(text.as_slice()),
            };
            out.extend(self.feed(n, again, progress));
        }
        out
    }

    /// The end of the dump: a record still open is refused (its first line), the lines after it
    /// read on their own.
    fn finish(&mut self, progress: &mut impl FnMut(Progress<'_>)) -> Vec<Instrument> {
        let mut out = Vec::new();
        while !self.pending.is_empty() {
            out.extend(self.release(None, progress));
        }
        out
    }

    /// One data record: the instrument to write, or `None` when the line is blank or refused.
    fn take(
        &mut self,
        number: u64,
        line: Result<&[u8], usize>,
        progress: &mut impl FnMut(Progress<'_>),
    ) -> Option<Instrument> {
        if matches!(line, Ok(l) if l.iter().all(u8::is_ascii_whitespace)) {
            return None;
        }
        self.report.rows += 1;
        let parsed = match line {
            Err(len) => Err(format!("the line is {len} bytes long, over the {MAX_LINE_BYTES}-byte limit")),
            Ok(line) => self.parser.parse(line).and_then(|row| {
                let line32 = u32::try_from(number).unwrap_or(u32::MAX);
                match self.seen.entry(row.instrument_token) {
                    std::collections::hash_map::Entry::Occupied(first) => Err(format!(
                        "instrument_token {} is already listed on line {}; this row is ignored",
                        row.instrument_token,
                        first.get()
                    )),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(line32);
                        Ok(row)
                    }
                }
            }),
        };
        match parsed {
            Ok(row) => {
                if let Some(seg) = &row.segment {
                    if !self.segments.contains(seg) {
                        self.segments.insert(seg.clone());
                    }
                }
                Some(row)
            }
            Err(why) => {
                progress(Progress::Rejected { line: number, why: &why });
                self.report.rejected += 1;
                if self.report.rejects.len() < KEPT_REJECTS {
                    self.report.rejects.push((number, why));
                }
                None
            }
        }
    }
}

/// Parses a whole dump held in memory; refused rows come back with their line numbers.
pub fn parse_dump(bytes: &[u8]) -> anyhow::Result<(Vec<Instrument>, Vec<RejectedRow>)> {
    // Line breaks as the streaming reader takes them: LF, CRLF or a lone CR.
    let text = bytes.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let mut lines = text.flat_map(|l| l.split(|&b| b == b'\r'));
    let header = lines.next().filter(|h| !h.is_empty()).context("the dump has no header row")?;
    let mut rows = Rows::new(header)?;
    let mut good = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = if line.len() > MAX_LINE_BYTES { Err(line.len()) } else { Ok(line) };
        good.extend(rows.feed(i as u64 + 2, line, &mut |_| {}));
    }
    good.extend(rows.finish(&mut |_| {}));
    Ok((good, rows.report.rejects))
}

/// Loads a dump held in memory into `instruments`.
pub async fn load(pool: &PgPool, bytes: &[u8]) -> anyhow::Result<LoadReport> {
    load_from(pool, bytes, None, |_| {}).await
}

/// Streams a dump into `instruments`, calling `progress` as it goes. With `full`, the dump is the
/// whole list of its segments: their instruments it does not list become inactive (other segments
/// are left alone, so a partial dump never deactivates them). It deactivates nothing when any row
/// was refused (a row it could not read may be an instrument that still trades), and nothing when
/// it would retire more than `max_share` of a segment, unless forced.
#[tracing::instrument(skip_all, fields(full = full.is_some()))]
pub async fn load_from(
    pool: &PgPool,
    source: impl AsyncRead + Unpin,
    full: Option<Full>,
    mut progress: impl FnMut(Progress<'_>),
) -> anyhow::Result<LoadReport> {
    let mut lines = Lines::new(source);
    let mut rows = match lines.next().await.context("failed to read the dump")? {
        Line::Eof => anyhow::bail!("the dump is empty: it has no header row"),
        Line::TooLong(n) => anyhow::bail!("the header row is {n} bytes long, over the {MAX_LINE_BYTES}-byte limit"),
        Line::Read => Rows::new(&lines.buf)?,
    };
    // Batches are written by their own tasks, two at a time, while the next is read (tokens are
    // unique, so concurrent batches never touch the same row).
    let mut writing = VecDeque::new();
    let mut written = 0;
    loop {
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            let line = match lines.next().await.context("failed to read the dump")? {
                Line::Eof => {
                    batch.extend(rows.finish(&mut progress));
                    break;
                }
                Line::Read => Ok(lines.buf.as_slice()),
                Line::TooLong(n) => Err(n),
            };
            batch.extend(rows.feed(lines.number, line, &mut progress));
        }
        if batch.is_empty() {
            break;
        }
        if writing.len() >= WRITERS {
            written += absorb(&mut rows.report, writing.pop_front()).await?;
            progress(Progress::Written { rows: written, bytes: lines.bytes });
        }
        let pool = pool.clone();
        writing.push_back(tokio::spawn(async move {
            let n = batch.len() as u64;
            (n, instruments::upsert_counted(&pool, &batch, Source::Dump).await)
        }));
    }
    while !writing.is_empty() {
        written += absorb(&mut rows.report, writing.pop_front()).await?;
        progress(Progress::Written { rows: written, bytes: lines.bytes });
    }
    let mut report = rows.report;
    if let Some(full) = full {
        let mut segments: Vec<String> = rows.segments.into_iter().collect();
        segments.sort();
        if report.rejected > 0 {
            report.full_skipped = Some(format!("{} row(s) rejected", report.rejected));
        } else if segments.is_empty() {
            report.full_skipped = Some("the dump names no segment".into());
        } else {
            let limit = (!full.force).then_some(full.max_share);
            match instruments::deactivate_absent(pool, &segments, |t| rows.seen.contains_key(&t), limit).await? {
                Retire::Done(n) => report.deactivated = Some(n),
                Retire::Refused { segment, gone, active } => {
                    report.full_skipped = Some(format!(
                        "it would retire {gone} of the {active} active {segment} instruments ({:.1} %), over the \
                         {:.1} % limit; --force retires them",
                        gone as f64 * 100.0 / active as f64,
                        full.max_share * 100.0
                    ))
                }
            }
        }
    }
    Ok(report)
}

type Writing = tokio::task::JoinHandle<(u64, sqlx::Result<instruments::Upserted>)>;

/// Waits for one batch's write and adds what it did to the report; returns its rows.
async fn absorb(report: &mut LoadReport, writing: Option<Writing>) -> anyhow::Result<u64> {
    let Some(writing) = writing else { return Ok(0) };
    let (n, done) = writing.await.context("a batch writer failed")?;
    let c = done.context("failed to upsert instruments")?;
    report.inserted += c.inserted;
    report.updated += c.updated;
    report.unchanged += c.unchanged;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange";

    #[test]
    fn a_broken_row_spoils_only_itself_and_repeats_keep_the_first() {
        let csv = format!(
            "{HEADER}\r\n256265,1001,NIFTY 50,NIFTY 50,0.0,,0.0,0.0,0,EQ,INDICES,NSE\r\n\
             60000005,0,\"EQ4,NAME4,1,,0,0.05,1,EQ,NSE,NSE\r\n\
             \r\n\
             10000001,39063,NIFTY25NOVFUT,NIFTY,0.0,2025-11-25,0.0,0.05,75,FUT,NFO-FUT,NFO\r\n\
             256265,1001,NIFTY 50 AGAIN,NIFTY 50,0.0,,0.0,0.0,0,EQ,INDICES,NSE\r\n"
        );
        let (good, bad) = parse_dump(csv.as_bytes()).unwrap();
        assert_eq!(good.iter().map(|i| i.instrument_token).collect::<Vec<_>>(), [256265, 10000001]);
        assert_eq!(good[0].tradingsymbol, "NIFTY 50");
        assert_eq!(bad.iter().map(|b| b.0).collect::<Vec<_>>(), [3, 6]);
        assert!(bad[0].1.contains("never closed"), "{}", bad[0].1);
        assert!(bad[1].1.contains("already listed on line 2"), "{}", bad[1].1);
    }

    #[test]
    fn a_quoted_field_may_hold_line_breaks_and_a_broken_quote_still_spoils_only_its_row() {
        let csv = format!(
            "{HEADER}\r\n70000001,1,QLB001,PLAIN,0.0,,0,0.05,1,EQ,NSE,NSE\r\n\
             70000002,1,QLB002,\"TWO LINES\r\nOF NAME, WITH A COMMA\",0.0,,0,0.05,1,EQ,NSE,NSE\r\n\
             70000003,1,QLB003,\"A \"\"QUOTED\"\" NAME\",0.0,,0,0.05,1,EQ,NSE,NSE\r\n\
             70000004,1,\"BROKEN,N,0.0,,0,0.05,1,EQ,NSE,NSE\r\n\
             70000005,1,QLB005,\"NAME\",0.0,,0,0.05,1,EQ,NSE,NSE\r\n\
             70000006,1,QLB006,\"THREE\rLINES\nHERE\",0.0,,0,0.05,1,EQ,NSE,NSE"
        );
        let (good, bad) = parse_dump(csv.as_bytes()).unwrap();
        let tokens: Vec<u32> = good.iter().map(|i| i.instrument_token.get()).collect();
        assert_eq!(tokens, [70000001, 70000002, 70000003, 70000005, 70000006], "{bad:?}");
        assert_eq!(good[1].name.as_deref(), Some("TWO LINES\nOF NAME, WITH A COMMA"));
        assert_eq!(good[2].name.as_deref(), Some("A \"QUOTED\" NAME"));
        assert_eq!(good[4].name.as_deref(), Some("THREE\nLINES\nHERE"));
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].0, 6);
        assert!(bad[0].1.contains("never closed"), "{}", bad[0].1);
        // A line break is refused anywhere but the name.
        let csv = format!("{HEADER}\n70000007,1,\"QLB\n007\",N,0.0,,0,0.05,1,EQ,NSE,NSE\n");
        let (good, bad) = parse_dump(csv.as_bytes()).unwrap();
        assert!(good.is_empty());
        assert!(bad[0].1.contains("tradingsymbol holds a control character"), "{bad:?}");
    }

    #[test]
    fn a_dump_with_lone_cr_line_ends_loads_every_row() {
        let csv = format!("{HEADER}\r70000001,1,QLB001,PLAIN,0.0,,0,0.05,1,EQ,NSE,NSE\r70000002,1,QLB002,P,0.0,,0,0.05,1,EQ,NSE,NSE\r");
        let (good, bad) = parse_dump(csv.as_bytes()).unwrap();
        assert_eq!((good.len(), bad.len()), (2, 0));
    }

    #[tokio::test]
    async fn lines_over_the_cap_are_skipped_without_being_held() {
        let long = "x".repeat(10 * 1024 * 1024);
        let text = format!("a\n{long}\r\nb\r\n\nc");
        let mut lines = Lines::new(text.as_bytes());
        let mut seen = Vec::new();
        loop {
            match lines.next().await.unwrap() {
                Line::Eof => break,
                Line::Read => seen.push(String::from_utf8(lines.buf.clone()).unwrap()),
                Line::TooLong(n) => seen.push(format!("too long: {n}")),
            }
            assert!(lines.buf.capacity() <= 2 * MAX_LINE_BYTES + 64 * 1024);
        }
        assert_eq!(seen, ["a", &format!("too long: {}", long.len()), "b", "", "c"]);
        assert_eq!(lines.number, 5);
        // A lone CR ends a line too, and CRLF is one break, across buffer refills as well.
        let mut lines = Lines::new(&b"h\rr1\rr2\r\nr3"[..]);
        let mut seen = Vec::new();
        while let Line::Read = lines.next().await.unwrap() {
            seen.push(String::from_utf8(lines.buf.clone()).unwrap());
        }
        assert_eq!(seen, ["h", "r1", "r2", "r3"]);
    }
}
