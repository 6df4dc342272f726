//! `tickfill instruments load` takes Kite's own dumps (CRLF) and the simulator's, accounts for
//! every row, and with `--full` retires what a complete dump of a segment no longer lists.

use crate::helpers::{run_cli, ScratchDb};
use tickfill::{config::Secret, config::Settings, store};

fn fixture(name: &str) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let path = format!("{dir}/kite/{name}");
    assert!(std::path::Path::new(&path).exists(), "fixture {path} missing");
    path
}

async fn setup() -> (ScratchDb, Settings) {
    let db = ScratchDb::new().await;
    store::migrate(&db.pool).await.unwrap();
    let mut s = Settings::defaults();
    s.database_url = Secret::new(db.url.clone());
    (db, s)
}

fn load(s: &Settings, args: &[&str]) -> String {
    let mut all = vec!["instruments", "load"];
    all.extend_from_slice(args);
    let (code, out, err) = run_cli(s, &all, &[]);
    assert_eq!(code, 0, "{err}");
    out + &err
}

async fn count(db: &ScratchDb, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&db.pool).await.unwrap()
}

async fn active(db: &ScratchDb, segment: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM instruments WHERE active AND segment = $1")
        .bind(segment)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn both_kite_sample_dumps_load_with_every_row_accounted_for() {
    let (db, s) = setup().await;
    let all = load(&s, &[&fixture("instruments_all.csv")]);
    assert!(all.contains("99 rows read: 99 inserted, 0 updated, 0 unchanged, 0 rejected"), "{all}");
    // The NSE dump repeats the 55 NSE rows of the first, identically, and adds 44.
    let nse = load(&s, &[&fixture("instruments_nse.csv")]);
    assert!(nse.contains("99 rows read: 44 inserted, 0 updated, 55 unchanged, 0 rejected"), "{nse}");
    let again = load(&s, &[&fixture("instruments_all.csv")]);
    assert!(again.contains("99 rows read: 0 inserted, 0 updated, 99 unchanged, 0 rejected"), "{again}");
    assert_eq!(count(&db, "SELECT count(*) FROM instruments").await, 143);
    assert_eq!(
        count(&db, "SELECT count(*) FROM instruments WHERE segment = 'NFO-OPT' AND expiry IS NOT NULL AND strike > 0")
            .await,
        25
    );
}

#[tokio::test]
async fn a_full_dump_retires_only_its_own_segments_and_bad_rows_are_reported_by_line() {
    let (db, s) = setup().await;
    load(&s, &[&fixture("instruments_all.csv")]);
    load(&s, &[&fixture("instruments_nse.csv")]);
    // A full NSE dump that no longer lists its last 49 instruments (LF this time).
    let text = std::fs::read_to_string(fixture("instruments_nse.csv")).unwrap().replace("\r\n", "\n");
    let lines: Vec<&str> = text.lines().collect();
    let dir = std::env::temp_dir().join(format!("tf-dump-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let partial = dir.join("nse-partial.csv");
    std::fs::write(&partial, lines[..51].join("\n") + "\n").unwrap();
    let out = load(&s, &["--full", partial.to_str().unwrap()]);
    assert!(out.contains("50 rows read: 0 inserted, 0 updated, 50 unchanged, 0 rejected"), "{out}");
    assert!(out.contains("--full: 49 instrument(s)"), "{out}");
    assert_eq!((active(&db, "NSE").await, active(&db, "BSE").await, active(&db, "NFO-OPT").await), (50, 19, 25));
    // Listed again, an instrument comes back.
    let out = load(&s, &["--full", &fixture("instruments_nse.csv")]);
    assert!(out.contains("99 rows read: 0 inserted, 49 updated, 50 unchanged, 0 rejected"), "{out}");
    assert_eq!(active(&db, "NSE").await, 99);

    // Bad rows: each reported with its line; a repeated token keeps its later row; and a dump
    // with rejected rows deactivates nothing.
    let broken = dir.join("broken.csv");
    let mut rows = vec![lines[0].to_string(), lines[1].to_string()];
    rows.push(lines[2].replacen(|c: char| c.is_ascii_digit(), "x", 1)); // line 3: bad token
    rows.push(lines[1].replace("0.05,1,EQ", "0.05,2,EQ")); // line 4: token of line 2 again
    rows.push("1,,,,,,,,,,NSE,NSE".to_string()); // line 5: no tradingsymbol
    std::fs::write(&broken, rows.join("\r\n") + "\r\n").unwrap();
    let out = load(&s, &["--full", broken.to_str().unwrap()]);
    assert!(out.contains("4 rows read: 0 inserted, 1 updated, 0 unchanged, 3 rejected"), "{out}");
    for line in ["line 2: instrument_token", "line 3: instrument_token", "line 5: tradingsymbol is empty"] {
        assert!(out.contains(line), "{line} missing in {out}");
    }
    assert!(out.contains("--full: nothing deactivated: 3 row(s) rejected"), "{out}");
    assert_eq!(active(&db, "NSE").await, 99);
    assert_eq!(count(&db, "SELECT lot_size::bigint FROM instruments WHERE instrument_token = 3813889").await, 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The tradingsymbol parser (the fallback for dumps that leave derivatives' columns empty) reads
/// every real derivative symbol of Kite's sample dumps as their rows say.
#[test]
fn every_real_symbol_in_the_kite_samples_agrees_with_its_dump_row() {
    let mut derivatives = 0;
    for file in ["instruments_all.csv", "instruments_nse.csv"] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        let (rows, bad) = tickfill::load::parse_dump(&bytes).unwrap();
        assert!(bad.is_empty());
        for r in rows {
            let parsed = tickfill::domain::symbol::parse_tradingsymbol(&r.tradingsymbol);
            let seg = r.segment.as_deref().unwrap_or("");
            if seg.ends_with("-OPT") || seg.ends_with("-FUT") {
                let p = parsed.unwrap_or_else(|| panic!("{} did not parse", r.tradingsymbol));
                // These old dumps leave `name` empty for derivatives: the symbol's letters are the name.
                let name = r
                    .name
                    .clone()
                    .unwrap_or_else(|| r.tradingsymbol.chars().take_while(|c| !c.is_ascii_digit()).collect());
                assert_eq!(p.underlying, tickfill::domain::market::normalise_underlying(&name), "{}", r.tradingsymbol);
                assert_eq!(Some(p.expiry), r.expiry, "{}", r.tradingsymbol);
                assert_eq!(p.strike, r.strike, "{}", r.tradingsymbol);
                assert_eq!(Some(p.instrument_type), r.instrument_type.as_deref(), "{}", r.tradingsymbol);
                assert_eq!(p.segment, seg, "{}", r.tradingsymbol);
                derivatives += 1;
            } else {
                assert_eq!(parsed, None, "{} is not a derivative", r.tradingsymbol);
            }
        }
    }
    assert_eq!(derivatives, 25);
}
