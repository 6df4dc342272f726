//! The simulator's universe (see the module docs of `sim` for the full list): NIFTY 50, its two
//! nearest monthly futures, two weekly option chains, and any synthetic equities asked for.

use chrono::{Datelike, FixedOffset, NaiveDate, Weekday};

pub const NIFTY_TOKEN: u32 = 256265;
pub(super) const INDEX_BASE: f64 = 24500.0;
pub(super) const STRIKE_LOW: u32 = 24000;
pub(super) const STRIKE_STEP: u32 = 50;
pub(super) const STRIKES: u32 = 21;
pub(super) const LOT: i64 = 75;

pub(super) fn ist() -> FixedOffset {
    FixedOffset::east_opt(5 * 3600 + 1800).expect("IST offset")
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Index,
    Future { n: u32 },
    Option { strike: f64, call: bool },
    Equity,
}

#[derive(Debug, Clone)]
pub(super) struct SimInstrument {
    pub(super) token: u32,
    pub(super) tradingsymbol: String,
    pub(super) name: String,
    pub(super) expiry: Option<NaiveDate>,
    pub(super) segment: &'static str,
    pub(super) exchange: &'static str,
    pub(super) instrument_type: &'static str,
    pub(super) kind: Kind,
}

pub(super) fn last_tuesday(year: i32, month: u32) -> NaiveDate {
    let (ny, nm) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let mut d = NaiveDate::from_ymd_opt(ny, nm, 1).expect("valid date").pred_opt().expect("valid date");
    while d.weekday() != Weekday::Tue {
        d = d.pred_opt().expect("valid date");
    }
    d
}

pub(super) const MONTHS: [&str; 12] =
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];

/// Kite's option symbol: monthly `NIFTY25NOV24500CE`, weekly `NIFTY25N1124500CE` (month 1-9, O, N, D).
pub(super) fn option_symbol(expiry: NaiveDate, strike: u32, call: bool) -> String {
    let yy = expiry.year() % 100;
    let cp = if call { "CE" } else { "PE" };
    if expiry == last_tuesday(expiry.year(), expiry.month()) {
        format!("NIFTY{yy:02}{}{strike}{cp}", MONTHS[expiry.month0() as usize])
    } else {
        let m = match expiry.month() {
            10 => 'O',
            11 => 'N',
            12 => 'D',
            n => char::from_digit(n, 10).expect("month digit"),
        };
        format!("NIFTY{yy:02}{m}{:02}{strike}{cp}", expiry.day())
    }
}

pub(super) fn build_universe(today: NaiveDate, synthetic: usize) -> Vec<SimInstrument> {
    let mut all = vec![SimInstrument {
        token: NIFTY_TOKEN,
        tradingsymbol: "NIFTY 50".into(),
        name: "NIFTY 50".into(),
        expiry: None,
        segment: "INDICES",
        exchange: "NSE",
        instrument_type: "EQ",
        kind: Kind::Index,
    }];
    let (mut y, mut m) = (today.year(), today.month());
    if last_tuesday(y, m) < today {
        (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    }
    for n in 0..2u32 {
        let e = last_tuesday(y, m);
        all.push(SimInstrument {
            token: 10_000_001 + n,
            tradingsymbol: format!("NIFTY{:02}{}FUT", e.year() % 100, MONTHS[e.month0() as usize]),
            name: "NIFTY".into(),
            expiry: Some(e),
            segment: "NFO-FUT",
            exchange: "NFO",
            instrument_type: "FUT",
            kind: Kind::Future { n },
        });
        (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    }
    let mut tuesday = today;
    while tuesday.weekday() != Weekday::Tue {
        tuesday = tuesday.succ_opt().expect("valid date");
    }
    for e in 0..2u32 {
        let expiry = tuesday + chrono::Duration::days(7 * e as i64);
        for s in 0..STRIKES {
            let strike = STRIKE_LOW + STRIKE_STEP * s;
            for (t, call) in [(0, true), (1, false)] {
                all.push(SimInstrument {
                    token: 11_000_000 + 1000 * e + 2 * s + t,
                    tradingsymbol: option_symbol(expiry, strike, call),
                    name: "NIFTY".into(),
                    expiry: Some(expiry),
                    segment: "NFO-OPT",
                    exchange: "NFO",
                    instrument_type: if call { "CE" } else { "PE" },
                    kind: Kind::Option { strike: strike as f64, call },
                });
            }
        }
    }
    for i in 0..synthetic as u32 {
        all.push(SimInstrument {
            token: 20_000_001 + i,
            tradingsymbol: format!("SIM{:06}", i + 1),
            name: format!("SIMULATED EQUITY {}", i + 1),
            expiry: None,
            segment: "NSE",
            exchange: "NSE",
            instrument_type: "EQ",
            kind: Kind::Equity,
        });
    }
    all
}
