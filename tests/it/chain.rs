//! A whole expiry of the simulator's chain subscribed in one burst becomes per-minute chain
//! metrics that match a recomputation from the stored option bars, in at most three rebuilds.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

use crate::helpers::{run_cli, TestApp};

/// PCR(OI) and max pain per minute, recomputed from `option_bars` the plain way.
async fn recompute(app: &TestApp, expiry: NaiveDate) -> BTreeMap<DateTime<Utc>, (Option<f64>, f64, usize)> {
    let legs: Vec<(DateTime<Utc>, f64, String, i64)> = sqlx::query_as(
        "SELECT time, strike, option_type, COALESCE(oi, 0) FROM option_bars WHERE symbol = 'NIFTY' AND expiry = $1",
    )
    .bind(expiry)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    // minute → strike in hundredths → (strike, call OI, put OI)
    type Legs = BTreeMap<i64, (f64, f64, f64)>;
    let mut by_minute: BTreeMap<DateTime<Utc>, Legs> = BTreeMap::new();
    for (t, k, ty, oi) in legs {
        let e = by_minute.entry(t).or_default().entry((k * 100.0) as i64).or_insert((k, 0.0, 0.0));
        if ty == "CE" {
            e.1 += oi as f64;
        } else {
            e.2 += oi as f64;
        }
    }
    by_minute
        .into_iter()
        .map(|(t, chain)| {
            let calls: f64 = chain.values().map(|v| v.1).sum();
            let puts: f64 = chain.values().map(|v| v.2).sum();
            let pain =
                |k: f64| chain.values().map(|(s, c, p)| c * (k - s).max(0.0) + p * (s - k).max(0.0)).sum::<f64>();
            let mut best = (f64::INFINITY, 0.0);
            for (k, _, _) in chain.values() {
                let v = pain(*k);
                if v < best.0 {
                    best = (v, *k);
                }
            }
            (t, ((calls > 0.0).then(|| puts / calls), best.1, chain.len()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_a_whole_chain_gives_correct_metrics_in_at_most_three_rebuilds() {
    let app = TestApp::spawn().await;
    let legs: Vec<(i64, NaiveDate)> = sqlx::query_as(
        "SELECT instrument_token, expiry FROM instruments WHERE segment = 'NFO-OPT' AND name = 'NIFTY'
         AND expiry = (SELECT min(expiry) FROM instruments WHERE segment = 'NFO-OPT') ORDER BY 1",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(legs.len(), 42, "±10 strikes around the money × CE/PE");
    let expiry = legs[0].1;
    let now = Utc::now().timestamp();
    for (token, _) in &legs {
        app.publish(format!(
            r#"{{"event_type":"subscription_created","instrument_token":{token},"metadata":{{"segment":"NFO-OPT"}},"timestamp":{now}}}"#
        ))
        .await;
    }
    app.wait_count(60, "SELECT count(*) FROM backfill_runs WHERE kind = 'backfill' AND outcome = 'stored'", 42).await;
    app.wait_count(60, "SELECT count(*) FROM backfill_runs WHERE kind = 'chain_metrics'", 1).await;
    app.wait_idle(30).await;

    let want = recompute(&app, expiry).await;
    assert!(want.len() >= 120, "a row per minute of the window: {}", want.len());
    type Row = (DateTime<Utc>, Option<f64>, Option<f64>, i32);
    let got: Vec<Row> = sqlx::query_as(
        "SELECT time, pcr_oi, max_pain, strikes FROM fo_expiry_metrics WHERE symbol = 'NIFTY' AND expiry = $1 ORDER BY time",
    )
    .bind(expiry)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(got.len(), want.len());
    for (t, pcr, max_pain, strikes) in &got {
        let (want_pcr, want_mp, want_strikes) = want[t];
        assert!((pcr.unwrap() - want_pcr.unwrap()).abs() < 1e-9, "{t}: {pcr:?} vs {want_pcr:?}");
        assert_eq!(*max_pain, Some(want_mp), "{t}");
        // All 21 but at the window's edges, when the burst's events straddle a minute.
        assert_eq!(*strikes as usize, want_strikes, "{t}");
    }
    let distribution =
        app.count("SELECT count(*) FROM fo_strike_distribution WHERE call_oi IS NOT NULL AND put_oi IS NOT NULL").await;
    let both_legs = app
        .count("SELECT count(*) FROM (SELECT 1 FROM option_bars WHERE symbol = 'NIFTY' GROUP BY time, strike HAVING count(*) = 2) x")
        .await;
    assert_eq!(distribution, both_legs);
    assert!(distribution >= 21 * (got.len() as i64 - 2), "21 strikes a minute but at the edges");
    let underlying = app.count("SELECT count(*) FROM fo_expiry_metrics WHERE underlying_close IS NOT NULL").await;
    assert_eq!(underlying, 0, "the index itself was not subscribed: no underlying close");
    let rebuilds = app.count("SELECT count(*) FROM backfill_runs WHERE kind = 'chain_metrics'").await;
    assert!((1..=3).contains(&rebuilds), "{rebuilds} rebuilds for one burst");

    // Rebuilding the same window again gives the same rows.
    let snapshot = || async {
        sqlx::query_as::<_, (String,)>(
            "SELECT string_agg(format('%s|%s|%s|%s|%s|%s', time, strike, call_oi, put_oi, call_close, put_iv), ';' ORDER BY time, strike)
             FROM fo_strike_distribution",
        )
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
        .0
    };
    let before = snapshot().await;
    let (from, to): (DateTime<Utc>, DateTime<Utc>) =
        sqlx::query_as("SELECT min(time), max(time) + interval '1 minute' FROM fo_expiry_metrics")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    let upkeep = tickfill::store::rollups::upkeep(&app.db.pool).await.unwrap();
    let window = tickfill::domain::window::Window::new(from, to);
    tickfill::store::chain::rebuild(&app.db.pool, "NIFTY", expiry, window, upkeep).await.unwrap();
    assert_eq!(snapshot().await, before);

    let (code, out, err) =
        run_cli(&app.settings, &["chain", "--underlying", "NIFTY 50", "--expiry", &expiry.to_string(), "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let view: serde_json::Value = serde_json::from_str(&out).unwrap();
    // The newest minute's strikes: all 21, or fewer when the burst's events straddled that minute.
    let last = got.last().map(|g| g.0).unwrap();
    assert_eq!(view["strikes"].as_array().unwrap().len(), want[&last].2);
    assert_eq!(view["max_pain"].as_f64(), Some(want[got.last().map(|g| &g.0).unwrap()].1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_option_unknown_to_instruments_is_stored_from_its_parsed_symbol() {
    let app = TestApp::spawn().await;
    sqlx::query("DELETE FROM instruments WHERE instrument_token = 11000020").execute(&app.db.pool).await.unwrap();
    let symbol: String = app
        .http
        .get(format!("{}/instruments", app.sim_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .lines()
        .find(|l| l.starts_with("11000020,"))
        .unwrap()
        .split(',')
        .nth(2)
        .unwrap()
        .to_string();
    app.publish(format!(
        r#"{{"event_type":"subscription_created","instrument_token":11000020,"metadata":{{"tradingsymbol":"{symbol}","segment":"NFO-OPT"}},"timestamp":1}}"#
    ))
    .await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
    let (source, name, strike): (String, String, f64) =
        sqlx::query_as("SELECT source, name, strike FROM instruments WHERE instrument_token = 11000020")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!((source.as_str(), name.as_str(), strike), ("parsed", "NIFTY", 24500.0));
    assert_eq!(app.count("SELECT count(*) FROM option_bars WHERE instrument_token = 11000020 AND symbol = 'NIFTY' AND strike = 24500").await, 120);
}
