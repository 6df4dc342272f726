//! Market-data domain: candles, how an instrument maps to a bar table, underlying names.

use chrono::{DateTime, NaiveDate, Utc};

use crate::store::instruments::Instrument;

/// One 1-minute candle; `time` is the start of its minute, in UTC.
#[derive(Debug, Clone, PartialEq)]
pub struct Candle {
    pub time: DateTime<Utc>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
    pub oi: Option<i64>,
    pub iv: Option<f64>,
    pub delta: Option<f64>,
    pub gamma: Option<f64>,
    pub theta: Option<f64>,
    pub vega: Option<f64>,
    pub underlying: Option<f64>,
}

/// CE or PE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionType {
    Call,
    Put,
}

impl OptionType {
    pub fn as_str(self) -> &'static str {
        match self {
            OptionType::Call => "CE",
            OptionType::Put => "PE",
        }
    }
}

/// Where an instrument's bars go, with what the table needs beside the candle.
#[derive(Debug, Clone, PartialEq)]
pub enum BarTarget {
    /// Indices and equities → `minute_bars`.
    Minute { symbol: String },
    /// Futures → `futures_bars`.
    Future { contract: String, symbol: String, expiry: NaiveDate },
    /// Options → `option_bars`.
    Option { contract: String, symbol: String, expiry: NaiveDate, strike: f64, option_type: OptionType },
}

impl BarTarget {
    pub fn table(&self) -> &'static str {
        match self {
            BarTarget::Minute { .. } => "minute_bars",
            BarTarget::Future { .. } => "futures_bars",
            BarTarget::Option { .. } => "option_bars",
        }
    }

    /// The name a person knows the series by: the symbol or the contract.
    pub fn label(&self) -> &str {
        match self {
            BarTarget::Minute { symbol } => symbol,
            BarTarget::Future { contract, .. } | BarTarget::Option { contract, .. } => contract,
        }
    }
}

/// The normalised name of an index (`NIFTY 50` → `NIFTY`); other names pass through.
pub fn normalise_underlying(name: &str) -> String {
    match name.trim().to_ascii_uppercase().as_str() {
        "NIFTY 50" | "NIFTY50" | "NIFTY" => "NIFTY".into(),
        "NIFTY BANK" | "BANKNIFTY" => "BANKNIFTY".into(),
        "NIFTY FIN SERVICE" | "FINNIFTY" => "FINNIFTY".into(),
        "NIFTY MID SELECT" | "MIDCPNIFTY" => "MIDCPNIFTY".into(),
        "SENSEX" => "SENSEX".into(),
        "BANKEX" => "BANKEX".into(),
        other => other.to_string(),
    }
}

/// Decides the bar table of an instrument from its segment, or says what is missing.
pub fn classify(inst: &Instrument) -> Result<BarTarget, String> {
    let segment = inst
        .segment
        .as_deref()
        .map(|s| s.trim().to_ascii_uppercase())
        .ok_or_else(|| format!("instrument {} has no segment", inst.instrument_token))?;
    let contract = inst.tradingsymbol.clone();
    if segment == "INDICES" {
        return Ok(BarTarget::Minute { symbol: normalise_underlying(&inst.tradingsymbol) });
    }
    if matches!(segment.as_str(), "NSE" | "BSE") {
        return Ok(BarTarget::Minute { symbol: contract });
    }
    let derivative = |what: &str| -> Result<(String, NaiveDate), String> {
        let name = inst.name.as_deref().filter(|n| !n.trim().is_empty()).ok_or_else(|| {
            format!("{what} {contract} ({}) has no underlying name in instruments", inst.instrument_token)
        })?;
        let expiry = inst
            .expiry
            .ok_or_else(|| format!("{what} {contract} ({}) has no expiry in instruments", inst.instrument_token))?;
        Ok((normalise_underlying(name), expiry))
    };
    if segment.ends_with("-FUT") {
        let (symbol, expiry) = derivative("future")?;
        return Ok(BarTarget::Future { contract, symbol, expiry });
    }
    if segment.ends_with("-OPT") {
        let (symbol, expiry) = derivative("option")?;
        let strike = inst
            .strike
            .filter(|s| s.is_finite() && *s > 0.0)
            .ok_or_else(|| format!("option {contract} has no strike in instruments"))?;
        let option_type = match inst.instrument_type.as_deref().map(str::trim) {
            Some("CE") => OptionType::Call,
            Some("PE") => OptionType::Put,
            _ if contract.ends_with("CE") => OptionType::Call,
            _ if contract.ends_with("PE") => OptionType::Put,
            other => return Err(format!("option {contract} has instrument_type {other:?}, not CE or PE")),
        };
        return Ok(BarTarget::Option { contract, symbol, expiry, strike, option_type });
    }
    Err(format!("segment {segment} of instrument {} is not one tickfill stores", inst.instrument_token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(sym: &str, name: &str, seg: &str, ty: &str, strike: f64, expiry: Option<&str>) -> Instrument {
        Instrument {
            instrument_token: 1,
            tradingsymbol: sym.into(),
            name: Some(name.into()),
            segment: Some(seg.into()),
            instrument_type: Some(ty.into()),
            strike: Some(strike),
            expiry: expiry.map(|e| e.parse().unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn indices_use_the_normalised_name_and_equities_their_symbol() {
        assert_eq!(
            classify(&inst("NIFTY 50", "NIFTY 50", "INDICES", "EQ", 0.0, None)).unwrap(),
            BarTarget::Minute { symbol: "NIFTY".into() }
        );
        assert_eq!(
            classify(&inst("NIFTY BANK", "NIFTY BANK", "INDICES", "EQ", 0.0, None)).unwrap(),
            BarTarget::Minute { symbol: "BANKNIFTY".into() }
        );
        assert_eq!(
            classify(&inst("INFY", "INFOSYS", "NSE", "EQ", 0.0, None)).unwrap(),
            BarTarget::Minute { symbol: "INFY".into() }
        );
    }

    #[test]
    fn futures_and_options_carry_underlying_expiry_and_strike() {
        let f = classify(&inst("NIFTY25NOVFUT", "NIFTY", "NFO-FUT", "FUT", 0.0, Some("2025-11-25"))).unwrap();
        assert_eq!(
            f,
            BarTarget::Future {
                contract: "NIFTY25NOVFUT".into(),
                symbol: "NIFTY".into(),
                expiry: "2025-11-25".parse().unwrap()
            }
        );
        let o = classify(&inst("NIFTY25N1124500PE", "NIFTY", "NFO-OPT", "PE", 24500.0, Some("2025-11-11"))).unwrap();
        assert_eq!(
            o,
            BarTarget::Option {
                contract: "NIFTY25N1124500PE".into(),
                symbol: "NIFTY".into(),
                expiry: "2025-11-11".parse().unwrap(),
                strike: 24500.0,
                option_type: OptionType::Put,
            }
        );
        assert!(classify(&inst("GOLD25DECFUT", "GOLD", "MCX-FUT", "FUT", 0.0, Some("2025-12-05"))).is_ok());
    }

    #[test]
    fn incomplete_derivatives_and_unknown_segments_are_refused() {
        assert!(classify(&inst("NIFTY25NOVFUT", "NIFTY", "NFO-FUT", "FUT", 0.0, None)).unwrap_err().contains("expiry"));
        assert!(classify(&inst("X", "X", "CDS-XYZ", "EQ", 0.0, None)).is_err());
    }
}

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

#[cfg(test)]
mod symbol_tests {
    use super::*;

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
    fn every_real_symbol_in_the_kite_samples_agrees_with_its_dump_row() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let mut derivatives = 0;
        for file in ["instruments_all.csv", "instruments_nse.csv"] {
            let bytes = std::fs::read(format!("{dir}/kite/{file}")).expect("Kite sample dumps in tests/fixtures/kite");
            let (rows, bad) = crate::load::parse_dump(&bytes).unwrap();
            assert!(bad.is_empty());
            for r in rows {
                let parsed = parse_tradingsymbol(&r.tradingsymbol);
                let seg = r.segment.as_deref().unwrap_or("");
                if seg.ends_with("-OPT") || seg.ends_with("-FUT") {
                    let p = parsed.unwrap_or_else(|| panic!("{} did not parse", r.tradingsymbol));
                    // These old dumps leave `name` empty for derivatives: the symbol's letters are the name.
                    let name = r
                        .name
                        .clone()
                        .unwrap_or_else(|| r.tradingsymbol.chars().take_while(|c| !c.is_ascii_digit()).collect());
                    assert_eq!(p.underlying, normalise_underlying(&name), "{}", r.tradingsymbol);
                    assert_eq!(Some(p.expiry), r.expiry, "{}", r.tradingsymbol);
                    assert_eq!(p.strike, r.strike, "{}", r.tradingsymbol);
                    assert_eq!(Some(p.instrument_type), r.instrument_type.as_deref(), "{}", r.tradingsymbol);
                    assert_eq!(p.segment, seg, "{}", r.tradingsymbol);
                    derivatives += 1;
                } else {
                    assert_eq!(parsed, None, "{} is not a derivative", r.tradingsymbol);
                }
            }
        }
        assert_eq!(derivatives, 25);
    }

    #[test]
    fn an_unknown_option_is_completed_from_its_symbol() {
        let mut inst = Instrument {
            instrument_token: 1,
            tradingsymbol: "NIFTY24N1424500CE".into(),
            segment: Some("NFO-OPT".into()),
            ..Default::default()
        };
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
