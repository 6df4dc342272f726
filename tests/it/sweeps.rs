//! Sweeps make the store converge: lost events, holes in the middle, closed markets, removed
//! instruments, many pages of subscriptions, long hand backfills.

use chrono::{DateTime, Duration, Utc};
use tickfill::{
    domain::window::Window,
    jobs::{Envelope, Job, Lane, Reason},
    queue, scheduler,
    sim::{Calendar, SimOptions},
    sweep,
    ticker::TickerClient,
};

use crate::helpers::{run_cli, wait_until, AppOptions, Relay, TestApp};

fn no_bridge() -> AppOptions {
    AppOptions { start_bridge: false, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_lost_while_the_bridge_was_down_are_made_good_by_one_sweep() {
    let app = TestApp::spawn_with(no_bridge()).await;
    for token in [256265, 10_000_001, 11_000_020] {
        assert_eq!(app.subscribe_via_sim(token).await, 201); // published to nobody
    }
    assert_eq!(app.count("SELECT count(*) FROM subscriptions").await, 0);
    app.sweep_once().await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE reason = 'reconcile' AND outcome = 'stored'", 3).await;
    assert_eq!(
        app.count("SELECT count(*) FROM subscriptions WHERE status = 'active' AND source = 'reconcile'").await,
        3
    );
    assert_eq!(app.count("SELECT count(*) FROM minute_bars WHERE instrument_token = 256265").await, 120);
    assert_eq!(app.count("SELECT count(*) FROM futures_bars WHERE instrument_token = 10000001").await, 120);
    assert_eq!(app.count("SELECT count(*) FROM option_bars WHERE instrument_token = 11000020").await, 120);
    app.wait_idle(20).await;
    // The sweep did not also plan backfills for what reconcile had just queued.
    assert_eq!(app.sim_stats().await["history_requests"], 3);
}

/// Subscribes NIFTY 50 through the simulator and waits for its window; returns the window's
/// coverage row (from, to, fetched at).
async fn subscribed_nifty(app: &TestApp) -> (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>) {
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
    sqlx::query_as("SELECT window_from, window_to, fetched_at FROM coverage WHERE instrument_token = 256265")
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

/// Deletes NIFTY's bars in each of `holes` and rewrites its coverage of `[from, to)` around them.
async fn punch_holes(
    app: &TestApp,
    (from, to, fetched): (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>),
    holes: &[(DateTime<Utc>, DateTime<Utc>)],
) {
    sqlx::query("DELETE FROM coverage").execute(&app.db.pool).await.unwrap();
    let mut start = from;
    for &(a, b) in holes.iter().chain([(to, to)].iter()) {
        sqlx::query("DELETE FROM minute_bars WHERE time >= $1 AND time < $2")
            .bind(a)
            .bind(b)
            .execute(&app.db.pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO coverage VALUES (256265, $1, $2, $3, 0)")
            .bind(start)
            .bind(a)
            .bind(fetched)
            .execute(&app.db.pool)
            .await
            .unwrap();
        start = b;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_middle_hour_is_refilled_by_the_next_sweep_with_one_request() {
    let app = TestApp::spawn().await;
    let window = subscribed_nifty(&app).await;
    let (a, b) = (window.0 + Duration::minutes(30), window.0 + Duration::minutes(90));
    punch_holes(&app, window, &[(a, b)]).await;
    assert_eq!(app.count("SELECT count(*) FROM minute_bars").await, 60);
    let before = app.sim_stats().await["history_requests"].as_i64().unwrap();

    app.sweep_once().await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE reason = 'sweep' AND outcome = 'stored'", 1).await;
    app.wait_idle(20).await;
    assert_eq!(app.sim_stats().await["history_requests"].as_i64().unwrap(), before + 1);
    let filled: (DateTime<Utc>, DateTime<Utc>, i32) = sqlx::query_as(
        "SELECT window_from, window_to, rows FROM backfill_runs WHERE reason = 'sweep' AND kind = 'backfill'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(filled, (a, b, 60));
    assert_eq!(app.count("SELECT count(*) FROM minute_bars").await, 120);
    // Coverage is one contiguous row again.
    assert_eq!(app.count("SELECT count(*) FROM coverage").await, 1);
}

/// Three holes in one instrument's window cost one request, not three: the sweep plans one
/// window from the first hole's start to the last's end, and every minute ends up stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_holes_of_one_instrument_are_filled_by_one_request() {
    let app = TestApp::spawn().await;
    let window = subscribed_nifty(&app).await;
    let (from, to, _) = window;
    let m = |n: i64| from + Duration::minutes(n);
    punch_holes(&app, window, &[(m(10), m(20)), (m(50), m(55)), (m(80), m(100))]).await;
    assert_eq!(app.count("SELECT count(*) FROM minute_bars").await, 120 - 35);
    let before = app.sim_stats().await["history_requests"].as_i64().unwrap();

    app.sweep_once().await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE reason = 'sweep' AND outcome = 'stored'", 1).await;
    app.wait_idle(20).await;
    assert_eq!(app.sim_stats().await["history_requests"].as_i64().unwrap(), before + 1, "one request for three holes");
    let planned: Vec<(DateTime<Utc>, DateTime<Utc>)> =
        sqlx::query_as("SELECT window_from, window_to FROM backfill_runs WHERE reason = 'sweep' AND kind = 'backfill'")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(planned, vec![(m(10), m(100))]);
    assert_eq!(app.count("SELECT count(*) FROM minute_bars").await, 120);
    let stored: Vec<(DateTime<Utc>, f64)> =
        sqlx::query_as("SELECT time, close FROM minute_bars WHERE instrument_token = 256265 ORDER BY time")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    let want: Vec<(DateTime<Utc>, f64)> = app
        .sim_candles(256265, from, to)
        .await
        .iter()
        .map(|c| {
            let t = DateTime::parse_from_rfc3339(c["date"].as_str().unwrap()).unwrap().with_timezone(&Utc);
            (t, c["close"].as_f64().unwrap())
        })
        .collect();
    assert_eq!(stored, want);
    assert_eq!(app.count("SELECT count(*) FROM coverage").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_push_exactly_one_sweep_per_tick() {
    let app = TestApp::spawn_with(AppOptions {
        start_bridge: false,
        start_worker: false,
        tweak: |s| s.backfill.sweep_interval = tickfill::config::Interval::parse("1s").unwrap(),
        ..Default::default()
    })
    .await;
    let stop = app.shutdown.child();
    for _ in 0..3 {
        tokio::spawn(scheduler::run(app.settings.clone(), stop.clone()));
    }
    let sweeps = || async {
        let data: Vec<Vec<u8>> = redis::cmd("HVALS")
            .arg(format!("{}:bulk:data", app.settings.queue.name))
            .query_async(&mut app.redis.clone())
            .await
            .unwrap();
        data.iter()
            .map(|d| match serde_json::from_slice::<Envelope>(d).unwrap().decode().unwrap() {
                Job::Sweep { tick } => tick,
                other => panic!("unexpected job {other:?}"),
            })
            .collect::<Vec<_>>()
    };
    wait_until(15, "three ticks", || async { sweeps().await.len() >= 3 }).await;
    stop.trigger();
    let mut ticks = sweeps().await;
    let total = ticks.len();
    ticks.sort();
    ticks.dedup();
    assert_eq!(total, ticks.len(), "a tick was pushed twice: {ticks:?}");
    assert!(ticks.windows(2).all(|w| w[1] - w[0] == Duration::seconds(1)), "{ticks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_nse_calendar_a_weekend_window_is_fetched_once_and_never_again() {
    let app = TestApp::spawn_with(AppOptions {
        sim: SimOptions { calendar: Calendar::Nse, ..Default::default() },
        // The store judges answers by the same sessions the simulator serves.
        tweak: |s| {
            s.backfill.calendar = tickfill::domain::calendar::TradingCalendar::Exchange(s.backfill.calendars.clone())
        },
        ..Default::default()
    })
    .await;
    let args = ["backfill", "--token", "256265", "--from", "2025-11-08T00:00:00Z", "--to", "2025-11-10T00:00:00Z"];
    let (code, out, err) = run_cli(&app.settings, &args, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 rows stored"), "{out}");
    let (code, out, err) = run_cli(&app.settings, &args, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(app.sim_stats().await["history_requests"], 1);
    assert_eq!(app.count("SELECT count(*) FROM backfill_runs WHERE outcome = 'covered'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM coverage WHERE candles = 0").await, 1);
    // --force asks again: the source may have revised its candles.
    let forced: Vec<&str> = args.iter().copied().chain(["--force"]).collect();
    let (code, out, err) = run_cli(&app.settings, &forced, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(app.sim_stats().await["history_requests"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_subscription_awareness_off_a_sweep_fills_every_active_instrument() {
    let app = TestApp::spawn_with(AppOptions {
        start_bridge: false,
        tweak: |s| {
            s.backfill.subscription_aware = false;
            s.ticker.reconcile = false;
            s.backfill.lookback = std::time::Duration::from_secs(15 * 60);
        },
        ..Default::default()
    })
    .await;
    let instruments = app.count("SELECT count(*) FROM instruments WHERE active").await;
    assert_eq!(instruments, 87);
    app.sweep_once().await;
    app.wait_count(30, "SELECT count(*) FROM backfill_runs WHERE reason = 'sweep' AND outcome = 'stored'", instruments)
        .await;
    assert_eq!(app.count("SELECT count(DISTINCT instrument_token) FROM coverage").await, instruments);
    assert_eq!(app.count("SELECT count(*) FROM subscriptions").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_backfill_disabled_a_sweep_pushes_nothing() {
    let app = TestApp::spawn_with(AppOptions {
        start_bridge: false,
        tweak: |s| s.backfill.enabled = false,
        ..Default::default()
    })
    .await;
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    app.sweep_once().await;
    app.wait_idle(10).await;
    assert_eq!(app.count("SELECT rows::bigint FROM backfill_runs WHERE kind = 'sweep'").await, 0);
    assert_eq!(app.sim_stats().await["history_requests"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instrument_removed_on_the_ticker_goes_inactive_and_its_pending_backfills_are_skipped() {
    let app = TestApp::spawn_with(AppOptions {
        start_bridge: false,
        tweak: |s| s.queue.concurrency = 1,
        ..Default::default()
    })
    .await;
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    assert_eq!(app.subscribe_via_sim(10000001).await, 201); // stays: the ticker's list is not empty
    app.sweep_once().await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE reason = 'reconcile' AND outcome = 'stored'", 2).await;
    let status = app.http.delete(format!("{}/subscriptions/256265", app.sim_url)).send().await.unwrap().status();
    assert_eq!(status, 200); // its event is lost too: no bridge
    let before = app.sim_stats().await["history_requests"].as_i64().unwrap();
    // A backfill already waiting in the queue, due after the sweep has run.
    let (from, to) = (Utc::now() - Duration::hours(30), Utc::now() - Duration::hours(29));
    let job = Job::Backfill { token: crate::helpers::tok(256265), from, to, reason: Reason::Sweep, force: false };
    queue::Producer::new(app.redis.clone(), &app.settings)
        .push_as(&job, "pending-test", Some(std::time::Duration::from_secs(2)))
        .await
        .unwrap();
    app.sweep_once().await;
    assert_eq!(app.count("SELECT count(*) FROM subscriptions WHERE status = 'inactive'").await, 1);
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'skipped'", 1).await;
    assert_eq!(app.sim_stats().await["history_requests"].as_i64().unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_hundred_simulator_subscriptions_reconcile_across_two_pages() {
    let app = TestApp::spawn_with(AppOptions {
        sim: SimOptions { universe: 1200, ..Default::default() },
        start_bridge: false,
        start_worker: false,
        ..Default::default()
    })
    .await;
    let tokens: Vec<u32> = (20_000_001..=20_001_200).collect();
    for chunk in tokens.chunks(100) {
        let posts = chunk.iter().map(|t| app.subscribe_via_sim(*t));
        assert!(futures::future::join_all(posts).await.iter().all(|s| *s == 201));
    }
    let ticker = TickerClient::new(&app.settings).unwrap();
    let mut producer = queue::Producer::new(app.redis.clone(), &app.settings);
    let report = sweep::reconcile(&app.db.pool, &ticker, &mut producer, &app.settings).await.unwrap();
    assert_eq!((report.listed, report.added.len(), report.deactivated.len()), (1200, 1200, 0));
    assert_eq!(app.count("SELECT count(*) FROM subscriptions WHERE status = 'active'").await, 1200);
    let queued = app.depths(Lane::Urgent).await;
    assert_eq!(queued.scheduled + queued.active, 1200, "one immediate backfill each");
    // A second pass changes nothing.
    let again = sweep::reconcile(&app.db.pool, &ticker, &mut producer, &app.settings).await.unwrap();
    assert_eq!((again.added.len(), again.deactivated.len()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ninety_day_hand_backfill_makes_two_history_requests() {
    let app = TestApp::spawn_with(AppOptions {
        sim: SimOptions { calendar: Calendar::Nse, ..Default::default() },
        ..Default::default()
    })
    .await;
    let to = tickfill::domain::window::floor_minute(Utc::now());
    let from = to - Duration::days(90);
    let (code, out, err) = run_cli(
        &app.settings,
        &["backfill", "--token", "256265", "--from", &from.to_rfc3339(), "--to", &to.to_rfc3339()],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("pushed 2 backfill job(s)"), "{out}");
    assert_eq!(app.sim_stats().await["history_requests"], 2);
    let stored: i64 = app.count("SELECT COALESCE(sum(rows), 0) FROM backfill_runs WHERE reason = 'manual'").await;
    assert_eq!(stored, app.count("SELECT count(*) FROM minute_bars").await);
    // Every trading minute of 90 days of NSE sessions, holidays and weekends left out.
    let calendars = tickfill::domain::calendar::Calendars::built_in();
    let window = tickfill::domain::window::Window::new(from, to);
    assert_eq!(stored, calendars.trading_minutes(tickfill::domain::calendar::Exchange::Nse, window));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_newest_bar_the_holes_and_the_last_outcome() {
    let app = TestApp::spawn().await;
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
    let status = |app: &TestApp| {
        let (code, out, err) = run_cli(&app.settings, &["status", "--json"], &[]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap()
    };
    let s = status(&app);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["instrument_token"], 256265);
    assert_eq!(s[0]["last_outcome"], "stored");
    assert_eq!(s[0]["holes"], 0);
    assert!(s[0]["newest_bar_age_s"].as_i64().unwrap() < 180);
    sqlx::query("UPDATE coverage SET window_from = window_from + interval '60 minutes'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let s = status(&app);
    assert_eq!((s[0]["holes"].as_i64(), s[0]["missing_minutes"].as_i64()), (Some(1), Some(60)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_cancel_drops_only_that_tokens_pending_backfills() {
    let app = TestApp::spawn_with(AppOptions { start_bridge: false, start_worker: false, ..Default::default() }).await;
    for (token, from) in
        [(256265, "2025-11-03"), (256265, "2025-11-04"), (256265, "2025-11-05"), (10000001, "2025-11-03")]
    {
        let args = [
            "backfill",
            "--no-wait",
            "--token",
            &token.to_string(),
            "--from",
            &format!("{from}T00:00:00Z"),
            "--to",
            &format!("{from}T06:00:00Z"),
        ];
        assert_eq!(run_cli(&app.settings, &args, &[]).0, 0);
    }
    let (code, out, _) = run_cli(&app.settings, &["backfill", "cancel", "--token", "256265"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("cancelled 3"), "{out}");
    let d = app.depths(Lane::Bulk).await;
    assert_eq!(d.scheduled + d.active, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_that_reconnects_pushes_a_catch_up_sweep() {
    let relay = Relay::redis().await;
    let app = TestApp::spawn_with(AppOptions { start_bridge: false, start_worker: false, ..Default::default() }).await;
    let mut settings = app.settings.clone();
    settings.redis = tickfill::config::RedisSettings::at(&relay.redis_url()).unwrap();
    tokio::spawn(tickfill::bridge::run(settings, app.shutdown.clone()));
    let channel = app.channel();
    let subscribed = || async { queue::subscribers(&mut app.redis.clone(), &channel).await.unwrap_or(0) >= 1 };
    wait_until(10, "the bridge to subscribe", subscribed).await;
    assert_eq!(app.depths(Lane::Bulk).await.pending(), 0, "no sweep on the first connection");
    relay.cut();
    wait_until(20, "a catch-up sweep", || async { app.depths(Lane::Bulk).await.pending() == 1 }).await;
    wait_until(10, "the bridge to subscribe again", subscribed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_leaves_a_subscription_whose_event_is_queued_to_its_own_job() {
    let app = TestApp::spawn_with(AppOptions { start_worker: false, ..Default::default() }).await;
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    app.wait_until_queued(1).await;
    let ticker = TickerClient::new(&app.settings).unwrap();
    let mut producer = queue::Producer::new(app.redis.clone(), &app.settings);
    let report = sweep::reconcile(&app.db.pool, &ticker, &mut producer, &app.settings).await.unwrap();
    assert_eq!((report.listed, report.added.len()), (1, 0), "reconcile took over a queued subscription");
    app.start_worker().await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
    app.wait_idle(10).await;
    assert_eq!(app.sim_stats().await["history_requests"], 1, "the window was fetched once");
    // Once recorded, the subscription is ours: reconcile has nothing to add either way.
    let again = sweep::reconcile(&app.db.pool, &ticker, &mut producer, &app.settings).await.unwrap();
    assert_eq!((again.added.len(), again.deactivated.len()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coverage_trimmed_by_the_settle_rule_ends_on_a_whole_minute() {
    let app = TestApp::spawn_with(AppOptions { start_bridge: false, start_worker: false, ..Default::default() }).await;
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    sqlx::query(
        "INSERT INTO coverage (instrument_token, window_from, window_to, fetched_at, candles)
         VALUES (256265, $1, $2, $3, 33)",
    )
    .bind(at("2026-11-30T05:00:00Z"))
    .bind(at("2026-11-30T05:33:00Z"))
    .bind(at("2026-11-30T05:33:00.975120Z")) // fetched a fraction of a second into the minute
    .execute(&app.db.pool)
    .await
    .unwrap();
    let settle = std::time::Duration::from_secs(120);
    let asked = Window::new(at("2026-11-30T04:00:00Z"), at("2026-11-30T06:00:00Z"));
    let trimmed = tickfill::store::coverage::find_coverage(&app.db.pool, crate::helpers::tok(256265), asked, settle)
        .await
        .unwrap();
    assert_eq!(trimmed, vec![Window::new(at("2026-11-30T05:00:00Z"), at("2026-11-30T05:31:00Z"))]);
    let since =
        tickfill::store::coverage::coverage_since(&app.db.pool, at("2026-11-30T04:00:00Z"), settle).await.unwrap();
    assert_eq!(
        since,
        vec![(crate::helpers::tok(256265), Window::new(at("2026-11-30T05:00:00Z"), at("2026-11-30T05:31:00Z")))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_list_from_the_ticker_deactivates_nothing() {
    let app = TestApp::spawn_with(AppOptions { start_worker: false, ..Default::default() }).await;
    let ticker = TickerClient::new(&app.settings).unwrap();
    let mut producer = queue::Producer::new(app.redis.clone(), &app.settings);
    for token in [256265, 10000001] {
        assert_eq!(app.subscribe_via_sim(token).await, 201);
    }
    app.start_worker().await;
    app.wait_count(20, "SELECT count(*) FROM subscriptions WHERE status = 'active'", 2).await;
    // The ticker forgets everything without a word (no events: the bridge is not told).
    for token in [256265, 10000001] {
        let url = format!("{}/subscriptions/{token}", app.sim_url);
        assert_eq!(app.http.delete(url).send().await.unwrap().status(), 200);
    }
    app.wait_count(20, "SELECT count(*) FROM subscriptions WHERE status = 'inactive'", 2).await; // via the events
    sqlx::query("UPDATE subscriptions SET status = 'active'").execute(&app.db.pool).await.unwrap();
    let report = sweep::reconcile(&app.db.pool, &ticker, &mut producer, &app.settings).await.unwrap();
    assert_eq!((report.listed, report.deactivated.len()), (0, 0));
    assert!(report.deactivation_skipped.is_some_and(|why| why.contains("none of our 2")));
    assert_eq!(app.count("SELECT count(*) FROM subscriptions WHERE status = 'active'").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_leaves_a_new_subscription_to_its_own_backfill() {
    let app = TestApp::spawn_with(AppOptions { start_bridge: false, start_worker: false, ..Default::default() }).await;
    assert_eq!(app.subscribe_via_sim(256265).await, 201); // its event is lost: no bridge
    let ticker = TickerClient::new(&app.settings).unwrap();
    let mut producer = queue::Producer::new(app.redis.clone(), &app.settings);
    // The first sweep's reconcile records it and queues its (urgent) backfill.
    let first = sweep::sweep(&app.db.pool, &ticker, &mut producer, &app.settings, Utc::now()).await.unwrap();
    assert_eq!(first.reconciled.unwrap().added, vec![256265]);
    assert_eq!(first.jobs, 0);
    // A second sweep before that backfill ran plans nothing for it: one window, one request.
    let second = sweep::sweep(&app.db.pool, &ticker, &mut producer, &app.settings, Utc::now()).await.unwrap();
    assert_eq!((second.targets, second.jobs), (1, 0));
    assert_eq!(app.depths(Lane::Bulk).await.pending(), 0);
    app.start_worker().await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
    app.wait_idle(10).await;
    assert_eq!(app.sim_stats().await["history_requests"], 1);
}
