//! Coverage is what the answers proved: against a simulator that lies (answers cut short, holes
//! inside, illiquid options), the store never calls a minute covered that it lacks, asks suspect
//! minutes again with backoff, and converges to the truth.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use tickfill::{
    config::Interval,
    shutdown::Shutdown,
    sim::{self, lies::Lies, SimOptions},
};

use crate::helpers::{AppOptions, TestApp};

fn lying(lies: Lies) -> AppOptions {
    AppOptions {
        sim: SimOptions { lies, ..Default::default() },
        tweak: |s| {
            // Suspects are due again after 1 s, 2 s, 4 s …; every minute up to now is planned.
            s.backfill.sweep_interval = Interval::Every(std::time::Duration::from_secs(1));
            s.backfill.settle = std::time::Duration::ZERO;
            s.backfill.gap_threshold = std::time::Duration::ZERO;
        },
        ..Default::default()
    }
}

/// A `suspect_minutes` row: minute, asks, inside, next ask, tail.
type SuspectRow = (DateTime<Utc>, i32, i32, DateTime<Utc>, bool);

/// The true candles' minutes of `token` in `[from, to)`, from a simulator that does not lie.
async fn truth(token: u32, from: DateTime<Utc>, to: DateTime<Utc>) -> BTreeSet<DateTime<Utc>> {
    let stop = Shutdown::new();
    let addr = sim::spawn("127.0.0.1:0".parse().unwrap(), SimOptions::default(), stop.clone()).await.unwrap();
    let z = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let body: serde_json::Value =
        reqwest::get(format!("http://{addr}/history?instrument_token={token}&from_ts={}&to_ts={}", z(from), z(to)))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    stop.trigger();
    body["candles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| DateTime::parse_from_rfc3339(c["date"].as_str().unwrap()).unwrap().with_timezone(&Utc))
        .collect()
}

async fn minutes(
    app: &TestApp,
    sql: &str,
    token: u32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> BTreeSet<DateTime<Utc>> {
    let rows: Vec<DateTime<Utc>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(token as i64)
        .bind(from)
        .bind(to)
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    rows.into_iter().collect()
}

/// Minutes of `[from, to)` that coverage claims for `token`.
async fn covered(app: &TestApp, token: u32, from: DateTime<Utc>, to: DateTime<Utc>) -> BTreeSet<DateTime<Utc>> {
    minutes(
        app,
        "SELECT m FROM coverage c, generate_series(c.window_from, c.window_to - interval '1 minute', interval '1 minute') m
         WHERE c.instrument_token = $1 AND m >= $2 AND m < $3",
        token,
        from,
        to,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_cut_short_or_holed_are_never_taken_as_complete_and_sweeps_fill_them() {
    let app =
        TestApp::spawn_with(lying(Lies { seed: 11, truncate_rate: 0.3, hole_rate: 0.3, ..Default::default() })).await;
    let tokens = [256265u32, 10000001, 10000002];
    for t in tokens {
        assert_eq!(app.subscribe_via_sim(t).await, 201);
    }
    let mut windows = Vec::new();
    for t in tokens {
        windows.push((t, app.subscription_window(t).await));
    }
    app.wait_idle(20).await;
    // After the first answers: whatever coverage claims is stored, and what is not stored is
    // either suspect or not claimed.
    let mut lied = 0;
    for &(t, (from, to)) in &windows {
        let stored = minutes(&app, "SELECT time FROM minute_bars WHERE instrument_token = $1 AND time >= $2 AND time < $3 UNION SELECT time FROM futures_bars WHERE instrument_token = $1 AND time >= $2 AND time < $3", t, from, to).await;
        let claimed = covered(&app, t, from, to).await;
        assert!(claimed.is_subset(&stored), "token {t}: coverage claims minutes it does not hold");
        lied += usize::from(stored.len() < 120);
    }
    assert!(lied > 0, "the simulator told no lie to check against (seed)");
    // The suspects are a gauge too.
    let suspects = app.count("SELECT count(*) FROM suspect_minutes").await;
    let mut settings = app.settings.clone();
    settings.admin.listen = "127.0.0.1:0".parse().unwrap();
    let redis = tickfill::queue::connect(&settings.redis).await.unwrap();
    let state = tickfill::admin::AdminState { settings, redis, pool: Some(app.db.pool.clone()) };
    let addr = tickfill::admin::spawn(state, app.shutdown.clone()).await.unwrap();
    let page = app.http.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    let gauge = page.lines().find_map(|l| l.strip_prefix("tickfill_suspect_minutes ")).unwrap_or("missing");
    assert_eq!(gauge, suspects.to_string(), "{page}");
    // Sweeps ask the suspects again until the truth is in (minutes after the windows, at the live
    // edge, may stay suspect: only the windows are judged).
    let end = windows.iter().map(|w| w.1 .1).max().unwrap();
    for _ in 0..60 {
        let left = format!("SELECT count(*) FROM suspect_minutes WHERE minute < '{}'", end.to_rfc3339());
        if app.count(&left).await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        app.sweep_once().await;
        app.wait_idle(20).await;
    }
    for &(t, (from, to)) in &windows {
        let stored = minutes(&app, "SELECT time FROM minute_bars WHERE instrument_token = $1 AND time >= $2 AND time < $3 UNION SELECT time FROM futures_bars WHERE instrument_token = $1 AND time >= $2 AND time < $3", t, from, to).await;
        let want = truth(t, from, to).await;
        if stored != want {
            let left: Vec<SuspectRow> = sqlx::query_as(
                "SELECT minute, asks, inside, next_ask_at, tail FROM suspect_minutes WHERE instrument_token = $1 ORDER BY 1",
            )
            .bind(t as i64)
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
            let missing: Vec<_> = want.difference(&stored).collect();
            panic!("token {t}: missing {missing:?}; suspects {left:?}; now {}", Utc::now());
        }
    }
    assert_eq!(app.count("SELECT count(*) FROM confirmed_empty").await, 0, "a liquid minute was given up on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_illiquid_options_no_trade_minutes_cost_one_extra_request_and_are_confirmed_empty() {
    // The subscription and the sweep must answer up to the same minute (a sweep in the next minute
    // asks past the window's last no-trade minute, which it then lacks inside, not at the tail):
    // start early in a minute.
    let second = chrono::Timelike::second(&Utc::now());
    if second >= 40 {
        tokio::time::sleep(std::time::Duration::from_secs(61 - u64::from(second))).await;
    }
    let app = TestApp::spawn_with(lying(Lies { seed: 5, illiquid_share: 1.0, ..Default::default() })).await;
    let token = 11000002u32;
    assert_eq!(app.subscribe_via_sim(token).await, 201);
    let (from, to) = app.subscription_window(token).await;
    app.wait_idle(20).await;
    let first = app.sim_stats().await["history_requests"].as_i64().unwrap();
    let sql = "SELECT time FROM option_bars WHERE instrument_token = $1 AND time >= $2 AND time < $3";
    let stored = minutes(&app, sql, token, from, to).await;
    let no_trade: BTreeSet<_> = truth(token, from, to).await.difference(&stored).copied().collect();
    assert!(!no_trade.is_empty(), "the option traded every minute (seed)");
    // One sweep asks them again, once; that answer lacks them too: confirmed, with the reason.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    app.sweep_once().await;
    app.wait_idle(20).await;
    assert_eq!(app.sim_stats().await["history_requests"].as_i64().unwrap(), first + 1);
    let confirmed = minutes(
        &app,
        "SELECT minute FROM confirmed_empty WHERE instrument_token = $1 AND minute >= $2 AND minute < $3",
        token,
        from,
        to,
    )
    .await;
    assert_eq!(confirmed, no_trade);
    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT reason FROM confirmed_empty").fetch_all(&app.db.pool).await.unwrap();
    assert!(reasons.iter().all(|r| r.starts_with("no trade")), "{reasons:?}");
    // Now the whole window is covered and asked for no more.
    assert_eq!(covered(&app, token, from, to).await.len() as i64, (to - from).num_minutes());
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM suspect_minutes WHERE instrument_token = {token} AND minute < '{}'",
            to.to_rfc3339()
        ))
        .await,
        0
    );
}

/// An empty answer for NIFTY 50 at 11:00 IST on a Tuesday is not a closed market: under the
/// exchange calendar every session minute it lacked is suspect and nothing is covered (so it
/// stays a hole for sweeps). The same empty answer over a Sunday covers the whole day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_answer_in_session_covers_nothing_and_over_a_sunday_covers_it_all() {
    use axum::{routing::get, Router};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let app = Router::new().route("/history", get(|| async { r#"{"candles":[]}"# }));
        axum::serve(listener, app).await
    });
    let app = TestApp::spawn_with(AppOptions {
        ticker_url: Some(url),
        tweak: |s| {
            s.backfill.calendar = tickfill::domain::calendar::TradingCalendar::Exchange(s.backfill.calendars.clone())
        },
        ..Default::default()
    })
    .await;
    let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    let backfill = |from: &str, to: &str| tickfill::jobs::Job::Backfill {
        token: crate::helpers::tok(256265),
        from: t(from),
        to: t(to),
        reason: tickfill::jobs::Reason::Manual,
        force: false,
    };
    app.push(&backfill("2026-12-01T10:30:00+05:30", "2026-12-01T11:30:00+05:30")).await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
    assert_eq!(app.count("SELECT count(*) FROM coverage").await, 0, "an empty answer in session proved nothing");
    assert_eq!(app.count("SELECT count(*) FROM suspect_minutes WHERE asks = 1").await, 60);
    app.push(&backfill("2026-11-29T00:00:00+05:30", "2026-11-30T00:00:00+05:30")).await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 2).await;
    let sunday: i64 = app
        .count("SELECT count(*) FROM coverage WHERE window_from = '2026-11-28T18:30:00Z' AND window_to = '2026-11-29T18:30:00Z'")
        .await;
    assert_eq!(sunday, 1, "a closed day needs no candle to be covered");
    assert_eq!(app.count("SELECT count(*) FROM suspect_minutes").await, 60);
}
