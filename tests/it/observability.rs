//! Observability: `/metrics` counts what a run did; a real Prometheus scrapes the processes with
//! the project's scrape config and every dashboard query returns data; the alert rules pass
//! promtool; the operator page works in a real (headless) Chromium.

use std::{collections::BTreeSet, path::PathBuf, process::Command, time::Duration};

use serde_json::{json, Value};
use tickfill::{
    admin::{self, AdminState},
    config::Secret,
    jobs::Lane,
    queue,
};

use crate::{
    browser::{free_port, tool, Browser},
    helpers::{spawn_broken_ticker, spawn_process, wait_until, AppOptions, ChildGuard, TestApp},
};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The value of one sample (`name{labels}` exactly as exposed) in a Prometheus text page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let promtool = tool("promtool");
    let check = Command::new(&promtool).arg("check").arg("rules").arg(repo("dashboards/alerts.yml")).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    assert!(String::from_utf8_lossy(&check.stdout).contains("SUCCESS: 12 rules found"));
    let test =
        Command::new(&promtool).arg("test").arg("rules").arg(repo("dashboards/alerts_test.yml")).output().unwrap();
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}

/// Every PromQL expression of every panel of the dashboards.
fn dashboard_queries() -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(e)) = m.get("expr") {
                    out.push(e.clone());
                }
                m.values().for_each(|v| walk(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            walk(&serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap(), &mut out);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_backfill_and_prometheus_answers_every_dashboard_query() {
    let app = TestApp::spawn_with(AppOptions { start_bridge: false, start_worker: false, ..Default::default() }).await;
    let ports = [free_port(), free_port(), free_port()];
    let admin = |p: u16| format!("127.0.0.1:{p}");
    let _bridge = spawn_process(&app, "bridge", &[("ADMIN_LISTEN", &admin(ports[0]))]);
    let _worker = spawn_process(&app, "worker", &[("ADMIN_LISTEN", &admin(ports[1])), ("TICKER_RATE_LIMIT", "3")]);
    let scrape = |p: u16| {
        let http = app.http.clone();
        async move { http.get(format!("http://127.0.0.1:{p}/metrics")).send().await.ok()?.text().await.ok() }
    };
    wait_until(30, "the bridge and the worker to serve /metrics", || async {
        scrape(ports[0]).await.is_some() && scrape(ports[1]).await.is_some()
    })
    .await;
    wait_until(20, "the bridge to subscribe", || async {
        let n: (String, i64) =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(app.channel()).query_async(&mut app.redis.clone()).await.unwrap();
        n.1 >= 1
    })
    .await;

    // What the run does: one subscription backfilled, one unreadable message.
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    app.publish("not json").await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
    let bridge = scrape(ports[0]).await.unwrap();
    for (series, want) in [
        (r#"tickfill_events_received_total{type="subscription_created"}"#, 1.0),
        (r#"tickfill_events_accepted_total{type="subscription_created"}"#, 1.0),
        (r#"tickfill_events_received_total{type="unreadable"}"#, 1.0),
        (r#"tickfill_events_rejected_total{reason="malformed_json"}"#, 1.0),
        (r#"tickfill_events_rejected_total{reason="bad_token"}"#, 0.0),
        (r#"tickfill_jobs_pushed_total{kind="subscribed"}"#, 1.0),
    ] {
        assert_eq!(sample(&bridge, series), Some(want), "{series} in the bridge's page:\n{bridge}");
    }
    let worker = scrape(ports[1]).await.unwrap();
    for (series, want) in [
        (r#"tickfill_jobs_started_total{kind="subscribed"}"#, 1.0),
        (r#"tickfill_jobs_succeeded_total{kind="subscribed"}"#, 1.0),
        (r#"tickfill_jobs_dead_total{kind="subscribed"}"#, 0.0),
        (r#"tickfill_rows_upserted_total{table="minute_bars"}"#, 120.0),
        (r#"tickfill_history_requests_total{status="200"}"#, 1.0),
        ("tickfill_event_to_commit_seconds_count", 1.0),
        ("tickfill_rate_limit_wait_seconds_count", 1.0),
        (r#"tickfill_up{dependency="ticker"}"#, 1.0),
        (r#"tickfill_up{dependency="redis"}"#, 1.0),
        (r#"tickfill_up{dependency="postgres"}"#, 1.0),
        ("tickfill_subscriptions_active", 1.0),
        ("tickfill_rate_limit_per_second", 3.0),
        (r#"tickfill_queue_depth{lane="urgent",state="pending"}"#, 0.0),
        (r#"tickfill_build_info{version="0.1.0"}"#, 1.0),
    ] {
        assert_eq!(sample(&worker, series), Some(want), "{series} in the worker's page:\n{worker}");
    }
    let _scheduler = spawn_process(&app, "scheduler", &[("ADMIN_LISTEN", &admin(ports[2])), ("SWEEP_INTERVAL", "1h")]);

    // A real Prometheus with the project's scrape config, pointed at these processes.
    let dir = std::env::temp_dir().join(format!("tf-prom-{}", app.settings.queue.name));
    std::fs::create_dir_all(&dir).unwrap();
    let original = std::fs::read_to_string(repo("dashboards/prometheus.yml")).unwrap();
    let mut config = original.replace("scrape_interval: 15s", "scrape_interval: 1s");
    config = config.replace("evaluation_interval: 15s", "evaluation_interval: 1s");
    for (standard, ours) in ["127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103"].iter().zip(ports) {
        assert!(config.contains(standard), "the scrape config lost {standard}");
        config = config.replace(standard, &admin(ours));
    }
    config = config.replace("- alerts.yml", &format!("- {}", repo("dashboards/alerts.yml").display()));
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let prom_port = free_port();
    let prom = format!("http://127.0.0.1:{prom_port}");
    let _prometheus = ChildGuard(
        Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("start prometheus"),
    );
    let http = app.http.clone();
    let api = |path: String| {
        let http = http.clone();
        async move { http.get(path).send().await.ok()?.json::<Value>().await.ok() }
    };
    wait_until(40, "Prometheus to scrape all three processes", || async {
        let Some(t) = api(format!("{prom}/api/v1/targets")).await else { return false };
        let active = t["data"]["activeTargets"].as_array().cloned().unwrap_or_default();
        active.len() == 3 && active.iter().all(|t| t["health"] == "up")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await; // a few scrapes, so rates have two samples

    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "{queries:?}");
    let mut empty = BTreeSet::new();
    for q in &queries {
        let url = reqwest::Url::parse_with_params(&format!("{prom}/api/v1/query"), &[("query", q)]).unwrap();
        let answer = api(url.to_string()).await.unwrap_or(json!(null));
        assert_eq!(answer["status"], "success", "{q}: {answer}");
        if answer["data"]["result"].as_array().is_none_or(Vec::is_empty) {
            empty.insert(q.clone());
        }
    }
    assert!(empty.is_empty(), "dashboard queries without a series: {empty:#?}");
    let rules = api(format!("{prom}/api/v1/rules")).await.unwrap();
    let loaded: usize =
        rules["data"]["groups"].as_array().unwrap().iter().map(|g| g["rules"].as_array().unwrap().len()).sum();
    assert_eq!(loaded, 12, "the alert rules load into Prometheus");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_page_shows_a_dead_job_and_its_retry_button_queues_it_again() {
    let broken = spawn_broken_ticker().await;
    let app =
        TestApp::spawn_with(AppOptions { ticker_url: Some(broken), start_worker: false, ..Default::default() }).await;
    let worker = app.start_worker().await;
    app.publish(r#"{"event_type":"subscription_created","instrument_token":1001,"metadata":{"tradingsymbol":"GONE","segment":"NSE"},"timestamp":1}"#)
        .await;
    wait_until(20, "a dead job", || async { app.depths(Lane::Urgent).await.dead == 1 }).await;
    worker.trigger(); // nothing runs the job once it is retried: it stays in the queue
    let id = queue::dead::list(&mut app.redis.clone(), &app.settings.queue.name).await.unwrap()[0].id.clone();

    let mut settings = app.settings.clone();
    settings.admin.listen = "127.0.0.1:0".parse().unwrap();
    settings.admin.token = Some(Secret::new("s3cret"));
    let redis = queue::connect(&settings.redis).await.unwrap();
    let addr = admin::spawn(AdminState { settings, redis, pool: Some(app.db.pool.clone()) }, app.shutdown.clone())
        .await
        .unwrap();

    let browser = Browser::start().await;
    browser.go(&format!("http://{addr}/")).await;
    wait_until(20, "the page to list the dead job", || async {
        browser.source().await.contains(&format!("data-dead-id=\"{id}\""))
    })
    .await;
    let page = browser.source().await;
    assert!(page.contains("ticker answered 404"), "the dead job's error is shown");
    assert!(page.contains("GONE") || page.contains("1001"), "the subscription is shown");

    browser.sign_in("s3cret", "admin").await;
    browser.click(&format!("button[data-retry=\"{id}\"]")).await;
    wait_until(20, "the retried job back in the queue", || async {
        let d = app.depths(Lane::Urgent).await;
        d.dead == 0 && d.active + d.scheduled == 1
    })
    .await;
    wait_until(20, "the page to show it", || async {
        let page = browser.source().await;
        page.contains("no dead jobs") && page.contains("POST /api/dead/")
    })
    .await;
}
