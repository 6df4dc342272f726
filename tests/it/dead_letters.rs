//! Dead letters: an operator lists, inspects, retries and purges the jobs that failed for good.

use tickfill::jobs::Lane;

use crate::helpers::{run_cli, spawn_broken_ticker, wait_until, AppOptions, TestApp};

fn cli_json(app: &TestApp, args: &[&str]) -> serde_json::Value {
    let (code, out, err) = run_cli(&app.settings, args, &[]);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_jobs_can_be_listed_shown_retried_and_purged() {
    let broken = spawn_broken_ticker().await;
    let app = TestApp::spawn_with(AppOptions { ticker_url: Some(broken), ..Default::default() }).await;
    assert_eq!(cli_json(&app, &["jobs", "dead", "list", "--json"]), serde_json::json!([]));
    for token in [1001, 1003] {
        app.publish(format!(
            r#"{{"event_type":"subscription_created","instrument_token":{token},"metadata":{{"tradingsymbol":"T{token}","segment":"NSE"}},"timestamp":1}}"#
        ))
        .await;
    }
    wait_until(20, "two dead jobs", || async { app.depths(Lane::Urgent).await.dead == 2 }).await;

    let list = cli_json(&app, &["jobs", "dead", "list", "--json"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let by_token = |t: u64| list.iter().find(|d| d["token"] == t).unwrap().clone();
    let (d404, garbage) = (by_token(1001), by_token(1003));
    assert_eq!(d404["kind"], "subscribed");
    assert_eq!(d404["lane"], "urgent");
    assert!(d404["error"].as_str().unwrap().contains("404"), "{d404}");
    assert!(garbage["error"].as_str().unwrap().contains("bad history response"), "{garbage}");
    assert!(d404["failed_at"].is_string() && d404["attempts"].as_u64().unwrap() >= 1);

    let id = d404["id"].as_str().unwrap();
    let shown = cli_json(&app, &["jobs", "dead", "show", id]);
    assert_eq!(shown["payload"]["v"], 1);
    assert_eq!(shown["payload"]["job"]["event"]["instrument_token"], 1001);

    let stats = cli_json(&app, &["jobs", "stats", "--json"]);
    let urgent = stats.as_array().unwrap().iter().find(|s| s["lane"] == "urgent").unwrap().clone();
    assert_eq!((urgent["dead"].as_u64(), urgent["pending"].as_u64()), (Some(2), Some(0)));

    // Retried, it runs again (a new job, a new run row) and, the ticker still saying 404, dies again.
    let (code, out, _) = run_cli(&app.settings, &["jobs", "dead", "retry", id], &[]);
    assert_eq!((code, out.trim()), (0, "retried 1 dead job(s)"));
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE instrument_token = 1001 AND outcome = 'dead'", 2)
        .await;
    wait_until(20, "the retried job back in the dead set", || async {
        let now = cli_json(&app, &["jobs", "dead", "list", "--json"]);
        let ids: Vec<&str> = now.as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect::<Vec<_>>();
        ids.len() == 2 && !ids.contains(&id)
    })
    .await;

    let (code, out, _) = run_cli(&app.settings, &["jobs", "dead", "retry", "--kind", "subscribed"], &[]);
    assert_eq!((code, out.trim()), (0, "retried 2 dead job(s)"));
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'dead'", 5).await;
    wait_until(20, "both back in the dead set", || async { app.depths(Lane::Urgent).await.dead == 2 }).await;

    let (code, out, _) = run_cli(&app.settings, &["jobs", "dead", "purge", "--older-than", "1h"], &[]);
    assert_eq!((code, out.trim()), (0, "purged 0 dead job(s)"));
    let (code, out, _) = run_cli(&app.settings, &["jobs", "dead", "purge", "--all"], &[]);
    assert_eq!((code, out.trim()), (0, "purged 2 dead job(s)"));
    assert_eq!(cli_json(&app, &["jobs", "dead", "list", "--json"]), serde_json::json!([]));
    let (code, _, err) = run_cli(&app.settings, &["jobs", "dead", "retry", "--all", "--kind", "x"], &[]);
    assert_ne!(code, 0, "{err}");
}
