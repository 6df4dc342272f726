//! A subscription event becomes the simulator's candles in the right table.

use chrono::{DateTime, Utc};
use tickfill::domain::window::immediate_window;

use crate::helpers::{AppOptions, TestApp};

const NIFTY_EVENT: &str = r#"{"event_type":"subscription_created","instrument_token":256265,"metadata":{"tradingsymbol":"NIFTY 50","segment":"INDICES"},"timestamp":1730462400}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nifty_event_stores_exactly_the_simulators_candles_for_the_window() {
    let app = TestApp::spawn().await;
    app.publish(NIFTY_EVENT).await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE instrument_token = 256265 AND outcome = 'stored'", 1)
        .await;

    let (from, to): (DateTime<Utc>, DateTime<Utc>) =
        sqlx::query_as("SELECT window_from, window_to FROM backfill_runs WHERE instrument_token = 256265")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(to - from, chrono::Duration::minutes(120));
    assert_eq!(to, immediate_window(to, 120).to, "the window ends on a minute boundary");

    let want = app.sim_candles(256265, from, to).await;
    assert_eq!(want.len(), 120, "the always-open simulator has a candle every minute");
    type Row = (String, DateTime<Utc>, f64, f64, f64, f64, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT symbol, time, open, high, low, close, volume FROM minute_bars WHERE instrument_token = 256265 ORDER BY time",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), want.len());
    for (row, c) in rows.iter().zip(&want) {
        let at = DateTime::parse_from_rfc3339(c["date"].as_str().unwrap()).unwrap();
        assert_eq!(row.0, "NIFTY");
        assert_eq!(row.1, at, "candle start stored as its UTC instant");
        assert_eq!(
            (row.2, row.3, row.4, row.5),
            (
                c["open"].as_f64().unwrap(),
                c["high"].as_f64().unwrap(),
                c["low"].as_f64().unwrap(),
                c["close"].as_f64().unwrap()
            )
        );
        assert_eq!(row.6, c["volume"].as_i64().unwrap());
    }
    let covered = app.count("SELECT count(*) FROM coverage WHERE instrument_token = 256265 AND candles = 120").await;
    assert_eq!(covered, 1);
    let active =
        app.count("SELECT count(*) FROM subscriptions WHERE instrument_token = 256265 AND status = 'active'").await;
    assert_eq!(active, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_future_and_an_option_land_with_underlying_expiry_and_strike() {
    let app = TestApp::spawn().await;
    // The real path: subscribe on the ticker service, which publishes the event.
    assert_eq!(app.subscribe_via_sim(10_000_001).await, 201);
    assert_eq!(app.subscribe_via_sim(11_000_021).await, 201);
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 2).await;

    let fut: (String, String, chrono::NaiveDate, i64, i64) = sqlx::query_as(
        "SELECT f.contract, f.symbol, f.expiry, count(*), count(f.oi) FROM futures_bars f
         WHERE f.instrument_token = 10000001 GROUP BY 1, 2, 3",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let (dump_symbol, dump_expiry): (String, chrono::NaiveDate) =
        sqlx::query_as("SELECT tradingsymbol, expiry FROM instruments WHERE instrument_token = 10000001")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!((fut.0.as_str(), fut.1.as_str(), fut.2), (dump_symbol.as_str(), "NIFTY", dump_expiry));
    assert!(fut.0.ends_with("FUT"));
    assert_eq!((fut.3, fut.4), (120, 120), "every futures bar carries OI");

    let opt: (String, chrono::NaiveDate, f64, String, i64, i64, i64) = sqlx::query_as(
        "SELECT symbol, expiry, strike, option_type, count(*), count(oi), count(underlying_price) FROM option_bars
         WHERE instrument_token = 11000021 GROUP BY 1, 2, 3, 4",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let dump: (chrono::NaiveDate, f64) =
        sqlx::query_as("SELECT expiry, strike FROM instruments WHERE instrument_token = 11000021")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!((opt.0.as_str(), opt.1, opt.2, opt.3.as_str()), ("NIFTY", dump.0, dump.1, "PE"));
    assert_eq!(opt.2, 24500.0);
    assert_eq!((opt.4, opt.5, opt.6), (120, 120, 120));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsubscribe_marks_the_subscription_inactive() {
    let app = TestApp::spawn().await;
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    app.wait_count(20, "SELECT count(*) FROM subscriptions WHERE status = 'active'", 1).await;
    let status = app.http.delete(format!("{}/subscriptions/256265", app.sim_url)).send().await.unwrap().status();
    assert_eq!(status, 200);
    app.wait_count(20, "SELECT count(*) FROM subscriptions WHERE instrument_token = 256265 AND status = 'inactive'", 1)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_immediate_backfill_off_the_subscription_is_recorded_and_nothing_fetched() {
    let app =
        TestApp::spawn_with(AppOptions { tweak: |s| s.backfill.on_subscribe = false, ..Default::default() }).await;
    app.publish(NIFTY_EVENT).await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'disabled'", 1).await;
    assert_eq!(app.count("SELECT count(*) FROM subscriptions WHERE status = 'active'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM minute_bars").await, 0);
    assert_eq!(app.sim_stats().await["history_requests"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_while_the_worker_is_down_are_processed_when_it_starts() {
    let app = TestApp::spawn_with(AppOptions { start_worker: false, ..Default::default() }).await;
    app.publish(NIFTY_EVENT).await;
    app.wait_until_queued(1).await;
    assert_eq!(app.count("SELECT count(*) FROM backfill_runs").await, 0);
    app.start_worker().await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
}
