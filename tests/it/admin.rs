//! The admin API: health, readiness per dependency, queue figures, dead letters, rejected events;
//! mutations only with the bearer token.

use serde_json::Value;
use tickfill::{
    admin::{self, AdminState},
    config::Secret,
    jobs::Lane,
    queue,
};

use crate::helpers::{spawn_broken_ticker, wait_until, AppOptions, ScratchDb, TestApp};

async fn serve(app: &TestApp, token: Option<&str>, pool: Option<sqlx::PgPool>) -> String {
    let mut settings = app.settings.clone();
    settings.admin_listen = "127.0.0.1:0".parse().unwrap();
    settings.admin_token = token.map(Secret::new);
    let redis = queue::connect(settings.redis_url.expose()).await.unwrap();
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
