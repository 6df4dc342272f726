//! Rollups (5m, 15m, 1h, 1d bars; 5m and 15m chain buckets) hold what a recomputation from the
//! 1-minute rows gives, on whichever path the test server takes: plain tables the worker keeps,
//! or TimescaleDB continuous aggregates. The recomputation here shares nothing with the product's:
//! its own bucketing (IST clock), its own first/last/sum.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Timelike, Utc};
use tickfill::{
    domain::market::{BarTarget, Candle},
    jobs::{Job, Reason},
    store::{
        self,
        rollups::{self, Upkeep},
    },
};

use crate::helpers::{run_cli, AppOptions, TestApp};

const NIFTY: u32 = 256_265;
const FUTURE: u32 = 10_000_001;
const CALL: u32 = 11_000_020;
const PUT: u32 = 11_000_021;

/// The start of the bucket of `tf` holding `t`, worked out on the IST clock.
fn bucket(tf: &str, t: DateTime<Utc>) -> DateTime<Utc> {
    let ist = t.with_timezone(&FixedOffset::east_opt(19_800).unwrap());
    let start = match tf {
        "5m" => ist.with_minute(ist.minute() / 5 * 5).unwrap(),
        "15m" => ist.with_minute(ist.minute() / 15 * 15).unwrap(),
        // Hours open at :15, as the session does.
        "1h" if ist.minute() >= 15 => ist.with_minute(15).unwrap(),
        "1h" => ist.with_minute(15).unwrap() - Duration::hours(1),
        "1d" => ist.with_hour(0).unwrap().with_minute(0).unwrap(),
        _ => unreachable!(),
    };
    start.with_second(0).unwrap().with_timezone(&Utc)
}

/// One row of numbers per minute or bucket: open, high, low, close, volume, then the table's
/// last-minute columns (OI, IV, underlying price) as far as it has them.
type Row = Vec<Option<f64>>;

fn extra_cols(table: &str) -> &'static str {
    match table {
        "futures_bars" => ", oi::float8",
        "option_bars" => ", oi::float8, iv, underlying_price",
        _ => "",
    }
}

async fn read(pool: &sqlx::PgPool, relation: &str, extra: &str, token: u32) -> BTreeMap<DateTime<Utc>, Row> {
    let sql = format!(
        "SELECT time, ARRAY[open, high, low, close, volume::float8{extra}] FROM {relation}
         WHERE instrument_token = $1 ORDER BY time"
    );
    let rows: Vec<(DateTime<Utc>, Vec<Option<f64>>)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(token as i64).fetch_all(pool).await.unwrap();
    rows.into_iter().collect()
}

/// The buckets of `tf` recomputed from `minutes`.
fn recompute(tf: &str, minutes: &BTreeMap<DateTime<Utc>, Row>) -> BTreeMap<DateTime<Utc>, Row> {
    let mut out: BTreeMap<DateTime<Utc>, Row> = BTreeMap::new();
    for (t, m) in minutes {
        match out.get_mut(&bucket(tf, *t)) {
            None => {
                out.insert(bucket(tf, *t), m.clone());
            }
            Some(b) => {
                b[1] = Some(b[1].unwrap().max(m[1].unwrap()));
                b[2] = Some(b[2].unwrap().min(m[2].unwrap()));
                b[3] = m[3];
                b[4] = Some(b[4].unwrap() + m[4].unwrap());
                b[5..].clone_from_slice(&m[5..]);
            }
        }
    }
    out
}

/// A candle of the index: prices (open, high, low, close) and volume, nothing else.
fn index_candle(time: DateTime<Utc>, [open, high, low, close]: [f64; 4], volume: i64) -> Candle {
    Candle {
        time,
        open,
        high,
        low,
        close,
        volume,
        oi: None,
        iv: None,
        delta: None,
        gamma: None,
        theta: None,
        vega: None,
        underlying: None,
    }
}

/// Writes NIFTY's `candles` as the worker writes an answer: the upsert and, on the plain path,
/// the rollups of what it wrote, in one transaction. Returns the rows written.
async fn write_index_minutes(pool: &sqlx::PgPool, candles: &[Candle]) -> u64 {
    let target = BarTarget::Minute { symbol: "NIFTY".into() };
    let mut tx = pool.begin().await.unwrap();
    let up = store::bars::upsert_bars(&mut tx, crate::helpers::tok(NIFTY), &target, candles).await.unwrap();
    if rollups::upkeep(pool).await.unwrap() == Upkeep::Tables {
        rollups::refresh_bars(&mut tx, &rollups::MINUTE, crate::helpers::tok(NIFTY), candles, up.touched.unwrap())
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    up.written
}

/// Brings continuous aggregates up to date, as their refresh policy does each minute (nothing to
/// do on the plain path, whose tables the worker keeps in the writing transaction).
async fn refresh_policies(pool: &sqlx::PgPool) {
    if rollups::upkeep(pool).await.unwrap() != Upkeep::Continuous {
        return;
    }
    for family in rollups::FAMILIES {
        for (_, rel) in family.relations() {
            sqlx::query(sqlx::AssertSqlSafe(format!("CALL refresh_continuous_aggregate('{rel}', NULL, NULL)")))
                .execute(pool)
                .await
                .unwrap();
        }
    }
}

async fn assert_rollups_match(app: &TestApp, table: &str, token: u32) -> usize {
    let extra = extra_cols(table);
    let minutes = read(&app.db.pool, table, extra, token).await;
    assert!(minutes.len() >= 2 * 24 * 60 - 5, "{table}: {} minutes stored", minutes.len());
    let mut compared = 0;
    for tf in ["5m", "15m", "1h", "1d"] {
        let got = read(&app.db.pool, &format!("{table}_{tf}"), extra, token).await;
        let want = recompute(tf, &minutes);
        assert_eq!(got.len(), want.len(), "{table}_{tf}: bucket count");
        for (t, w) in &want {
            assert_eq!(got.get(t), Some(w), "{table}_{tf} at {t}");
        }
        compared += want.len();
    }
    compared
}

fn two_days(s: &mut tickfill::config::Settings) {
    s.backfill.window_minutes = 2 * 24 * 60;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rollup_of_every_bar_table_equals_a_recomputation_from_its_minutes() {
    let app = TestApp::spawn_with(AppOptions { tweak: two_days, ..Default::default() }).await;
    for token in [NIFTY, FUTURE, CALL] {
        assert!(app.subscribe_via_sim(token).await.is_success());
    }
    app.wait_count(60, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 3).await;
    app.wait_idle(30).await;
    let upkeep = rollups::upkeep(&app.db.pool).await.unwrap();
    eprintln!("rollups kept as {upkeep:?}");
    let mut buckets = 0;
    for (table, token) in [("minute_bars", NIFTY), ("futures_bars", FUTURE), ("option_bars", CALL)] {
        buckets += assert_rollups_match(&app, table, token).await;
    }
    // Two days: 576+ five-minute buckets, 192+ quarters, 48+ hours and 2+ days per instrument.
    assert!(buckets >= 3 * (576 + 192 + 48 + 2), "{buckets} buckets compared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebackfill_that_changes_a_minute_changes_its_buckets() {
    let app = TestApp::spawn().await;
    assert!(app.subscribe_via_sim(NIFTY).await.is_success());
    let (from, to) = app.subscription_window(NIFTY).await;
    app.wait_idle(30).await;
    let minute = from + Duration::minutes(42);
    let (open, high, low, close, volume): (f64, f64, f64, f64, i64) = sqlx::query_as(
        "SELECT open, high, low, close, volume FROM minute_bars WHERE instrument_token = $1 AND time = $2",
    )
    .bind(NIFTY as i64)
    .bind(minute)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();

    // The store holds an earlier, different answer for one minute, rolled up as the worker would.
    let earlier = index_candle(minute, [open, high + 1_000.0, low, close], volume);
    write_index_minutes(&app.db.pool, std::slice::from_ref(&earlier)).await;
    if rollups::upkeep(&app.db.pool).await.unwrap() == Upkeep::Continuous {
        // Into a compressed chunk, on TimescaleDB: the re-backfill below must upsert through it.
        refresh_policies(&app.db.pool).await;
        sqlx::query("SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('minute_bars') c")
            .execute(&app.db.pool)
            .await
            .unwrap();
    }
    let bucket_high = |tf: &'static str| {
        let pool = app.db.pool.clone();
        async move {
            let sql = format!("SELECT high FROM minute_bars_{tf} WHERE instrument_token = $1 AND time = $2");
            let (h,): (f64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(NIFTY as i64)
                .bind(bucket(tf, minute))
                .fetch_one(&pool)
                .await
                .unwrap();
            h
        }
    };
    for tf in ["5m", "15m", "1h", "1d"] {
        assert_eq!(bucket_high(tf).await, high + 1_000.0, "{tf} before the re-backfill");
    }

    // A forced re-backfill brings the source's value back, and every bucket of that minute with it.
    let token = tickfill::jobs::InstrumentToken::new(NIFTY.into()).unwrap();
    app.push(&Job::Backfill { token, from, to, reason: Reason::Manual, force: true }).await;
    app.wait_count(30, "SELECT count(*) FROM backfill_runs WHERE reason = 'manual' AND outcome = 'stored'", 1).await;
    refresh_policies(&app.db.pool).await;
    for tf in ["5m", "15m", "1h", "1d"] {
        let h = bucket_high(tf).await;
        assert!(h < high + 1_000.0, "{tf}: the bucket still holds the earlier minute ({h})");
    }
    let minutes = read(&app.db.pool, "minute_bars", "", NIFTY).await;
    for tf in ["5m", "15m", "1h", "1d"] {
        let got = read(&app.db.pool, &format!("minute_bars_{tf}"), "", NIFTY).await;
        assert_eq!(got, recompute(tf, &minutes), "{tf} after the re-backfill");
    }
    let _ = to;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_rollups_take_the_last_minute_and_sum_the_volumes() {
    let app = TestApp::spawn().await;
    for token in [CALL, PUT, CALL - 2, PUT - 2] {
        assert!(app.subscribe_via_sim(token).await.is_success());
    }
    app.wait_count(60, "SELECT count(*) FROM backfill_runs WHERE kind = 'backfill' AND outcome = 'stored'", 4).await;
    app.wait_count(60, "SELECT count(*) FROM backfill_runs WHERE kind = 'chain_metrics'", 1).await;
    app.wait_idle(30).await;
    refresh_policies(&app.db.pool).await;
    let expiry: NaiveDate = sqlx::query_scalar("SELECT expiry FROM instruments WHERE instrument_token = $1")
        .bind(CALL as i64)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();

    type Metric = (DateTime<Utc>, i64, i64, i64, i64, Option<f64>, Option<f64>, Option<f64>, i32);
    let cols = "time, call_volume, put_volume, call_oi, put_oi, pcr_oi, pcr_volume, max_pain, strikes";
    let metrics = |rel: String| {
        let pool = app.db.pool.clone();
        async move {
            sqlx::query_as::<_, Metric>(sqlx::AssertSqlSafe(format!(
                "SELECT {cols} FROM {rel} WHERE symbol = 'NIFTY' AND expiry = $1 ORDER BY time"
            )))
            .bind(expiry)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    let minutes = metrics("fo_expiry_metrics".into()).await;
    assert!(minutes.len() >= 100, "{} minutes of metrics", minutes.len());
    for tf in ["5m", "15m"] {
        let mut want: BTreeMap<DateTime<Utc>, Metric> = BTreeMap::new();
        for m in &minutes {
            let b = bucket(tf, m.0);
            let (cv, pv) = want.get(&b).map_or((0, 0), |w| (w.1, w.2));
            // The last minute's OI, PCR(OI), max pain and strikes; volumes summed.
            want.insert(b, (b, cv + m.1, pv + m.2, m.3, m.4, m.5, None, m.7, m.8));
        }
        for w in want.values_mut() {
            w.6 = (w.1 > 0).then(|| w.2 as f64 / w.1 as f64);
        }
        let got = metrics(format!("fo_expiry_metrics_{tf}")).await;
        assert_eq!(got.len(), want.len(), "fo_expiry_metrics_{tf}");
        for g in &got {
            let w = &want[&g.0];
            assert_eq!((g.1, g.2, g.3, g.4, g.5, g.7, g.8), (w.1, w.2, w.3, w.4, w.5, w.7, w.8), "{tf} {}", g.0);
            assert!((g.6.unwrap() - w.6.unwrap()).abs() < 1e-12, "{tf} {} PCR(volume)", g.0);
        }
        let strikes = app
            .count(&format!(
                "SELECT count(*) FROM fo_strike_distribution_{tf} r JOIN LATERAL (
                     SELECT call_oi, put_close FROM fo_strike_distribution d
                     WHERE d.symbol = r.symbol AND d.expiry = r.expiry AND d.strike = r.strike
                       AND d.time >= r.time AND d.time < r.time + INTERVAL '{}'
                     ORDER BY d.time DESC LIMIT 1) last ON true
                 WHERE r.call_oi IS NOT DISTINCT FROM last.call_oi AND r.put_close IS NOT DISTINCT FROM last.put_close",
                if tf == "5m" { "5 minutes" } else { "15 minutes" }
            ))
            .await;
        assert_eq!(strikes, 2 * want.len() as i64, "fo_strike_distribution_{tf}: two strikes a bucket, last values");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickfill_bars_prints_each_timeframe_and_refuses_what_it_cannot_read() {
    let app = TestApp::spawn().await;
    assert!(app.subscribe_via_sim(FUTURE).await.is_success());
    let (from, to) = app.subscription_window(FUTURE).await;
    app.wait_idle(30).await;
    let (f, t) = (from.to_rfc3339(), to.to_rfc3339());
    let args = |tf: &'static str, format: &'static str| {
        ["bars", "--token", "10000001", "--tf", tf, "--from", f.as_str(), "--to", t.as_str(), "--format", format]
    };

    let (code, out, err) = run_cli(&app.settings, &args("15m", "json"), &[]);
    assert_eq!(code, 0, "{err}");
    let bars: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    // Buckets that start inside the window: the first, which starts before it, is not shown.
    let mut want = recompute("15m", &read(&app.db.pool, "futures_bars", extra_cols("futures_bars"), FUTURE).await);
    want.retain(|t, _| *t >= from && *t < to);
    assert_eq!(bars.len(), want.len());
    for b in &bars {
        let time = DateTime::parse_from_rfc3339(b["time"].as_str().unwrap()).unwrap().with_timezone(&Utc);
        assert!(b["time"].as_str().unwrap().ends_with('Z'), "UTC: {b}");
        let w = &want[&time];
        let got: Vec<Option<f64>> =
            ["open", "high", "low", "close", "volume", "oi"].iter().map(|k| b[*k].as_f64()).collect();
        assert_eq!(&got, w, "{time}");
    }

    let (code, out, _) = run_cli(&app.settings, &args("1h", "csv"), &[]);
    assert_eq!(code, 0);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("time,open,high,low,close,volume,oi"));
    let hours = recompute("1h", &read(&app.db.pool, "futures_bars", ", oi::float8", FUTURE).await);
    assert_eq!(lines.count(), hours.keys().filter(|t| **t >= from && **t < to).count());
    let (code, out, _) = run_cli(&app.settings, &args("1m", "table"), &[]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1 + (to - from).num_minutes() as usize, "a header and a line a minute");

    // An empty window is an empty array, not an error.
    let (code, out, _) = run_cli(
        &app.settings,
        &[
            "bars",
            "--token",
            "10000001",
            "--tf",
            "1d",
            "--from",
            "2001-01-01T00:00:00Z",
            "--to",
            "2001-01-02T00:00:00Z",
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!((code, serde_json::from_str::<serde_json::Value>(&out).unwrap()), (0, serde_json::json!([])));
    for (bad, says) in [
        (vec!["bars", "--token", "10000001", "--tf", "2h"], "2h"),
        (vec!["bars", "--token", "0"], "0"),
        (
            vec!["bars", "--token", "10000001", "--from", "2026-01-02T00:00:00Z", "--to", "2026-01-01T00:00:00Z"],
            "--from",
        ),
        (vec!["bars", "--token", "10000001", "--format", "xml"], "xml"),
        (vec!["bars", "--token", "10000001", "--from", "yesterday"], "yesterday"),
    ] {
        let (code, out, err) = run_cli(&app.settings, &bad, &[]);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(err.contains(says), "{bad:?}: {err}");
        assert!(out.is_empty(), "{bad:?} printed {out}");
    }
    let (code, _, err) = run_cli(&app.settings, &["bars", "--token", "4294967295"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("token 4294967295 has no bars"), "{err}");
}

#[tokio::test]
async fn plain_rollups_created_on_a_store_that_holds_bars_are_filled_from_them() {
    let db = crate::helpers::ScratchDb::new().await;
    // A store from before rollups: bars only (plain tables, whatever the server offers).
    store::MIGRATOR.run(&db.pool).await.unwrap();
    sqlx::query(
        "INSERT INTO option_bars (contract, time, instrument_token, symbol, expiry, strike, option_type,
             open, high, low, close, volume, oi, iv, underlying_price)
         SELECT 'NIFTYX', t, $1, 'NIFTY', '2026-12-31', 24000, 'CE', 100 + h % 50, 160 + h % 50, 40 + h % 50,
                100 + h % 7, h % 1000, CASE WHEN i % 11 = 0 THEN NULL ELSE h % 100000 END, 10 + h % 9, 24000 + h % 300
         FROM generate_series(0, 2999) i,
              LATERAL (SELECT TIMESTAMPTZ '2026-11-02 00:07:00+00' + i * INTERVAL '1 minute' AS t, abs(hashint4(i)) AS h) x
         WHERE i % 17 <> 3",
    )
    .bind(CALL as i64)
    .execute(&db.pool)
    .await
    .unwrap();
    store::timescale::create_plain_rollups(&db.pool).await.unwrap();
    let extra = extra_cols("option_bars");
    let minutes = read(&db.pool, "option_bars", extra, CALL).await;
    for tf in ["5m", "15m", "1h", "1d"] {
        let got = read(&db.pool, &format!("option_bars_{tf}"), extra, CALL).await;
        assert_eq!(got, recompute(tf, &minutes), "option_bars_{tf}");
    }
}

#[tokio::test]
async fn a_day_of_absurd_volumes_is_stored_and_its_sum_held_at_the_largest_bigint() {
    let db = crate::helpers::ScratchDb::new().await;
    store::migrate(&db.pool, &Default::default()).await.unwrap();
    let start = DateTime::parse_from_rfc3339("2026-11-02T00:00:00+05:30").unwrap().with_timezone(&Utc);
    // The most the ticker accepts for one minute, every minute of an IST day.
    let candles: Vec<Candle> = (0..1440)
        .map(|m| index_candle(start + Duration::minutes(m), [1.0, 2.0, 0.5, 1.5], 9_000_000_000_000_000))
        .collect();
    assert_eq!(write_index_minutes(&db.pool, &candles).await, 1440);
    refresh_policies(&db.pool).await;
    let volumes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT '5m', volume FROM minute_bars_5m WHERE time = $1 UNION ALL
         SELECT '1h', volume FROM minute_bars_1h WHERE time = $1 + INTERVAL '15 minutes' UNION ALL
         SELECT '1d', volume FROM minute_bars_1d WHERE time = $1",
    )
    .bind(start)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        volumes,
        [("5m".to_string(), 45_000_000_000_000_000), ("1h".into(), 540_000_000_000_000_000), ("1d".into(), i64::MAX)]
    );
}
