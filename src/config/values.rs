//! How settings are written: durations, sizes, URLs, flags and secrets, and the reader that
//! names the variable a bad value came from.

use std::{collections::HashMap, fmt, str::FromStr, time::Duration};

use chrono::{DateTime, Utc};

/// A value that must never be printed: its `Debug` and `Display` show `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A duration, or `none` for "never".
pub(super) fn parse_optional_duration(s: &str) -> Result<Option<Duration>, String> {
    match s.trim() {
        "none" | "off" | "never" => Ok(None),
        d => match parse_duration(d)? {
            z if z.is_zero() => Err("must be more than zero (write none to turn it off)".into()),
            d => Ok(Some(d)),
        },
    }
}

/// A setting that could not be read; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: String,
    pub value: String,
    pub reason: String,
}

/// The longest duration any setting or argument accepts: 100 years. Anything longer is a typo,
/// and refusing it keeps every later conversion (to chrono, to an instant) in range.
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// Parses a size in bytes: a whole number with an optional unit, `KiB`, `MiB`, `GiB` (or `KB`,
/// `MB`, `GB`, taken as the same powers of 1024), between 1 KiB and 1 GiB.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not a size such as 32MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("{other:?} is not a size unit (KiB, MiB or GiB)")),
    };
    match n.checked_mul(1 << shift) {
        Some(b) if (1 << 10..=1 << 30).contains(&b) => Ok(b),
        _ => Err(format!("{s} is outside 1KiB … 1GiB")),
    }
}

/// Parses one number and one unit: `90s`, `5m`, `2h`, `7d`, `250ms`, at most [`MAX_DURATION`].
/// A bare number is refused, so nobody wonders whether it meant seconds or minutes; humantime
/// does the checked arithmetic, so nothing wraps.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| "a duration needs a unit: ms, s, m, h or d (e.g. 90s, 5m)".to_string())?;
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err("expected a number before the unit".into());
    }
    if !matches!(unit, "ms" | "s" | "m" | "h" | "d") {
        return Err(format!("unknown unit {unit:?}: use ms, s, m, h or d"));
    }
    let d = humantime::parse_duration(s).map_err(|e| format!("{s}: {e}"))?;
    if d > MAX_DURATION {
        return Err(format!("{s} is out of range: at most 36500d"));
    }
    Ok(d)
}

/// The instant `d` before `now`, or an error naming `d` when that is not a representable instant.
pub fn ago(now: DateTime<Utc>, d: Duration) -> Result<DateTime<Utc>, String> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| format!("{} before {now} is out of range", humantime::format_duration(d)))
}

/// Parses true/false (also 1/0, yes/no, on/off).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// Reads variables from a map (the environment, or a test's own map) and reports the first bad one.
pub(super) struct Reader<'a> {
    pub(super) vars: &'a HashMap<String, String>,
}

impl Reader<'_> {
    pub(super) fn raw(&self, var: &str) -> Option<&str> {
        self.vars.get(var).map(|s| s.as_str()).filter(|s| !s.trim().is_empty())
    }

    pub(super) fn get<T>(
        &self,
        var: &str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.raw(var) {
            None => Ok(default),
            Some(v) => parse(v).map_err(|reason| ConfigError {
                var: var.to_string(),
                // URLs may carry a password anywhere (user info, query): never shown.
                value: if var.contains("TOKEN")
                    || var.contains("PASSWORD")
                    || var.contains("KEY")
                    || var.contains("SECRET")
                    || var.ends_with("_URL")
                {
                    "***".into()
                } else {
                    v.to_string()
                },
                reason,
            }),
        }
    }

    pub(super) fn string(&self, var: &str, default: &str) -> String {
        self.raw(var).unwrap_or(default).trim().to_string()
    }

    pub(super) fn boolean(&self, var: &str, default: bool) -> Result<bool, ConfigError> {
        self.get(var, default, parse_bool)
    }

    pub(super) fn duration(&self, var: &str, default: Duration) -> Result<Duration, ConfigError> {
        self.get(var, default, parse_duration)
    }

    pub(super) fn number<T: FromStr>(&self, var: &str, default: T) -> Result<T, ConfigError> {
        self.get(var, default, |s| s.trim().parse::<T>().map_err(|_| "expected a number".into()))
    }
}

/// A duration between `min` and `max`, both included.
pub(super) fn within(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < min || d > max {
        return Err(format!(
            "must be between {} and {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

pub(super) fn parse_url(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    match reqwest::Url::parse(s) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(s.to_string()),
        Ok(u) => Err(format!("scheme {} is not http or https", u.scheme())),
        Err(e) => Err(e.to_string()),
    }
}

pub(super) fn parse_redis_url(s: &str) -> Result<Secret, String> {
    let s = s.trim();
    if !(s.starts_with("redis://") || s.starts_with("rediss://") || s.starts_with("unix://")) {
        return Err("expected redis://host:port[/db]".into());
    }
    // The client's own parser: a bad port or host stops startup instead of a retry loop for ever.
    redis::Client::open(s).map_err(|e| format!("not a Redis URL ({})", e.category()))?;
    Ok(Secret::new(s))
}

/// A PostgreSQL URL (`postgres://` or `postgresql://`) that the driver can read.
pub(super) fn parse_database_url(s: &str) -> Result<Secret, String> {
    let s = s.trim();
    let scheme = s.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("postgres" | "postgresql")) {
        return Err("expected postgres://user[:password]@host[:port]/database".into());
    }
    sqlx::postgres::PgConnectOptions::from_str(s)
        .map_err(|_| "not a PostgreSQL URL the driver can read".to_string())?;
    Ok(Secret::new(s))
}

/// `DATABASE_URL` from its parts, the user and password percent-encoded.
pub(super) fn database_url_from_parts(
    host: &str,
    port: u16,
    name: &str,
    user: &str,
    password: Option<&str>,
) -> Result<String, String> {
    let mut url = reqwest::Url::parse(&format!("postgres://{host}:{port}/"))
        .map_err(|e| format!("DB_HOST {host:?} is not a host name: {e}"))?;
    url.set_username(user).map_err(|_| "DB_USER cannot be set on this host".to_string())?;
    url.set_password(password).map_err(|_| "DB_PASSWORD cannot be set on this host".to_string())?;
    url.path_segments_mut().map_err(|_| "DB_NAME cannot be set on this host".to_string())?.clear().push(name);
    Ok(url.to_string())
}

pub(super) fn parse_namespace(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.len() <= 100 && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-:.".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err("use 1-100 characters of A-Z a-z 0-9 _ - : .".into())
    }
}
