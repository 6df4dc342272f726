//! The operations section: the admin server's address and tokens, and how logs are written.

use std::net::SocketAddr;

use super::values::{ConfigError, Reader, Secret};

/// `ADMIN_LISTEN` when unset: loopback, on a port the system picks.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:0";
/// `LOG_LEVEL` when unset.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The admin server (API, page, metrics).
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// `ADMIN_LISTEN`.
    pub listen: SocketAddr,
    /// `ADMIN_TOKEN`: the bearer token of every change.
    pub token: Option<Secret>,
    /// `ADMIN_READ_TOKEN`: sees everything, changes nothing; once set, every read needs one of
    /// the two tokens.
    pub read_token: Option<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Log lines, to stderr.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// `LOG_LEVEL`: trace, debug, info, warn or error.
    pub level: String,
    /// `LOG_FORMAT`.
    pub format: LogFormat,
}

pub(super) fn read(r: &Reader<'_>) -> Result<AdminSettings, ConfigError> {
    let admin = AdminSettings {
        listen: r.get("ADMIN_LISTEN", DEFAULT_ADMIN_LISTEN.parse().expect("a socket address"), |s| {
            s.trim().parse::<SocketAddr>().map_err(|_| "expected HOST:PORT, e.g. 127.0.0.1:9100".into())
        })?,
        token: r.raw("ADMIN_TOKEN").map(|t| Secret::new(t.trim())),
        read_token: r.raw("ADMIN_READ_TOKEN").map(|t| Secret::new(t.trim())),
    };
    if let (Some(a), Some(r)) = (&admin.token, &admin.read_token) {
        if a == r {
            return Err(ConfigError {
                var: "ADMIN_READ_TOKEN".into(),
                value: "***".into(),
                reason: "must differ from ADMIN_TOKEN (a read-only token that can act is none)".into(),
            });
        }
    }
    Ok(admin)
}

pub(super) fn read_log(r: &Reader<'_>) -> Result<LogSettings, ConfigError> {
    Ok(LogSettings {
        level: r.get("LOG_LEVEL", DEFAULT_LOG_LEVEL.into(), |s| {
            let l = s.trim().to_ascii_lowercase();
            match l.as_str() {
                "trace" | "debug" | "info" | "warn" | "warning" | "error" => {
                    Ok(if l == "warning" { "warn".into() } else { l })
                }
                _ => Err("expected trace, debug, info, warn or error".into()),
            }
        })?,
        format: r.get("LOG_FORMAT", LogFormat::Text, |s| match s.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".into()),
        })?,
    })
}
