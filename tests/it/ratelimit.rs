//! One rate budget for the whole fleet: three worker processes behind a simulator that throttles
//! above 3 requests/s never get a 429, and a subscription made behind a bulk backlog is served
//! ahead of it.

use chrono::{Duration, Utc};
use tickfill::{
    domain::window::floor_minute,
    jobs::{Job, Reason},
    sim::SimOptions,
};

use crate::helpers::{spawn_worker_process, AppOptions, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_three_requests_a_second_and_urgent_work_jumps_the_backlog() {
    let app = TestApp::spawn_with(AppOptions {
        sim: SimOptions { max_rps: Some(3), ..Default::default() },
        start_worker: false,
        ..Default::default()
    })
    .await;
    // A bulk backlog: 24 hand backfills of distinct hours, each needing its own request.
    let end = floor_minute(Utc::now()) - Duration::days(1);
    const BULK: i64 = 24;
    for h in 0..BULK {
        let to = end - Duration::hours(h);
        let job = Job::Backfill {
            token: crate::helpers::tok(256265),
            from: to - Duration::hours(1),
            to,
            reason: Reason::Manual,
            force: false,
        };
        app.push(&job).await;
    }
    let env = [("TICKER_RATE_LIMIT", "3")];
    let _workers: Vec<_> = (0..3).map(|_| spawn_worker_process(&app, &env)).collect();
    app.wait_count(60, "SELECT count(*) FROM backfill_runs WHERE reason = 'manual' AND outcome = 'stored'", 3).await;
    // The urgent job is pushed behind what is left of the backlog.
    assert_eq!(app.subscribe_via_sim(10000001).await, 201);
    app.wait_count(60, "SELECT count(*) FROM backfill_runs WHERE reason = 'manual' AND outcome = 'stored'", BULK).await;
    app.wait_count(30, "SELECT count(*) FROM backfill_runs WHERE reason = 'subscribe' AND outcome = 'stored'", 1).await;
    let after_urgent = app
        .count(
            "SELECT count(*) FROM backfill_runs m, backfill_runs u
             WHERE m.reason = 'manual' AND u.reason = 'subscribe' AND m.finished_at > u.finished_at",
        )
        .await;
    let stats = app.sim_stats().await;
    assert!(stats["by_status"].get("429").is_none(), "the fleet went over the limit: {stats}");
    assert!(stats["peak_rps"].as_u64().unwrap() <= 3, "{stats}");
    assert_eq!(stats["history_requests"].as_i64().unwrap(), BULK + 1, "{stats}");
    // At 3 requests/s the backlog had at least 4 s left when the event came; the urgent job ran
    // ahead of most of it instead of behind all of it.
    assert!(after_urgent >= BULK / 2, "only {after_urgent} of {BULK} bulk jobs finished after the urgent one");
}
