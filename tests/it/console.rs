//! The operator console as a person uses it, in headless Chromium: the explorer's filter, bulk
//! actions with their confirmation, the read-only view, the audit, lane controls, charts and live
//! updates. Each test leaves screenshots under `target/screenshots/` for a reviewer.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use tickfill::admin::{self, AdminState};

use crate::{
    browser::Browser,
    helpers::{wait_until, TestApp},
};

const ADMIN: &str = "op-token";
const READ: &str = "look-token";

/// An admin API over the test's queue and store, with both tokens; its address.
async fn admin_server(app: &TestApp) -> String {
    admin_server_at(app, "127.0.0.1:0", app.shutdown.clone()).await
}

/// The same on `listen`, until `stop`.
async fn admin_server_at(app: &TestApp, listen: &str, stop: tickfill::shutdown::Shutdown) -> String {
    let mut settings = app.settings.clone();
    settings.admin.listen = listen.parse().unwrap();
    settings.admin.token = Some(tickfill::config::Secret::new(ADMIN));
    settings.admin.read_token = Some(tickfill::config::Secret::new(READ));
    let state = AdminState { settings, redis: app.redis.clone(), pool: Some(app.db.pool.clone()) };
    format!("http://{}", admin::spawn(state, stop).await.unwrap())
}

/// Subscription events for tokens the simulator does not know: each job dies at once.
async fn dead_subscriptions(app: &TestApp, tokens: &[u32]) {
    let now = chrono::Utc::now().timestamp();
    for t in tokens {
        app.publish(format!(
            r#"{{"event_type":"subscription_created","instrument_token":{t},"timestamp":{now},"metadata":{{"tradingsymbol":"ACC{t}","segment":"NSE"}}}}"#
        ))
        .await;
    }
}

/// `GET {admin}/api/jobs?query` with the read token.
async fn jobs(app: &TestApp, admin: &str, query: &str) -> Value {
    let r = app.http.get(format!("{admin}/api/jobs?{query}")).bearer_auth(READ).send().await.unwrap();
    r.json().await.unwrap()
}

/// The dead jobs' ids by token.
async fn dead_ids(app: &TestApp, admin: &str) -> Vec<(u64, String)> {
    let page = jobs(app, admin, "state=dead&limit=500").await;
    page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["token"].as_u64().unwrap(), j["id"].as_str().unwrap().into()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_filter_narrows_the_explorer_and_a_confirmed_bulk_retry_moves_exactly_those_and_is_audited() {
    let app = TestApp::spawn().await;
    let admin = admin_server(&app).await;
    dead_subscriptions(&app, &[99901, 99902, 99903, 99911, 99912]).await;
    wait_until(30, "five dead jobs", || async { jobs(&app, &admin, "state=dead").await["matched"] == 5 }).await;
    let before = dead_ids(&app, &admin).await;

    let browser = Browser::start().await;
    browser.go(&format!("{admin}/jobs")).await;
    browser.sign_in(ADMIN, "admin").await;
    wait_until(20, "the unfiltered count", || async {
        browser.run("return document.getElementById('matched').dataset.matched", json!([])).await.as_str() == Some("5")
    })
    .await;

    // A person types part of an error and picks a state: the address keeps the filter, the list
    // narrows and says how many match.
    browser.type_into("input[name=error]", "9990").await;
    browser.run("document.querySelector('select[name=state]').value = 'dead'", json!([])).await;
    browser.click("#filter button[type=submit]").await;
    wait_until(20, "the filtered count", || async {
        browser.text("#matched").await.as_deref() == Some("3 jobs match")
    })
    .await;
    let search = browser.run("return location.search", json!([])).await;
    assert_eq!(search, "?state=dead&error=9990", "the filter is in the address");
    let listed: BTreeSet<String> = browser
        .strings("return [...document.querySelectorAll('#jobs tr[data-job-id]')].map(r => r.dataset.jobId)")
        .await
        .into_iter()
        .collect();
    let chosen: BTreeSet<String> = before.iter().filter(|(t, _)| *t < 99910).map(|(_, id)| id.clone()).collect();
    assert_eq!(listed, chosen, "the list holds exactly the filter's jobs");
    browser.screenshot("explorer").await;

    // The bulk retry asks first, with the count; saying no changes nothing.
    browser.click("#bulk-retry").await;
    assert_eq!(browser.dialog_text().await, "Retry 3 matching jobs?");
    browser.answer_dialog(false).await;
    wait_until(10, "the page to say nothing was done", || async {
        browser.text("#message").await.as_deref() == Some("Retry: not done")
    })
    .await;
    assert_eq!(dead_ids(&app, &admin).await, before);
    browser.click("#bulk-retry").await;
    assert_eq!(browser.dialog_text().await, "Retry 3 matching jobs?");
    browser.answer_dialog(true).await;
    wait_until(20, "the page to report the retry", || async {
        browser.text("#message").await.as_deref() == Some("Retry: 3 done")
    })
    .await;
    // Exactly those left the dead set (their new attempts may die again, under new ids); the
    // others stayed.
    let after: BTreeSet<String> = dead_ids(&app, &admin).await.into_iter().map(|(_, id)| id).collect();
    assert!(chosen.is_disjoint(&after), "a retried job is still dead: {after:?}");
    for (t, id) in before.iter().filter(|(t, _)| *t > 99910) {
        assert!(after.contains(id), "the dead job of {t} was not to be retried");
    }

    // The audit page lists the change, who made it and how many it matched and acted on.
    browser.go(&format!("{admin}/audit")).await;
    wait_until(20, "the audit row", || async { browser.count("#audit tr[data-action='jobs.retry']").await == 1 }).await;
    let row = browser.text("#audit tr[data-action='jobs.retry']").await.unwrap();
    assert!(row.contains("admin") && row.contains("9990") && row.contains("ok"), "{row}");
    let cells = browser
        .run(
            "return [...document.querySelectorAll(\"#audit tr[data-action='jobs.retry'] td.num\")].map(c => c.textContent)",
            json!([]),
        )
        .await;
    assert_eq!(cells.as_array().unwrap()[1..], [json!("3"), json!("3")], "matched 3, acted on 3");
    assert_eq!(browser.count("#audit tr[data-action]").await, 1, "the refused-by-no and the dry runs are not changes");
    browser.screenshot("audit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_token_sees_everything_and_no_button_its_forged_post_is_refused_and_a_cross_site_form_does_nothing() {
    let app = TestApp::spawn().await;
    let admin = admin_server(&app).await;
    dead_subscriptions(&app, &[99921, 99922]).await;
    wait_until(30, "two dead jobs", || async { jobs(&app, &admin, "state=dead").await["matched"] == 2 }).await;

    let browser = Browser::start().await;
    // Before signing in, a server with a read token shows nothing.
    browser.go(&format!("{admin}/")).await;
    wait_until(20, "the page to ask for a token", || async {
        browser.text("#updated").await.is_some_and(|t| t.contains("sign in to read"))
    })
    .await;
    assert_eq!(browser.count("tr[data-dead-id]").await, 0);

    browser.sign_in(READ, "read").await;
    wait_until(20, "the dead jobs on the page", || async { browser.count("tr[data-dead-id]").await == 2 }).await;
    for css in
        ["button[data-retry]", "#retry-all", "#purge-all", "button[data-control='lanes/bulk/pause']", "#sweep-now"]
    {
        assert!(browser.count(css).await > 0, "{css} is on the page, hidden");
        assert!(!browser.visible(css).await, "the read-only page shows {css}");
    }
    browser.go(&format!("{admin}/jobs?state=dead")).await;
    wait_until(20, "the explorer's count", || async {
        browser.text("#matched").await.as_deref() == Some("2 jobs match")
    })
    .await;
    assert!(!browser.visible("#bulk-retry").await && !browser.visible("#bulk-purge").await);
    // Forged from the page itself, with the read session: refused, nothing changed.
    let forged = browser
        .run_async(
            "const done = arguments[arguments.length - 1];
             fetch('/api/jobs/purge?state=dead', {method: 'POST'}).then(r => done(r.status), e => done(String(e)));",
            json!([]),
        )
        .await;
    assert_eq!(forged, 403);
    assert_eq!(jobs(&app, &admin, "state=dead").await["matched"], 2);

    // Signed in as the admin, a page of another origin on the same host posts a form at the
    // purge: the browser sends the session cookie (same site), the server refuses the change.
    browser.click("#signout").await;
    browser.sign_in(ADMIN, "admin").await;
    assert!(browser.visible("#bulk-purge").await, "the admin sees the bulk buttons");
    let attacker = cross_site_page(&format!("{admin}/api/dead/purge?all=true")).await;
    browser.go(&attacker).await;
    wait_until(20, "the form to be posted", || async {
        browser.source().await.contains("a change must come from the admin page itself")
    })
    .await;
    assert_eq!(jobs(&app, &admin, "state=dead").await["matched"], 2, "a cross-site form purged dead jobs");
    let audit: Value =
        app.http.get(format!("{admin}/api/audit")).bearer_auth(READ).send().await.unwrap().json().await.unwrap();
    assert_eq!(audit, json!([]), "nothing was changed, so nothing is audited");
}

/// A page on another port of this host (another origin, the same site) that posts a form to
/// `target` as soon as it loads; its address.
async fn cross_site_page(target: &str) -> String {
    let html = format!(
        "<!doctype html><form id=f method=post action=\"{target}\"></form>\
         <script>document.getElementById('f').submit()</script>"
    );
    let app = axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(html) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_the_bulk_lane_on_the_page_holds_bulk_work_while_urgent_lands_and_the_page_follows_live() {
    let app = TestApp::spawn().await;
    let first_server = tickfill::shutdown::Shutdown::new();
    let admin = admin_server_at(&app, "127.0.0.1:0", first_server.clone()).await;
    let browser = Browser::start().await;
    browser.go(&format!("{admin}/")).await;
    browser.sign_in(ADMIN, "admin").await;
    browser.click("button[data-control='lanes/bulk/pause']").await;
    wait_until(20, "the page to show the bulk lane paused", || async {
        browser.text("tr[data-lane=bulk] td.state").await.is_some_and(|t| t.starts_with("paused"))
    })
    .await;
    assert!(browser.visible("button[data-control='lanes/bulk/resume']").await);

    // A hand backfill (bulk) waits; a subscription (urgent) lands meanwhile.
    let to = tickfill::domain::window::floor_minute(chrono::Utc::now());
    app.push(&crate::helpers::hand_backfill(10000001, to)).await;
    wait_until(20, "the hand backfill to be pending", || async {
        jobs(&app, &admin, "state=pending&lane=bulk&kind=backfill").await["matched"] == 1
    })
    .await;
    // The page was loaded once; from here on it changes only by itself.
    browser.run("window.loadedOnce = true", json!([])).await;
    let done_on_page = || async {
        browser.text("tr[data-lane=urgent] td:nth-child(5)").await.and_then(|t| t.parse::<u64>().ok()).unwrap_or(0)
    };
    let done_before = done_on_page().await;
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE reason = 'subscribe' AND outcome = 'stored'", 1).await;
    let finished = std::time::Instant::now();
    wait_until(20, "the page to count the finished job", || async { done_on_page().await > done_before }).await;
    // The issue's goal is 2 s; the test allows a busy machine and prints what it saw.
    eprintln!("the page showed the finished job {:?} after its run was committed", finished.elapsed());
    assert_eq!(browser.run("return window.loadedOnce === true", json!([])).await, true, "the page reloaded");
    assert_eq!(
        app.count("SELECT count(*) FROM backfill_runs WHERE reason = 'manual'").await,
        0,
        "bulk ran while paused"
    );

    // Resumed on the page: the hand backfill runs.
    browser.click("button[data-control='lanes/bulk/resume']").await;
    app.wait_count(30, "SELECT count(*) FROM backfill_runs WHERE reason = 'manual' AND outcome = 'stored'", 1).await;
    wait_until(20, "the page to show the bulk lane running", || async {
        browser.text("tr[data-lane=bulk] td.state").await.as_deref() == Some("running")
    })
    .await;

    // The admin server restarts on the same address: the page, never reloaded, follows again (its
    // stream reconnects, its session is in Redis).
    first_server.trigger();
    wait_until(20, "the first admin server to stop", || async {
        app.http.get(format!("{admin}/healthz")).send().await.is_err()
    })
    .await;
    let again = admin_server_at(&app, admin.trim_start_matches("http://"), app.shutdown.clone()).await;
    assert_eq!(again, admin);
    let done_before = done_on_page().await;
    assert_eq!(app.subscribe_via_sim(10000002).await, 201);
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE reason = 'subscribe' AND outcome = 'stored'", 2).await;
    wait_until(20, "the page to count the job finished after the restart", || async {
        done_on_page().await > done_before
    })
    .await;
    assert_eq!(browser.run("return window.loadedOnce === true", json!([])).await, true, "the page reloaded");
    assert_eq!(browser.text("#who").await.as_deref(), Some("signed in: admin"));

    // The charts have points for the work that ran.
    wait_until(30, "the jobs chart to draw the finished jobs", || async {
        let total =
            browser.run("return document.querySelector(\"figure[data-chart='Jobs']\").dataset.total", json!([])).await;
        total.as_str().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0) >= 2
    })
    .await;
    assert!(browser.count("figure[data-chart='Jobs'] canvas").await >= 1, "the chart is drawn");
    assert!(browser.count("figure[data-chart='Rows stored'] canvas").await >= 1);
    browser.screenshot("overview-charts").await;

    // A job's own page: its timeline from the bridge to the commit.
    let run = jobs(&app, &admin, "state=finished&token=256265").await;
    let id = run["jobs"][0]["id"].as_str().unwrap().to_string();
    browser.go(&format!("{admin}/jobs/{id}")).await;
    wait_until(20, "the timeline", || async { browser.count("#timeline tr[data-what=committed]").await == 1 }).await;
    let steps = browser
        .strings("return [...document.querySelectorAll('#timeline tr[data-what]')].map(r => r.dataset.what)")
        .await;
    for want in ["pushed", "started", "committed", "ended", "run recorded"] {
        assert!(steps.iter().any(|s| s == want), "{want} is not in the timeline {steps:?}");
    }
    assert_eq!(browser.text("#outcome").await.as_deref(), Some("stored"));
    browser.screenshot("job-timeline").await;
}
