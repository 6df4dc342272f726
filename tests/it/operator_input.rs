//! Operator inputs (admin API and CLI): an out-of-range duration or instant, a misspelt or
//! missing parameter, a body where none is taken, a closed pipe: each is refused with the reason
//! and changes nothing. A purge of everything needs an explicit `all`.

use std::process::Stdio;

use chrono::{Duration, Utc};
use serde_json::Value;
use tickfill::{
    admin::{self, AdminState},
    config::Secret,
    jobs::Lane,
    queue,
};

use crate::helpers::{run_cli, spawn_broken_ticker, tickfill_command, wait_until, AppOptions, TestApp};

/// An app whose ticker answers 404, with one dead job and one rejected event, and its admin URL.
async fn app_with_a_dead_job() -> (TestApp, String) {
    let broken = spawn_broken_ticker().await;
    let app = TestApp::spawn_with(AppOptions { ticker_url: Some(broken), ..Default::default() }).await;
    app.publish("not json").await;
    app.publish(r#"{"event_type":"subscription_created","instrument_token":1001,"metadata":{"tradingsymbol":"GONE","segment":"NSE"},"timestamp":1}"#)
        .await;
    wait_until(20, "a dead job", || async { app.depths(Lane::Urgent).await.dead == 1 }).await;
    let mut settings = app.settings.clone();
    settings.admin.listen = "127.0.0.1:0".parse().unwrap();
    settings.admin.token = Some(Secret::new("s3cret"));
    let redis = queue::connect(&settings.redis).await.unwrap();
    let pool = Some(app.db.pool.clone());
    let addr = admin::spawn(AdminState { settings, redis, pool }, app.shutdown.clone()).await.unwrap();
    (app, format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_purge_and_retry_requests_are_refused_and_purge_nothing() {
    let (app, url) = app_with_a_dead_job().await;
    let post = |path: &str| app.http.post(format!("{url}{path}")).bearer_auth("s3cret");
    for (query, names) in [
        ("", "older_than=DURATION"),
        ("?older-than=7d", "older-than"),
        ("?older_than=999999999999d", "999999999999d"),
        ("?older_than=99999999999d", "99999999999d"),
        ("?older_than=3381903080180084463m", "3381903080180084463m"),
        ("?older_than=7", "unit"),
        ("?older_than=1h&all=true", "not both"),
        ("?all=yes", "all"),
    ] {
        let r = post(&format!("/api/dead/purge{query}")).send().await.unwrap();
        assert_eq!(r.status(), 400, "purge{query}");
        let text = r.text().await.unwrap();
        assert!(text.contains(names), "purge{query}: {text}");
        assert_eq!(app.depths(Lane::Urgent).await.dead, 1, "purge{query} purged something");
    }
    for (path, why) in
        [("/api/dead/retry-all?all=true", "no query parameters"), ("/api/resume?now=1", "no query parameters")]
    {
        let r = post(path).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        assert!(r.text().await.unwrap().contains(why), "{path}");
    }
    let r = post("/api/dead/retry-all").body("{\"all\": true}").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("no body"));
    assert_eq!(app.depths(Lane::Urgent).await.dead, 1, "a refused retry-all retried something");
    assert_eq!(app.depths(Lane::Urgent).await.pending(), 0);

    // Said explicitly, everything goes.
    let r: Value = post("/api/dead/purge?all=true").send().await.unwrap().json().await.unwrap();
    assert_eq!(r["purged"], 1);
    assert_eq!(app.depths(Lane::Urgent).await.dead, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_cli_arguments_exit_2_naming_the_value_and_change_nothing() {
    let (app, _) = app_with_a_dead_job().await;
    let s = &app.settings;
    let (code, _, err) = run_cli(s, &["jobs", "dead", "purge", "--older-than", "99999999999d"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("99999999999d") && !err.contains("panicked"), "{err}");
    assert_eq!(app.depths(Lane::Urgent).await.dead, 1, "the refused purge purged something");

    let now = Utc::now();
    let future = (now + Duration::days(3)).to_rfc3339();
    let past = (now - Duration::hours(2)).to_rfc3339();
    for (from, to, names) in [
        ("0000-01-01T00:00:00Z", past.as_str(), "0000-01-01T00:00:00Z"),
        (past.as_str(), future.as_str(), "in the future"),
        ("2025-11-04T09:15:00", past.as_str(), "RFC 3339"),
    ] {
        let (code, _, err) = run_cli(s, &["backfill", "--token", "256265", "--from", from, "--to", to], &[]);
        assert_eq!(code, 2, "--from {from} --to {to}: {err}");
        assert!(err.contains(names) && !err.contains("panicked"), "{err}");
    }
    for token in ["0", "4294967296", "-1", "abc"] {
        let (code, _, err) = run_cli(s, &["backfill", "--token", token, "--from", &past, "--to", &past], &[]);
        assert_eq!(code, 2, "--token {token}: {err}");
        assert!(err.contains(token), "{err}");
    }
    let (code, _, err) = run_cli(s, &["jobs", "dead", "retry", "--kind", "nope"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("backfill"), "the error lists the kinds: {err}");
    assert_eq!(
        app.depths(Lane::Bulk).await.pending() + app.depths(Lane::Urgent).await.pending(),
        0,
        "a job was pushed"
    );
    assert_eq!(app.depths(Lane::Urgent).await.dead, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_to_a_closed_pipe_ends_quietly() {
    let (app, _) = app_with_a_dead_job().await;
    let s = &app.settings;
    for args in [&["events", "rejected"][..], &["jobs", "dead", "list"][..], &["jobs", "stats"][..]] {
        let mut child = tickfill_command()
            .args(args)
            .envs(s.redis.target.env())
            .env("DATABASE_URL", s.store.database_url.expose())
            .env("TICKFILL_QUEUE", &s.queue.name)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the command writes, as `| head -0` would.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
