//! An instrument as the Kite instrument dump describes it, where its row came from, and the
//! instrument token every event, job and bar is keyed by.

use chrono::NaiveDate;
use tickfill_jobs::SubscriptionEvent;

pub use tickfill_jobs::InstrumentToken;

use super::symbol::complete_from_symbol;

/// One row of the instrument dump.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Instrument {
    pub instrument_token: u32,
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

/// The store's row (completed from its symbol where a dump left fields empty), else the
/// instrument the event's metadata describes.
pub fn resolve(
    stored: Option<Instrument>,
    token: u32,
    event: Option<&SubscriptionEvent>,
) -> Result<(Instrument, Source), String> {
    if let Some(mut inst) = stored {
        // Some dumps leave a derivative's name or expiry empty: its symbol tells them.
        complete_from_symbol(&mut inst);
        return Ok((inst, Source::Dump));
    }
    let from_event = event.and_then(|e| {
        let mut inst = Instrument {
            instrument_token: token,
            tradingsymbol: e.tradingsymbol.clone()?,
            segment: e.segment.clone(),
            ..Default::default()
        };
        let parsed = complete_from_symbol(&mut inst);
        inst.segment.is_some().then_some((inst, if parsed { Source::Parsed } else { Source::Event }))
    });
    from_event.ok_or_else(|| {
        format!(
            "unknown instrument {token}: not in instruments and the event carries no tradingsymbol and segment \
             (load the instrument dump with `tickfill instruments load`, then retry the job)"
        )
    })
}
