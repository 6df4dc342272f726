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

async fn post(app: &TestApp, admin: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = app.http.post(format!("{admin}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_actions_act_on_exactly_what_the_filter_matches_with_a_dry_run_and_a_cap() {
    let app = TestApp::spawn().await;
    let mut settings = app.settings.clone();
    settings.admin.token = Some(tickfill::config::Secret::new("op-token"));
    let state = AdminState { settings: settings.clone(), redis: app.redis.clone(), pool: Some(app.db.pool.clone()) };
    let admin = format!("http://{}", admin::spawn(state, app.shutdown.clone()).await.unwrap());
    dead_subscriptions(&app, &[99901, 99902, 99903, 99904, 99905]).await;
    crate::helpers::wait_until(30, "five dead jobs", || async {
        get(&app, &admin, "state=dead").await.1["matched"] == 5
    })
    .await;
    let dead_ids = || async { ids(&get(&app, &admin, "state=dead").await.1).into_iter().collect::<BTreeSet<_>>() };
    let before = dead_ids().await;

    // Refused: no token, no filter without all=true, a state the action does not act on, a typo.
    assert_eq!(post(&app, &admin, "/api/jobs/purge?token=99901", None).await.0, 401);
    let (status, body) = post(&app, &admin, "/api/jobs/purge", Some("op-token")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("all=true"), "{body}");
    assert_eq!(post(&app, &admin, "/api/jobs/retry?state=pending", Some("op-token")).await.0, 400);
    assert_eq!(post(&app, &admin, "/api/jobs/purge?tokn=99901", Some("op-token")).await.0, 400);
    assert_eq!(post(&app, &admin, "/api/jobs/explode?token=1", Some("op-token")).await.0, 404);
    assert_eq!(dead_ids().await, before, "a refused action changed the dead set");

    // A dry run says what it would do and does nothing.
    let (status, dry) = post(&app, &admin, "/api/jobs/retry?token=99902&dry_run=true", Some("op-token")).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(
        (dry["matched"].as_u64(), dry["would_act"].as_u64(), dry["cap"].as_u64()),
        (Some(1), Some(1), Some(1000))
    );
    assert_eq!(dry["sample"][0]["token"], 99902);
    assert_eq!(dead_ids().await, before);

    // A purge of one token's dead jobs: exactly those go.
    let (status, purged) = post(&app, &admin, "/api/jobs/purge?token=99901", Some("op-token")).await;
    assert_eq!((status, purged["acted"].as_u64()), (200, Some(1)), "{purged}");
    let after = dead_ids().await;
    assert_eq!(before.difference(&after).count(), 1);
    assert_eq!(get(&app, &admin, "token=99901&state=dead").await.1["matched"], 0);

    // A capped retry through the CLI: two of the four, the oldest, the rest stated as remaining.
    let listed = get(&app, &admin, "state=dead&limit=1000").await.1;
    let oldest: BTreeSet<String> = ids(&listed).into_iter().rev().take(2).collect();
    let (code, out, err) = crate::helpers::run_cli(
        &app.settings,
        &["jobs", "retry", "--error", "unknown instrument", "--cap", "2", "--json"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let retried: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (retried["matched"].as_u64(), retried["acted"].as_u64(), retried["remaining"].as_u64()),
        (Some(4), Some(2), Some(2)),
        "{retried}"
    );
    assert!(retried["jobs"].as_array().unwrap().iter().all(|j| j["new_id"].is_string()));
    let acted: BTreeSet<String> =
        retried["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(acted, oldest, "a capped retry did not take the oldest first");

    // Cancel: two scheduled hand backfills of one token, a third of another; only the first two go.
    let to = tickfill::domain::window::floor_minute(chrono::Utc::now());
    let mut producer = tickfill::queue::Producer::new(app.redis.clone(), &app.settings);
    for (i, t) in [256265u32, 256265, 10000001].iter().enumerate() {
        let job = tickfill::jobs::Job::Backfill {
            token: crate::helpers::tok(*t),
            from: to - chrono::Duration::hours(i as i64 + 1),
            to,
            reason: tickfill::jobs::Reason::Manual,
            force: false,
        };
        producer.push_as(&job, &format!("later-{i}"), Some(std::time::Duration::from_secs(3600))).await.unwrap();
    }
    assert_eq!(get(&app, &admin, "state=scheduled").await.1["matched"], 3);
    let (status, cancelled) = post(&app, &admin, "/api/jobs/cancel?token=256265&kind=backfill", Some("op-token")).await;
    assert_eq!((status, cancelled["acted"].as_u64()), (200, Some(2)), "{cancelled}");
    let (_, left) = get(&app, &admin, "state=scheduled").await;
    assert_eq!((left["matched"].as_u64(), left["jobs"][0]["token"].as_u64()), (Some(1), Some(10000001)), "{left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_lane_keeps_its_jobs_pending_across_a_restart_while_the_other_lane_works_and_resuming_runs_them() {
    let app =
        crate::helpers::TestApp::spawn_with(crate::helpers::AppOptions { start_worker: false, ..Default::default() })
            .await;
    let first = app.start_worker().await;
    let mut settings = app.settings.clone();
    settings.admin.token = Some(tickfill::config::Secret::new("op-token"));
    let state = AdminState { settings: settings.clone(), redis: app.redis.clone(), pool: Some(app.db.pool.clone()) };
    let admin = format!("http://{}", admin::spawn(state, app.shutdown.clone()).await.unwrap());
    assert_eq!(post(&app, &admin, "/api/lanes/bulk/pause", None).await.0, 401);
    assert_eq!(post(&app, &admin, "/api/lanes/fast/pause", Some("op-token")).await.0, 404);
    let (status, body) = post(&app, &admin, "/api/lanes/bulk/pause", Some("op-token")).await;
    assert_eq!((status, body["changed"].as_bool()), (200, Some(true)), "{body}");

    let to = tickfill::domain::window::floor_minute(chrono::Utc::now());
    app.push(&crate::helpers::hand_backfill(10000001, to)).await;
    // The paused lane takes nothing: the job stays pending.
    let pending = || async { get(&app, &admin, "state=pending&kind=backfill&lane=bulk").await.1["matched"] == 1 };
    crate::helpers::wait_until(20, "the hand backfill to be pending", pending).await;
    // The urgent lane works meanwhile.
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE reason = 'subscribe' AND outcome = 'stored'", 1).await;
    let (code, out, _) = run_cli(&app.settings, &["jobs", "stats", "--json"], &[]);
    assert_eq!(code, 0);
    let stats: Value = serde_json::from_str(&out).unwrap();
    let bulk = stats.as_array().unwrap().iter().find(|l| l["lane"] == "bulk").unwrap();
    assert!(bulk["paused"]["since"].is_string(), "{bulk}");

    // A restart: the new worker starts with the lane paused, and the job stays pending; its
    // urgent lane works (so it has started).
    first.trigger();
    let _second = app.start_worker().await;
    assert_eq!(app.subscribe_via_sim(10000002).await, 201);
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE reason = 'subscribe' AND outcome = 'stored'", 2).await;
    // (A job a worker took in the moment before the pause reached it waits a second, scheduled,
    // before it is pending again.)
    crate::helpers::wait_until(20, "the paused lane's job to be pending after the restart", pending).await;
    assert_eq!(get(&app, &admin, "state=running&lane=bulk").await.1["matched"], 0);
    assert_eq!(
        app.count("SELECT count(*) FROM backfill_runs WHERE reason = 'manual'").await,
        0,
        "a paused lane ran a job"
    );

    // Resumed through the CLI: it runs, spending one attempt.
    let (code, out, err) = run_cli(&app.settings, &["jobs", "resume", "--lane", "bulk"], &[]);
    assert_eq!((code, out.trim()), (0, "the bulk lane resumed"), "{err}");
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE reason = 'manual' AND outcome = 'stored'", 1).await;
    assert_eq!(app.count("SELECT max(attempts)::bigint FROM backfill_runs WHERE reason = 'manual'").await, 1);

    // A paused kind waits; resumed, it runs.
    let (code, out, _) = run_cli(&app.settings, &["jobs", "pause", "--kind", "backfill"], &[]);
    assert_eq!((code, out.trim()), (0, "jobs of kind backfill paused"));
    app.push(&crate::helpers::hand_backfill(11000002, to)).await;
    crate::helpers::wait_until(20, "the paused kind's job to be put back", || async {
        app.counter("jobs_kind_paused:backfill").await >= 1
    })
    .await;
    assert_eq!(app.count("SELECT count(*) FROM backfill_runs WHERE instrument_token = 11000002").await, 0);
    let (status, _) = post(&app, &admin, "/api/kinds/backfill/resume", Some("op-token")).await;
    assert_eq!(status, 200);
    app.wait_count(
        30,
        "SELECT count(*) FROM backfill_runs WHERE instrument_token = 11000002 AND outcome = 'stored'",
        1,
    )
    .await;
    // The old meaning of a bare resume is kept.
    let (code, out, _) = run_cli(&app.settings, &["jobs", "resume"], &[]);
    assert_eq!((code, out.trim()), (0, "history requests were not paused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_show_their_ticks_pause_resume_and_run_now() {
    let app = crate::helpers::TestApp::spawn_with(crate::helpers::AppOptions {
        tweak: |s| s.backfill.sweep_interval = tickfill::config::Interval::Every(std::time::Duration::from_secs(1)),
        ..Default::default()
    })
    .await;
    let mut settings = app.settings.clone();
    settings.admin.token = Some(tickfill::config::Secret::new("op-token"));
    let state = AdminState { settings: settings.clone(), redis: app.redis.clone(), pool: Some(app.db.pool.clone()) };
    let admin = format!("http://{}", admin::spawn(state, app.shutdown.clone()).await.unwrap());
    let sweeps =
        || async { app.http.get(format!("{admin}/api/sweeps")).send().await.unwrap().json::<Value>().await.unwrap() };
    let s = sweeps().await;
    assert_eq!(s["paused"], Value::Null, "{s}");
    assert!(s["next_tick"].as_str().unwrap() > s["last_tick"].as_str().unwrap(), "{s}");

    // Paused, the scheduler's ticks push nothing.
    assert_eq!(post(&app, &admin, "/api/sweeps/pause", Some("op-token")).await.0, 200);
    assert!(sweeps().await["paused"]["since"].is_string());
    let stop = app.shutdown.child();
    tokio::spawn(tickfill::scheduler::run(app.settings.clone(), stop.clone()));
    crate::helpers::wait_until(20, "two paused ticks", || async { app.counter("sweep_ticks_paused").await >= 2 }).await;
    let swept = "SELECT count(*) FROM backfill_runs WHERE kind = 'sweep'";
    assert_eq!(app.count(swept).await, 0, "a paused scheduler pushed a sweep");

    // "Sweep now" runs one anyway; it is listed with its duration and what it pushed.
    let (status, now) = post(&app, &admin, "/api/sweeps/now", Some("op-token")).await;
    assert_eq!(status, 200, "{now}");
    app.wait_count(20, swept, 1).await;
    let listed = sweeps().await;
    let recent = &listed["recent"][0];
    assert!(recent["duration_ms"].as_f64().is_some() && recent["jobs_pushed"].is_i64(), "{listed}");

    // Resumed through the CLI, the ticks push again.
    let (code, out, _) = run_cli(&app.settings, &["sweeps", "resume"], &[]);
    assert_eq!((code, out.trim()), (0, "sweeps resumed"));
    app.wait_count(20, swept, 2).await;
    stop.trigger();
    let (code, out, _) = run_cli(&app.settings, &["sweeps", "--json"], &[]);
    assert_eq!(code, 0);
    let cli: Value = serde_json::from_str(&out).unwrap();
    assert!(cli["recent"].as_array().unwrap().len() >= 2 && cli["paused"].is_null(), "{cli}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_keeps_per_minute_counts_of_what_ran() {
    let app = TestApp::spawn().await;
    let state =
        AdminState { settings: app.settings.clone(), redis: app.redis.clone(), pool: Some(app.db.pool.clone()) };
    let admin = format!("http://{}", admin::spawn(state, app.shutdown.clone()).await.unwrap());
    let listed: Value = crate::helpers::json_of(app.http.get(format!("{admin}/api/history"))).await;
    for s in [
        "events_accepted",
        "events_rejected",
        "jobs_done",
        "jobs_failed",
        "jobs_dead",
        "rows_stored",
        "history_requests",
        "throttled",
    ] {
        assert!(listed["series"].as_array().unwrap().iter().any(|x| x == s), "{s} not kept: {listed}");
    }
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    app.publish("not json").await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
    let total = |series: &'static str, extra: &'static str| {
        let url = format!("{admin}/api/history?series={series}{extra}");
        let http = app.http.clone();
        async move {
            let v: Value = crate::helpers::json_of(http.get(url)).await;
            v["points"].as_array().map_or(0, |p| p.iter().map(|p| p[1].as_u64().unwrap()).sum::<u64>())
        }
    };
    crate::helpers::wait_until(10, "the counts to be written", || async {
        total("jobs_done", "").await >= 1
            && total("rows_stored", "").await >= 120
            && total("events_rejected", "").await >= 1
    })
    .await;
    assert!(total("events_accepted", "").await >= 1);
    assert!(total("history_requests", "&step=1h").await >= 1);
    assert!(total("jobs_done", "&lane=urgent&kind=subscribed").await >= 1);
    assert_eq!(total("jobs_done", "&lane=bulk&kind=sweep").await, 0);
    for bad in [
        "series=nope",
        "series=jobs_done&step=5m",
        "series=jobs_done&lane=bulk",
        "series=jobs_done&since=yesterday",
        "serie=jobs_done",
    ] {
        let r = app.http.get(format!("{admin}/api/history?{bad}")).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_token_sees_and_cannot_act_a_cross_site_post_does_nothing_and_every_change_is_audited() {
    let app = TestApp::spawn().await;
    let mut settings = app.settings.clone();
    settings.admin.token = Some(tickfill::config::Secret::new("op-token"));
    settings.admin.read_token = Some(tickfill::config::Secret::new("look-token"));
    let state = AdminState { settings: settings.clone(), redis: app.redis.clone(), pool: Some(app.db.pool.clone()) };
    let addr = admin::spawn(state, app.shutdown.clone()).await.unwrap();
    let admin = format!("http://{addr}");
    dead_subscriptions(&app, &[99901, 99902]).await;
    let read = |path: &str, token: Option<&str>| {
        let mut r = app.http.get(format!("{admin}{path}"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    // Reads need one of the two tokens; health and metrics stay open.
    assert_eq!(read("/api/jobs", None).await, 401);
    assert_eq!(read("/api/jobs", Some("wrong")).await, 401);
    assert_eq!(read("/api/jobs", Some("look-token")).await, 200);
    assert_eq!(read("/api/jobs", Some("op-token")).await, 200);
    assert_eq!(read("/healthz", None).await, 200);
    crate::helpers::wait_until(30, "two dead jobs", || async {
        let r = app.http.get(format!("{admin}/api/jobs?state=dead")).bearer_auth("look-token").send().await.unwrap();
        r.json::<Value>().await.unwrap()["matched"] == 2
    })
    .await;

    // The read token acts on nothing, dry runs included.
    assert_eq!(post(&app, &admin, "/api/jobs/purge?token=99901", Some("look-token")).await.0, 403);
    assert_eq!(post(&app, &admin, "/api/jobs/retry?token=99901&dry_run=true", Some("look-token")).await.0, 403);
    assert_eq!(post(&app, &admin, "/api/lanes/bulk/pause", Some("look-token")).await.0, 403);

    // The page's session: an HttpOnly, SameSite=Strict cookie for the token's role.
    let session = |token: &'static str| {
        let http = app.http.clone();
        let url = format!("{admin}/api/session");
        async move {
            let r = http.post(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let cookie = r.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().to_string();
            assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
            cookie.split(';').next().unwrap().to_string()
        }
    };
    let looking = session("look-token").await;
    let r = app.http.get(format!("{admin}/api/jobs")).header("cookie", &looking).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let acting = session("op-token").await;
    let with_cookie = |path: &str, origin: Option<&str>| {
        let mut r = app.http.post(format!("{admin}{path}")).header("cookie", &acting);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    // A cross-site form post carries the cookie, and does nothing.
    let forged = app
        .http
        .post(format!("{admin}/api/jobs/purge?token=99901"))
        .header("cookie", &acting)
        .header("origin", "http://evil.example")
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(with_cookie("/api/jobs/purge?token=99901", None).await, 403, "a cookie without an origin acted");
    let dead = || async {
        let r = app.http.get(format!("{admin}/api/jobs?state=dead")).bearer_auth("op-token").send().await.unwrap();
        r.json::<Value>().await.unwrap()["matched"].as_u64().unwrap()
    };
    assert_eq!(dead().await, 2, "a refused request changed something");
    // From the page itself it acts.
    assert_eq!(with_cookie("/api/jobs/purge?token=99901", Some(&admin)).await, 200);
    assert_eq!(dead().await, 1);

    // The audit: the purge, by the admin token, with its count; none of the refused requests.
    let (code, out, err) = run_cli(&app.settings, &["jobs", "purge", "--token", "99902"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("purge: 1 of 1") && err.is_empty(), "{out} {err}");
    let audit: Value =
        crate::helpers::json_of(app.http.get(format!("{admin}/api/audit")).bearer_auth("look-token")).await;
    let entries = audit.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{audit:#}");
    assert_eq!((entries[0]["actor"].as_str(), entries[0]["action"].as_str()), (Some("cli"), Some("jobs.purge")));
    assert_eq!((entries[1]["actor"].as_str(), entries[1]["action"].as_str()), (Some("admin"), Some("jobs.purge")));
    assert_eq!((entries[1]["matched"].as_i64(), entries[1]["acted"].as_i64()), (Some(1), Some(1)));
    assert_eq!(entries[1]["target"]["query"]["token"], "99901");
    let (code, out, _) = run_cli(&app.settings, &["audit", "--json"], &[]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), audit, "the CLI and the API list the audit differently");

    // Every answer forbids framing and carries a strict policy.
    let page = app.http.get(format!("{admin}/")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
}

/// The data of the next `stats` event of a server-sent event stream.
async fn next_event<S>(body: &mut S, text: &mut String) -> Value
where
    S: futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin,
{
    use futures::StreamExt;
    loop {
        if let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            let data = event.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(data), true) = (data, event.contains("event: stats")) {
                return serde_json::from_str::<Value>(data).unwrap();
            }
            continue;
        }
        let chunk = body.next().await.expect("the stream ended").unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sends_the_figures_at_once_and_again_when_a_job_finishes() {
    let app = TestApp::spawn().await;
    let state =
        AdminState { settings: app.settings.clone(), redis: app.redis.clone(), pool: Some(app.db.pool.clone()) };
    let admin = format!("http://{}", admin::spawn(state, app.shutdown.clone()).await.unwrap());
    let r = app.http.get(format!("{admin}/api/stream")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut body = r.bytes_stream();
    let mut text = String::new();
    let first = tokio::time::timeout(std::time::Duration::from_secs(15), next_event(&mut body, &mut text))
        .await
        .expect("no event at once");
    assert!(first["lanes"].is_array(), "{first}");
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    let changed = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        loop {
            let e = next_event(&mut body, &mut text).await;
            if e["lanes"].as_array().unwrap().iter().any(|l| l["done"].as_u64() >= Some(1)) {
                return e;
            }
        }
    })
    .await
    .expect("no event within 15 s of a job finishing (the page wants 2 s; this deadline is for a busy machine)");
    assert!(changed["counters"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_page_shows_its_payload_run_and_timeline_from_event_to_commit() {
    let app = TestApp::spawn().await;
    let state =
        AdminState { settings: app.settings.clone(), redis: app.redis.clone(), pool: Some(app.db.pool.clone()) };
    let admin = format!("http://{}", admin::spawn(state, app.shutdown.clone()).await.unwrap());
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    dead_subscriptions(&app, &[99901]).await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
    crate::helpers::wait_until(20, "the unknown token's job to die", || async {
        get(&app, &admin, "state=dead").await.1["matched"] == 1
    })
    .await;
    let stored = get(&app, &admin, "state=finished&token=256265").await.1;
    let id = stored["jobs"][0]["id"].as_str().unwrap().to_string();
    let what = |detail: &Value| -> Vec<String> {
        detail["timeline"].as_array().unwrap().iter().map(|m| m["what"].as_str().unwrap().to_string()).collect()
    };
    let detail = || async {
        let r = app.http.get(format!("{admin}/api/jobs/{id}")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    // The attempt's marks are written as it ends, just after its commit.
    crate::helpers::wait_until(10, "the attempt's marks", || async {
        what(&detail().await).contains(&"ended".to_string())
    })
    .await;
    let d = detail().await;
    let steps = what(&d);
    for step in ["received", "pushed", "started", "answered", "committed", "ended", "run recorded"] {
        assert!(steps.contains(&step.to_string()), "{step} missing from {steps:?}");
    }
    let at = |step: &str| {
        d["timeline"].as_array().unwrap().iter().find(|m| m["what"] == step).unwrap()["at"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        at("received") <= at("pushed") && at("pushed") <= at("started") && at("started") <= at("committed"),
        "{d:#}"
    );
    assert_eq!(d["run"]["outcome"], "stored");
    assert_eq!(
        d["timeline"].as_array().unwrap().iter().find(|m| m["what"] == "committed").unwrap()["detail"]["rows"],
        120
    );

    // A dead job, by its task id: its payload and a failed attempt.
    let dead = get(&app, &admin, "state=dead").await.1;
    let dead_id = dead["jobs"][0]["id"].as_str().unwrap();
    let r: Value = crate::helpers::json_of(app.http.get(format!("{admin}/api/jobs/{dead_id}"))).await;
    assert_eq!(r["payload"]["job"]["kind"], "subscribed", "{r}");
    let ended = r["timeline"].as_array().unwrap().iter().find(|m| m["what"] == "ended").unwrap().clone();
    assert_eq!(ended["detail"]["result"], "failed", "{r}");
    for (path, status) in [("/api/jobs/01NOPE0000000000000000000", 404), ("/api/jobs/a%20b", 400)] {
        assert_eq!(app.http.get(format!("{admin}{path}")).send().await.unwrap().status(), status, "{path}");
    }
}
