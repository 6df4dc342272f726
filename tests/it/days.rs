//! Days settle: after its session, one check fetch per instrument settles its proved days to
//! `final`, finds stored minutes that changed (revisions) and an equity's whole days changed by
//! one ratio (an adjustment, after which its older stored history is checked too). The states are
//! shown by `tickfill status`, `tickfill quality`, the admin API and `tickfill_days{state}`.

use chrono::{DateTime, NaiveDate, Utc};
use tickfill::{
    config::Interval,
    domain::days::DayState,
    sim::{
        lies::{Adjustment, Lies},
        SimOptions,
    },
    status,
};

use crate::helpers::{run_cli, AppOptions, TestApp};

/// Three days of history per subscription, checks on, and nothing left to settle for.
fn three_days(sim: SimOptions) -> AppOptions {
    AppOptions {
        sim,
        tweak: |s| {
            s.backfill.window_minutes = 3 * 1440;
            s.backfill.lookback = std::time::Duration::from_secs(4 * 86_400);
            s.backfill.verify = true;
            s.backfill.settle = std::time::Duration::ZERO;
            s.backfill.sweep_interval = Interval::Every(std::time::Duration::from_secs(1));
        },
        ..Default::default()
    }
}

/// Yesterday (IST): the ex-date before which the source serves an equity's history halved.
fn yesterday_ist() -> NaiveDate {
    (Utc::now() - chrono::Duration::days(1)).with_timezone(&tickfill::domain::calendar::ist()).date_naive()
}

/// A source that serves `token`'s history before `ex_date` halved (Kite's adjustment).
fn halved_before(token: u32, ex_date: NaiveDate) -> SimOptions {
    let lies = Lies { adjust: vec![Adjustment { token, before: ex_date, ratio: 0.5 }], ..Default::default() };
    SimOptions { universe: 1, lies, ..Default::default() }
}

/// Stores `token`'s history from `from` for `span` by hand (a manual backfill), and waits for it.
async fn store_by_hand(app: &TestApp, token: u32, from: DateTime<Utc>, span: chrono::Duration) {
    let before = app.count("SELECT count(*) FROM backfill_runs WHERE reason = 'manual' AND outcome = 'stored'").await;
    let job = tickfill::jobs::Job::Backfill {
        token: crate::helpers::tok(token),
        from,
        to: from + span,
        reason: tickfill::jobs::Reason::Manual,
        force: false,
    };
    app.push(&job).await;
    let sql = "SELECT count(*) FROM backfill_runs WHERE reason = 'manual' AND outcome = 'stored'";
    app.wait_count(30, sql, before + 1).await;
}

/// Puts every stored minute before `ex_date` back to what it was before the source adjusted it.
async fn unadjust_before(app: &TestApp, ex_date: NaiveDate) {
    let ex_start = ex_date.and_hms_opt(0, 0, 0).unwrap().and_local_timezone(tickfill::domain::calendar::ist()).unwrap();
    sqlx::query(
        "UPDATE minute_bars SET open = open * 2, high = high * 2, low = low * 2, close = close * 2 WHERE time < $1",
    )
    .bind(ex_start)
    .execute(&app.db.pool)
    .await
    .unwrap();
}

async fn requests(app: &TestApp) -> i64 {
    app.sim_stats().await["history_requests"].as_i64().unwrap()
}

async fn days(app: &TestApp, token: u32) -> Vec<status::DayQuality> {
    let (from, to) = app.subscription_window(token).await;
    let window = tickfill::domain::window::Window::new(from, to.max(Utc::now()));
    status::quality(&app.db.pool, &app.settings, crate::helpers::tok(token), window, Utc::now()).await.unwrap()
}

fn states(days: &[status::DayQuality]) -> Vec<DayState> {
    days.iter().map(|d| d.state).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_day_is_checked_once_then_final_and_a_changed_minute_is_a_revision() {
    let app = TestApp::spawn_with(three_days(SimOptions::default())).await;
    let token = 256265u32;
    assert_eq!(app.subscribe_via_sim(token).await, 201);
    let (from, _) = app.subscription_window(token).await;
    app.wait_idle(30).await;
    // Every minute stored; the ended days are complete, today is open.
    let before = days(&app, token).await;
    let n = before.len();
    assert!(n >= 4, "three days touch four IST dates or more: {before:?}");
    assert_eq!(before[n - 1].state, DayState::Open);
    assert!(before[..n - 1].iter().all(|d| d.state == DayState::Complete), "{:?}", states(&before));
    // A stored minute of the first day goes stale (the source revised it): the window's first
    // minute, which is on the first day whatever the time of day the test runs at (the first IST
    // day may hold only a few minutes of the window).
    let minute = from;
    let truth: f64 = sqlx::query_scalar("SELECT close FROM minute_bars WHERE time = $1")
        .bind(minute)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE minute_bars SET close = close + 1 WHERE time = $1")
        .bind(minute)
        .execute(&app.db.pool)
        .await
        .unwrap();

    // One sweep: one request checks every settled day.
    let asked = requests(&app).await;
    app.sweep_once().await;
    app.wait_idle(30).await;
    assert_eq!(requests(&app).await, asked + 1, "one check for all the settled days");
    let after = days(&app, token).await;
    assert!(after[..n - 1].iter().all(|d| d.state == DayState::Final), "{:?}", states(&after));
    assert_eq!(after[n - 1].state, DayState::Open);
    let first = &after[0].facts;
    assert_eq!((first.revisions, first.revised_minutes, first.adjustment), (1, 1, None), "{first:?}");
    assert!(after[1..].iter().all(|d| d.facts.revisions == 0));
    let close: f64 = sqlx::query_scalar("SELECT close FROM minute_bars WHERE time = $1")
        .bind(minute)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(close, truth, "the check stored the source's value");
    // A final day is not checked again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    app.sweep_once().await;
    app.wait_idle(30).await;
    assert_eq!(requests(&app).await, asked + 1);

    // The same days as `tickfill quality --json`, `tickfill status`, the admin API and metrics.
    // The command reads the same settings the app has.
    let env = [("BACKFILL_WINDOW_MINUTES", "4320"), ("BACKFILL_LOOKBACK", "4d"), ("BACKFILL_SETTLE", "0s")];
    let (code, out, err) = run_cli(&app.settings, &["quality", "--token", "256265", "--json"], &env);
    assert_eq!(code, 0, "{err}");
    let cli: Vec<serde_json::Value> = serde_json::from_str(out.trim()).unwrap();
    let finals = cli.iter().filter(|d| d["state"] == "final").count();
    assert_eq!(finals, n - 1, "{out}");
    assert_eq!(cli[0]["revisions"], 1);
    let (code, table, _) = run_cli(&app.settings, &["quality", "--token", "256265"], &env);
    assert_eq!(code, 0);
    assert!(table.lines().any(|l| l.contains(" final ")), "{table}");
    let rows = status::status(&app.db.pool, &app.settings, Utc::now()).await.unwrap();
    assert_eq!(rows[0].days.get(&DayState::Final).copied(), Some((n - 1) as i64));
    let mut settings = app.settings.clone();
    settings.admin.listen = "127.0.0.1:0".parse().unwrap();
    let redis = tickfill::queue::connect(&settings.redis).await.unwrap();
    let state = tickfill::admin::AdminState { settings, redis, pool: Some(app.db.pool.clone()) };
    let addr = tickfill::admin::spawn(state, app.shutdown.clone()).await.unwrap();
    let api: serde_json::Value =
        app.http.get(format!("http://{addr}/api/days")).send().await.unwrap().json().await.unwrap();
    assert_eq!(api["states"]["final"], (n - 1) as i64, "{api}");
    assert_eq!(api["states"]["open"], 1, "{api}");
    let one: serde_json::Value =
        app.http.get(format!("http://{addr}/api/days/{token}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(one.as_array().unwrap().iter().filter(|d| d["state"] == "final").count(), n - 1);
    for bad in ["/api/days/0", "/api/days/x", "/api/days/256265?from=yesterday", "/api/days/256265?since=1"] {
        let r = app.http.get(format!("http://{addr}{bad}")).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    let page = app.http.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    let gauge = page.lines().find_map(|l| l.strip_prefix("tickfill_days{state=\"final\"} ")).unwrap_or("missing");
    assert_eq!(gauge, (n - 1).to_string(), "{page}");
    // A window the wrong way round is a usage error.
    let (code, _, err) = run_cli(
        &app.settings,
        &["quality", "--token", "256265", "--from", "2026-12-02T00:00:00Z", "--to", "2026-12-01T00:00:00Z"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not before"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equity_whose_whole_days_changed_by_one_ratio_is_adjusted_and_its_older_history_checked() {
    // The source serves the first synthetic equity's history before yesterday (IST) halved.
    let (token, ex_date) = (20000001u32, yesterday_ist());
    let app = TestApp::spawn_with(three_days(halved_before(token, ex_date))).await;
    // What the store held before the ex-date: stored an hour earlier than the subscription's
    // window, and the window itself (stored now, then put back to the prices before the ex-date).
    assert_eq!(app.subscribe_via_sim(token).await, 201);
    let (from, _) = app.subscription_window(token).await;
    app.wait_idle(30).await;
    store_by_hand(&app, token, from - chrono::Duration::hours(1), chrono::Duration::hours(1)).await;
    unadjust_before(&app, ex_date).await;

    let asked = requests(&app).await;
    app.sweep_once().await;
    app.wait_idle(30).await;
    app.wait_count(30, "SELECT count(*) FROM backfill_runs WHERE reason = 'verify'", 2).await;
    app.wait_idle(30).await;
    assert_eq!(requests(&app).await, asked + 2, "the check, then the check of the older history");
    let checked = days(&app, token).await;
    // The days before the ex-date changed: a revision each; the whole ones by one ratio.
    let adjusted: Vec<f64> = checked.iter().filter_map(|d| d.facts.adjustment).collect();
    assert!(!adjusted.is_empty(), "{checked:?}");
    assert!(adjusted.iter().all(|r| (r - 0.5).abs() < 1e-3), "{adjusted:?}");
    for d in &checked {
        let before_ex = d.facts.date < ex_date;
        assert_eq!(d.facts.revisions > 0, before_ex, "{:?}", d.facts);
        if d.facts.date >= ex_date {
            assert_eq!(d.facts.adjustment, None);
        }
    }
    // Every stored minute, the older hour too, is the source's now: the check's older window
    // revised the hour before the subscription's window.
    let older: Vec<(DateTime<Utc>, DateTime<Utc>, i32)> = sqlx::query_as(
        "SELECT window_from, window_to, rows FROM backfill_runs WHERE reason = 'verify' ORDER BY window_from",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!((older[0].0, older[0].1), (from - chrono::Duration::hours(1), from), "{older:?}");
    assert_eq!(older[0].2, 60, "the older hour's 60 minutes were revised: {older:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_illiquid_options_days_settle_final_once_its_no_trade_minutes_are_confirmed() {
    let lies = Lies { seed: 5, illiquid_share: 1.0, ..Default::default() };
    let app = TestApp::spawn_with(three_days(SimOptions { lies, ..Default::default() })).await;
    let token = 11000002u32;
    assert_eq!(app.subscribe_via_sim(token).await, 201);
    app.subscription_window(token).await;
    app.wait_idle(30).await;
    let first = days(&app, token).await;
    let n = first.len();
    assert!(first[..n - 1].iter().all(|d| d.state == DayState::Partial), "{:?}", states(&first));
    // The second answer confirms the no-trade minutes; the next sweep checks the settled days.
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        app.sweep_once().await;
        app.wait_idle(30).await;
    }
    let settled = days(&app, token).await;
    assert!(settled[..n - 1].iter().all(|d| d.state == DayState::Final), "{:?}", settled);
    assert!(settled.iter().all(|d| d.facts.confirmed_empty_minutes > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_equity_day_is_checked_again_and_an_adjustment_reaches_every_stored_day() {
    // The source serves the equity's history before yesterday (IST) halved: an ex-date that came
    // after the store's days were checked and final.
    let (token, ex_date) = (20000001u32, yesterday_ist());
    let mut opts = three_days(halved_before(token, ex_date));
    opts.tweak = |s| {
        s.backfill.window_minutes = 3 * 1440;
        s.backfill.lookback = std::time::Duration::from_secs(4 * 86_400);
        s.backfill.verify = true;
        s.backfill.settle = std::time::Duration::ZERO;
        s.backfill.sweep_interval = Interval::Every(std::time::Duration::from_secs(1));
        s.backfill.recheck = Some(std::time::Duration::from_secs(2));
    };
    let app = TestApp::spawn_with(opts).await;
    assert_eq!(app.subscribe_via_sim(token).await, 201);
    let (from, _) = app.subscription_window(token).await;
    app.wait_idle(30).await;
    // A day stored long ago, beyond the lookback (no sweep reaches it).
    store_by_hand(&app, token, from - chrono::Duration::days(3), chrono::Duration::hours(2)).await;
    // What the store held before the source adjusted: every minute before the ex-date at twice
    // what the source now serves, and the days checked and final.
    unadjust_before(&app, ex_date).await;
    sqlx::query(
        "INSERT INTO day_checks (instrument_token, day, checks, last_check_at, checked_at)
         SELECT DISTINCT $1::bigint, (time AT TIME ZONE 'Asia/Kolkata')::date, 1, now(), now() FROM minute_bars
         WHERE (time AT TIME ZONE 'Asia/Kolkata')::date < (now() AT TIME ZONE 'Asia/Kolkata')::date
         ON CONFLICT (instrument_token, day) DO UPDATE SET checks = 1, last_check_at = now(), checked_at = now()",
    )
    .bind(token as i64)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let before = days(&app, token).await;
    assert!(before[..before.len() - 1].iter().all(|d| d.state == DayState::Final), "{:?}", states(&before));

    // A final day is not rechecked before BACKFILL_RECHECK; after it, a sweep checks them again.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    app.sweep_once().await;
    app.wait_idle(30).await;
    // The adjustment found marked every older stored day suspect and checked them all, the one
    // beyond the lookback too: every stored minute is the source's now, and none is left suspect.
    app.wait_count(30, "SELECT count(*) FROM backfill_runs WHERE reason = 'verify'", 2).await;
    app.wait_idle(30).await;
    let stored: Vec<(DateTime<Utc>, f64)> =
        sqlx::query_as("SELECT time, close FROM minute_bars WHERE instrument_token = $1 ORDER BY time")
            .bind(token as i64)
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    let first = stored[0].0;
    let last = stored[stored.len() - 1].0 + chrono::Duration::minutes(1);
    let served = app.sim_candles(token, first, last).await;
    let truth: std::collections::HashMap<i64, f64> = served
        .iter()
        .map(|c| {
            let t = chrono::DateTime::parse_from_rfc3339(c["date"].as_str().unwrap()).unwrap().timestamp();
            (t, c["close"].as_f64().unwrap())
        })
        .collect();
    let wrong = stored.iter().filter(|(t, c)| truth.get(&t.timestamp()) != Some(c)).count();
    assert_eq!(wrong, 0, "every stored minute, the day beyond the lookback too, is the adjusted one");
    assert!(stored[0].0 < Utc::now() - chrono::Duration::days(5), "a day beyond the lookback is stored");
    assert_eq!(app.count("SELECT count(*) FROM day_checks WHERE stale_since IS NOT NULL").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn days_an_adjustment_cannot_reach_are_left_suspect_for_the_operator() {
    let app = TestApp::spawn_with(three_days(SimOptions { universe: 1, ..Default::default() })).await;
    let token = 20000001u32;
    assert_eq!(app.subscribe_via_sim(token).await, 201);
    app.subscription_window(token).await;
    app.wait_idle(30).await;
    // An adjustment found today marks every older stored day suspect, until its check is accepted.
    let mut tx = app.db.pool.begin().await.unwrap();
    let now = Utc::now();
    let marked =
        tickfill::store::days::mark_stale(&mut tx, crate::helpers::tok(token), "minute_bars", now).await.unwrap();
    tx.commit().await.unwrap();
    let shown = days(&app, token).await;
    let n = shown.len();
    assert!(marked >= 3, "{marked}");
    assert!(shown[..n - 1].iter().all(|d| d.state == DayState::Suspect), "{:?}", states(&shown));
    let (code, out, _) = run_cli(
        &app.settings,
        &["quality", "--token", "20000001"],
        &[("BACKFILL_WINDOW_MINUTES", "4320"), ("BACKFILL_LOOKBACK", "4d"), ("BACKFILL_SETTLE", "0s")],
    );
    assert_eq!(code, 0);
    assert!(out.lines().filter(|l| l.contains(" suspect ")).count() >= n - 1, "{out}");
    // Their checks, once accepted, settle them final.
    app.sweep_once().await;
    app.wait_idle(30).await;
    let after = days(&app, token).await;
    assert!(after[..n - 1].iter().all(|d| d.state == DayState::Final), "{:?}", states(&after));
}
