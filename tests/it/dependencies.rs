//! A worker started while PostgreSQL and Redis are down waits for them instead of exiting, and
//! works once they are back.

use std::time::Duration;

use crate::helpers::{base_database_url, redis_url, spawn_worker_process, AppOptions, Relay, TestApp};

fn host_port(url: &str) -> String {
    let u = reqwest::Url::parse(url).unwrap();
    format!("{}:{}", u.host_str().unwrap(), u.port().unwrap_or(5432))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_while_postgres_and_redis_are_down_waits_and_then_works() {
    let app = TestApp::spawn_with(AppOptions { start_worker: false, ..Default::default() }).await;
    let pg = Relay::to(&host_port(&base_database_url()), false).await;
    let redis = Relay::to(&host_port(&redis_url()), false).await;
    let mut db_url = reqwest::Url::parse(app.settings.database_url.expose()).unwrap();
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
