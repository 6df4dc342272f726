//! Every instrument its own rows, every request within the source's limits, every retry once:
//! two instruments that share a tradingsymbol keep their own bars, a bad entry of the ticker's
//! list is refused alone, a window longer than the source allows is fetched in pieces, concurrent
//! operators split the dead set between them, and one instrument's coverage never overlaps itself.

use std::collections::HashMap;

use chrono::{Duration, Utc};
use tickfill::{
    jobs::{Job, Lane, Reason},
    queue,
    sim::SimOptions,
    sweep,
    ticker::TickerClient,
};

use crate::helpers::{run_cli, spawn_broken_ticker, tok, wait_until, AppOptions, TestApp};

/// Two synthetic equities made NSE:DUPSYM and BSE:DUPSYM, as NSE:INFY and BSE:INFY are.
async fn two_named_alike(app: &TestApp) {
    for (token, exchange) in [(20000001, "NSE"), (20000002, "BSE")] {
        sqlx::query(
            "UPDATE instruments SET tradingsymbol = 'DUPSYM', name = 'DUP ' || $2, segment = $2, exchange = $2
             WHERE instrument_token = $1",
        )
        .bind(token as i64)
        .bind(exchange)
        .execute(&app.db.pool)
        .await
        .unwrap();
    }
}

/// `token`'s stored closes by minute.
async fn closes(app: &TestApp, token: u32) -> HashMap<i64, f64> {
    let rows: Vec<(chrono::DateTime<Utc>, f64)> =
        sqlx::query_as("SELECT time, close FROM minute_bars WHERE instrument_token = $1")
            .bind(token as i64)
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    rows.into_iter().map(|(t, c)| (t.timestamp(), c)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instruments_that_share_a_name_keep_their_own_bars_and_no_false_revisions() {
    let app =
        TestApp::spawn_with(AppOptions { sim: SimOptions { universe: 2, ..Default::default() }, ..Default::default() })
            .await;
    two_named_alike(&app).await;
    for token in [20000001u32, 20000002] {
        assert_eq!(app.subscribe_via_sim(token).await, 201);
        let sql = format!("SELECT count(*) FROM minute_bars WHERE instrument_token = {token}");
        app.wait_count(30, &sql, 120).await;
    }
    app.wait_idle(30).await;
    for token in [20000001u32, 20000002] {
        let (from, to) = app.subscription_window(token).await;
        let stored = closes(&app, token).await;
        let served = app.sim_candles(token, from, to).await;
        assert_eq!(stored.len(), 120, "{token}: its own 120 minutes");
        assert_eq!(served.len(), stored.len());
        for c in served {
            let t = chrono::DateTime::parse_from_rfc3339(c["date"].as_str().unwrap()).unwrap().timestamp();
            assert_eq!(stored.get(&t).copied(), c["close"].as_f64(), "{token} at {t}: the bar is its own");
        }
        // Coverage counts the bars it proves, once.
        let candles = app.count(&format!("SELECT sum(candles) FROM coverage WHERE instrument_token = {token}")).await;
        assert_eq!(candles, 120);
    }
    assert_eq!(app.count("SELECT count(*) FROM minute_bars WHERE symbol = 'DUPSYM'").await, 240);
    let revisions = app.count("SELECT coalesce(sum(revisions), 0)::bigint FROM day_checks").await;
    assert_eq!(revisions, 0, "another instrument's first fetch is no revision");
    // The rollups of each are its own too.
    for token in [20000001u32, 20000002] {
        let volume =
            app.count(&format!("SELECT sum(volume)::bigint FROM minute_bars WHERE instrument_token = {token}")).await;
        let rolled = app
            .count(&format!("SELECT sum(volume)::bigint FROM minute_bars_5m WHERE instrument_token = {token}"))
            .await;
        assert_eq!(rolled, volume, "{token}");
    }
    // Read by name, each row says which instrument it is.
    let (code, out, err) = run_cli(&app.settings, &["bars", "--symbol", "DUPSYM", "--format", "csv"], &[]);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("time,open,high,low,close,volume,instrument_token,exchange"));
    let tokens: Vec<&str> = lines.map(|l| l.rsplit(',').nth(1).unwrap()).collect();
    assert_eq!(tokens.iter().filter(|t| **t == "20000001").count(), 120);
    assert_eq!(tokens.iter().filter(|t| **t == "20000002").count(), 120);
    assert!(out.contains(",20000002,BSE"), "{out}");
    let (code, _, err) = run_cli(&app.settings, &["bars", "--symbol", "NOSUCH"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("no instrument is named \"NOSUCH\""), "{err}");
}

/// A ticker whose subscription list is `list` (a JSON array), with no history.
async fn ticker_listing(list: serde_json::Value) -> String {
    use axum::{routing::get, Json, Router};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/subscriptions", get(move || async move { Json(list.clone()) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_entry_of_the_tickers_list_is_refused_alone_and_kept_for_inspection() {
    let app = TestApp::spawn_with(AppOptions { start_worker: false, start_bridge: false, ..Default::default() }).await;
    let url = ticker_listing(serde_json::json!([
        {"instrument_token": 256265, "tradingsymbol": "NIFTY 50", "segment": "INDICES", "status": "active"},
        {"instrument_token": 44000003, "tradingsymbol": "BAD\u{0}NUL", "segment": "NSE", "status": "active"},
        {"instrument_token": 0, "tradingsymbol": "ZERO", "status": "active"},
        {"instrument_token": "not a number"},
        {"instrument_token": 99999999999u64},
        "not an object",
        {"instrument_token": "10000001", "tradingsymbol": "NIFTY25DECFUT", "segment": "NFO-FUT", "status": "active"}
    ]))
    .await;
    let mut settings = app.settings.clone();
    settings.ticker.url = url;
    let ticker = TickerClient::new(&settings).unwrap();
    let mut producer = queue::Producer::new(app.redis.clone(), &settings);
    for round in 0..2 {
        let r = sweep::reconcile(&app.db.pool, &ticker, &mut producer, &settings).await.unwrap();
        assert_eq!((r.listed, r.refused), (2, 5), "round {round}: {r:?}");
        if round == 0 {
            assert_eq!(r.added, vec![256265, 10000001]);
        }
    }
    assert_eq!(app.count("SELECT count(*) FROM subscriptions WHERE status = 'active'").await, 2);
    assert_eq!(app.count("SELECT count(*) FROM subscriptions WHERE instrument_token = 44000003").await, 0);
    let (u, b) = (app.depths(Lane::Urgent).await, app.depths(Lane::Bulk).await);
    assert_eq!(u.scheduled + u.active + b.scheduled + b.active, 2, "one backfill each for the two good entries");
    // Kept like rejected events, once each however many reconciles met them.
    let kept = queue::rejected::list_rejected(&mut app.redis.clone(), &settings.queue.name, 100).await.unwrap();
    assert_eq!(kept.len(), 5, "{kept:?}");
    let nul = kept.iter().find(|e| e["message"].as_str().unwrap().contains("44000003")).expect("the NUL entry");
    assert_eq!(nul["code"], "bad_metadata");
    assert_eq!(nul["reason"], "tradingsymbol holds a control character (such as NUL)");
    let (code, out, _) = run_cli(&settings, &["events", "rejected"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("44000003"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_longer_than_the_source_allows_is_fetched_in_sixty_day_requests() {
    let app = TestApp::spawn().await;
    let to = tickfill::domain::window::floor_minute(Utc::now() - Duration::hours(1));
    let from = to - Duration::days(61);
    app.push(&Job::Backfill { token: tok(256265), from, to, reason: Reason::Manual, force: false }).await;
    app.wait_count(120, "SELECT count(*) FROM backfill_runs WHERE reason = 'manual' AND outcome = 'stored'", 1).await;
    assert_eq!(app.count("SELECT count(*) FROM minute_bars").await, 61 * 1440);
    let stats = app.sim_stats().await;
    assert_eq!(stats["history_requests"], 2, "60 days, then 1: {stats}");
    assert_eq!(stats["by_status"]["200"], 2, "{stats}");
    assert_eq!(app.depths(Lane::Bulk).await.dead + app.depths(Lane::Urgent).await.dead, 0);
}

/// The dead jobs of the app's namespace, by token.
async fn dead_tokens(app: &TestApp) -> Vec<u32> {
    let list = queue::dead::list(&mut app.redis.clone(), &app.settings.queue.name).await.unwrap();
    let mut t: Vec<u32> = list.iter().filter_map(|d| d.token.map(|t| t.get())).collect();
    t.sort_unstable();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_and_purges_claim_each_dead_job_once() {
    let broken = spawn_broken_ticker().await;
    let app = TestApp::spawn_with(AppOptions { ticker_url: Some(broken), ..Default::default() }).await;
    // Twelve dead jobs: the broken ticker answers 404 for 1001 and 1009 (the rest of these die
    // as unknown instruments before asking it).
    let tokens: Vec<u32> = (0..12).map(|i| 50_000 + i).collect();
    for t in &tokens {
        app.publish(format!(r#"{{"event_type":"subscription_created","instrument_token":{t},"timestamp":1}}"#)).await;
    }
    wait_until(30, "twelve dead jobs", || async { dead_tokens(&app).await.len() == 12 }).await;
    app.wait_idle(30).await;

    // Three retry-alls at once: they split the twelve.
    let retry_all = |app: &TestApp| {
        let (redis, settings) = (app.redis.clone(), app.settings.clone());
        tokio::spawn(async move {
            let mut conn = redis.clone();
            let list = queue::dead::list(&mut conn, &settings.queue.name).await.unwrap();
            let mut producer = queue::Producer::new(redis, &settings);
            let r = queue::dead::retry(&mut conn, &mut producer, &settings.queue.name, &list).await;
            assert!(r.failed.is_empty(), "{:?}", r.failed);
            (r.retried.len(), r.taken.len())
        })
    };
    let runs = [retry_all(&app), retry_all(&app), retry_all(&app)];
    let mut retried = 0;
    for r in runs {
        retried += r.await.unwrap().0;
    }
    assert_eq!(retried, 12, "each dead job retried by one caller");
    wait_until(30, "the twelve dead again", || async { dead_tokens(&app).await.len() == 12 }).await;
    app.wait_idle(30).await;
    let mut once = tokens.clone();
    once.sort_unstable();
    assert_eq!(dead_tokens(&app).await, once, "no token twice");

    // A purge beside a retry-all: purged + retried = the dead set.
    let purge = {
        let (mut conn, ns) = (app.redis.clone(), app.settings.queue.name.clone());
        tokio::spawn(async move { queue::dead::purge(&mut conn, &ns, None).await.unwrap() })
    };
    let retry = retry_all(&app);
    let (purged, (retried, _)) = (purge.await.unwrap(), retry.await.unwrap());
    assert_eq!(purged + retried, 12, "purged {purged}, retried {retried}");
    wait_until(30, "the retried dead again", || async { dead_tokens(&app).await.len() == retried }).await;
    app.wait_idle(30).await;
    assert_eq!(dead_tokens(&app).await.len(), retried);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_fills_of_one_instrument_leave_one_coverage_row_counting_each_bar_once() {
    let app = TestApp::spawn().await;
    let to = tickfill::domain::window::floor_minute(Utc::now() - Duration::hours(1));
    // Eight overlapping windows of one token, run at once by the worker's four slots.
    let jobs: Vec<Job> = (0..8)
        .map(|i| Job::Backfill {
            token: tok(256265),
            from: to - Duration::minutes(240 - i * 15),
            to: to - Duration::minutes(120 - i * 15),
            reason: Reason::Manual,
            force: true,
        })
        .collect();
    queue::Producer::new(app.redis.clone(), &app.settings).push_many(&jobs).await.unwrap();
    app.wait_count(60, "SELECT count(*) FROM backfill_runs WHERE reason = 'manual' AND outcome = 'stored'", 8).await;
    let bars = app.count("SELECT count(*) FROM minute_bars WHERE instrument_token = 256265").await;
    assert_eq!(bars, 120 + 7 * 15);
    assert_eq!(app.count("SELECT count(*) FROM coverage WHERE instrument_token = 256265").await, 1, "one row");
    let candles = app.count("SELECT sum(candles)::bigint FROM coverage WHERE instrument_token = 256265").await;
    assert_eq!(candles, bars, "coverage counts each stored bar once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instrument_whose_suspects_recur_is_fetched_at_every_sweep_that_wants_them() {
    // Every answer ends 20 minutes early: the tail is suspect at every sweep, with the same
    // number of asks each time (1), which a key made of the sum of asks would take for spent.
    let lies = tickfill::sim::lies::Lies { lag_minutes: 20, ..Default::default() };
    let app = TestApp::spawn_with(AppOptions {
        sim: SimOptions { lies, ..Default::default() },
        tweak: |s| {
            s.backfill.settle = std::time::Duration::ZERO;
            s.backfill.sweep_interval = tickfill::config::Interval::Every(std::time::Duration::from_secs(1));
        },
        ..Default::default()
    })
    .await;
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    app.subscription_window(256265).await;
    app.wait_idle(30).await;
    let mut asked = app.sim_stats().await["history_requests"].as_i64().unwrap();
    let mut fetched = 0;
    for _ in 0..6 {
        // A new set of suspects each time: the suspects of the last answer wait their backoff
        // (1 s), then are due again.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let wanted = !sweep::find_gaps(&app.db.pool, &app.settings, Utc::now()).await.unwrap().is_empty();
        app.sweep_once().await;
        app.wait_idle(30).await;
        let now = app.sim_stats().await["history_requests"].as_i64().unwrap();
        if wanted {
            assert!(now > asked, "a sweep that wanted the instrument fetched it");
            fetched += 1;
        }
        asked = now;
    }
    assert!(fetched >= 2, "the tail was wanted again and again ({fetched} of 6 sweeps)");
    // The source's lag was measured from the answers that asked up to the present, and nothing the
    // lagging source had not yet published was confirmed empty.
    let lag = tickfill::store::suspects::observed_lag(&app.db.pool).await.unwrap();
    assert!(lag >= Duration::minutes(20) && lag < Duration::minutes(22), "{lag}");
    let confirmed = app.count("SELECT count(*) FROM confirmed_empty").await;
    assert_eq!(confirmed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ticker_text_reaches_the_dead_list_and_the_log_inert() {
    let broken = spawn_broken_ticker().await;
    let app = TestApp::spawn_with(AppOptions { ticker_url: Some(broken), ..Default::default() }).await;
    sqlx::query(
        "INSERT INTO instruments (instrument_token, tradingsymbol, segment, exchange) VALUES (1009, 'HOSTILE', 'NSE', 'NSE')",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    app.publish(r#"{"event_type":"subscription_created","instrument_token":1009,"timestamp":1}"#).await;
    let error = app.dead_reason(1009).await;
    assert!(!error.chars().any(char::is_control), "{error:?}");
    assert!(error.contains(r"gone\n2026-12-06T10:00:00Z"), "{error}");
    let (code, out, _) = run_cli(&app.settings, &["jobs", "dead", "list"], &[]);
    assert_eq!(code, 0);
    let line = out.lines().find(|l| l.contains("1009")).expect("the dead job");
    assert_eq!(out.lines().count(), 1, "one job, one line: {out:?}");
    assert!(!line.contains('\u{1b}'), "{line:?}");
    assert!(line.contains(r"\u{1b}[2J"), "{line}");
}
