//! An instrument as the Kite instrument dump describes it, where its row came from, and the
//! instrument token every event, job and bar is keyed by.

use chrono::NaiveDate;

pub use tickfill_jobs::InstrumentToken;

/// One row of the instrument dump.
#[derive(Debug, Clone, PartialEq)]
pub struct Instrument {
    pub instrument_token: InstrumentToken,
    pub exchange_token: Option<i64>,
    pub tradingsymbol: String,
    pub name: Option<String>,
    pub last_price: Option<f64>,
    pub expiry: Option<NaiveDate>,
    pub strike: Option<f64>,
    pub tick_size: Option<f64>,
    pub lot_size: Option<i32>,
    pub instrument_type: Option<String>,
    pub segment: Option<String>,
    pub exchange: Option<String>,
}

impl Instrument {
    /// An instrument known only by its token, symbol and segment (from an event or a list).
    pub fn named(instrument_token: InstrumentToken, tradingsymbol: String, segment: Option<String>) -> Instrument {
        Instrument {
            instrument_token,
            exchange_token: None,
            tradingsymbol,
            name: None,
            last_price: None,
            expiry: None,
            strike: None,
            tick_size: None,
            lot_size: None,
            instrument_type: None,
            segment,
            exchange: None,
        }
    }
}

/// The token `n`, for the unit tests' literals.
#[cfg(test)]
pub fn tok(n: u32) -> InstrumentToken {
    InstrumentToken::new(u64::from(n)).expect("a test token is 1 or more")
}

/// Where an `instruments` row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Dump,
    Event,
    Parsed,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Dump => "dump",
            Source::Event => "event",
            Source::Parsed => "parsed",
        }
    }
}
