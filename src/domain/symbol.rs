//! Tradingsymbol parsing (monthly and weekly options, futures; NSE, BSE and MCX names) and the
//! exchanges' monthly expiry rules: the fallback when the instrument dump leaves a derivative's
//! underlying, expiry or strike empty.

use chrono::NaiveDate;
use tickfill_jobs::InstrumentToken;

use tickfill_jobs::SubscriptionEvent;

use super::{
    instrument::{Instrument, Source},
    market::normalise_underlying,
};

/// What a derivative's tradingsymbol says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSymbol {
    pub underlying: String,
    pub expiry: NaiveDate,
    /// `None` for a future.
    pub strike: Option<f64>,
    /// `FUT`, `CE` or `PE`.
    pub instrument_type: &'static str,
    /// The exchange segment the name implies: `NFO-*`, `BFO-*` (SENSEX, BANKEX) or `MCX-*`.
    pub segment: String,
}

const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];

/// Commodities traded on MCX, recognised by name.
const MCX_NAMES: [&str; 16] = [
    "CRUDEOIL",
    "CRUDEOILM",
    "NATURALGAS",
    "NATGASMINI",
    "GOLD",
    "GOLDM",
    "GOLDPETAL",
    "GOLDGUINEA",
    "SILVER",
    "SILVERM",
    "SILVERMIC",
    "COPPER",
    "ZINC",
    "ALUMINIUM",
    "LEAD",
    "NICKEL",
];

fn last_weekday_of_month(year: i32, month: u32, weekday: chrono::Weekday) -> Option<NaiveDate> {
    use chrono::Datelike;
    let (ny, nm) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let mut d = NaiveDate::from_ymd_opt(ny, nm, 1)?.pred_opt()?;
    while d.weekday() != weekday {
        d = d.pred_opt()?;
    }
    Some(d)
}

/// The monthly expiry of a contract month, by the exchange's rule at that time: NSE on the last
/// Thursday until August 2025 and the last Tuesday from September 2025; BSE on the last Friday
/// in 2024 and before, the last Tuesday from January to August 2025 and the last Thursday from
/// September 2025. MCX contracts expire on dates of their own; the last weekday of the month
/// stands in for them and the record says `source = parsed`.
fn monthly_expiry(segment: &str, year: i32, month: u32) -> Option<NaiveDate> {
    use chrono::Weekday::*;
    let from_sep_2025 = (year, month) >= (2025, 9);
    let weekday = match segment.split('-').next().unwrap_or("") {
        "NFO" => {
            if from_sep_2025 {
                Tue
            } else {
                Thu
            }
        }
        "BFO" => {
            if from_sep_2025 {
                Thu
            } else if year >= 2025 {
                Tue
            } else {
                Fri
            }
        }
        _ => {
            // The last business day (Monday to Friday) of the month.
            use chrono::Datelike;
            let (ny, nm) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
            let last = NaiveDate::from_ymd_opt(ny, nm, 1)?.pred_opt()?;
            return match last.weekday() {
                Sat => last.pred_opt(),
                Sun => last.pred_opt()?.pred_opt(),
                _ => Some(last),
            };
        }
    };
    last_weekday_of_month(year, month, weekday)
}

/// Parses a Kite derivative tradingsymbol: monthly options `NIFTY24NOV24500CE`, weekly options
/// `NIFTY24N1424500CE` (month code 1–9, O, N, D), futures `NIFTY24NOVFUT`. Returns `None` for
/// anything else (an equity, an index).
pub fn parse_tradingsymbol(symbol: &str) -> Option<ParsedSymbol> {
    let s = symbol.trim().to_ascii_uppercase();
    let split = s.find(|c: char| c.is_ascii_digit())?;
    let (name, rest) = s.split_at(split);
    if name.is_empty() || rest.len() < 5 || !name.chars().all(|c| c.is_ascii_uppercase() || c == '&' || c == '-') {
        return None;
    }
    let year = 2000 + rest.get(..2)?.parse::<i32>().ok()?;
    let rest = &rest[2..];
    let underlying = normalise_underlying(name);
    let exchange = if MCX_NAMES.contains(&name) {
        "MCX"
    } else if matches!(name, "SENSEX" | "BANKEX" | "SENSEX50") {
        "BFO"
    } else {
        "NFO"
    };
    let month_of = |m: &str| MONTHS.iter().position(|x| *x == m).map(|i| i as u32 + 1);
    let (expiry, tail) = match rest.get(..3).and_then(month_of) {
        Some(month) => (monthly_expiry(exchange, year, month)?, &rest[3..]),
        None => {
            let month = match rest.chars().next()? {
                c @ '1'..='9' => c.to_digit(10)?,
                'O' => 10,
                'N' => 11,
                'D' => 12,
                _ => return None,
            };
            let day: u32 = rest.get(1..3)?.parse().ok()?;
            (NaiveDate::from_ymd_opt(year, month, day)?, &rest[3..])
        }
    };
    let (strike, instrument_type, kind) = if tail == "FUT" {
        (None, "FUT", "FUT")
    } else {
        let (num, ty) =
            if let Some(n) = tail.strip_suffix("CE") { (n, "CE") } else { (tail.strip_suffix("PE")?, "PE") };
        let strike: f64 = num.parse().ok().filter(|k: &f64| k.is_finite() && *k > 0.0)?;
        (Some(strike), ty, "OPT")
    };
    Some(ParsedSymbol { underlying, expiry, strike, instrument_type, segment: format!("{exchange}-{kind}") })
}

/// Fills what a derivative lacks (underlying name, expiry, strike, type, segment) from its
/// tradingsymbol; returns whether anything was filled in.
pub fn complete_from_symbol(inst: &mut Instrument) -> bool {
    let Some(p) = parse_tradingsymbol(&inst.tradingsymbol) else { return false };
    let segment = inst.segment.as_deref().unwrap_or("").to_ascii_uppercase();
    let is_derivative = segment.ends_with("-FUT") || segment.ends_with("-OPT") || segment.is_empty();
    let lacks = inst.name.as_deref().is_none_or(|n| n.trim().is_empty())
        || inst.expiry.is_none()
        || (p.strike.is_some() && inst.strike.is_none_or(|k| k <= 0.0));
    if !is_derivative || !lacks {
        return false;
    }
    inst.name.get_or_insert(p.underlying);
    inst.expiry.get_or_insert(p.expiry);
    if inst.strike.is_none_or(|k| k <= 0.0) {
        inst.strike = p.strike;
    }
    if !matches!(inst.instrument_type.as_deref(), Some("CE" | "PE" | "FUT")) {
        inst.instrument_type = Some(p.instrument_type.to_string());
    }
    if segment.is_empty() {
        inst.segment = Some(p.segment);
    }
    true
}

/// The store's row (completed from its symbol where a dump left fields empty), else the
/// instrument the event's metadata describes.
pub fn resolve_instrument(
    stored: Option<Instrument>,
    token: InstrumentToken,
    event: Option<&SubscriptionEvent>,
) -> Result<(Instrument, Source), String> {
    if let Some(mut inst) = stored {
        // Some dumps leave a derivative's name or expiry empty: its symbol tells them.
        complete_from_symbol(&mut inst);
        return Ok((inst, Source::Dump));
    }
    let from_event = event.and_then(|e| {
        let mut inst = Instrument::named(token, e.tradingsymbol.clone()?, e.segment.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::market::{classify, BarTarget, OptionType};

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn every_format_parses() {
        let p = parse_tradingsymbol("NIFTY24NOV24500CE").unwrap();
        assert_eq!(
            (p.underlying.as_str(), p.expiry, p.strike, p.instrument_type),
            ("NIFTY", d("2024-11-28"), Some(24500.0), "CE")
        );
        assert_eq!(p.segment, "NFO-OPT");
        let p = parse_tradingsymbol("NIFTY24N1424500CE").unwrap();
        assert_eq!((p.expiry, p.strike), (d("2024-11-14"), Some(24500.0)));
        let p = parse_tradingsymbol("NIFTY24NOVFUT").unwrap();
        assert_eq!(
            (p.expiry, p.strike, p.instrument_type, p.segment.as_str()),
            (d("2024-11-28"), None, "FUT", "NFO-FUT")
        );
        let p = parse_tradingsymbol("NIFTY25D0224500PE").unwrap();
        assert_eq!((p.expiry, p.instrument_type), (d("2025-12-02"), "PE"));
        assert_eq!(
            parse_tradingsymbol("NIFTY25DECFUT").unwrap().expiry,
            d("2025-12-30"),
            "NSE monthly on Tuesday from Sep 2025"
        );
        assert_eq!(parse_tradingsymbol("BANKNIFTY24DEC51000PE").unwrap().underlying, "BANKNIFTY");
        assert_eq!(parse_tradingsymbol("FINNIFTY24O0823500CE").unwrap().expiry, d("2024-10-08"));
        assert_eq!(parse_tradingsymbol("MIDCPNIFTY24NOV12500CE").unwrap().underlying, "MIDCPNIFTY");
        let p = parse_tradingsymbol("SENSEX24N2980000CE").unwrap();
        assert_eq!((p.underlying.as_str(), p.segment.as_str(), p.expiry), ("SENSEX", "BFO-OPT", d("2024-11-29")));
        assert_eq!(
            parse_tradingsymbol("BANKEX24NOVFUT").unwrap().expiry,
            d("2024-11-29"),
            "BSE monthly on Friday in 2024"
        );
        let p = parse_tradingsymbol("CRUDEOIL24DEC6500CE").unwrap();
        assert_eq!((p.underlying.as_str(), p.segment.as_str()), ("CRUDEOIL", "MCX-OPT"));
        assert_eq!(parse_tradingsymbol("GOLDM24DECFUT").unwrap().segment, "MCX-FUT");
        assert_eq!(parse_tradingsymbol("M&M24NOV3000CE").unwrap().underlying, "M&M");
        assert_eq!(parse_tradingsymbol("NIFTY 50"), None);
        assert_eq!(parse_tradingsymbol("INFY"), None);
        assert_eq!(parse_tradingsymbol("NIFTY24XYZ100CE"), None);
        assert_eq!(parse_tradingsymbol("NIFTY24N3224500CE"), None, "no 32nd of November");
    }

    #[test]
    fn an_unknown_option_is_completed_from_its_symbol() {
        let mut inst =
            Instrument::named(InstrumentToken::new(1).unwrap(), "NIFTY24N1424500CE".into(), Some("NFO-OPT".into()));
        assert!(complete_from_symbol(&mut inst));
        let t = classify(&inst).unwrap();
        assert_eq!(
            t,
            BarTarget::Option {
                contract: "NIFTY24N1424500CE".into(),
                symbol: "NIFTY".into(),
                expiry: d("2024-11-14"),
                strike: 24500.0,
                option_type: OptionType::Call,
            }
        );
    }
}
