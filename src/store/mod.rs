//! The PostgreSQL store: connection, migrations and one function per statement.
//!
//! Layout:
//! - `instruments`: the Kite instrument dump (upsert, lookup).
//! - `subscriptions`: what the ticker service has subscribed.
//! - `bars`: minute, futures and option bars, upserted on (instrument_token, time).
//! - `runs`: `backfill_runs`, one row per job.
//! - `coverage`: what the answers have shown the store holds.
//! - `chain`: the option-chain tables (strike distribution, expiry metrics).
//! - `suspects`: suspect and confirmed-empty minutes, and the source's observed lag.
//! - `days`: per instrument and day, what is known and its checks.
//! - `status`: what operators read: newest bars and runs per subscription, freshness.
//! - `rollups`: 5m, 15m, 1h and 1d bars and chain buckets, the same relations on both paths.
//! - `timescale`: whether TimescaleDB can be used, and what it is used for.
//!
//! Every write of a backfill happens in one transaction: bars, run row and coverage together.

pub mod audit;
pub mod bars;
pub mod chain;
pub mod coverage;
pub mod days;
pub mod instruments;
pub mod rollups;
pub mod runs;
pub mod status;
pub mod subscriptions;
pub mod suspects;
pub mod timescale;

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    ConnectOptions, PgPool,
};

/// Migrations compiled into the binary, so `tickfill migrate` needs nothing beside it.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens a pool on `url`. Statement logging is off: bars would flood the log.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let opts = PgConnectOptions::from_str(url)
        .context("DATABASE_URL is not a valid PostgreSQL URL")?
        .disable_statement_logging();
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts)
        .await
        .with_context(|| format!("failed to connect to PostgreSQL at {}", redact_url(url)))
}

/// How the bar tables are stored: as TimescaleDB hypertables or as plain tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarStorage {
    Hypertables,
    Plain,
}

/// Tells which path the migration took on this database: whether `minute_bars` is a hypertable.
pub async fn bar_storage(pool: &PgPool) -> anyhow::Result<BarStorage> {
    Ok(if has_timescale(pool).await? && bars_are_hypertables(pool).await? {
        BarStorage::Hypertables
    } else {
        BarStorage::Plain
    })
}

/// Whether the database has the TimescaleDB extension.
async fn has_timescale(pool: &PgPool) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')").fetch_one(pool).await
}

/// Whether `minute_bars` of this schema is a hypertable (asked only with TimescaleDB present).
async fn bars_are_hypertables(pool: &PgPool) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'minute_bars'
                        AND hypertable_schema = current_schema())",
    )
    .fetch_one(pool)
    .await
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub storage: BarStorage,
    /// Why the store is on plain tables, when it is.
    pub plain: Option<timescale::Plain>,
}

impl Migrated {
    /// The line `tickfill migrate` prints.
    pub fn summary(&self) -> String {
        match (&self.storage, &self.plain) {
            (BarStorage::Hypertables, _) => {
                "bar tables: TimescaleDB hypertables; rollups: continuous aggregates".to_string()
            }
            (BarStorage::Plain, why) => format!(
                "bar tables: plain tables ({}); rollups: tables the worker keeps",
                why.as_ref().map_or("TimescaleDB is not in use", |w| w.summary())
            ),
        }
    }
}

/// Applies pending migrations, then puts the rollups in place: on TimescaleDB (when the server
/// can really use it) hypertables, continuous aggregates and `policy`; otherwise plain tables.
pub async fn migrate(pool: &PgPool, policy: &crate::config::TimescalePolicy) -> anyhow::Result<Migrated> {
    repair_rewritten_migrations(pool).await?;
    let ts = timescale::prepare(pool).await?;
    MIGRATOR.run(pool).await.context("failed to run migrations")?;
    match ts {
        Ok(()) => {
            timescale::setup(pool, policy).await?;
            Ok(Migrated { storage: BarStorage::Hypertables, plain: None })
        }
        Err(why) => {
            timescale::create_plain_rollups(pool).await?;
            Ok(Migrated { storage: BarStorage::Plain, plain: Some(why) })
        }
    }
}

/// Migrations whose text changed after release, with the checksum of the text they replaced.
/// The first migration used to create the TimescaleDB extension itself, which ends the
/// connection on a server where it is installed but not preloaded; that part moved to
/// [`timescale`]. A database that applied the old text gets the new checksum recorded, since
/// what the old text did is what the new one and `timescale::setup` do together.
const REWRITTEN: [(i64, &str); 1] = [(
    20261126000001,
    "c6bc67903530c78c551d46664b9d9c92d284d41123046b03ea9e2da50b324ca24d3570cda5b9314a36cf7fdb33cee640",
)];

async fn repair_rewritten_migrations(pool: &PgPool) -> anyhow::Result<()> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(pool).await?;
    if !exists {
        return Ok(());
    }
    for (version, old) in REWRITTEN {
        let Some(m) = MIGRATOR.iter().find(|m| m.version == version) else { continue };
        let done = sqlx::query(
            "UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2 AND checksum = decode($3, 'hex')",
        )
        .bind(m.checksum.as_ref())
        .bind(version)
        .bind(old)
        .execute(pool)
        .await
        .context("failed to record the checksum of a rewritten migration")?;
        if done.rows_affected() > 0 {
            tracing::info!(version, "recorded the new text of a rewritten migration");
        }
    }
    Ok(())
}

/// A URL fit for a log line: a password in its user part and the value of any query parameter
/// that names a secret (`password`, `sslpassword`, `token`, …) become `***`; a URL that does not
/// parse is never shown.
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = reqwest::Url::parse(url) else { return "<an unparseable URL>".into() };
    if u.cannot_be_a_base() {
        // `scheme:anything`: the rest may be anything, a password included.
        return format!("{}:…", u.scheme());
    }
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    let secret = |k: &str| {
        let k = k.to_ascii_lowercase();
        ["pass", "pwd", "secret", "token", "key", "auth"].iter().any(|s| k.contains(s))
    };
    if u.query_pairs().any(|(k, _)| secret(&k)) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret(&k) { "***".to_string() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// The URL of another database on the same server as `url`.
pub fn database_url_for(url: &str, database: &str) -> anyhow::Result<String> {
    let mut u = reqwest::Url::parse(url).context("DATABASE_URL is not a valid URL")?;
    u.set_path(&format!("/{database}"));
    Ok(u.to_string())
}

/// Creates a scratch database on the server of `url`; returns its URL.
pub async fn create_database(url: &str, name: &str) -> anyhow::Result<String> {
    anyhow::ensure!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad database name {name}");
    let admin = connect(&database_url_for(url, "postgres")?, 1).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .with_context(|| format!("failed to create database {name}"))?;
    admin.close().await;
    database_url_for(url, name)
}

/// Drops a scratch database made by [`create_database`], closing its connections.
pub async fn drop_database(url: &str, name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad database name {name}");
    let admin = connect(&database_url_for(url, "postgres")?, 1).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&admin).await?;
    admin.close().await;
    Ok(())
}

/// How many of the binary's migrations the database has not applied (0 = up to date).
pub async fn pending_migrations(pool: &PgPool) -> sqlx::Result<usize> {
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(pool)
        .await
        .or_else(|e| match &e {
            // No migrations table yet: nothing applied.
            sqlx::Error::Database(d) if d.code().as_deref() == Some("42P01") => Ok(vec![]),
            _ => Err(e),
        })?;
    Ok(MIGRATOR.iter().filter(|m| !applied.contains(&m.version)).count())
}

/// A token as the store binds it: the one conversion from the type to the column.
pub(crate) fn bind_token(t: tickfill_jobs::InstrumentToken) -> i64 {
    t.into()
}

/// A token read back from a column (stored validated, so a bad one is a decode error).
pub(crate) fn token_from_db(v: i64) -> Result<tickfill_jobs::InstrumentToken, sqlx::Error> {
    tickfill_jobs::InstrumentToken::try_from(v)
        .map_err(|_| sqlx::Error::Decode(format!("instrument token {v} is out of range").into()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_in_every_part_of_a_url_are_redacted() {
        for (url, want) in [
            ("postgres://u:hunter2@db:5432/x", "postgres://u:***@db:5432/x"),
            (
                "postgres://u@db:1/x?password=TOPSECRET&sslmode=require",
                "postgres://u@db:1/x?password=***&sslmode=require",
            ),
            ("postgres://db/x?sslpassword=s3&PassWord=s4", "postgres://db/x?sslpassword=***&PassWord=***"),
            ("redis://:hunter2@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
            ("rediss://user:p%40ss@cache:6380", "rediss://user:***@cache:6380"),
            ("postgres://db/x?application_name=tickfill", "postgres://db/x?application_name=tickfill"),
        ] {
            assert_eq!(super::redact_url(url), want);
        }
        assert_eq!(super::redact_url("garbage:hunter2@@"), "garbage:…");
        assert_eq!(super::redact_url("hunter2 at db"), "<an unparseable URL>");
    }
}
