//! Finished jobs are pruned after TICKFILL_RETENTION, so Redis does not grow with every job run.

use tickfill::jobs::Lane;

use crate::helpers::{wait_until, AppOptions, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_leave_redis_after_the_retention() {
    let app = TestApp::spawn_with(AppOptions {
        tweak: |s| s.queue.retention = std::time::Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    for token in [256265, 10_000_001, 11_000_020] {
        assert_eq!(app.subscribe_via_sim(token).await, 201);
    }
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 3).await;
    let q = format!("{}:urgent", app.settings.queue.name);
    wait_until(15, "done jobs pruned with their data and metadata", || async {
        let mut conn = app.redis.clone();
        let data: i64 = redis::cmd("HLEN").arg(format!("{q}:data")).query_async(&mut conn).await.unwrap();
        let metas: Vec<String> = redis::cmd("KEYS").arg(format!("{q}:meta:*")).query_async(&mut conn).await.unwrap();
        app.depths(Lane::Urgent).await.done == 0 && data == 0 && metas.is_empty()
    })
    .await;
    // The record of what ran stays in PostgreSQL.
    assert_eq!(app.count("SELECT count(*) FROM backfill_runs WHERE kind = 'backfill'").await, 3);
}
