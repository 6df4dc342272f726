//! One line of a Kite instrument dump into an [`Instrument`], or the reason it is refused.
//!
//! A dump is read a record at a time: a line, or, where a quoted field holds a line break (RFC
//! 4180), the lines that field spans (the loader joins them; see `load::Rows::feed`). A broken
//! quote spoils its own row only, never the rows after it. Every field is
//! checked: tokens and lot sizes are integers in range, prices finite and in range, dates real,
//! text at most [`MAX_FIELD_CHARS`] characters without control characters.

use std::borrow::Cow;
use tickfill_jobs::InstrumentToken;

use chrono::{Datelike, NaiveDate};

use crate::domain::{event::MAX_FIELD_CHARS, instrument::Instrument};

/// The longest line read, in bytes. A Kite row is about 120; twelve fields at the character
/// limit, four bytes a character, still fit.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// The columns a dump may have, in Kite's order.
const COLUMNS: [&str; 12] = [
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "last_price",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "instrument_type",
    "segment",
    "exchange",
];

/// Prices above this are refused as corrupt (the dearest Indian share trades near 1.5 lakh).
const MAX_PRICE: f64 = 1e9;

/// Where each known column sits in a line, from the header.
#[derive(Debug, Clone)]
pub struct Header {
    at: [Option<usize>; 12],
    fields: usize,
}

impl Header {
    /// Reads the header line. Names are matched without regard to case; unknown columns are
    /// allowed and ignored; a known column twice, or no token or symbol column, is an error.
    pub fn parse(line: &[u8]) -> Result<Header, String> {
        let line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        let text = std::str::from_utf8(line).map_err(|_| "the header row is not valid UTF-8".to_string())?;
        let mut names = Vec::new();
        split(text, &mut names).map_err(|e| format!("the header row: {e}"))?;
        let mut at = [None; 12];
        for (i, name) in names.iter().enumerate() {
            let name = name.trim().to_ascii_lowercase();
            if let Some(c) = COLUMNS.iter().position(|c| *c == name) {
                if at[c].is_some() {
                    return Err(format!("the header names {name} twice"));
                }
                at[c] = Some(i);
            }
        }
        for required in [0, 2] {
            if at[required].is_none() {
                return Err(format!("the dump has no {} column", COLUMNS[required]));
            }
        }
        Ok(Header { at, fields: names.len() })
    }
}

/// How a quote left open is reported.
const NEVER_CLOSED: &str = "opens a quote that is never closed";

/// Splits one CSV line into fields: `"…"` quotes a field, `""` inside quotes is a quote.
/// A quote left open is an error (it would otherwise take the rest of the line as one field).
fn split<'a>(line: &'a str, out: &mut Vec<Cow<'a, str>>) -> Result<(), String> {
    out.clear();
    let bytes = line.as_bytes();
    let mut i = 0;
    loop {
        if bytes.get(i) == Some(&b'"') {
            let mut value = String::new();
            let mut j = i + 1;
            loop {
                match bytes[j..].iter().position(|&b| b == b'"') {
                    None => return Err(format!("field {} {NEVER_CLOSED}", out.len() + 1)),
                    Some(q) => {
                        value.push_str(&line[j..j + q]);
                        j += q + 1;
                        if bytes.get(j) == Some(&b'"') {
                            value.push('"');
                            j += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            out.push(Cow::Owned(value));
            match bytes.get(j) {
                None => return Ok(()),
                Some(b',') => i = j + 1,
                Some(_) => return Err(format!("field {} has text after its closing quote", out.len())),
            }
        } else {
            let end = bytes[i..].iter().position(|&b| b == b',').map_or(bytes.len(), |p| i + p);
            out.push(Cow::Borrowed(&line[i..end]));
            if end == bytes.len() {
                return Ok(());
            }
            i = end + 1;
        }
    }
}

/// Reads data rows against one header.
pub struct RowParser {
    header: Header,
}

impl RowParser {
    pub fn new(header: Header) -> RowParser {
        RowParser { header }
    }

    /// Whether `record` ends inside a quoted field that the next line may continue.
    pub fn opens_record(&self, record: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(record) else { return false };
        let mut fields = Vec::new();
        matches!(split(text, &mut fields), Err(e) if e.ends_with(NEVER_CLOSED))
    }

    /// Whether `record` reads as the header's number of fields.
    pub fn closes_record(&self, record: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(record) else { return false };
        let mut fields = Vec::new();
        split(text, &mut fields).is_ok() && fields.len() == self.header.fields
    }

    /// Parses one data record (without its final line break).
    pub fn parse(&self, line: &[u8]) -> Result<Instrument, String> {
        if let Some(at) = line.iter().position(|&b| b == 0) {
            return Err(format!("a NUL byte at column {}", at + 1));
        }
        let text =
            std::str::from_utf8(line).map_err(|e| format!("not valid UTF-8 (at byte {})", e.valid_up_to() + 1))?;
        let mut fields = Vec::with_capacity(self.header.fields);
        split(text, &mut fields)?;
        if fields.len() != self.header.fields {
            return Err(format!("{} fields where the header has {}", fields.len(), self.header.fields));
        }
        let get = |c: usize| -> Option<&str> { self.header.at[c].map(|i| fields[i].trim()).filter(|s| !s.is_empty()) };
        for (c, name) in COLUMNS.iter().enumerate() {
            if let Some(v) = get(c) {
                if v.chars().count() > MAX_FIELD_CHARS {
                    return Err(format!("{name} is longer than {MAX_FIELD_CHARS} characters"));
                }
                // A name may hold a line break (a quoted field across lines); nothing else may.
                if v.chars().any(|c| c.is_control() && !(c == '\n' && *name == "name")) {
                    return Err(format!("{name} holds a control character"));
                }
            }
        }
        let token = integer(get(0), "instrument_token", 1, u32::MAX as i64)?.ok_or("instrument_token is empty")?;
        let token = InstrumentToken::try_from(token).map_err(|e| e.to_string())?;
        let tradingsymbol = get(2).ok_or("tradingsymbol is empty")?.to_string();
        Ok(Instrument {
            instrument_token: token,
            exchange_token: integer(get(1), "exchange_token", 0, u32::MAX as i64)?,
            tradingsymbol,
            name: get(3).map(String::from),
            last_price: number(get(4), "last_price", -MAX_PRICE, MAX_PRICE)?,
            expiry: get(5).map(date).transpose()?,
            strike: number(get(6), "strike", 0.0, MAX_PRICE)?,
            tick_size: number(get(7), "tick_size", 0.0, MAX_PRICE)?,
            lot_size: integer(get(8), "lot_size", 0, i32::MAX as i64)?.map(|v| v as i32),
            instrument_type: get(9).map(String::from),
            segment: get(10).map(String::from),
            exchange: get(11).map(String::from),
        })
    }
}

/// An integer in `min..=max`. A decimal with a zero fraction (`75.0`) is taken as the integer.
fn integer(v: Option<&str>, name: &str, min: i64, max: i64) -> Result<Option<i64>, String> {
    let Some(v) = v else { return Ok(None) };
    let whole = v.strip_suffix(".0").unwrap_or(v);
    let n: i64 = whole.parse().map_err(|_| format!("{name} {v:?} is not a whole number"))?;
    if !(min..=max).contains(&n) {
        return Err(format!("{name} {v} is outside {min} … {max}"));
    }
    Ok(Some(n))
}

/// A finite number in `min..=max` (NaN, infinities and `1e400` are refused).
fn number(v: Option<&str>, name: &str, min: f64, max: f64) -> Result<Option<f64>, String> {
    let Some(v) = v else { return Ok(None) };
    let n: f64 = v.parse().map_err(|_| format!("{name} {v:?} is not a number"))?;
    if !n.is_finite() {
        return Err(format!("{name} {v:?} is not a finite number"));
    }
    if !(min..=max).contains(&n) {
        return Err(format!("{name} {v} is outside {min} … {max}"));
    }
    Ok(Some(n))
}

/// A real calendar date, `YYYY-MM-DD`, between 1970 and 2199.
fn date(v: &str) -> Result<NaiveDate, String> {
    let d = NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| format!("expiry {v:?} is not a date (YYYY-MM-DD)"))?;
    if !(1970..=2199).contains(&d.year()) {
        return Err(format!("expiry {v} is outside 1970 … 2199"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange";

    fn row(line: &str) -> Result<Instrument, String> {
        RowParser::new(Header::parse(HEADER.as_bytes()).unwrap()).parse(line.as_bytes())
    }

    #[test]
    fn a_kite_row_parses_and_quotes_work() {
        let r = row(r#"10000001,39063,NIFTY25NOVFUT,"NIFTY ""50"", index",0.0,2025-11-25,0.0,0.05,75,FUT,NFO-FUT,NFO"#)
            .unwrap();
        assert_eq!(r.name.as_deref(), Some(r#"NIFTY "50", index"#));
        assert_eq!((r.lot_size, r.expiry), (Some(75), NaiveDate::from_ymd_opt(2025, 11, 25)));
    }

    #[test]
    fn every_kind_of_bad_field_is_refused_by_name() {
        let cases = [
            ("60000005,0,\"EQ4,NAME4,1,,0,0.05,1,EQ,NSE,NSE", "never closed"),
            ("1,0,\"EQ\"x,N,1,,0,0.05,1,EQ,NSE,NSE", "after its closing quote"),
            ("1,0,EQ,N,1,,0,0.05,1,EQ,NSE", "11 fields where the header has 12"),
            ("0,0,EQ,N,1,,0,0.05,1,EQ,NSE,NSE", "instrument_token 0 is outside"),
            ("4294967296,0,EQ,N,1,,0,0.05,1,EQ,NSE,NSE", "instrument_token 4294967296 is outside"),
            ("1,x,EQ,N,1,,0,0.05,1,EQ,NSE,NSE", "exchange_token \"x\""),
            ("1,0,EQ,N,NaN,,0,0.05,1,EQ,NSE,NSE", "last_price \"NaN\" is not a finite number"),
            ("1,0,EQ,N,1,,-inf,0.05,1,EQ,NSE,NSE", "strike \"-inf\" is not a finite number"),
            ("1,0,EQ,N,1,,1e400,0.05,1,EQ,NSE,NSE", "strike \"1e400\" is not a finite number"),
            ("1,0,EQ,N,1,,-5,0.05,1,EQ,NSE,NSE", "strike -5 is outside"),
            ("1,0,EQ,N,1,,0,0.05,1e20,EQ,NSE,NSE", "lot_size \"1e20\" is not a whole number"),
            ("1,0,EQ,N,1,,0,0.05,99999999999,EQ,NSE,NSE", "lot_size 99999999999 is outside"),
            ("1,0,EQ,N,1,,0,0.05,1.5,EQ,NSE,NSE", "lot_size \"1.5\""),
            ("1,0,EQ,N,1,2025-02-30,0,0.05,1,EQ,NSE,NSE", "expiry \"2025-02-30\" is not a date"),
            ("1,0,EQ,N,1,0001-01-01,0,0.05,1,EQ,NSE,NSE", "expiry 0001-01-01 is outside"),
            ("1,0,E\u{1}Q,N,1,,0,0.05,1,EQ,NSE,NSE", "tradingsymbol holds a control character"),
            ("1,0,,N,1,,0,0.05,1,EQ,NSE,NSE", "tradingsymbol is empty"),
        ];
        for (line, want) in cases {
            let err = row(line).expect_err(line);
            assert!(err.contains(want), "{line}: {err}");
        }
        let long = format!("1,0,EQ,{},1,,0,0.05,1,EQ,NSE,NSE", "€".repeat(257));
        assert!(row(&long).unwrap_err().contains("name is longer than 256 characters"));
        assert!(row(&format!("1,0,EQ,{},1,,0,0.05,1,EQ,NSE,NSE", "€".repeat(256))).is_ok());
        let p = RowParser::new(Header::parse(HEADER.as_bytes()).unwrap());
        assert!(p.parse(b"1,0,EQ\0,N,1,,0,0.05,1,EQ,NSE,NSE").unwrap_err().contains("NUL byte at column 7"));
        assert!(p.parse(b"1,0,EQ\xff,N,1,,0,0.05,1,EQ,NSE,NSE").unwrap_err().contains("not valid UTF-8 (at byte 7)"));
    }

    #[test]
    fn headers_are_matched_by_name_and_checked() {
        let h = Header::parse(b"\xef\xbb\xbfTradingSymbol,extra,Instrument_Token").unwrap();
        let r = RowParser::new(h).parse(b"ABC,whatever,42").unwrap();
        assert_eq!((r.instrument_token.get(), r.tradingsymbol.as_str()), (42, "ABC"));
        assert!(Header::parse(b"tradingsymbol,name").unwrap_err().contains("no instrument_token column"));
        assert!(Header::parse(b"instrument_token,tradingsymbol,instrument_token").unwrap_err().contains("twice"));
    }
}
