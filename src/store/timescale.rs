//! TimescaleDB, when the server can really use it: the extension, hypertables of the bar and
//! option-chain tables, continuous aggregates for the rollups with refresh policies, compression
//! of bar chunks and, when asked for, retention.
//!
//! Whether the extension can be used is decided before anything touches it ([`probe`],
//! [`decide`]): installed but not preloaded is the state right after installing the package, and
//! there `CREATE EXTENSION` ends the connection with a FATAL no handler can catch. When it cannot
//! be used the store stays on plain tables and the reason names the fix.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;

use super::rollups::{self, FAMILIES};
use crate::config::TimescalePolicy;

/// The hypertables and the column their compressed chunks are segmented by: the instrument each
/// row belongs to, which is also the first column of the table's key, so an upsert into a
/// compressed chunk decompresses only its own instrument's batch.
pub const HYPERTABLES: [(&str, Option<&str>); 5] = [
    ("minute_bars", Some("instrument_token")),
    ("futures_bars", Some("instrument_token")),
    ("option_bars", Some("instrument_token")),
    ("fo_strike_distribution", None),
    ("fo_expiry_metrics", None),
];

/// What the server says of TimescaleDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The extension's files are installed (`pg_available_extensions`).
    pub available: bool,
    /// The library is in `shared_preload_libraries`.
    pub preloaded: bool,
    /// The extension exists in this database already.
    pub created: bool,
}

/// Why the store stays on plain tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plain {
    /// The server has no TimescaleDB: nothing to say beyond the fact.
    NotInstalled,
    /// Installed but not preloaded: it cannot be created or used until the server is restarted.
    NotPreloaded,
    /// `CREATE EXTENSION` failed (permissions, a version the server cannot load).
    CannotCreate(String),
}

impl Plain {
    /// A warning for an operator, naming the fix; `None` when there is nothing to fix.
    pub fn warning(&self) -> Option<String> {
        match self {
            Plain::NotInstalled => None,
            Plain::NotPreloaded => Some(
                "TimescaleDB is installed on this PostgreSQL server but not preloaded, so tickfill keeps plain \
                 tables: set shared_preload_libraries = 'timescaledb' in postgresql.conf, restart PostgreSQL and run \
                 `tickfill migrate` again"
                    .into(),
            ),
            Plain::CannotCreate(e) => Some(format!(
                "TimescaleDB is preloaded but `CREATE EXTENSION timescaledb` failed ({e}), so tickfill keeps plain \
                 tables: create the extension in this database as a superuser, then run `tickfill migrate` again"
            )),
        }
    }

    /// A few words for the line `tickfill migrate` prints.
    pub fn summary(&self) -> &'static str {
        match self {
            Plain::NotInstalled => "TimescaleDB is not installed",
            Plain::NotPreloaded => "TimescaleDB is installed but not preloaded",
            Plain::CannotCreate(_) => "TimescaleDB could not be created",
        }
    }
}

/// Reads what the server offers. Never loads the extension.
pub async fn probe(pool: &PgPool) -> anyhow::Result<Probe> {
    let (available, created, guc): (bool, bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
                EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),
                current_setting('timescaledb.disable_load', true) IS NOT NULL",
    )
    .fetch_one(pool)
    .await
    .context("failed to ask the server about TimescaleDB")?;
    // The preloaded loader defines its settings in every session; `shared_preload_libraries`
    // itself is readable by superusers and pg_read_all_settings only, so it is a second opinion.
    let listed = match sqlx::query_scalar::<_, String>("SELECT current_setting('shared_preload_libraries')")
        .fetch_one(pool)
        .await
    {
        Ok(libs) => preload_lists_timescaledb(&libs),
        Err(_) => false,
    };
    Ok(Probe { available, preloaded: guc || listed, created })
}

/// Whether a `shared_preload_libraries` value names TimescaleDB (`timescaledb`, a path to it, or a
/// versioned file such as `timescaledb-2.28.3`).
pub fn preload_lists_timescaledb(libs: &str) -> bool {
    libs.split(',').map(|l| l.trim().trim_matches('"')).any(|l| {
        let base = l.rsplit('/').next().unwrap_or(l);
        base == "timescaledb" || base.starts_with("timescaledb-") || base.starts_with("timescaledb.")
    })
}

/// What to do with a probe: `Ok` to use TimescaleDB (creating the extension if need be).
pub fn decide(p: &Probe) -> Result<(), Plain> {
    match p {
        Probe { preloaded: true, available: true, .. } | Probe { preloaded: true, created: true, .. } => Ok(()),
        Probe { available: true, .. } | Probe { created: true, .. } => Err(Plain::NotPreloaded),
        _ => Err(Plain::NotInstalled),
    }
}

/// Decides, and creates the extension when it can be used and is not there yet.
pub async fn prepare(pool: &PgPool) -> anyhow::Result<Result<(), Plain>> {
    let p = probe(pool).await?;
    if p.created && !p.preloaded {
        anyhow::bail!(
            "this database uses TimescaleDB but the server does not preload it, so its hypertables cannot be \
             used: set shared_preload_libraries = 'timescaledb' in postgresql.conf and restart PostgreSQL"
        );
    }
    if let Err(why) = decide(&p) {
        return Ok(Err(why));
    }
    if !p.created {
        if let Err(e) = sqlx::query("CREATE EXTENSION IF NOT EXISTS timescaledb").execute(pool).await {
            return Ok(Err(Plain::CannotCreate(e.to_string())));
        }
    }
    Ok(Ok(()))
}

/// Puts the TimescaleDB side in place, idempotently: hypertables, compression, retention, the
/// continuous aggregates (replacing the plain path's rollup tables when a store moves onto
/// TimescaleDB) and their refresh policies. Runs under an advisory lock, so two processes
/// migrating at once take turns.
pub async fn setup(pool: &PgPool, policy: &TimescalePolicy) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock(hashtext('tickfill timescale setup'))").execute(&mut *conn).await?;
    let done = setup_locked(&mut conn, policy).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext('tickfill timescale setup'))").execute(&mut *conn).await;
    done
}

async fn setup_locked(conn: &mut sqlx::PgConnection, policy: &TimescalePolicy) -> anyhow::Result<()> {
    let exec = |sql: String| sqlx::query(sqlx::AssertSqlSafe(sql));
    for (table, segment) in HYPERTABLES {
        exec(format!("SELECT create_hypertable('{table}', 'time', if_not_exists => TRUE, migrate_data => TRUE)"))
            .execute(&mut *conn)
            .await
            .with_context(|| format!("failed to make {table} a hypertable"))?;
        if let Some(segment) = segment {
            let enabled: bool = sqlx::query_scalar(
                "SELECT compression_enabled FROM timescaledb_information.hypertables WHERE hypertable_name = $1",
            )
            .bind(table)
            .fetch_one(&mut *conn)
            .await?;
            if !enabled {
                exec(format!(
                    "ALTER TABLE {table} SET (timescaledb.compress, timescaledb.compress_segmentby = '{segment}', \
                     timescaledb.compress_orderby = 'time')"
                ))
                .execute(&mut *conn)
                .await
                .with_context(|| format!("failed to set compression on {table}"))?;
            }
            let add = policy.compress_after.map(|a| format!("compress_after => {}", interval(a)));
            replace_policy(conn, "compression", table, add).await?;
        }
        let add = policy.retention.map(|keep| format!("drop_after => {}", interval(keep)));
        replace_policy(conn, "retention", table, add).await?;
    }
    for family in FAMILIES {
        let plain: bool =
            sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(family.table()).fetch_one(&mut *conn).await?;
        if plain {
            // The plain path's table and views: continuous aggregates recompute them from the minutes.
            tracing::info!(table = family.table(), "replacing plain rollups with continuous aggregates");
            exec(format!("DROP TABLE {} CASCADE", family.table())).execute(&mut *conn).await?;
        }
        for (tf, rel) in family.relations() {
            let exists: bool =
                sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(&rel).fetch_one(&mut *conn).await?;
            if !exists {
                exec(family.create_continuous_sql(tf))
                    .execute(&mut *conn)
                    .await
                    .with_context(|| format!("failed to create the continuous aggregate {rel}"))?;
            }
            // The newest bucket is left to real-time aggregation; every older change is picked up
            // by the next run (start NULL: however old, as long as its minutes are kept).
            let add = format!(
                "start_offset => NULL, end_offset => INTERVAL '{}', schedule_interval => INTERVAL '1 minute'",
                tf.interval_sql()
            );
            replace_policy(conn, "continuous_aggregate", &rel, Some(add)).await?;
        }
    }
    Ok(())
}

/// Replaces the `kind` policy of `relation` (`compression`, `retention`, `continuous_aggregate`)
/// with one of the arguments `add`, or none.
async fn replace_policy(
    conn: &mut sqlx::PgConnection,
    kind: &str,
    relation: &str,
    add: Option<String>,
) -> anyhow::Result<()> {
    let sql = format!("SELECT remove_{kind}_policy('{relation}', if_exists => TRUE)");
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *conn).await?;
    if let Some(args) = add {
        let sql = format!("SELECT add_{kind}_policy('{relation}', {args})");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .with_context(|| format!("failed to add the {kind} policy of {relation}"))?;
    }
    Ok(())
}

/// A duration as an SQL interval literal (whole seconds, from a validated setting).
fn interval(d: Duration) -> String {
    format!("INTERVAL '{} seconds'", d.as_secs())
}

/// The plain path: the rollup tables, filled from the stored minutes when they are new (a store
/// upgraded from a version without rollups, or one that left TimescaleDB).
pub async fn create_plain_rollups(pool: &PgPool) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tickfill timescale setup'))").execute(&mut *tx).await?;
    for family in FAMILIES {
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(family.table()).fetch_one(&mut *tx).await?;
        let run = |sql: String| sqlx::query(sqlx::AssertSqlSafe(sql));
        run(family.create_table_sql())
            .execute(&mut *tx)
            .await
            .with_context(|| format!("failed to create {}", family.table()))?;
        for (tf, _) in family.relations() {
            run(family.create_view_sql(tf)).execute(&mut *tx).await?;
        }
        if !exists {
            for (tf, rel) in family.relations() {
                let rows = rollups::rebuild_all(&mut tx, family, tf).await?;
                if rows > 0 {
                    tracing::info!(relation = rel, rows, "rollup filled from the stored minutes");
                }
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_preloaded_server_uses_timescaledb() {
        let p = |available, preloaded, created| Probe { available, preloaded, created };
        assert_eq!(decide(&p(true, true, false)), Ok(()));
        assert_eq!(decide(&p(true, true, true)), Ok(()));
        assert_eq!(decide(&p(true, false, false)), Err(Plain::NotPreloaded));
        assert_eq!(decide(&p(true, false, true)), Err(Plain::NotPreloaded));
        assert_eq!(decide(&p(false, false, false)), Err(Plain::NotInstalled));
        assert!(Plain::NotPreloaded.warning().unwrap().contains("shared_preload_libraries = 'timescaledb'"));
        assert!(Plain::NotInstalled.warning().is_none());
    }

    #[test]
    fn preload_lists_are_read_like_the_server_reads_them() {
        assert!(preload_lists_timescaledb("timescaledb"));
        assert!(preload_lists_timescaledb("pg_stat_statements, timescaledb"));
        assert!(preload_lists_timescaledb("'$libdir/timescaledb-2.28.3'".trim_matches('\'')));
        assert!(preload_lists_timescaledb("\"timescaledb\""));
        assert!(!preload_lists_timescaledb(""));
        assert!(!preload_lists_timescaledb("pg_stat_statements,timescaledb_toolkit_x"));
    }
}
