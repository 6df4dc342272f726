//! Value parsers shared by the commands' arguments. Each refuses what is out of range with a
//! message naming the value, so clap exits 2 before anything is done.

use chrono::{DateTime, Utc};

/// An RFC 3339 instant from 1970 on: the store holds nothing older, and no source serves it.
pub fn instant(s: &str) -> Result<DateTime<Utc>, String> {
    let t = DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 instant such as 2025-11-04T09:15:00+05:30 ({e})"))?;
    if t < DateTime::UNIX_EPOCH {
        return Err(format!("{s} is before 1970-01-01T00:00:00Z, older than anything the store holds"));
    }
    Ok(t)
}

/// An RFC 3339 instant from 1970 on and not in the future: history that does not exist yet
/// cannot be fetched, and a window claimed for it would call an instrument fresh when it is not.
pub fn past_instant(s: &str) -> Result<DateTime<Utc>, String> {
    let t = instant(s)?;
    if t > Utc::now() {
        return Err(format!("{s} is in the future"));
    }
    Ok(t)
}

pub fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err("expected a fraction between 0 and 1".into()),
    }
}
