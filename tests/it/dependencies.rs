//! A worker started while PostgreSQL and Redis are down waits for them instead of exiting, and
//! works once they are back.

use std::time::Duration;

use crate::helpers::{
    base_database_url, redis_url, spawn_process, spawn_worker_process, tickfill_command, wait_until, AppOptions,
    ChildGuard, Relay, TestApp,
};

fn host_port(url: &str) -> String {
    let u = reqwest::Url::parse(url).unwrap();
    format!("{}:{}", u.host_str().unwrap(), u.port().unwrap_or(5432))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_while_postgres_and_redis_are_down_waits_and_then_works() {
    let app = TestApp::spawn_with(AppOptions { start_worker: false, ..Default::default() }).await;
    let pg = Relay::to(&host_port(&base_database_url()), false).await;
    let redis = Relay::to(&host_port(&redis_url()), false).await;
    let mut db_url = reqwest::Url::parse(app.settings.store.database_url.expose()).unwrap();
    let (host, port) = pg.addr.split_once(':').unwrap();
    db_url.set_host(Some(host)).unwrap();
    db_url.set_port(Some(port.parse().unwrap())).unwrap();
    let mut worker =
        spawn_worker_process(&app, &[("DATABASE_URL", db_url.as_str()), ("REDIS_URL", &redis.redis_url())]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(worker.0.try_wait().unwrap().is_none(), "the worker exited while its dependencies were down");
    pg.set_up(true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(worker.0.try_wait().unwrap().is_none(), "the worker exited while Redis was still down");
    redis.set_up(true);
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    app.wait_count(30, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
}

/// The bridge and the scheduler, started while Redis is down, wait (their admin APIs too) for
/// longer than any connection attempt, say what they wait for, and start once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_and_a_scheduler_started_while_redis_is_down_wait_and_then_work() {
    let app = TestApp::spawn_with(AppOptions { start_worker: false, start_bridge: false, ..Default::default() }).await;
    let redis = Relay::to(&host_port(&redis_url()), false).await;
    let log = std::env::temp_dir().join(format!("tf-wait-{}.log", uuid::Uuid::new_v4().simple()));
    let mut cmd = tickfill_command();
    cmd.arg("bridge")
        .env("REDIS_URL", redis.redis_url())
        .env("REDIS_CHANNEL_PREFIX", &app.settings.events.channel_prefix)
        .env("TICKFILL_QUEUE", &app.settings.queue.name)
        .env("ADMIN_LISTEN", "127.0.0.1:0")
        .stderr(std::fs::File::create(&log).unwrap());
    let mut bridge = ChildGuard(cmd.spawn().unwrap());
    let mut scheduler =
        spawn_process(&app, "scheduler", &[("REDIS_URL", &redis.redis_url()), ("ADMIN_LISTEN", "127.0.0.1:0")]);
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(bridge.0.try_wait().unwrap().is_none(), "the bridge exited while Redis was down");
    assert!(scheduler.0.try_wait().unwrap().is_none(), "the scheduler exited while Redis was down");
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("waiting for it") && said.contains("Redis"), "{said}");
    redis.set_up(true);
    app.wait_bridges(30, 1).await;
    wait_until(30, "the scheduler's first sweep", || async {
        let d = app.depths(tickfill::jobs::Lane::Bulk).await;
        d.scheduled + d.active >= 1
    })
    .await;
    let _ = std::fs::remove_file(&log);
}
