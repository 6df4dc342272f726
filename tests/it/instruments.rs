//! `tickfill instruments load` takes Kite's own dumps (CRLF) and the simulator's.

use crate::helpers::{run_cli, ScratchDb};
use tickfill::{config::Secret, config::Settings, store};

fn fixture(name: &str) -> String {
    format!("{}/../shared/fixtures/kite/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn both_kite_sample_dumps_load_every_row() {
    let db = ScratchDb::new().await;
    store::migrate(&db.pool).await.unwrap();
    let mut s = Settings::defaults();
    s.database_url = Secret::new(db.url.clone());
    for (file, rows) in [("instruments_all.csv", 99), ("instruments_nse.csv", 99)] {
        let path = fixture(file);
        if !std::path::Path::new(&path).exists() {
            panic!("fixture {path} missing: set TICKFILL_FIXTURES to the folder holding kite/");
        }
        let (code, out, err) = run_cli(&s, &["instruments", "load", &path], &[]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(&format!("{rows} rows read, {rows} upserted, 0 rejected")), "{out}");
    }
    let opts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM instruments WHERE segment = 'NFO-OPT' AND expiry IS NOT NULL AND strike > 0",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(opts, 25);
}
