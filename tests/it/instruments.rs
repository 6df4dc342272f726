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
    store::migrate(&db.pool, &Default::default()).await.unwrap();
    let mut s = Settings::defaults();
    s.store.database_url = Secret::new(db.url.clone());
    (db, s)
}

fn load(s: &Settings, args: &[&str]) -> String {
    let (code, out) = load_status(s, args);
    assert_eq!(code, 0, "{out}");
    out
}

/// Exit code and output (stdout then stderr) of `tickfill instruments load ARGS`.
fn load_status(s: &Settings, args: &[&str]) -> (i32, String) {
    let mut all = vec!["instruments", "load"];
    all.extend_from_slice(args);
    let (code, out, err) = run_cli(s, &all, &[]);
    (code, out + &err)
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

    // Bad rows: each reported with its line; a repeated token keeps its first row; and a dump
    // with rejected rows deactivates nothing (and says so with a failing exit).
    let broken = dir.join("broken.csv");
    let mut rows = vec![lines[0].to_string(), lines[1].to_string()];
    rows.push(lines[2].replacen(|c: char| c.is_ascii_digit(), "x", 1)); // line 3: bad token
    rows.push(lines[1].replace("0.05,1,EQ", "0.05,2,EQ")); // line 4: token of line 2 again
    rows.push("1,,,,,,,,,,NSE,NSE".to_string()); // line 5: no tradingsymbol
    std::fs::write(&broken, rows.join("\r\n") + "\r\n").unwrap();
    let (code, out) = load_status(&s, &["--full", broken.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("4 rows read: 0 inserted, 0 updated, 1 unchanged, 3 rejected"), "{out}");
    for line in [
        "line 3: instrument_token",
        "line 4: instrument_token 3813889 is already listed on line 2",
        "line 5: tradingsymbol is empty",
    ] {
        assert!(out.contains(line), "{line} missing in {out}");
    }
    assert!(out.contains("--full: nothing deactivated: 3 row(s) rejected"), "{out}");
    assert_eq!(active(&db, "NSE").await, 99);
    assert_eq!(count(&db, "SELECT lot_size::bigint FROM instruments WHERE instrument_token = 3813889").await, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Everything about the instruments a dump does not touch, as one digest, plus counts of the
/// tables a load must never change.
async fn untouched(db: &ScratchDb, except: &[i64]) -> (String, i64, i64, i64) {
    let digest: String = sqlx::query_scalar(
        "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.instrument_token), ''))
         FROM (SELECT instrument_token, exchange_token, tradingsymbol, name, last_price, expiry, strike,
                      tick_size, lot_size, instrument_type, segment, exchange, active, source
               FROM instruments WHERE instrument_token <> ALL($1)) t",
    )
    .bind(except)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    (
        digest,
        count(db, "SELECT count(*) FROM instruments WHERE active").await,
        count(db, "SELECT count(*) FROM subscriptions").await,
        count(db, "SELECT count(*) FROM coverage").await,
    )
}

#[tokio::test]
async fn a_hostile_dump_loses_each_bad_row_alone_and_full_then_retires_nothing() {
    let (db, s) = setup().await;
    load(&s, &[&fixture("instruments_all.csv")]);
    load(&s, &[&fixture("instruments_nse.csv")]);
    let text = std::fs::read_to_string(fixture("instruments_nse.csv")).unwrap().replace("\r\n", "\n");
    let nse: Vec<&str> = text.lines().collect();
    let token = |line: &str| line.split(',').next().unwrap().parse::<i64>().unwrap();

    let mut file: Vec<Vec<u8>> = vec![nse[0].into()];
    file.extend(nse[1..11].iter().map(|l| l.as_bytes().to_vec())); // lines 2-11: as stored
    file.push(b"60000005,0,\"EQ4,NAME4,1,,0,0.05,1,EQ,NSE,NSE".to_vec()); // 12: a quote never closed
    for l in &nse[11..21] {
        // 13-22: after the broken quote, each with a new name: they must be read and updated.
        let f: Vec<&str> = l.split(',').collect();
        file.push(format!("{},{},{},RENAMED {},{}", f[0], f[1], f[2], f[3], f[4..].join(",")).into_bytes());
    }
    let bad: [&[u8]; 10] = [
        b"60000006,0,EQ6,N,1,,NaN,0.05,1,EQ,NSE,NSE",                          // 23
        b"60000007,0,EQ7,N,-inf,,0,0.05,1,EQ,NSE,NSE",                         // 24
        b"60000008,0,EQ8,N,1,,1e400,0.05,1,EQ,NSE,NSE",                        // 25
        b"60000009,0,EQ9,N,1,,0,0.05,1e20,EQ,NSE,NSE",                         // 26
        b"60000010,0,EQ\x0010,N,1,,0,0.05,1,EQ,NSE,NSE",                       // 27
        b"60000011,0,EQ\xff\xfe11,N,1,,0,0.05,1,EQ,NSE,NSE",                   // 28
        b"0,0,EQ13,N,1,,0,0.05,1,EQ,NSE,NSE",                                  // 29
        b"60000014,0,EQ14,N,1,2026-02-30,0,0.05,1,EQ,NSE,NSE",                 // 30
        b"3813889,14898,CENTRALBK-BE,SOMEONE ELSE,0.0,,0.0,0.05,1,EQ,NSE,NSE", // 31: line 2's token again
        b"",                                                                   // 32: replaced by a 10 MB field below
    ];
    file.extend(bad.iter().map(|b| b.to_vec()));
    *file.last_mut().unwrap() = format!("60000015,0,EQ15,{},1,,0,0.05,1,EQ,NSE,NSE", "x".repeat(10 << 20)).into_bytes();
    file.push(b"99000001,1,NEWONE,A NEW ONE,12.5,,0,0.05,1,EQ,NSE,NSE".to_vec()); // 33: new and good
    let dir = std::env::temp_dir().join(format!("tf-dump-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hostile.csv");
    std::fs::write(&path, file.join(&b"\n"[..])).unwrap();

    let listed: Vec<i64> = nse[1..21].iter().map(|l| token(l)).chain([99000001]).collect();
    let before = untouched(&db, &listed).await;
    let (code, out) = load_status(&s, &["--full", path.to_str().unwrap()]);
    assert_eq!(code, 1, "--full must fail when it deactivates nothing: {out}");
    assert!(out.contains("32 rows read: 1 inserted, 10 updated, 10 unchanged, 11 rejected"), "{out}");
    assert!(out.contains("--full: nothing deactivated: 11 row(s) rejected"), "{out}");
    for want in [
        "line 12: field 3 opens a quote that is never closed",
        "line 23: strike \"NaN\" is not a finite number",
        "line 24: last_price \"-inf\" is not a finite number",
        "line 25: strike \"1e400\" is not a finite number",
        "line 26: lot_size \"1e20\" is not a whole number",
        "line 27: a NUL byte at column 14",
        "line 28: not valid UTF-8 (at byte 14)",
        "line 29: instrument_token 0 is outside 1 … 4294967295",
        "line 30: expiry \"2026-02-30\" is not a date",
        "line 31: instrument_token 3813889 is already listed on line 2; this row is ignored",
        "line 32: the line is 10485799 bytes long, over the 16384-byte limit",
    ] {
        assert!(out.contains(want), "{want:?} missing in {out}");
    }
    // The rows after the broken quote were read; nothing outside the file changed, nothing retired.
    assert_eq!(count(&db, "SELECT count(*) FROM instruments WHERE name LIKE 'RENAMED %'").await, 10);
    assert_eq!(count(&db, "SELECT count(*) FROM instruments WHERE instrument_token = 99000001 AND active").await, 1);
    assert_eq!(
        count(&db, "SELECT count(*) FROM instruments WHERE instrument_token BETWEEN 60000005 AND 60000015").await,
        0
    );
    let after = untouched(&db, &listed).await;
    assert_eq!((&after.0, after.2, after.3), (&before.0, before.2, before.3));
    assert_eq!(after.1, before.1 + 1, "only the new instrument is newly active");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn full_refuses_to_retire_most_of_a_segment_unless_forced() {
    let (db, s) = setup().await;
    load(&s, &[&fixture("instruments_nse.csv")]);
    let text = std::fs::read_to_string(fixture("instruments_nse.csv")).unwrap().replace("\r\n", "\n");
    let lines: Vec<&str> = text.lines().collect();
    let dir = std::env::temp_dir().join(format!("tf-dump-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let short = dir.join("short.csv");
    std::fs::write(&short, lines[..21].join("\n") + "\n").unwrap();
    let nse_before = active(&db, "NSE").await;
    let before = untouched(&db, &[]).await;
    let (code, out) = load_status(&s, &["--full", short.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "nothing deactivated: it would retire {} of the {nse_before} active NSE instruments",
            nse_before - 20
        )),
        "{out}"
    );
    assert!(out.contains("over the 50.0 % limit; --force retires them"), "{out}");
    assert_eq!(untouched(&db, &[]).await, before);
    // A stated larger share, or --force, does it.
    let (code, out) = load_status(&s, &["--full", "--max-retire-share", "1", short.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("--full: {} instrument(s)", nse_before - 20)), "{out}");
    assert_eq!(active(&db, "NSE").await, 20);
    load(&s, &[&fixture("instruments_nse.csv")]);
    let out = load(&s, &["--full", "--force", short.to_str().unwrap()]);
    assert!(out.contains(&format!("--full: {} instrument(s)", nse_before - 20)), "{out}");
    // A share that is not a fraction, or --force without --full, is refused before anything is read.
    for args in [&["--full", "--max-retire-share", "2", "x.csv"][..], &["--force", "x.csv"]] {
        assert_eq!(load_status(&s, args).0, 2, "{args:?}");
    }
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

#[tokio::test]
async fn quoted_line_breaks_and_lone_cr_line_ends_load_every_row_and_full_retires_by_token() {
    let (db, s) = setup().await;
    let dir = std::env::temp_dir().join(format!("tf-dump-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let header = "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange";
    // RFC 4180: a quoted name across two lines (CRLF inside it), a doubled quote, a broken quote.
    let quoted = format!(
        "{header}\r\n70000001,1,QLB001,PLAIN NAME,0.0,,0,0.05,1,EQ,NSE,NSE\r\n\
         70000002,1,QLB002,\"TWO LINES\r\nOF NAME, WITH A COMMA\",0.0,,0,0.05,1,EQ,NSE,NSE\r\n\
         70000003,1,QLB003,\"A \"\"QUOTED\"\" NAME\",0.0,,0,0.05,1,EQ,NSE,NSE\r\n"
    );
    let path = dir.join("quoted.csv");
    std::fs::write(&path, quoted).unwrap();
    let out = load(&s, &[path.to_str().unwrap()]);
    assert!(out.contains("3 rows read: 3 inserted"), "{out}");
    let name: String = sqlx::query_scalar("SELECT name FROM instruments WHERE instrument_token = 70000002")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(name, "TWO LINES\nOF NAME, WITH A COMMA");
    // An old Mac file (lone CR line ends) loads every row, and --full retires what it omits.
    let cr = format!(
        "{header}\r70000001,1,QLB001,PLAIN NAME,1.0,,0,0.05,1,EQ,NSE,NSE\r70000003,1,QLB003,Q,1.0,,0,0.05,1,EQ,NSE,NSE\r"
    );
    let path = dir.join("cr.csv");
    std::fs::write(&path, cr).unwrap();
    let out = load(&s, &["--full", "--force", path.to_str().unwrap()]);
    assert!(out.contains("2 rows read: 0 inserted, 2 updated"), "{out}");
    assert!(out.contains("--full: 1 instrument(s)"), "{out}");
    assert_eq!(count(&db, "SELECT count(*) FROM instruments WHERE active AND segment = 'NSE'").await, 2);
    assert_eq!(
        count(&db, "SELECT count(*) FROM instruments WHERE instrument_token = 70000002 AND NOT active").await,
        1
    );
    let _ = std::fs::remove_dir_all(&dir);
}
