//! The job explorer: one filter over queued jobs and finished runs, counted and paged, answered
//! alike by `GET /api/jobs` and `tickfill jobs list`.

use std::collections::BTreeSet;

use serde_json::Value;
use tickfill::admin::{self, AdminState};

use crate::helpers::{run_cli, TestApp};

/// Subscription events for tokens the simulator does not know: each job dies at once.
async fn dead_subscriptions(app: &TestApp, tokens: &[u32]) {
    let now = chrono::Utc::now().timestamp();
    for t in tokens {
        let event = format!(
            r#"{{"event_type":"subscription_created","instrument_token":{t},"timestamp":{now},"metadata":{{"tradingsymbol":"ACC{t}","segment":"NSE"}}}}"#
        );
        app.publish(event).await;
    }
}

async fn get(app: &TestApp, admin: &str, query: &str) -> (u16, Value) {
    let r = app.http.get(format!("{admin}/api/jobs?{query}")).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn ids(page: &Value) -> Vec<String> {
    page["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_narrows_counts_and_pages_the_same_through_the_api_and_the_cli() {
    let app = TestApp::spawn().await;
    let state =
        AdminState { settings: app.settings.clone(), redis: app.redis.clone(), pool: Some(app.db.pool.clone()) };
    let admin = format!("http://{}", admin::spawn(state, app.shutdown.clone()).await.unwrap());
    dead_subscriptions(&app, &[99901, 99902, 99903, 99904, 99905]).await;
    for t in [256265, 10000001, 11000000] {
        assert_eq!(app.subscribe_via_sim(t).await, 201);
    }
    app.wait_count(30, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 3).await;
    crate::helpers::wait_until(30, "the five unknown tokens' jobs to die", || async {
        get(&app, &admin, "state=dead").await.1["matched"] == 5
    })
    .await;

    // One token's dead job, by the API and by the CLI: the same answer.
    let (status, one) = get(&app, &admin, "token=99903&state=dead").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["matched"], 1);
    let job = &one["jobs"][0];
    assert_eq!(
        (job["token"].as_u64(), job["state"].as_str(), job["lane"].as_str()),
        (Some(99903), Some("dead"), Some("urgent"))
    );
    assert!(job["error"].as_str().unwrap().contains("99903"), "{job}");
    let (code, out, err) =
        run_cli(&app.settings, &["jobs", "list", "--token", "99903", "--state", "dead", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), one, "the CLI and the API disagree");

    // Error text, kind and state narrow; an empty filter lists queued and finished together.
    assert_eq!(get(&app, &admin, "error=UNKNOWN%20INSTRUMENT").await.1["matched"], 5);
    let (_, finished) = get(&app, &admin, "state=finished&kind=subscribed").await;
    assert_eq!(finished["matched"], 3, "{finished}");
    assert!(finished["jobs"].as_array().unwrap().iter().all(|j| j["outcome"] == "stored" && j["lane"] == "urgent"));
    let (_, everything) = get(&app, &admin, "").await;
    let all = everything["matched"].as_u64().unwrap();
    assert!(all >= 8, "{everything}");
    // The option's underlying names it; the index is not a contract of NIFTY.
    let (_, nifty) = get(&app, &admin, "symbol=nifty&state=finished").await;
    let tokens: BTreeSet<u64> = nifty["jobs"].as_array().unwrap().iter().filter_map(|j| j["token"].as_u64()).collect();
    assert_eq!(tokens, BTreeSet::from([10000001, 11000000]), "{nifty}");

    // Pages of two: every job once, in order, then no cursor.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let q = if cursor.is_empty() { "limit=2".to_string() } else { format!("limit=2&cursor={cursor}") };
        let (status, page) = get(&app, &admin, &q).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["matched"].as_u64(), Some(all), "the count changed between pages");
        seen.extend(ids(&page));
        match page["next"].as_str() {
            Some(n) => cursor = n.to_string(),
            None => break,
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!((seen.len() as u64, unique.len() as u64), (all, all), "paging lost or repeated a job");
    assert_eq!(seen, ids(&get(&app, &admin, "limit=1000").await.1), "pages are not the one listing in order");

    // A bad filter is refused naming it, by both.
    for (q, name) in [
        ("tokn=1", "tokn"),
        ("state=done", "state"),
        ("token=1&token=2", "token"),
        ("limit=0", "limit"),
        ("cursor=x", "cursor"),
    ] {
        let (status, body) = get(&app, &admin, q).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(body["detail"].as_str().unwrap().contains(name), "{q}: {body}");
    }
    let (code, _, err) = run_cli(&app.settings, &["jobs", "list", "--state", "done"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--state"), "{err}");
}
