//! Migrations take the path the server allows: TimescaleDB (hypertables, continuous aggregates,
//! compression) where it is installed *and* preloaded, plain tables otherwise, never failing on a
//! server where it is only installed. The suite runs on either kind of server: tests of one path
//! say so and return on the other.

use tickfill::{
    config::TimescalePolicy,
    store::{self, timescale, BarStorage},
};

use crate::helpers::{run_cli, ScratchDb};

async fn names(pool: &sqlx::PgPool, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_all(pool).await.unwrap()
}

#[tokio::test]
async fn migrate_takes_the_path_the_server_allows_and_a_second_run_changes_nothing() {
    let db = ScratchDb::new().await;
    let usable = timescale::decide(&timescale::probe(&db.pool).await.unwrap()).is_ok();
    let migrated = store::migrate(&db.pool, &Default::default()).await.unwrap();
    let storage = if usable { BarStorage::Hypertables } else { BarStorage::Plain };
    assert_eq!(migrated.storage, storage);
    assert_eq!(store::bar_storage(&db.pool).await.unwrap(), storage);
    let tables = names(&db.pool, "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").await;
    for t in ["instruments", "subscriptions", "minute_bars", "futures_bars", "option_bars", "backfill_runs", "coverage"]
    {
        assert!(tables.contains(&t.to_string()), "{t} in {tables:?}");
    }
    let views = names(&db.pool, "SELECT viewname::text FROM pg_views WHERE schemaname = 'public' ORDER BY 1").await;
    for family in store::rollups::FAMILIES {
        for (_, rel) in family.relations() {
            assert!(views.contains(&rel), "{rel} in {views:?}");
        }
    }
    if usable {
        let hyper =
            names(&db.pool, "SELECT hypertable_name::text FROM timescaledb_information.hypertables ORDER BY 1").await;
        assert_eq!(
            hyper,
            ["fo_expiry_metrics", "fo_strike_distribution", "futures_bars", "minute_bars", "option_bars"]
        );
        let caggs = names(
            &db.pool,
            "SELECT view_name::text FROM timescaledb_information.continuous_aggregates WHERE NOT materialized_only",
        )
        .await;
        assert_eq!(caggs.len(), 16, "{caggs:?}");
        let compressed = names(
            &db.pool,
            "SELECT hypertable_name::text FROM timescaledb_information.jobs
             WHERE proc_name = 'policy_compression' AND (config->>'compress_after')::interval = INTERVAL '7 days' ORDER BY 1",
        )
        .await;
        assert_eq!(compressed, ["futures_bars", "minute_bars", "option_bars"]);
    } else {
        assert!(tables.contains(&"minute_bars_rollup".to_string()), "{tables:?}");
        eprintln!("plain PostgreSQL: the TimescaleDB half of this test does not apply here");
    }
    // Again, with other chunk policies: only the policies change.
    let policy = TimescalePolicy { compress_after: None, retention: Some(std::time::Duration::from_secs(90 * 86_400)) };
    assert_eq!(store::migrate(&db.pool, &policy).await.unwrap(), migrated);
    if usable {
        let jobs = names(
            &db.pool,
            "SELECT proc_name || ':' || hypertable_name FROM timescaledb_information.jobs
             WHERE proc_name IN ('policy_compression', 'policy_retention') ORDER BY 1",
        )
        .await;
        assert_eq!(
            jobs,
            [
                "policy_retention:fo_expiry_metrics",
                "policy_retention:fo_strike_distribution",
                "policy_retention:futures_bars",
                "policy_retention:minute_bars",
                "policy_retention:option_bars"
            ]
        );
    }
}

#[tokio::test]
async fn a_database_migrated_before_the_first_migration_was_rewritten_migrates_again() {
    let db = ScratchDb::new().await;
    store::migrate(&db.pool, &Default::default()).await.unwrap();
    // What an older tickfill recorded for the first migration, whose text created the extension.
    let old = "c6bc67903530c78c551d46664b9d9c92d284d41123046b03ea9e2da50b324ca24d3570cda5b9314a36cf7fdb33cee640";
    sqlx::query("UPDATE _sqlx_migrations SET checksum = decode($1, 'hex') WHERE version = 20261126000001")
        .bind(old)
        .execute(&db.pool)
        .await
        .unwrap();
    store::migrate(&db.pool, &Default::default()).await.unwrap();
    let recorded: Vec<u8> = sqlx::query_scalar("SELECT checksum FROM _sqlx_migrations WHERE version = 20261126000001")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let now = store::MIGRATOR.iter().find(|m| m.version == 20261126000001).unwrap();
    assert_eq!(recorded, now.checksum.as_ref());
    // Any other checksum is still a migration somebody changed: refused.
    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00' WHERE version = 20261126000001")
        .execute(&db.pool)
        .await
        .unwrap();
    let err = store::migrate(&db.pool, &Default::default()).await.unwrap_err();
    assert!(format!("{err:#}").contains("20261126000001"), "{err:#}");
}

#[tokio::test]
async fn on_a_server_with_timescaledb_installed_but_not_preloaded_migrate_stays_plain_and_names_the_fix() {
    let db = ScratchDb::new().await;
    let probe = timescale::probe(&db.pool).await.unwrap();
    if !probe.available || probe.preloaded {
        eprintln!("skipped: this server's TimescaleDB is not installed-but-not-preloaded ({probe:?})");
        return;
    }
    let migrated = store::migrate(&db.pool, &Default::default()).await.unwrap();
    assert_eq!(migrated.plain, Some(timescale::Plain::NotPreloaded));
    let mut settings = tickfill::config::Settings::defaults();
    settings.store.database_url = tickfill::config::Secret::new(db.url.clone());
    let (code, out, err) = run_cli(&settings, &["migrate"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("plain tables (TimescaleDB is installed but not preloaded)"), "{out}");
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    assert!(err.contains("shared_preload_libraries = 'timescaledb'"), "{err}");
}

#[tokio::test]
async fn a_plain_store_moving_onto_timescaledb_gets_continuous_aggregates_of_the_same_bars() {
    let db = ScratchDb::new().await;
    if timescale::decide(&timescale::probe(&db.pool).await.unwrap()).is_err() {
        eprintln!("skipped: TimescaleDB cannot be used on this server");
        return;
    }
    // The plain era: tables, rollups kept by the worker.
    store::MIGRATOR.run(&db.pool).await.unwrap();
    timescale::create_plain_rollups(&db.pool).await.unwrap();
    sqlx::query(
        "INSERT INTO minute_bars SELECT 'NIFTY', t, 256265, 100 + i, 110 + i, 90 + i, 105 + i, 10 * i
         FROM generate_series(0, 999) i, LATERAL (SELECT TIMESTAMPTZ '2026-11-02 03:45:00+00' + i * INTERVAL '1 minute' AS t) x",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    for tf in tickfill::domain::timeframe::Timeframe::ROLLUPS {
        store::rollups::rebuild_all(&mut tx, &store::rollups::MINUTE, tf).await.unwrap();
    }
    tx.commit().await.unwrap();
    let snapshot = |rel: &'static str| {
        let pool = db.pool.clone();
        async move {
            let sql = format!(
                "SELECT string_agg(concat_ws('|', time, open, high, low, close, volume), ';' ORDER BY time) FROM {rel}"
            );
            sqlx::query_scalar::<_, Option<String>>(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await.unwrap().unwrap()
        }
    };
    let before = [snapshot("minute_bars_5m").await, snapshot("minute_bars_1h").await, snapshot("minute_bars_1d").await];

    let migrated = store::migrate(&db.pool, &Default::default()).await.unwrap();
    assert_eq!(migrated.storage, BarStorage::Hypertables);
    assert_eq!(store::rollups::upkeep(&db.pool).await.unwrap(), store::rollups::Upkeep::Continuous);
    let after = [snapshot("minute_bars_5m").await, snapshot("minute_bars_1h").await, snapshot("minute_bars_1d").await];
    assert_eq!(after, before);
}

/// A database as the release before bars were keyed by instrument left it: the migrations up to
/// then, the path the server allows (on TimescaleDB: hypertables whose chunks are compressed,
/// segmented by name as they were then), holding bars of two tokens, their rollups, coverage and
/// day states. Returns whether it is on TimescaleDB.
async fn a_store_of_the_previous_release(db: &ScratchDb) -> bool {
    const LAST_OF_THAT_RELEASE: i64 = 20261202000006;
    let ts = timescale::prepare(&db.pool).await.unwrap().is_ok();
    let old = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(
            store::MIGRATOR.iter().filter(|m| m.version <= LAST_OF_THAT_RELEASE).cloned().collect(),
        ),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    old.run(&db.pool).await.unwrap();
    let exec = |sql: &'static str| sqlx::query(sql).execute(&db.pool);
    // A day of two tokens' minutes under two names, futures and options beside them.
    exec(
        "INSERT INTO minute_bars (symbol, time, instrument_token, open, high, low, close, volume)
         SELECT s.symbol, TIMESTAMPTZ '2026-11-02 03:45:00+00' + m * INTERVAL '1 minute', s.token,
                100 + m, 101 + m, 99 + m, 100.5 + m + s.token % 7, 10 + m
         FROM generate_series(0, 374) m, (VALUES ('INFY', 20000011), ('INFY-BSE', 20000012)) s(symbol, token)",
    )
    .await
    .unwrap();
    exec(
        "INSERT INTO futures_bars (contract, time, instrument_token, symbol, expiry, open, high, low, close, volume, oi)
         SELECT 'NIFTY26NOVFUT', TIMESTAMPTZ '2026-11-02 03:45:00+00' + m * INTERVAL '1 minute', 10000001, 'NIFTY',
                DATE '2026-11-26', 1, 2, 0.5, 1.5, m, 1000 + m FROM generate_series(0, 59) m",
    )
    .await
    .unwrap();
    exec(
        "INSERT INTO option_bars (contract, time, instrument_token, symbol, expiry, strike, option_type, open, high,
                                  low, close, volume, oi, iv)
         SELECT 'NIFTY26NOV24000CE', TIMESTAMPTZ '2026-11-02 03:45:00+00' + m * INTERVAL '1 minute', 11000001, 'NIFTY',
                DATE '2026-11-26', 24000, 'CE', 1, 2, 0.5, 1.5, m, 10 + m, 0.2 FROM generate_series(0, 59) m",
    )
    .await
    .unwrap();
    exec(
        "INSERT INTO coverage (instrument_token, window_from, window_to, candles)
         VALUES (20000011, '2026-11-02 03:45:00+00', '2026-11-02 10:00:00+00', 375),
                (20000012, '2026-11-02 03:45:00+00', '2026-11-02 10:00:00+00', 375)",
    )
    .await
    .unwrap();
    exec(
        "INSERT INTO day_checks (instrument_token, day, checks, last_check_at, checked_at)
         VALUES (20000011, '2026-11-02', 1, now(), now()), (20000012, '2026-11-02', 1, now(), now())",
    )
    .await
    .unwrap();
    if ts {
        timescale::setup(&db.pool, &Default::default()).await.unwrap();
        // As that release set compression up: segmented by the name, every chunk compressed.
        for (table, segment) in [("minute_bars", "symbol"), ("futures_bars", "contract"), ("option_bars", "contract")] {
            let run = |sql: String| sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&db.pool);
            run(format!("SELECT remove_compression_policy('{table}', if_exists => TRUE)")).await.unwrap();
            run(format!("SELECT decompress_chunk(c, if_compressed => TRUE) FROM show_chunks('{table}') c"))
                .await
                .unwrap();
            run(format!("ALTER TABLE {table} SET (timescaledb.compress = false)")).await.unwrap();
            run(format!(
                "ALTER TABLE {table} SET (timescaledb.compress, timescaledb.compress_segmentby = '{segment}', \
                 timescaledb.compress_orderby = 'time')"
            ))
            .await
            .unwrap();
            run(format!("SELECT compress_chunk(c) FROM show_chunks('{table}') c")).await.unwrap();
        }
    } else {
        timescale::create_plain_rollups(&db.pool).await.unwrap();
    }
    ts
}

/// Every bar row, as text, by table: what a migration must keep.
async fn every_bar(pool: &sqlx::PgPool) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["minute_bars", "futures_bars", "option_bars"] {
        let sql = format!("SELECT b::text FROM {table} b ORDER BY instrument_token, time");
        out.extend(names(pool, &sql).await);
    }
    out
}

#[tokio::test]
async fn a_store_of_the_previous_release_keys_its_bars_by_instrument_and_keeps_every_row() {
    let db = ScratchDb::new().await;
    let ts = a_store_of_the_previous_release(&db).await;
    let bars = every_bar(&db.pool).await;
    let rollup = |tf: &'static str| {
        let pool = db.pool.clone();
        async move {
            let sql = format!(
                "SELECT instrument_token || ':' || sum(volume) FROM minute_bars_{tf} GROUP BY instrument_token ORDER BY 1"
            );
            names(&pool, &sql).await
        }
    };
    let rollups = (rollup("5m").await, rollup("1d").await);
    assert_eq!(rollups.0.len(), 2, "{rollups:?}");
    let other = "SELECT instrument_token || ':' || candles FROM coverage
                 UNION ALL SELECT instrument_token || ':' || day || ':' || (checked_at IS NOT NULL) FROM day_checks
                 ORDER BY 1";
    let others = names(&db.pool, other).await;

    let migrated = store::migrate(&db.pool, &Default::default()).await.unwrap();
    assert_eq!(migrated.storage == BarStorage::Hypertables, ts);
    assert_eq!(every_bar(&db.pool).await, bars, "every bar row kept as it was");
    assert_eq!((rollup("5m").await, rollup("1d").await), rollups);
    assert_eq!(names(&db.pool, other).await, others);
    for table in ["minute_bars", "futures_bars", "option_bars"] {
        let key = names(
            &db.pool,
            &format!(
                "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid
                 AND a.attnum = ANY(i.indkey) WHERE i.indrelid = '{table}'::regclass AND i.indisprimary
                 ORDER BY array_position(i.indkey::int2[], a.attnum)"
            ),
        )
        .await;
        assert_eq!(key, ["instrument_token", "time"], "{table}");
    }
    // Now a second instrument of the same name gets its own rows: NSE:INFY and BSE:INFY.
    sqlx::query("UPDATE minute_bars SET symbol = 'INFY' WHERE instrument_token = 20000012")
        .execute(&db.pool)
        .await
        .unwrap();
    let per_token = names(
        &db.pool,
        "SELECT instrument_token || ':' || count(*) FROM minute_bars WHERE symbol = 'INFY' GROUP BY instrument_token ORDER BY 1",
    )
    .await;
    assert_eq!(per_token, ["20000011:375", "20000012:375"]);
    if ts {
        let segments = names(
            &db.pool,
            "SELECT hypertable_name || ':' || attname FROM timescaledb_information.compression_settings
             WHERE segmentby_column_index = 1 ORDER BY 1",
        )
        .await;
        assert_eq!(
            segments,
            ["futures_bars:instrument_token", "minute_bars:instrument_token", "option_bars:instrument_token"]
        );
    } else {
        eprintln!("plain PostgreSQL: the TimescaleDB half of this test does not apply here");
    }
    // Migrating again changes nothing.
    store::migrate(&db.pool, &Default::default()).await.unwrap();
    assert_eq!(names(&db.pool, "SELECT count(*)::text FROM minute_bars").await, ["750"]);
}
