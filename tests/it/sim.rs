//! The simulator behaves like the ticker service: limits, 404s, calendar, faults and stats.

use std::time::Duration;

use tickfill::{
    shutdown::Shutdown,
    sim::{self, Calendar, SimOptions},
};

use crate::helpers::{AppOptions, TestApp};

struct Sim {
    url: String,
    http: reqwest::Client,
    _stop: StopOnDrop,
}

struct StopOnDrop(Shutdown);
impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.trigger();
    }
}

async fn start(opts: SimOptions) -> Sim {
    let shutdown = Shutdown::new();
    let addr = sim::spawn("127.0.0.1:0".parse().unwrap(), opts, shutdown.clone()).await.unwrap();
    Sim { url: format!("http://{addr}"), http: reqwest::Client::new(), _stop: StopOnDrop(shutdown) }
}

impl Sim {
    async fn get(&self, path: &str) -> (u16, Option<String>, serde_json::Value) {
        let r = self.http.get(format!("{}{path}", self.url)).send().await.unwrap();
        let status = r.status().as_u16();
        let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        (status, retry, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

const DAY: &str = "from_ts=2025-11-04T00:00:00Z&to_ts=2025-11-05T00:00:00Z&interval=minute";

#[tokio::test]
async fn history_limits_and_unknown_tokens_answer_like_the_real_service() {
    let sim = start(SimOptions::default()).await;
    let (s, _, body) = sim
        .get("/history?instrument_token=256265&from_ts=2025-01-01T00:00:00Z&to_ts=2025-03-05T00:00:00Z&interval=minute")
        .await;
    assert_eq!(s, 400);
    assert!(body["detail"].as_str().unwrap().contains("60 days"));
    assert_eq!(sim.get(&format!("/history?instrument_token=424242&{DAY}")).await.0, 404);
    assert_eq!(
        sim.get("/history?instrument_token=256265&from_ts=2025-11-05T00:00:00Z&to_ts=2025-11-04T00:00:00Z").await.0,
        400
    );
    assert_eq!(
        sim.get("/history?instrument_token=abc&from_ts=2025-11-04T00:00:00Z&to_ts=2025-11-05T00:00:00Z").await.0,
        400
    );
    assert_eq!(sim.get("/subscriptions?limit=1001").await.0, 400);
    assert_eq!(sim.get("/subscriptions?limit=0").await.0, 400);
    let (s, _, page) = sim.get("/subscriptions?status=active&limit=1000&offset=0").await;
    assert_eq!((s, page), (200, serde_json::json!([])));
}

#[tokio::test]
async fn the_calendar_decides_which_minutes_have_candles() {
    let always = start(SimOptions::default()).await;
    let nse = start(SimOptions { calendar: Calendar::Nse, ..Default::default() }).await;
    // Tuesday 2025-11-04 (UTC day): 1,440 minutes, of which NSE trades 375 (09:15–15:30 IST).
    let (_, _, a) = always.get(&format!("/history?instrument_token=256265&{DAY}")).await;
    let (_, _, n) = nse.get(&format!("/history?instrument_token=256265&{DAY}")).await;
    assert_eq!(a["candles"].as_array().unwrap().len(), 1440);
    let n = n["candles"].as_array().unwrap();
    assert_eq!(n.len(), 375);
    assert_eq!(n[0]["date"], "2025-11-04T09:15:00+05:30");
    assert_eq!(n[374]["date"], "2025-11-04T15:29:00+05:30");
    // Same minute, same candle: a pure function of token and minute.
    assert_eq!(a["candles"][225], n[0]);
    // Saturday: nothing.
    let (_, _, sat) =
        nse.get("/history?instrument_token=256265&from_ts=2025-11-08T00:00:00Z&to_ts=2025-11-09T00:00:00Z").await;
    assert_eq!(sat["candles"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn options_carry_oi_iv_greeks_and_the_underlying_only_when_asked() {
    let sim = start(SimOptions::default()).await;
    let (_, _, with) = sim.get(&format!("/history?instrument_token=11000020&{DAY}&oi=true")).await;
    let c = &with["candles"][0];
    for field in ["oi", "iv", "delta", "gamma", "theta", "vega", "underlying"] {
        assert!(c[field].is_number(), "{field} missing: {c}");
    }
    let (_, _, without) = sim.get(&format!("/history?instrument_token=11000020&{DAY}")).await;
    assert!(without["candles"][0].get("oi").is_none());
}

#[tokio::test]
async fn fault_flags_and_stats_count_what_happened() {
    let sim = start(SimOptions { error_rate: 1.0, ..Default::default() }).await;
    assert_eq!(sim.get(&format!("/history?instrument_token=256265&{DAY}")).await.0, 502);
    let throttled = start(SimOptions { throttle_rate: 1.0, ..Default::default() }).await;
    let (s, retry, _) = throttled.get(&format!("/history?instrument_token=256265&{DAY}")).await;
    assert_eq!((s, retry.as_deref()), (429, Some("1")));
    // Faults apply to history only.
    assert_eq!(throttled.get("/subscriptions").await.0, 200);

    let capped = start(SimOptions { max_rps: Some(3), ..Default::default() }).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(capped.get(&format!("/history?instrument_token=256265&{DAY}")).await.0);
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    let (_, _, stats) = capped.get("/stats").await;
    assert_eq!(stats["history_requests"], 5);
    assert_eq!(stats["by_status"]["200"], 3);
    assert_eq!(stats["by_status"]["429"], 2);
    assert_eq!(stats["peak_rps"], 5);

    let slow = start(SimOptions { latency_ms: (150, 150), ..Default::default() }).await;
    let t = std::time::Instant::now();
    slow.get(&format!("/history?instrument_token=256265&{DAY}")).await;
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_backfill_waits_and_still_lands_without_failing() {
    let app = TestApp::spawn_with(AppOptions {
        sim: SimOptions { max_rps: Some(1), ..Default::default() },
        ..Default::default()
    })
    .await;
    // Spend the simulator's one request of this second, so the worker's first ask is a 429.
    let status =
        app.http.get(format!("{}/history?instrument_token=256265&{DAY}", app.sim_url)).send().await.unwrap().status();
    assert_eq!(status, 200);
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    app.wait_count(40, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
    assert_eq!(app.count("SELECT count(*) FROM backfill_runs WHERE outcome <> 'stored'").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM minute_bars").await, 120);
    let stats = app.sim_stats().await;
    assert_eq!(stats["by_status"]["200"], 2, "{stats}");
    assert!(stats["by_status"]["429"].as_i64().unwrap_or(0) >= 1, "{stats}");
}

#[tokio::test]
async fn kites_route_answers_like_kite() {
    let sim = start(SimOptions { kite_access_token: Some("today".into()), ..Default::default() }).await;
    let kite = |token: &str, query: &str, access: &str| {
        sim.http
            .get(format!("{}/instruments/historical/{token}/minute?{query}", sim.url))
            .header("X-Kite-Version", "3")
            .header("Authorization", format!("token key:{access}"))
            .send()
    };
    let window = "from=2025-11-04+09:15:00&to=2025-11-04+09:19:00&oi=1";
    let r = kite("10000001", window, "today").await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let candles = body["data"]["candles"].as_array().unwrap();
    assert_eq!((body["status"].as_str(), candles.len()), (Some("success"), 5), "`to` is inclusive: {body}");
    assert_eq!(candles[0][0], "2025-11-04T09:15:00+0530");
    assert_eq!(candles[4][0], "2025-11-04T09:19:00+0530");
    assert_eq!(candles[0].as_array().unwrap().len(), 7, "oi=1 adds the 7th element");
    // The same minute as the ticker-service route, in Kite's shape.
    let (_, _, ours) = sim
        .get("/history?instrument_token=10000001&from_ts=2025-11-04T03:45:00Z&to_ts=2025-11-04T03:46:00Z&oi=true")
        .await;
    let c = &ours["candles"][0];
    let want: Vec<serde_json::Value> = ["open", "high", "low", "close", "volume", "oi"].map(|k| c[k].clone()).to_vec();
    assert_eq!(candles[0].as_array().unwrap()[1..7], want[..]);

    let error = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let b: serde_json::Value = r.json().await.unwrap();
        (status, b["error_type"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(error(kite("10000001", window, "yesterday").await.unwrap()).await, (403, "TokenException".into()));
    let long = "from=2025-01-01+09:15:00&to=2025-11-04+09:19:00";
    assert_eq!(error(kite("10000001", long, "today").await.unwrap()).await, (400, "InputException".into()));
    assert_eq!(error(kite("999", window, "today").await.unwrap()).await, (400, "InputException".into()));
    let throttled = start(SimOptions { throttle_rate: 1.0, ..Default::default() }).await;
    let r = throttled
        .http
        .get(format!("{}/instruments/historical/256265/minute?{window}", throttled.url))
        .header("X-Kite-Version", "3")
        .header("Authorization", "token key:any")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("retry-after").is_none(), "Kite's 429 has no Retry-After");
    assert_eq!(error(r).await, (429, "NetworkException".into()));
}

/// The candles' minutes of an answer, as epoch seconds, and the closes by minute.
fn minutes(body: &serde_json::Value) -> Vec<(i64, f64)> {
    body["candles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let t = chrono::DateTime::parse_from_rfc3339(c["date"].as_str().unwrap()).unwrap().timestamp();
            (t, c["close"].as_f64().unwrap())
        })
        .collect()
}

const TWO_DAYS: &str = "/history?instrument_token=256265&from_ts=2025-11-03T00:00:00Z&to_ts=2025-11-05T00:00:00Z";

/// The lies are told as asked, deterministically from the seed, drawn per request (so asking
/// again can get the truth), and counted in `/stats`.
#[tokio::test]
async fn the_simulator_lies_on_request_and_counts_its_lies() {
    use tickfill::sim::lies::{parse_adjustment, Lies};
    let clean = start(SimOptions::default()).await;
    let q = |token: u32| format!("/history?instrument_token={token}&{DAY}&oi=true");
    let (_, _, truth) = clean.get(&q(256265)).await;
    let truth = minutes(&truth);
    assert_eq!(truth.len(), 1440);

    let lying = |lies: Lies| start(SimOptions { lies, ..Default::default() });
    // Truncation and holes: fewer candles, every one of them true; some answers whole.
    let sim = lying(Lies { seed: 7, truncate_rate: 0.5, hole_rate: 0.5, ..Default::default() }).await;
    let mut whole = 0;
    for _ in 0..20 {
        let got = minutes(&sim.get(&q(256265)).await.2);
        assert!(got.iter().all(|m| truth.contains(m)), "a lie changed a candle");
        whole += usize::from(got.len() == truth.len());
    }
    assert!(whole > 0 && whole < 20, "{whole} of 20 answers whole");
    let faults = sim.get("/stats").await.2["faults"].clone();
    assert!(faults["truncated"].as_u64().unwrap() > 0 && faults["holes"].as_u64().unwrap() > 0, "{faults}");
    // The same seed tells the same lies in the same order.
    let again = lying(Lies { seed: 7, truncate_rate: 0.5, hole_rate: 0.5, ..Default::default() }).await;
    let other = lying(Lies { seed: 7, truncate_rate: 0.5, hole_rate: 0.5, ..Default::default() }).await;
    for _ in 0..5 {
        assert_eq!(minutes(&again.get(&q(256265)).await.2), minutes(&other.get(&q(256265)).await.2));
    }

    // Illiquid options: the same minutes missing in every answer; the index untouched.
    let sim = lying(Lies { seed: 3, illiquid_share: 1.0, ..Default::default() }).await;
    let (a, b) = (minutes(&sim.get(&q(11000000)).await.2), minutes(&sim.get(&q(11000000)).await.2));
    assert_eq!(a, b);
    assert!(a.len() < 1440 && a.len() > 500, "{} of 1440 minutes traded", a.len());
    assert_eq!(minutes(&sim.get(&q(256265)).await.2).len(), 1440);
    assert_eq!(sim.get("/stats").await.2["faults"]["illiquid_minutes"], 2 * (1440 - a.len()) as u64);

    // An adjustment: prices before the date times the ratio, after it untouched.
    let adj = parse_adjustment("256265:2025-11-04:0.5").unwrap();
    let sim = lying(Lies { adjust: vec![adj], ..Default::default() }).await;
    let adjusted = minutes(&sim.get(TWO_DAYS).await.2);
    let (_, _, clean_two) = clean.get(TWO_DAYS).await;
    let clean_two = minutes(&clean_two);
    let split = chrono::DateTime::parse_from_rfc3339("2025-11-04T00:00:00+05:30").unwrap().timestamp();
    for ((t, c), (t2, c2)) in adjusted.iter().zip(&clean_two) {
        assert_eq!(t, t2);
        let want = if *t < split { (c2 * 0.5 * 20.0).round() / 20.0 } else { *c2 };
        assert!((c - want).abs() < 1e-9, "{t}: {c} vs {want}");
    }
    assert!(sim.get("/stats").await.2["faults"]["adjusted"].as_u64().unwrap() > 0);
    for bad in ["x:2025-11-04:0.5", "1:2025-13-04:0.5", "1:2025-11-04:-1", "1:2025-11-04"] {
        assert!(parse_adjustment(bad).is_err(), "{bad}");
    }

    // Lag: the newest N minutes are not served yet.
    let sim = lying(Lies { lag_minutes: 5, ..Default::default() }).await;
    let now = chrono::Utc::now().timestamp().div_euclid(60) * 60;
    let from = chrono::DateTime::from_timestamp(now - 3600, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ");
    let to = chrono::DateTime::from_timestamp(now + 60, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ");
    let got = minutes(&sim.get(&format!("/history?instrument_token=256265&from_ts={from}&to_ts={to}")).await.2);
    // (A minute may turn between the two clocks.)
    let newest = got.last().unwrap().0;
    assert!((now - 6 * 60..=now - 5 * 60).contains(&newest), "the newest served minute is 5 behind the forming one");
    assert_eq!(sim.get("/stats").await.2["faults"]["lagged"], 1);
}
