//! Bad input of every kind is refused with a reason, counted and kept; nothing else stops.

use tickfill::{jobs::Lane, sim::SimOptions};

use crate::helpers::{run_cli, spawn_broken_ticker, wait_until, AppOptions, TestApp};

const GOOD: &str = r#"{"event_type":"subscription_created","instrument_token":256265,"metadata":{"tradingsymbol":"NIFTY 50","segment":"INDICES"},"timestamp":1730462400}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_event_is_rejected_visibly_and_the_next_good_one_lands() {
    let app = TestApp::spawn().await;
    let mut oversize = br#"{"event_type":"subscription_created","instrument_token":1,"pad":""#.to_vec();
    oversize.extend(std::iter::repeat_n(b'x', 70 * 1024));
    oversize.extend(br#""}"#);
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"{\"event_type\": \"subscription_created\", ".to_vec(), "malformed_json"),
        (b"\x00\xff\xfe binary".to_vec(), "malformed_json"),
        (b"[]".to_vec(), "not_an_object"),
        (br#"{"event_type":"subscription_paused","instrument_token":256265}"#.to_vec(), "unknown_event_type"),
        (br#"{"event_type":["subscription_created"],"instrument_token":256265}"#.to_vec(), "bad_event_type"),
        (br#"{"event_type":"subscription_created","instrument_token":true}"#.to_vec(), "bad_token"),
        (br#"{"event_type":"subscription_created","instrument_token":0}"#.to_vec(), "bad_token"),
        (br#"{"event_type":"subscription_created","instrument_token":-256265}"#.to_vec(), "bad_token"),
        (br#"{"event_type":"subscription_created","instrument_token":4294967296}"#.to_vec(), "bad_token"),
        (
            br#"{"event_type":"subscription_created","instrument_token":256265,"timestamp":{"s":1}}"#.to_vec(),
            "bad_timestamp",
        ),
        (br#"{"event_type":"subscription_created","instrument_token":256265,"metadata":[1]}"#.to_vec(), "bad_metadata"),
        (
            br#"{"event_type":"subscription_created","instrument_token":256265,"metadata":{"tradingsymbol":"NIFTY\u0000"}}"#
                .to_vec(),
            "bad_metadata",
        ),
        (oversize.clone(), "oversize"),
        (
            format!(
                r#"{{"event_type":"subscription_removed","instrument_token":256265,"timestamp":{}}}"#,
                chrono::Utc::now().timestamp() + 3600
            )
            .into_bytes(),
            "bad_timestamp",
        ),
    ];
    for (msg, _) in &bad {
        app.publish(msg).await;
    }
    // An instrument nobody knows: accepted as an event, refused by the worker with the reason.
    app.publish(r#"{"event_type":"subscription_created","instrument_token":99999999}"#).await;
    app.publish(GOOD).await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE instrument_token = 256265 AND outcome = 'stored'", 1)
        .await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE instrument_token = 99999999 AND outcome = 'dead'", 1)
        .await;
    let why: String = sqlx::query_scalar("SELECT error FROM backfill_runs WHERE instrument_token = 99999999")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(why.contains("unknown instrument 99999999"), "{why}");
    assert_eq!(app.count("SELECT count(*) FROM minute_bars WHERE instrument_token = 99999999").await, 0);

    let (code, out, err) = run_cli(&app.settings, &["events", "rejected", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let kept: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(kept.len(), bad.len());
    let mut codes: Vec<&str> = kept.iter().map(|e| e["code"].as_str().unwrap()).collect();
    let mut want: Vec<&str> = bad.iter().map(|(_, c)| *c).collect();
    codes.sort();
    want.sort();
    assert_eq!(codes, want);
    let big = kept.iter().find(|e| e["code"] == "oversize").unwrap();
    assert_eq!(big["bytes"], oversize.len());
    assert_eq!(big["message"].as_str().unwrap().len(), 256, "only the first 256 bytes of an oversize message are kept");
    assert!(kept.iter().all(|e| !e["reason"].as_str().unwrap().is_empty()));

    let (code, text, _) = run_cli(&app.settings, &["events", "rejected"], &[]);
    assert_eq!(code, 0);
    assert!(text.contains("events_rejected:bad_token: 4"), "{text}");

    // Nothing else changed: two events became two jobs, two subscriptions, two runs, and only the
    // good one's window is covered.
    assert_eq!(app.counter("events_accepted").await, 2);
    assert_eq!(app.count("SELECT count(*) FROM subscriptions").await, 2);
    assert_eq!(app.count("SELECT count(*) FROM subscriptions WHERE status = 'active'").await, 2);
    assert_eq!(app.count("SELECT count(*) FROM backfill_runs").await, 2);
    assert_eq!(app.count("SELECT count(DISTINCT instrument_token) FROM coverage").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_ticker_answers_write_no_bars_and_say_why() {
    let broken = spawn_broken_ticker().await;
    let app = TestApp::spawn_with(AppOptions { ticker_url: Some(broken), ..Default::default() }).await;
    for token in 1001..=1006 {
        app.publish(format!(
            r#"{{"event_type":"subscription_created","instrument_token":{token},"metadata":{{"tradingsymbol":"T{token}","segment":"NSE"}},"timestamp":1}}"#
        ))
        .await;
    }
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'dead'", 4).await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE instrument_token = 1002 AND outcome = 'failed'", 1)
        .await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE instrument_token = 1006 AND outcome = 'stored'", 1)
        .await;
    let dead: Vec<(i64, String)> =
        sqlx::query_as("SELECT instrument_token, error FROM backfill_runs WHERE outcome = 'dead' ORDER BY 1")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    let tokens: Vec<i64> = dead.iter().map(|d| d.0).collect();
    assert_eq!(tokens, vec![1001, 1003, 1004, 1005]);
    assert!(dead[0].1.contains("404"), "{}", dead[0].1);
    assert!(dead[1].1.contains("bad history response"), "{}", dead[1].1);
    assert!(dead[2].1.contains("outside the window"), "{}", dead[2].1);
    assert!(dead[3].1.contains("bad history response"), "{}", dead[3].1);
    assert_eq!(app.count("SELECT count(*) FROM minute_bars WHERE instrument_token BETWEEN 1001 AND 1005").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM coverage WHERE instrument_token BETWEEN 1001 AND 1005").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM minute_bars WHERE instrument_token = 1006").await, 1);
    // The run row commits inside the handler; apalis moves the job to the dead set just after.
    wait_until(10, "four jobs in the dead set and four permanent ticker errors counted", || async {
        app.depths(Lane::Urgent).await.dead == 4 && app.counter("ticker_errors:permanent").await == 4
    })
    .await;
}

/// What is stored for a token: bars, coverage windows, and runs by outcome.
async fn stored(app: &TestApp, token: i64) -> (i64, i64, Vec<(String, i64)>) {
    let bars = app.count(&format!("SELECT count(*) FROM minute_bars WHERE instrument_token = {token}")).await;
    let coverage = app.count(&format!("SELECT count(*) FROM coverage WHERE instrument_token = {token}")).await;
    let runs =
        sqlx::query_as("SELECT outcome, count(*) FROM backfill_runs WHERE instrument_token = $1 GROUP BY 1 ORDER BY 1")
            .bind(token)
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    (bars, coverage, runs)
}

/// An answer bigger than any answer to its window could be is refused as it streams in (or by its
/// announced length), with the reason, after one request; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_bigger_than_its_window_can_hold_is_refused_unread_and_stores_nothing() {
    let sim = SimOptions { oversize_mib: 64, ..Default::default() };
    let app = TestApp::spawn_with(AppOptions { sim, ..Default::default() }).await;
    app.publish(GOOD).await;
    let why = app.dead_reason(256265).await;
    // A 120-minute window: 64 KiB + 120 × 1 KiB at most.
    assert!(why.contains("the answer is over 188416 bytes"), "{why}");
    assert!(why.contains("refused unread (TICKER_MAX_BODY)"), "{why}");
    assert_eq!(stored(&app, 256265).await, (0, 0, vec![("dead".to_string(), 1)]));
    assert_eq!(app.sim_stats().await["history_requests"], 1, "refused for good: not asked again");

    // Announced by Content-Length: refused before reading.
    let broken = spawn_broken_ticker().await;
    let app = TestApp::spawn_with(AppOptions { ticker_url: Some(broken), ..Default::default() }).await;
    app.publish(r#"{"event_type":"subscription_created","instrument_token":1008,"metadata":{"tradingsymbol":"T1008","segment":"NSE"},"timestamp":1}"#).await;
    let why = app.dead_reason(1008).await;
    assert!(why.contains("(1048590 bytes or more)"), "{why}");
    assert_eq!(stored(&app, 1008).await, (0, 0, vec![("dead".to_string(), 1)]));
}

/// `TICKER_MAX_BODY` holds every answer, even one its window would allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticker_max_body_caps_even_a_legal_answer() {
    let app = TestApp::spawn_with(AppOptions { tweak: |s| s.ticker.max_body = 1024, ..Default::default() }).await;
    app.publish(GOOD).await;
    let why = app.dead_reason(256265).await;
    assert!(why.contains("the answer is over 1024 bytes"), "{why}");
    assert_eq!(stored(&app, 256265).await, (0, 0, vec![("dead".to_string(), 1)]));
}
