//! The store section: where PostgreSQL is (`DATABASE_URL`, or its `DB_*` parts) and what
//! TimescaleDB does with old chunks.

use std::time::Duration;

use super::values::{
    database_url_from_parts, parse_database_url, parse_optional_duration, ConfigError, Reader, Secret,
};

/// The `DB_*` parts when unset: `postgres://postgres@127.0.0.1:5432/tickfill`.
pub const DEFAULT_DB_HOST: &str = "127.0.0.1";
pub const DEFAULT_DB_PORT: u16 = 5432;
pub const DEFAULT_DB_NAME: &str = "tickfill";
pub const DEFAULT_DB_USER: &str = "postgres";
/// `TIMESCALE_COMPRESS_AFTER` when unset.
pub const DEFAULT_COMPRESS_AFTER: Duration = Duration::from_secs(7 * 86_400);

/// Where the store is and how TimescaleDB keeps it.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `DATABASE_URL`, or the URL built from `DB_HOST`, `DB_PORT`, `DB_NAME`, `DB_USER`,
    /// `DB_PASSWORD`.
    pub database_url: Secret,
    /// What TimescaleDB does with old chunks (no effect on plain PostgreSQL).
    pub timescale: TimescalePolicy,
}

/// The chunk policies of the bar tables on TimescaleDB; plain PostgreSQL ignores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimescalePolicy {
    /// `TIMESCALE_COMPRESS_AFTER`: compress chunks whose newest minute is older than this;
    /// `None`: never.
    pub compress_after: Option<Duration>,
    /// `TIMESCALE_RETENTION`: drop chunks (bars and option-chain tables, not their rollups) older
    /// than this; `None`: keep all.
    pub retention: Option<Duration>,
}

impl Default for TimescalePolicy {
    fn default() -> Self {
        TimescalePolicy { compress_after: Some(DEFAULT_COMPRESS_AFTER), retention: None }
    }
}

pub(super) fn read(r: &Reader<'_>) -> Result<StoreSettings, ConfigError> {
    let database_url = match r.raw("DATABASE_URL") {
        Some(_) => r.get("DATABASE_URL", Secret::new(""), parse_database_url)?,
        None => {
            let host = r.string("DB_HOST", DEFAULT_DB_HOST);
            let port: u16 = r.number("DB_PORT", DEFAULT_DB_PORT)?;
            let name = r.string("DB_NAME", DEFAULT_DB_NAME);
            let user = r.string("DB_USER", DEFAULT_DB_USER);
            let password = r.raw("DB_PASSWORD");
            database_url_from_parts(&host, port, &name, &user, password)
                .and_then(|url| parse_database_url(&url))
                .map_err(|reason| ConfigError { var: "DB_HOST".into(), value: host.clone(), reason })?
        }
    };
    Ok(StoreSettings {
        database_url,
        timescale: TimescalePolicy {
            compress_after: r.get("TIMESCALE_COMPRESS_AFTER", Some(DEFAULT_COMPRESS_AFTER), parse_optional_duration)?,
            retention: r.get("TIMESCALE_RETENTION", None, parse_optional_duration)?,
        },
    })
}
