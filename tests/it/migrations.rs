//! Migrations make hypertables when TimescaleDB is there and plain tables otherwise.
//!
//! TimescaleDB is not installable here, so the hypertable branch is exercised with a stand-in
//! `create_hypertable` in a scratch schema: the migration must find it and call it for each bar
//! table on its `time` column, exactly as it would call the extension's.

use std::str::FromStr;

use sqlx::{postgres::PgConnectOptions, PgPool};
use tickfill::store::{self, BarStorage};

use crate::helpers::ScratchDb;

#[tokio::test]
async fn without_timescaledb_the_bar_tables_are_plain() {
    let db = ScratchDb::new().await;
    store::migrate(&db.pool, &Default::default()).await.unwrap();
    assert_eq!(store::bar_storage(&db.pool).await.unwrap(), BarStorage::Plain);
    for t in ["instruments", "subscriptions", "minute_bars", "futures_bars", "option_bars", "backfill_runs", "coverage"]
    {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = $1")
                .bind(t)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(n, 1, "{t}");
    }
    // Running them again is a no-op.
    store::migrate(&db.pool, &Default::default()).await.unwrap();
}

#[tokio::test]
async fn with_create_hypertable_present_each_bar_table_becomes_a_hypertable() {
    let db = ScratchDb::new().await;
    sqlx::raw_sql(
        "CREATE SCHEMA timescale_stub;
         CREATE TABLE timescale_stub.calls (relation text, time_column text, if_not_exists boolean);
         CREATE FUNCTION timescale_stub.create_hypertable(relation regclass, time_column_name name,
             if_not_exists boolean DEFAULT false, migrate_data boolean DEFAULT false) RETURNS void
         LANGUAGE sql AS $$ INSERT INTO timescale_stub.calls VALUES (relation::text, time_column_name, if_not_exists) $$;",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let opts = PgConnectOptions::from_str(&db.url).unwrap().options([("search_path", "public,timescale_stub")]);
    let pool = PgPool::connect_with(opts).await.unwrap();
    store::migrate(&pool).await.unwrap();
    let calls: Vec<(String, String, bool)> =
        sqlx::query_as("SELECT * FROM timescale_stub.calls ORDER BY 1").fetch_all(&pool).await.unwrap();
    assert_eq!(
        calls,
        vec![
            ("futures_bars".into(), "time".into(), true),
            ("minute_bars".into(), "time".into(), true),
            ("option_bars".into(), "time".into(), true),
        ]
    );
    pool.close().await;
}
