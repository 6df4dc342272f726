//! tickfill's own retry policy: transient failures retry with backoff up to TICKFILL_MAX_ATTEMPTS,
//! every attempt's error stays with the job, and one run row tells the whole story.

use tickfill::{jobs::Lane, sim::SimOptions};

use crate::helpers::{run_cli, spawn_broken_ticker, spawn_process_logging_to, wait_until, AppOptions, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_and_the_job_completes_in_one_run_row() {
    let broken = spawn_broken_ticker().await;
    let app = TestApp::spawn_with(AppOptions {
        ticker_url: Some(broken),
        tweak: |s| s.queue.retry_base = std::time::Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    app.publish(r#"{"event_type":"subscription_created","instrument_token":1007,"metadata":{"tradingsymbol":"FLAKY","segment":"NSE"},"timestamp":1}"#)
        .await;
    app.wait_count(30, "SELECT count(*) FROM backfill_runs WHERE instrument_token = 1007 AND outcome = 'stored'", 1)
        .await;
    let (rows, attempts): (i64, i32) =
        sqlx::query_as("SELECT count(*) OVER (), attempts FROM backfill_runs WHERE instrument_token = 1007")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!((rows, attempts), (1, 3), "two 502s, then success on the third attempt");
    assert_eq!(app.counter("jobs_retried:subscribed").await, 2);
    assert_eq!(app.count("SELECT count(*) FROM minute_bars WHERE instrument_token = 1007").await, 1);
    assert_eq!(app.depths(Lane::Urgent).await.dead, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_failing_dies_after_max_attempts_with_every_error() {
    let app = TestApp::spawn_with(AppOptions {
        sim: SimOptions { error_rate: 1.0, ..Default::default() },
        tweak: |s| {
            s.queue.retry_base = std::time::Duration::from_secs(1);
            s.queue.max_attempts = 3;
        },
        ..Default::default()
    })
    .await;
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    wait_until(30, "the job in the dead set", || async { app.depths(Lane::Urgent).await.dead == 1 }).await;
    assert_eq!(app.sim_stats().await["history_requests"], 3);
    let (outcome, attempts, error): (String, i32, String) =
        sqlx::query_as("SELECT outcome, attempts, error FROM backfill_runs").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!((outcome.as_str(), attempts), ("dead", 3));
    assert!(error.contains("502"), "{error}");

    let (code, out, _) = run_cli(&app.settings, &["jobs", "dead", "list", "--json"], &[]);
    assert_eq!(code, 0);
    let dead: serde_json::Value = serde_json::from_str(&out).unwrap();
    let reason = dead[0]["error"].as_str().unwrap();
    assert!(reason.starts_with("gave up after 3 attempts"), "{reason}");
    assert_eq!(dead[0]["attempts"], 3, "the listing counts every attempt, not the last task's");
    for n in 1..=3 {
        assert!(reason.contains(&format!("attempt {n}: ")), "{reason}");
    }
    let (_, out, _) = run_cli(&app.settings, &["jobs", "dead", "show", dead[0]["id"].as_str().unwrap()], &[]);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["payload"]["failures"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_ticker_puts_jobs_off_without_spending_attempts_until_it_is_back() {
    // A port with nothing behind it yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let app = TestApp::spawn_with(AppOptions {
        ticker_url: Some(format!("http://{addr}")),
        tweak: |s| {
            s.queue.retry_base = std::time::Duration::from_secs(1);
            s.queue.max_attempts = 1;
        },
        ..Default::default()
    })
    .await;
    app.publish(r#"{"event_type":"subscription_created","instrument_token":256265,"timestamp":1}"#).await;
    wait_until(20, "the job put off twice", || async { app.counter("jobs_put_off:subscribed").await >= 2 }).await;
    assert_eq!(app.depths(Lane::Urgent).await.dead, 0, "an outage spends no attempt");
    // The ticker comes back on its address: the job completes on its first attempt.
    tickfill::sim::spawn(addr, SimOptions::default(), app.shutdown.clone()).await.unwrap();
    app.wait_count(30, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM backfill_runs").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_as_retry_after_says_without_spending_an_attempt() {
    // No budget of our own (rate limit 0) against a ticker that allows one request a second:
    // four subscriptions at once draw 429s with `Retry-After: 1`.
    let app = TestApp::spawn_with(AppOptions {
        sim: SimOptions { max_rps: Some(1), ..Default::default() },
        ..Default::default()
    })
    .await;
    for token in [256265, 10000001, 10000002, 11000000] {
        assert_eq!(app.subscribe_via_sim(token).await, 201);
    }
    app.wait_count(30, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 4).await;
    let stats = app.sim_stats().await;
    let throttled = stats["by_status"]["429"].as_i64().unwrap_or(0);
    assert!(throttled >= 1, "the ticker never throttled: {stats}");
    assert_eq!(app.counter("ticker_errors:throttled").await, throttled);
    assert_eq!(app.count("SELECT max(attempts)::bigint FROM backfill_runs WHERE reason = 'subscribe'").await, 1);
    assert_eq!(app.counter("jobs_retried:subscribed").await, 0, "a 429 spent an attempt");
    assert_eq!(stats["by_status"]["200"], 4, "each window fetched once it was allowed");
}

/// Each log line carries only its own job's span: jobs for different tokens wait out 429s side
/// by side in one worker process, and every line that names a token sits in the span of the job
/// for that token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_log_line_carries_only_its_own_jobs_span() {
    let sim = SimOptions { throttle_rate: 0.5, latency_ms: (5, 40), ..Default::default() };
    let app = TestApp::spawn_with(AppOptions { sim, start_worker: false, ..Default::default() }).await;
    let log = std::env::temp_dir().join(format!("tf-spans-{}.log", uuid::Uuid::new_v4().simple()));
    let _worker = spawn_process_logging_to(
        &app,
        "worker",
        &log,
        &[("LOG_FORMAT", "json"), ("ADMIN_LISTEN", "127.0.0.1:0"), ("TICKFILL_CONCURRENCY", "8")],
    );
    let tokens: Vec<i64> = sqlx::query_scalar("SELECT instrument_token FROM instruments ORDER BY 1 LIMIT 12")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    for t in &tokens {
        app.publish(format!(r#"{{"event_type":"subscription_created","instrument_token":{t}}}"#)).await;
    }
    app.wait_count(60, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", tokens.len() as i64).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let mut checked = 0;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let (Some(own), Some(span)) = (v["fields"]["token"].as_i64(), v.get("span")) else { continue };
        if span["name"] == "job" {
            assert_eq!(span["token"].as_i64(), Some(own), "a line of token {own} in another job's span: {line}");
            checked += 1;
        }
    }
    assert!(checked >= 3, "too few lines with a token to check ({checked}): {text}");
    let _ = std::fs::remove_file(&log);
}
