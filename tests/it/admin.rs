//! The admin API: health, readiness per dependency, queue figures, dead letters, rejected events;
//! mutations only with the bearer token.

use serde_json::Value;
use tickfill::{
    admin::{self, AdminState},
    config::Secret,
    jobs::Lane,
    queue,
};

use crate::helpers::{spawn_broken_ticker, spawn_process_with_fd_limit, wait_until, AppOptions, ScratchDb, TestApp};

async fn serve(app: &TestApp, token: Option<&str>, pool: Option<sqlx::PgPool>) -> String {
    let mut settings = app.settings.clone();
    settings.admin.listen = "127.0.0.1:0".parse().unwrap();
    settings.admin.token = token.map(Secret::new);
    let redis = queue::connect(&settings.redis).await.unwrap();
    let addr = admin::spawn(AdminState { settings, redis, pool }, app.shutdown.clone()).await.unwrap();
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_reports_health_and_works_the_dead_letters() {
    let broken = spawn_broken_ticker().await;
    let app = TestApp::spawn_with(AppOptions { ticker_url: Some(broken), ..Default::default() }).await;
    let url = serve(&app, Some("s3cret"), Some(app.db.pool.clone())).await;
    let http = &app.http;
    let get = |path: &str| http.get(format!("{url}{path}")).send();

    assert_eq!(get("/healthz").await.unwrap().text().await.unwrap(), "ok");
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!((ready["redis"].as_str(), ready["postgres"].as_str()), (Some("ok"), Some("ok")));

    app.publish("not json").await;
    app.publish(r#"{"event_type":"subscription_created","instrument_token":1001,"metadata":{"tradingsymbol":"GONE","segment":"NSE"},"timestamp":1}"#)
        .await;
    wait_until(20, "a dead job", || async { app.depths(Lane::Urgent).await.dead == 1 }).await;
    let rejected: Value = get("/api/rejected").await.unwrap().json().await.unwrap();
    assert_eq!(rejected[0]["code"], "malformed_json");
    let stats: Value = get("/api/stats").await.unwrap().json().await.unwrap();
    assert_eq!(stats.as_array().unwrap().iter().map(|s| s["dead"].as_u64().unwrap()).sum::<u64>(), 1);

    let dead: Value = get("/api/dead").await.unwrap().json().await.unwrap();
    let id = dead[0]["id"].as_str().unwrap().to_string();
    assert_eq!(dead[0]["token"], 1001);
    let one: Value = get(&format!("/api/dead/{id}")).await.unwrap().json().await.unwrap();
    assert_eq!(one["payload"]["job"]["event"]["instrument_token"], 1001);
    assert_eq!(get("/api/dead/nope").await.unwrap().status(), 404);

    let retry = format!("{url}/api/dead/{id}/retry");
    assert_eq!(http.post(&retry).send().await.unwrap().status(), 401);
    assert_eq!(http.post(&retry).bearer_auth("wrong").send().await.unwrap().status(), 401);
    let r: Value = http.post(&retry).bearer_auth("s3cret").send().await.unwrap().json().await.unwrap();
    assert_eq!(r["retried"], 1);
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'dead'", 2).await;
    wait_until(20, "the retried job dead again", || async { app.depths(Lane::Urgent).await.dead == 1 }).await;
    let dead: Value = get("/api/dead").await.unwrap().json().await.unwrap();
    let again = dead[0]["id"].as_str().unwrap().to_string();
    assert_ne!(again, id);

    let purge: Value = http
        .post(format!("{url}/api/dead/purge?older_than=1h"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(purge["purged"], 0);
    let del = http.delete(format!("{url}/api/dead/{again}")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(del.status(), 200);
    assert_eq!(get("/api/dead").await.unwrap().json::<Value>().await.unwrap(), serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_mutations_are_refused_and_readiness_sees_missing_migrations() {
    let app = TestApp::spawn_with(AppOptions { start_bridge: false, start_worker: false, ..Default::default() }).await;
    let unmigrated = ScratchDb::new().await;
    let url = serve(&app, None, Some(unmigrated.pool.clone())).await;
    let r = app.http.post(format!("{url}/api/dead/retry-all")).bearer_auth("anything").send().await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("ADMIN_TOKEN"), "{body}");
    let ready = app.http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert!(ready["postgres"].as_str().unwrap().contains("behind"), "{ready}");
    assert_eq!(ready["ready"], false);
}

/// Half-open and slow clients cannot starve a worker: under a 256-descriptor limit, 300
/// connections that never send a request are closed by the server, and meanwhile the worker's
/// jobs still run (no "Too many open files") and its admin API answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_admin_connections_are_capped_and_dropped_and_jobs_still_run() {
    use std::io::{Read, Write};
    let app = TestApp::spawn_with(AppOptions { start_worker: false, ..Default::default() }).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let _worker = spawn_process_with_fd_limit(&app, "worker", 256, &[("ADMIN_LISTEN", &listen)]);
    let health = format!("http://{listen}/healthz");
    wait_until(20, "the worker's admin API", || async { app.http.get(&health).send().await.is_ok() }).await;

    // 300 connections that send nothing, and one that stops half-way through its headers.
    let mut idle: Vec<std::net::TcpStream> =
        (0..300).map(|_| std::net::TcpStream::connect(&listen).expect("connect")).collect();
    let mut slow = std::net::TcpStream::connect(&listen).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
    idle.push(slow);
    let dead_before = app.depths(Lane::Urgent).await.dead;
    for token in [256265, 10000001, 11000000] {
        app.publish(format!(r#"{{"event_type":"subscription_created","instrument_token":{token}}}"#)).await;
    }
    app.wait_count(60, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 3).await;
    assert_eq!(app.count("SELECT count(*) FROM backfill_runs WHERE error ILIKE '%open files%'").await, 0);
    assert_eq!(app.depths(Lane::Urgent).await.dead, dead_before);

    // The server hangs up on every one of them (reads see EOF or a reset), without any request.
    for s in &idle {
        s.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    }
    for (i, s) in idle.iter_mut().enumerate() {
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "connection {i} got an answer instead of being closed");
    }
    let ok = app.http.get(&health).send().await.expect("healthz after the flood");
    assert!(ok.status().is_success());
}
