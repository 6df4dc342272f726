//! The PostgreSQL store: connection, migrations and one function per statement.
//!
//! Layout:
//! - `instruments`: the Kite instrument dump (upsert, lookup).
//! - `subscriptions`: what the ticker service has subscribed.
//! - `bars`: minute, futures and option bars, upserted on their natural keys.
//! - `runs`: `backfill_runs`, one row per job.
//! - `coverage`: what the answers have shown the store holds.
//! - `chain`: the option-chain tables (strike distribution, expiry metrics).
//! - `suspects`: suspect and confirmed-empty minutes.
//! - `days`: per instrument and day, what is known and its checks.
//! - `status`: what operators read: newest bars and runs per subscription, freshness.
//!
//! Every write of a backfill happens in one transaction: bars, run row and coverage together.

pub mod bars;
pub mod chain;
pub mod coverage;
pub mod days;
pub mod instruments;
pub mod runs;
pub mod status;
pub mod subscriptions;
pub mod suspects;

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

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("failed to run migrations")?;
    Ok(())
}

/// How the bar tables are stored: as TimescaleDB hypertables or as plain tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarStorage {
    Hypertables,
    Plain,
}

/// Tells which path the migration took on this database.
pub async fn bar_storage(pool: &PgPool) -> anyhow::Result<BarStorage> {
    let has_ts: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')")
        .fetch_one(pool)
        .await?;
    Ok(if has_ts { BarStorage::Hypertables } else { BarStorage::Plain })
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
