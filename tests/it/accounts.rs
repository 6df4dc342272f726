//! Several accounts: requests routed to an account that can serve, Kite sessions held in Redis
//! and renewed through the login callback without a restart, a refused session stopping only its
//! account, breakers, and start-up refusing a malformed accounts setting.

use std::{io::Write, time::Duration};

use chrono::Utc;
use serde_json::Value;
use tickfill::{
    accounts,
    admin::{self, AdminState},
    config::{NamedAccount, Secret, Settings, TickerApi},
    jobs::{Job, Reason},
    queue::{self, accounts::SessionState},
    sim::SimOptions,
    ticker::budget::Budget,
};

use crate::helpers::{tickfill_command, tok, unique, wait_until, AppOptions, TestApp};

/// Named accounts with the simulator's Kite apps (`kite_NAME`, `secret_NAME`).
fn named(names: &[&str], limit: Option<u32>) -> Vec<NamedAccount> {
    names
        .iter()
        .map(|n| NamedAccount {
            name: n.to_string(),
            rate_limit: limit,
            kite_api_key: Secret::new(format!("kite_{n}")),
            kite_api_secret: Secret::new(format!("secret_{n}")),
        })
        .collect()
}

/// The first synthetic equity of the simulator's universe.
const FIRST_EQUITY: u32 = 20_000_001;

/// An app whose simulator has `names` as accounts (each held to `max_rps`), with no bridge or
/// worker; returns it with Kite-mode settings for those accounts and an admin server on them.
async fn kite_accounts(names: &[&str], limit: Option<u32>, max_rps: Option<u32>) -> (TestApp, Settings, String) {
    kite_accounts_with(SimOptions { max_rps, ..Default::default() }, names, limit).await
}

/// [`kite_accounts`] with a simulator of `sim` (its universe and accounts set here).
async fn kite_accounts_with(sim: SimOptions, names: &[&str], limit: Option<u32>) -> (TestApp, Settings, String) {
    let sim = SimOptions { universe: 60, accounts: names.iter().map(|n| n.to_string()).collect(), ..sim };
    let app =
        TestApp::spawn_with(AppOptions { sim, start_bridge: false, start_worker: false, ..Default::default() }).await;
    let mut s = app.settings.clone();
    s.ticker.api = TickerApi::Kite;
    s.ticker.kite_url = app.sim_url.clone();
    s.accounts.named = named(names, limit);
    s.queue.shutdown_timeout = Duration::from_secs(1);
    let state = AdminState { settings: s.clone(), redis: app.redis.clone(), pool: Some(app.db.pool.clone()) };
    let addr = admin::spawn(state, app.shutdown.clone()).await.unwrap();
    (app, s, format!("http://{addr}"))
}

/// A person logging in to the simulator's Kite as `account`: a fresh request token.
async fn request_token(app: &TestApp, account: &str) -> String {
    let v: Value =
        crate::helpers::json_of(app.http.post(format!("{}/sim/login?api_key=kite_{account}", app.sim_url))).await;
    v["request_token"].as_str().unwrap().to_string()
}

/// Kite's redirect to the callback with `query`: (status, page).
async fn callback(app: &TestApp, admin: &str, account: &str, query: &str) -> (u16, String) {
    let r = app.http.get(format!("{admin}/kite/callback/{account}?{query}")).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn login(app: &TestApp, admin: &str, account: &str) {
    let rt = request_token(app, account).await;
    let (status, page) =
        callback(app, admin, account, &format!("request_token={rt}&action=login&type=login&status=success")).await;
    assert_eq!(status, 200, "{page}");
}

/// A hand backfill of the last hour for each of `tokens`.
fn last_hour(tokens: std::ops::Range<u32>) -> Vec<Job> {
    let to = tickfill::domain::window::floor_minute(Utc::now());
    tokens
        .map(|t| Job::Backfill {
            token: tok(t),
            from: to - chrono::Duration::hours(1),
            to,
            reason: Reason::Manual,
            force: false,
        })
        .collect()
}

async fn session_of(s: &Settings, redis: &tickfill::queue::RedisConn, account: &str) -> SessionState {
    let report = accounts::report(s, &mut redis.clone()).await.unwrap();
    report.into_iter().find(|r| r.account == account).unwrap().session
}

async fn stored_token(s: &Settings, redis: &tickfill::queue::RedisConn, account: &str) -> Option<String> {
    queue::accounts::session_token(&mut redis.clone(), &s.queue.name, account)
        .await
        .unwrap()
        .map(|t| t.expose().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_callback_stores_a_session_only_from_a_good_fresh_login() {
    let (app, mut s, admin) = kite_accounts(&["a", "b"], None, None).await;
    // b's secret is wrong: its checksum cannot match.
    s.accounts.named[1].kite_api_secret = Secret::new("not-the-secret");
    let state = AdminState { settings: s.clone(), redis: app.redis.clone(), pool: None };
    let admin_b = format!("http://{}", admin::spawn(state, app.shutdown.clone()).await.unwrap());

    let rt = request_token(&app, "a").await;
    let refused = [
        ("missing request_token", "a", "action=login&status=success".to_string(), 400),
        ("missing status", "a", format!("request_token={rt}&action=login"), 400),
        ("missing action", "a", format!("request_token={rt}&status=success"), 400),
        ("status not success", "a", format!("request_token={rt}&action=login&status=cancelled"), 400),
        ("not a login", "a", format!("request_token={rt}&action=basket&status=success"), 400),
        ("malformed request_token", "a", "request_token=%3Cscript%3E&action=login&status=success".into(), 400),
        ("a parameter twice", "a", format!("request_token={rt}&request_token=x&action=login&status=success"), 400),
        ("unknown account", "nobody", format!("request_token={rt}&action=login&status=success"), 404),
    ];
    for (what, account, query, want) in refused {
        let (status, page) = callback(&app, &admin, account, &query).await;
        assert_eq!(status, want, "{what}: {page}");
        assert!(page.contains("not stored") || status == 400, "{what}: {page}");
        assert!(!page.contains("<script>"), "{what}: the page echoes markup: {page}");
    }
    assert_eq!(session_of(&s, &app.redis, "a").await, SessionState::Missing, "a refused login stored a session");

    // A bad checksum: Kite refuses the exchange; nothing is stored.
    let rt_b = request_token(&app, "b").await;
    let (status, page) =
        callback(&app, &admin_b, "b", &format!("request_token={rt_b}&action=login&type=login&status=success")).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("checksum"), "{page}");
    assert_eq!(session_of(&s, &app.redis, "b").await, SessionState::Missing);

    // The good login: stored, checked, and shown without its token.
    let (status, page) =
        callback(&app, &admin, "a", &format!("request_token={rt}&action=login&type=login&status=success")).await;
    assert_eq!(status, 200, "{page}");
    let token = stored_token(&s, &app.redis, "a").await.expect("a session stored");
    assert!(!page.contains(&token), "the page shows the access token");
    match session_of(&s, &app.redis, "a").await {
        SessionState::Valid { user, via, expires_at, .. } => {
            assert_eq!((user.as_str(), via.as_str()), ("SIM_A", "login"));
            assert_eq!(expires_at, tickfill::domain::session::kite_session_end(Utc::now()));
        }
        other => panic!("a's session is {other:?}"),
    }
    let listed = app.http.get(format!("{admin}/api/accounts")).send().await.unwrap().text().await.unwrap();
    assert!(!listed.contains(&token) && listed.contains("\"state\":\"valid\""), "{listed}");

    // The same redirect again: refused before Kite is asked, the session untouched.
    let (status, page) =
        callback(&app, &admin, "a", &format!("request_token={rt}&action=login&type=login&status=success")).await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("presented before"), "{page}");
    assert_eq!(stored_token(&s, &app.redis, "a").await.as_deref(), Some(token.as_str()));

    // A flood of redirects (they need no bearer token) is cut off per account and minute.
    let mut statuses = Vec::new();
    for i in 0..45 {
        statuses
            .push(callback(&app, &admin, "b", &format!("request_token=flood{i}&action=login&status=success")).await.0);
    }
    assert!(statuses.contains(&429), "45 redirects in a minute were all taken: {statuses:?}");
    assert!(statuses.iter().all(|s| [403, 429].contains(s)), "{statuses:?}");
    assert_eq!(session_of(&s, &app.redis, "b").await, SessionState::Missing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_accounts_refused_session_moves_its_work_to_the_others_and_a_new_login_resumes_it() {
    let (app, s, admin) = kite_accounts(&["a", "b", "c"], Some(2), Some(2)).await;
    for a in ["a", "b", "c"] {
        login(&app, &admin, a).await;
    }
    let state = tickfill::worker::build_state(s.clone(), None).await.unwrap();
    tokio::spawn(tickfill::worker::run(state, app.shutdown.child()));
    let mut next = FIRST_EQUITY;
    let mut push = |n: u32| {
        next += n;
        last_hour(next - n..next)
    };
    let stored = "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'";
    let requests = |v: &Value, a: &str| v["by_account"][a]["history_requests"].as_u64().unwrap();
    let mut producer = queue::Producer::new(app.redis.clone(), &s);
    producer.push_many(&push(12)).await.unwrap();
    app.wait_count(30, stored, 12).await;
    let first = app.sim_stats().await;
    for a in ["a", "b", "c"] {
        assert!(requests(&first, a) > 0, "account {a} served nothing of a refill: {}", first["by_account"]);
    }

    // b's session ends at Kite (a master logout): its work goes to a and c, and nothing dies.
    app.http.post(format!("{}/sim/expire?account=b", app.sim_url)).send().await.unwrap();
    producer.push_many(&push(12)).await.unwrap();
    app.wait_count(30, stored, 24).await;
    wait_until(10, "b's session to be ended", || async {
        matches!(session_of(&s, &app.redis, "b").await, SessionState::Expired { .. })
    })
    .await;
    let refused = app.sim_stats().await;
    producer.push_many(&push(12)).await.unwrap();
    app.wait_count(30, stored, 36).await;
    let after = app.sim_stats().await;
    assert_eq!(requests(&after, "b"), requests(&refused, "b"), "b was asked while its session had ended");
    assert_eq!(after["by_status"]["403"], refused["by_status"]["403"], "a refused session was sent again");
    assert!(requests(&after, "a") > requests(&refused, "a") && requests(&after, "c") > requests(&refused, "c"));

    // A new login for b: its requests resume, nothing restarted.
    login(&app, &admin, "b").await;
    producer.push_many(&push(12)).await.unwrap();
    app.wait_count(30, stored, 48).await;
    let renewed = app.sim_stats().await;
    assert!(
        requests(&renewed, "b") > requests(&after, "b"),
        "b was not used after its new login: {}",
        renewed["by_account"]
    );
    assert_eq!(app.count("SELECT count(*) FROM backfill_runs WHERE outcome <> 'stored'").await, 0);
    assert_eq!(
        app.count("SELECT max(attempts)::bigint FROM backfill_runs").await,
        1,
        "a refused session spent an attempt"
    );
    assert_eq!(renewed["by_status"]["429"], Value::Null, "an account went over its limit: {}", renewed["by_status"]);
    let served: Vec<String> = sqlx::query_scalar("SELECT DISTINCT accounts FROM backfill_runs ORDER BY 1")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(served, vec!["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_name_the_subscriptions_account_and_an_unconfigured_one_is_served_and_said() {
    let sim = SimOptions { universe: 10, accounts: vec!["primary".into(), "secondary".into()], ..Default::default() };
    let app = TestApp::spawn_with(AppOptions {
        sim,
        tweak: |s| s.accounts.named = named(&["primary", "secondary"], None),
        ..Default::default()
    })
    .await;
    let subscribe = |token: u32, account: Option<&str>| {
        let mut body = serde_json::json!({"instrument_token": token});
        if let Some(a) = account {
            body["account_id"] = a.into();
        }
        let req = app.http.post(format!("{}/subscriptions", app.sim_url)).json(&body);
        async move { assert!(req.send().await.unwrap().status().is_success()) }
    };
    subscribe(FIRST_EQUITY, Some("secondary")).await;
    subscribe(FIRST_EQUITY + 1, Some("ghost")).await;
    subscribe(FIRST_EQUITY + 2, None).await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 3).await;
    let runs: Vec<(i64, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT instrument_token, accounts, note FROM backfill_runs ORDER BY instrument_token")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(runs[0].1.as_deref(), Some("secondary"));
    assert_eq!(runs[1].1.as_deref(), Some("primary"));
    let note = runs[1].2.as_deref().unwrap_or_default();
    assert!(note.contains("\"ghost\"") && note.contains("primary"), "{note}");
    assert_eq!((runs[2].1.as_deref(), runs[2].2.as_deref()), (Some("primary"), None));
    let stats = app.sim_stats().await;
    assert_eq!(stats["by_account"]["secondary"]["history_requests"], 1);
    assert_eq!(stats["by_account"]["primary"]["history_requests"], 2);
    assert_eq!(stats["by_status"]["400"], Value::Null, "a request named an account the ticker does not have");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_429s_open_an_accounts_breaker_and_an_ended_session_is_passed_over() {
    let app = TestApp::spawn_with(AppOptions { start_bridge: false, start_worker: false, ..Default::default() }).await;
    let mut s = app.settings.clone();
    s.accounts.named = named(&["a", "b"], Some(100));
    let mut redis = app.redis.clone();
    let policy = queue::accounts::BreakerPolicy::default();
    assert_eq!(queue::accounts::throttled(&mut redis, &s.queue.name, "a", policy).await.unwrap(), None);
    assert_eq!(queue::accounts::throttled(&mut redis, &s.queue.name, "a", policy).await.unwrap(), None);
    let opened = queue::accounts::throttled(&mut redis, &s.queue.name, "a", policy).await.unwrap();
    assert_eq!(opened, Some(policy.base), "the third 429 within the window opens the breaker");
    for _ in 0..5 {
        assert_eq!(
            queue::accounts::throttled(&mut redis, &s.queue.name, "a", policy).await.unwrap(),
            None,
            "reopened while open"
        );
    }
    let budget = Budget::new(redis.clone(), &s);
    for _ in 0..10 {
        let g = budget.take(tickfill::jobs::Lane::Bulk, Some(0), "test", |_| {}).await;
        assert_eq!(g.account, 1, "a grant from an account whose breaker is open");
    }
    let report = accounts::report(&s, &mut redis).await.unwrap();
    assert_eq!((report[0].breaker.state, report[0].breaker.level), ("open", 1));
    assert_eq!(report[1].breaker.state, "closed");
    assert_eq!(report[1].grants_last_minute, 10);

    // A source that throttles one request in ten at the allowed rate is not hammered: account b
    // takes 60 grants with a 429 after every tenth, and its breaker stays closed.
    for i in 1..=60 {
        let g = budget.take(tickfill::jobs::Lane::Bulk, Some(1), "test", |_| {}).await;
        assert_eq!(g.account, 1);
        if i % 10 == 0 {
            let opened = queue::accounts::throttled(&mut redis, &s.queue.name, "b", policy).await.unwrap();
            assert_eq!(opened, None, "one 429 in ten opened the breaker");
        }
    }
    assert_eq!(accounts::report(&s, &mut redis).await.unwrap()[1].breaker.state, "closed");

    // Kite mode: an account whose stored session is past its end is never granted.
    s.ticker.api = TickerApi::Kite;
    s.accounts.named = named(&["k"], Some(100));
    let past = Utc::now() - chrono::Duration::seconds(1);
    queue::accounts::set_session(&mut redis, &s.queue.name, "k", &Secret::new("tok123"), past, "cli", "")
        .await
        .unwrap();
    assert!(matches!(session_of(&s, &app.redis, "k").await, SessionState::Expired { .. }));
    let budget = Budget::new(redis.clone(), &s);
    let blocked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = blocked.clone();
    let take = budget.take(tickfill::jobs::Lane::Urgent, None, "test", move |_| {
        seen.store(true, std::sync::atomic::Ordering::SeqCst)
    });
    assert!(tokio::time::timeout(Duration::from_millis(2500), take).await.is_err(), "granted with an expired session");
    assert!(blocked.load(std::sync::atomic::Ordering::SeqCst), "the waiter was not told that no account can serve");
}

/// `tickfill worker` under `env` (nothing else): exit code and output.
fn worker_with(env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = tickfill_command();
    cmd.arg("worker");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn a_malformed_accounts_setting_stops_start_up_naming_it() {
    let kite = [("TICKER_API", "kite"), ("KITE_API_URL", "http://127.0.0.1:9")];
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("TICKFILL_ACCOUNTS", vec![("TICKFILL_ACCOUNTS", "a,,b")]),
        ("TICKFILL_ACCOUNTS", vec![("TICKFILL_ACCOUNTS", "a,a")]),
        ("TICKFILL_ACCOUNTS", vec![("TICKFILL_ACCOUNTS", "desk-1,DESK_1")]),
        ("TICKFILL_ACCOUNTS", vec![("TICKFILL_ACCOUNTS", "a;b")]),
        ("ACCOUNT_A_RATE_LIMIT", vec![("TICKFILL_ACCOUNTS", "a"), ("ACCOUNT_A_RATE_LIMIT", "three")]),
        ("ACCOUNT_PRIMRY_RATE_LIMIT", vec![("TICKFILL_ACCOUNTS", "primary"), ("ACCOUNT_PRIMRY_RATE_LIMIT", "2")]),
        (
            "ACCOUNT_B_KITE_API_KEY",
            [
                ("TICKFILL_ACCOUNTS", "a,b"),
                ("ACCOUNT_A_KITE_API_KEY", "k1"),
                ("ACCOUNT_A_KITE_API_SECRET", "hushhush1"),
                ("ACCOUNT_B_KITE_API_SECRET", "hushhush2"),
            ]
            .into_iter()
            .chain(kite)
            .collect(),
        ),
    ];
    for (var, env) in cases {
        let (code, out) = worker_with(&env);
        assert_eq!(code, 2, "{env:?}: {out}");
        assert!(out.contains(var), "{env:?} did not name {var}: {out}");
        assert!(!out.contains("hushhush"), "{env:?} printed a secret: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_token_reaches_a_log_line_at_debug() {
    let (app, s, _admin) = kite_accounts(&["a"], None, None).await;
    // A session as Kite issues it, set through the CLI (stdin), used by a worker process at debug,
    // then refused by Kite (ended) and set again.
    let session = |rt: String| {
        let http = app.http.clone();
        let url = format!("{}/session/token", app.sim_url);
        async move {
            let checksum = tickfill::domain::session::kite_checksum("kite_a", &rt, "secret_a");
            let v: Value = crate::helpers::json_of(http.post(url).form(&[
                ("api_key", "kite_a"),
                ("request_token", rt.as_str()),
                ("checksum", checksum.as_str()),
            ]))
            .await;
            v["data"]["access_token"].as_str().unwrap().to_string()
        }
    };
    let dir = std::env::temp_dir().join(unique("tf_it_logs"));
    std::fs::create_dir_all(&dir).unwrap();
    let env = |cmd: &mut std::process::Command| {
        cmd.envs(s.redis.target.env())
            .env("DATABASE_URL", s.store.database_url.expose())
            .env("TICKFILL_QUEUE", &s.queue.name)
            .env("REDIS_CHANNEL_PREFIX", &s.events.channel_prefix)
            .env("TICKER_API", "kite")
            .env("KITE_API_URL", &app.sim_url)
            .env("TICKFILL_ACCOUNTS", "a")
            .env("ACCOUNT_A_KITE_API_KEY", "kite_a")
            .env("ACCOUNT_A_KITE_API_SECRET", "secret_a")
            .env("TICKFILL_CALENDAR", "always")
            .env("BACKFILL_VERIFY", "false")
            .env("LOG_LEVEL", "debug");
    };
    let set = |token: &str, log: &str| {
        let mut cmd = tickfill_command();
        cmd.args(["kite", "session", "set", "--account", "a"]);
        env(&mut cmd);
        let out = dir.join(log);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::options().append(true).open(&out).unwrap());
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(format!("{token}\n").as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "{}", std::fs::read_to_string(&out).unwrap());
    };
    let first = session(request_token(&app, "a").await).await;
    set(&first, "set1.log");
    let mut cmd = tickfill_command();
    cmd.arg("worker");
    env(&mut cmd);
    let log = dir.join("worker.log");
    cmd.stdout(std::fs::File::create(&log).unwrap()).stderr(std::fs::File::options().append(true).open(&log).unwrap());
    let _worker = crate::helpers::ChildGuard(cmd.spawn().unwrap());
    let job = |t: u32| last_hour(t..t + 1).remove(0);
    app.push(&job(FIRST_EQUITY)).await;
    app.wait_count(30, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
    app.http.post(format!("{}/sim/expire", app.sim_url)).send().await.unwrap();
    app.push(&job(FIRST_EQUITY + 1)).await;
    wait_until(20, "the refused session to be ended", || async {
        matches!(session_of(&s, &app.redis, "a").await, SessionState::Expired { .. })
    })
    .await;
    let second = session(request_token(&app, "a").await).await;
    set(&second, "set2.log");
    app.wait_count(30, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 2).await;
    let mut all = String::new();
    for f in ["set1.log", "set2.log", "worker.log"] {
        all += &std::fs::read_to_string(dir.join(f)).unwrap();
    }
    assert!(all.contains("DEBUG") || all.contains("debug"), "the logs are not at debug: {all}");
    assert!(all.contains("Kite refused the account's session"), "{all}");
    for secret in [first.as_str(), second.as_str(), "secret_a"] {
        assert!(!all.contains(secret), "a log line holds {secret}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kites_throttle_in_a_200_is_waited_out_through_the_accounts_and_nothing_dies() {
    let sim = SimOptions { throttle_rate: 0.4, kite_throttle_200: true, ..Default::default() };
    let (app, mut s, admin) = kite_accounts_with(sim, &["a", "b"], Some(50)).await;
    s.ticker.throttle_pause = Duration::from_millis(50);
    login(&app, &admin, "a").await;
    login(&app, &admin, "b").await;
    let state = tickfill::worker::build_state(s.clone(), None).await.unwrap();
    tokio::spawn(tickfill::worker::run(state, app.shutdown.child()));
    queue::Producer::new(app.redis.clone(), &s).push_many(&last_hour(FIRST_EQUITY..FIRST_EQUITY + 20)).await.unwrap();
    app.wait_count(60, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 20).await;
    let stats = app.sim_stats().await;
    let throttled: u64 = ["a", "b"].iter().map(|a| stats["by_account"][a]["throttled"].as_u64().unwrap()).sum();
    assert!(throttled > 0, "the simulator throttled nothing: {stats}");
    assert_eq!(stats["by_status"]["429"], Value::Null, "the throttles came as 429s, not 200s: {stats}");
    assert_eq!(app.count("SELECT count(*) FROM backfill_runs WHERE outcome <> 'stored'").await, 0);
    assert_eq!(app.count("SELECT max(attempts)::bigint FROM backfill_runs").await, 1, "a throttle spent an attempt");
    let counted = app.counter("ticker_errors:throttled").await;
    assert_eq!(counted as u64, throttled, "every throttle in a 200 was taken for one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_command_serves_its_accounts_and_refuses_a_bad_list() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = tickfill_command();
    cmd.args(["sim", "--listen", &format!("127.0.0.1:{port}"), "--accounts", "desk-1,desk_2", "--max-rps", "3"])
        .env("REDIS_URL", crate::helpers::redis_url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _sim = crate::helpers::ChildGuard(cmd.spawn().unwrap());
    let http = reqwest::Client::new();
    let stats = format!("http://127.0.0.1:{port}/stats");
    wait_until(20, "the simulator to serve", || async { http.get(&stats).send().await.is_ok() }).await;
    let v: Value = crate::helpers::json_of(http.get(&stats)).await;
    assert_eq!(v["by_account"].as_object().unwrap().keys().collect::<Vec<_>>(), vec!["desk-1", "desk_2"]);
    for bad in ["a,a", "a,,b", "a b"] {
        let out = tickfill_command().args(["sim", "--accounts", bad]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--accounts"), "{bad}");
    }
}
