//! Kite mode against Kite's own response samples (`tests/fixtures/kite/`) and the simulator's
//! Kite route: candles land at their UTC instants, OI is read by array length, errors map to what
//! the worker should do, and an expired session pauses the queues until `jobs resume`.

use std::sync::{Arc, Mutex};

use axum::{extract::Request, routing::get, Router};
use chrono::{DateTime, Duration, Utc};
use tickfill::{
    config::TickerApi,
    jobs::{Job, Reason},
    queue,
    sim::SimOptions,
    ticker::{
        kite::{kite_error, parse_kite_history},
        TickerError,
    },
};

use crate::helpers::{run_cli, wait_until, AppOptions, TestApp};

fn fixture(name: &str) -> Vec<u8> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let path = format!("{dir}/kite/{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// What the replay server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    uri: String,
    version: String,
    auth: String,
}

/// A real HTTP server on loopback answering Kite's history route with a recorded body.
async fn replay(body: Vec<u8>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen: Arc<Mutex<Vec<Seen>>> = Default::default();
    let log = seen.clone();
    let app = Router::new().route(
        "/instruments/historical/{token}/{interval}",
        get(move |req: Request| {
            let (body, log) = (body.clone(), log.clone());
            async move {
                let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                log.lock().unwrap().push(Seen {
                    uri: req.uri().to_string(),
                    version: h("x-kite-version"),
                    auth: h("authorization"),
                });
                ([("content-type", "application/json")], body)
            }
        }),
    );
    (serve(app).await, seen)
}

/// Serves `app` on a free loopback port; its URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// INFY (408065), the instrument of the recorded Kite samples, as the dump lists it.
async fn store_infy(app: &TestApp) {
    sqlx::query(
        "INSERT INTO instruments (instrument_token, tradingsymbol, segment, exchange, instrument_type, source)
         VALUES (408065, 'INFY', 'NSE', 'NSE', 'EQ', 'dump')
         ON CONFLICT (instrument_token) DO NOTHING",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
}

/// An app in Kite mode with no bridge or worker: the test starts its worker on its own server.
async fn kite_app() -> TestApp {
    TestApp::spawn_with(AppOptions { start_bridge: false, start_worker: false, tweak: kite_mode, ..Default::default() })
        .await
}

fn kite_mode(s: &mut tickfill::config::Settings) {
    s.ticker.api = TickerApi::Kite;
    s.accounts.kite_api_key = tickfill::config::Secret::new("sim-key");
    s.accounts.kite_access_token = tickfill::config::Secret::new("sim-access");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_candle_of_the_3000_candle_sample_is_stored_at_its_utc_instant() {
    let body = fixture("gokiteconnect_3db847c/historical_minute.json");
    let (url, seen) = replay(body.clone()).await;
    let app = kite_app().await;
    let mut settings = app.settings.clone();
    settings.ticker.kite_url = url;
    // Real 2017 history: judged by NSE's sessions (the shipped data starts in 2024, so that
    // year's Christmas holiday is added as an operator would).
    let mut calendars = tickfill::domain::calendar::Calendars::built_in();
    calendars.extend("exchange NSE\n2017-12-25 closed Christmas\n").unwrap();
    settings.backfill.calendar = tickfill::domain::calendar::TradingCalendar::Exchange(std::sync::Arc::new(calendars));
    let state = tickfill::worker::build_state(settings, None).await.unwrap();
    tokio::spawn(tickfill::worker::run(state, app.shutdown.child()));
    store_infy(&app).await;
    let (from, to) = (at("2017-12-15T03:45:00Z"), at("2017-12-27T10:00:00Z")); // 09:15 IST … 15:30 IST
    app.push(&Job::Backfill { token: crate::helpers::tok(408065), from, to, reason: Reason::Manual, force: false })
        .await;
    app.wait_count(30, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "one request for twelve days");
    assert_eq!(seen[0].version, "3");
    assert_eq!(seen[0].auth, "token sim-key:sim-access");
    assert!(
        seen[0].uri.starts_with("/instruments/historical/408065/minute?")
            && seen[0].uri.contains("from=2017-12-15+09%3A15%3A00")
            && seen[0].uri.contains("to=2017-12-27+15%3A29%3A00")
            && seen[0].uri.contains("oi=1"),
        "IST wall clock, `to` inclusive: {}",
        seen[0].uri
    );

    // Every candle of the sample, compared with the stored row at its instant.
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let candles = v["data"]["candles"].as_array().unwrap();
    assert_eq!(candles.len(), 3000);
    let rows: Vec<(DateTime<Utc>, f64, f64, f64, f64, i64)> = sqlx::query_as(
        "SELECT time, open, high, low, close, volume FROM minute_bars WHERE symbol = 'INFY' ORDER BY time",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 3000);
    assert_eq!(rows[0].0, at("2017-12-15T03:45:00Z"), "09:15 IST is 03:45 UTC");
    assert_eq!(rows[2999].0, at("2017-12-27T09:59:00Z"), "15:29 IST is 09:59 UTC");
    for (c, r) in candles.iter().zip(&rows) {
        let t = DateTime::parse_from_str(c[0].as_str().unwrap(), "%Y-%m-%dT%H:%M:%S%z").unwrap();
        assert_eq!(r.0, t.with_timezone(&Utc));
        let want = [c[1].as_f64(), c[2].as_f64(), c[3].as_f64(), c[4].as_f64()].map(Option::unwrap);
        assert_eq!([r.1, r.2, r.3, r.4], want, "{c}");
        assert_eq!(Some(r.5), c[5].as_i64(), "{c}");
    }
    let per_day: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM minute_bars GROUP BY (time AT TIME ZONE 'Asia/Kolkata')::date ORDER BY 1",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(per_day, vec![375; 8], "eight sessions of 375 minutes");
    // Every session minute held a candle, so the whole window is one proved coverage row.
    let covered: i64 = app.count("SELECT count(*) FROM coverage WHERE instrument_token = 408065").await;
    assert_eq!(covered, 1);
    assert_eq!(app.count("SELECT count(*) FROM suspect_minutes").await, 0);
}

#[test]
fn open_interest_is_read_by_array_length() {
    let body = fixture("historical_oi.json");
    let (from, to) = (at("2019-12-04T03:45:00Z"), at("2019-12-04T03:51:00Z"));
    let c = parse_kite_history(&body, crate::helpers::tok(1), from, to).unwrap();
    assert_eq!(c.len(), 6);
    assert_eq!(c[0].time, from);
    assert!(
        c.iter().all(|c| c.oi.is_some_and(|oi| oi > 13_000_000)),
        "{:?}",
        c.iter().map(|c| c.oi).collect::<Vec<_>>()
    );

    let body = fixture("pykiteconnect_2dd4435/historical_minute.json");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let first = v["data"]["candles"][0][0].as_str().unwrap();
    let start = DateTime::parse_from_str(first, "%Y-%m-%dT%H:%M:%S%z").unwrap().with_timezone(&Utc);
    let c = parse_kite_history(&body, crate::helpers::tok(1), start, start + Duration::minutes(2)).unwrap();
    assert_eq!(c.len(), 2);
    assert!(c.iter().all(|c| c.oi == Some(0)), "a 7th element of 0 is an OI of 0, not absent");

    let body = fixture("historical_minute.json");
    let c = parse_kite_history(&body, crate::helpers::tok(1), at("2017-12-15T03:45:00Z"), at("2017-12-15T03:51:00Z"))
        .unwrap();
    assert_eq!(c.len(), 6);
    assert!(c.iter().all(|c| c.oi.is_none()), "six elements: no OI");
    // A candle outside the asked window refuses the whole answer.
    let err = parse_kite_history(&body, crate::helpers::tok(1), at("2017-12-15T03:46:00Z"), at("2017-12-15T03:51:00Z"))
        .unwrap_err();
    assert!(matches!(err, TickerError::Permanent(_)), "{err}");
}

#[test]
fn kite_errors_map_to_what_the_worker_does() {
    let generic = kite_error(400, &fixture("error.json"), crate::helpers::tok(7), None);
    assert!(matches!(&generic, TickerError::Permanent(m) if m.contains("Generic error message")), "{generic}");
    let shapes = [
        (429, r#"{"status":"error","message":"Too many requests","data":null,"error_type":"NetworkException"}"#),
        (
            403,
            r#"{"status":"error","message":"Incorrect `api_key` or `access_token`.","data":null,"error_type":"TokenException"}"#,
        ),
        (
            400,
            r#"{"status":"error","message":"interval exceeds max limit: 60 days","data":null,"error_type":"InputException"}"#,
        ),
        (502, "<html>bad gateway</html>"),
        (503, r#"{"status":"error","message":"Service unavailable","data":null,"error_type":"NetworkException"}"#),
    ];
    let got: Vec<&str> =
        shapes.iter().map(|(s, b)| kite_error(*s, b.as_bytes(), crate::helpers::tok(7), None).label()).collect();
    assert_eq!(got, vec!["throttled", "session_expired", "permanent", "transient", "transient"]);
    assert!(matches!(
        kite_error(429, shapes[0].1.as_bytes(), crate::helpers::tok(7), None),
        TickerError::Throttled { retry_after: None }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_pauses_the_queues_until_jobs_resume() {
    let app = TestApp::spawn_with(AppOptions {
        sim: SimOptions { kite_access_token: Some("today".into()), ..Default::default() },
        start_bridge: false,
        start_worker: false,
        tweak: |s| {
            kite_mode(s);
            s.accounts.kite_access_token = tickfill::config::Secret::new("yesterday");
            s.queue.shutdown_timeout = std::time::Duration::from_secs(1);
        },
        ..Default::default()
    })
    .await;
    let mut stale = app.settings.clone();
    stale.ticker.kite_url = app.sim_url.clone();
    let state = tickfill::worker::build_state(stale.clone(), None).await.unwrap();
    let stop_stale = app.shutdown.child();
    let stale_worker = tokio::spawn(tickfill::worker::run(state, stop_stale.clone()));
    let to = tickfill::domain::window::floor_minute(Utc::now());
    let job = Job::Backfill {
        token: crate::helpers::tok(256265),
        from: to - Duration::hours(1),
        to,
        reason: Reason::Manual,
        force: false,
    };
    app.push(&job).await;
    let mut redis = app.redis.clone();
    wait_until(20, "the queues to pause", || async {
        queue::requests_halted(&mut redis.clone(), &app.settings.queue.name).await.unwrap().is_some()
    })
    .await;
    let why = queue::requests_halted(&mut redis, &app.settings.queue.name).await.unwrap().unwrap();
    assert!(why["reason"].as_str().unwrap().contains("TokenException"), "{why}");
    let (code, out, _) = run_cli(&app.settings, &["jobs", "stats"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("PAUSED") && out.contains("tickfill jobs resume"), "{out}");
    let sim_requests = app.sim_stats().await["history_requests"].as_u64().unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        app.sim_stats().await["history_requests"].as_u64().unwrap(),
        sim_requests,
        "a paused worker asked again"
    );

    // The operator renews the session (a worker with today's token) and resumes.
    // A worker still on yesterday's token would pause the queues again at its next request.
    stop_stale.trigger();
    stale_worker.await.unwrap().unwrap();
    let mut fresh = stale;
    fresh.accounts.kite_access_token = tickfill::config::Secret::new("today");
    let state = tickfill::worker::build_state(fresh, None).await.unwrap();
    tokio::spawn(tickfill::worker::run(state, app.shutdown.child()));
    let (code, out, _) = run_cli(&app.settings, &["jobs", "resume"], &[]);
    assert_eq!((code, out.trim()), (0, "history requests resumed"));
    app.wait_count(40, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
    assert_eq!(app.count("SELECT max(attempts)::bigint FROM backfill_runs").await, 1, "the pause spent no attempt");
    assert_eq!(app.count("SELECT count(*) FROM minute_bars").await, 60);
}

/// Kite's history route answering its first `throttles` requests with a 200 that carries Kite's
/// throttle envelope, then `body`; returns its URL and how many requests it saw.
async fn throttling_then(body: Vec<u8>, throttles: usize) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = Router::new().route(
        "/instruments/historical/{token}/{interval}",
        get(move || {
            let (body, seen) = (body.clone(), seen.clone());
            async move {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let answer = if n < throttles {
                    br#"{"status":"error","error_type":"NetworkException","message":"Too many requests","data":null}"#
                        .to_vec()
                } else {
                    body
                };
                ([("content-type", "application/json")], answer)
            }
        }),
    );
    (serve(app).await, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_carrying_kites_throttle_is_waited_out_not_dead() {
    let body = fixture("gokiteconnect_3db847c/historical_minute.json");
    let (url, seen) = throttling_then(body, 2).await;
    let app = kite_app().await;
    let mut settings = app.settings.clone();
    settings.ticker.kite_url = url;
    settings.ticker.throttle_pause = std::time::Duration::from_millis(50);
    let state = tickfill::worker::build_state(settings, None).await.unwrap();
    tokio::spawn(tickfill::worker::run(state, app.shutdown.child()));
    store_infy(&app).await;
    let (from, to) = (at("2017-12-15T03:45:00Z"), at("2017-12-27T10:00:00Z"));
    app.push(&Job::Backfill { token: crate::helpers::tok(408065), from, to, reason: Reason::Manual, force: false })
        .await;
    app.wait_count(30, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3, "two throttles waited out, then the answer");
    assert_eq!(app.count("SELECT count(*) FROM backfill_runs WHERE outcome IN ('dead', 'failed')").await, 0);
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM backfill_runs WHERE outcome = 'stored'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 1, "a throttle costs no attempt");
}
