//! Candles, how an instrument maps to a bar table, and the normalised underlying names.

use chrono::{DateTime, NaiveDate, Utc};

use super::instrument::Instrument;

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
    /// Every bar table, in the order of the variants.
    pub const TABLES: [&'static str; 3] = ["minute_bars", "futures_bars", "option_bars"];

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

/// Whether instruments of `segment` are equities, whose history a source back-adjusts on corporate
/// actions (Kite adjusts on the ex-date): NSE and BSE cash segments.
pub fn may_be_adjusted(segment: Option<&str>) -> bool {
    segment.is_some_and(|s| matches!(s.trim().to_ascii_uppercase().as_str(), "NSE" | "BSE"))
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
    if may_be_adjusted(Some(&segment)) {
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
            name: Some(name.into()),
            instrument_type: Some(ty.into()),
            strike: Some(strike),
            expiry: expiry.map(|e| e.parse().unwrap()),
            ..Instrument::named(crate::domain::instrument::tok(1), sym.into(), Some(seg.into()))
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
