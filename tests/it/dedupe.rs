//! One event, however often it is seen, is one job: one history request, one run row.

use crate::helpers::TestApp;

const EVENT: &str = r#"{"event_type":"subscription_created","instrument_token":256265,"metadata":{"tradingsymbol":"NIFTY 50","segment":"INDICES"},"timestamp":1730462400}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_published_twice_and_seen_by_two_bridges_is_fetched_once() {
    let app = TestApp::spawn().await;
    app.start_bridge().await; // a second bridge on the same channel and namespace
    app.publish(EVENT).await;
    app.publish(EVENT).await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
    app.wait_idle(20).await;
    // Four receipts (2 publishes × 2 bridges) were accepted, yet one job ran.
    assert_eq!(app.counter("events_accepted").await, 4);
    assert_eq!(app.sim_stats().await["history_requests"], 1);
    assert_eq!(app.count("SELECT count(*) FROM backfill_runs").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM minute_bars").await, 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_resubscribe_reuses_coverage_instead_of_refetching() {
    let app = TestApp::spawn().await;
    app.publish(EVENT).await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
    // Same instrument, another publish second: a new job, but the window is already covered
    // (unless the minute turned meanwhile, in which case only the new minute is fetched).
    app.publish(EVENT.replace("1730462400", "1730462460")).await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs", 2).await;
    app.wait_idle(20).await;
    let requests = app.sim_stats().await["history_requests"].as_i64().unwrap();
    let covered = app.count("SELECT count(*) FROM backfill_runs WHERE outcome = 'covered'").await;
    assert!(covered == 1 || requests == 2, "covered={covered} requests={requests}");
    assert_eq!(
        app.count("SELECT count(*) FROM (SELECT time FROM minute_bars GROUP BY time HAVING count(*) > 1) d").await,
        0
    );
}
