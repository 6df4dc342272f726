//! For one token, `subscription_created` and `subscription_removed` take effect in the order of
//! their timestamps (receipt when absent), whatever order their jobs run in: the newest event
//! wins, and an older one arriving late changes nothing.

use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};

use crate::helpers::{spawn_process, wait_until, AppOptions, TestApp};

fn event(kind: &str, token: i64, ts: Option<i64>) -> String {
    match ts {
        Some(ts) => format!(r#"{{"event_type":"{kind}","instrument_token":{token},"timestamp":{ts}}}"#),
        None => format!(r#"{{"event_type":"{kind}","instrument_token":{token}}}"#),
    }
}

async fn statuses(app: &TestApp, tokens: &[i64]) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT instrument_token, status FROM subscriptions WHERE instrument_token = ANY($1) ORDER BY 1")
        .bind(tokens)
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
}

/// Random interleavings through real processes: one bridge, two workers (four jobs at a time
/// each), so a token's jobs run concurrently and in any order. Each round publishes, for every
/// token, a few created/removed events with timestamps drawn from a narrow range (so they tie
/// often; the later published then wins), some without a timestamp, in shuffled order; then
/// waits for the queues to drain and compares every subscription with its newest event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_interleavings_end_in_the_state_of_each_tokens_newest_event() {
    let app = TestApp::spawn_with(AppOptions { start_bridge: false, start_worker: false, ..Default::default() }).await;
    let _bridge = spawn_process(&app, "bridge", &[("ADMIN_LISTEN", "127.0.0.1:0")]);
    let _workers: Vec<_> = (0..2)
        .map(|_| spawn_process(&app, "worker", &[("ADMIN_LISTEN", "127.0.0.1:0"), ("TICKFILL_CONCURRENCY", "4")]))
        .collect();
    app.wait_bridges(20, 1).await;
    let tokens: Vec<i64> = sqlx::query_scalar(
        "SELECT instrument_token FROM instruments WHERE segment IN ('NFO-OPT', 'NFO-FUT', 'INDICES') ORDER BY 1 LIMIT 24",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(tokens.len(), 24);
    let seed: u64 = std::env::var("TICKFILL_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("seed {seed} (TICKFILL_TEST_SEED reruns it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let base = chrono::Utc::now().timestamp() - 600;
    let mut published = 0;
    // An event is its type, token and timestamp (the queue stores a repeat once), so each token
    // gets each (type, timestamp) at most once over the test; "none" sorts as its receipt, after
    // every timestamp drawn.
    let mut used = std::collections::HashSet::new();
    let mut newest = std::collections::BTreeMap::new();
    let mut order = 0usize;
    for round in 0..3 {
        let mut events = Vec::new();
        for &t in &tokens {
            for _ in 0..rng.random_range(1..=5) {
                let ts = (!rng.random_bool(0.1)).then(|| base + round * 100 + rng.random_range(0..4));
                let created = rng.random_bool(0.5);
                if used.insert((t, created, ts)) {
                    events.push((t, created, ts));
                }
            }
        }
        events.shuffle(&mut rng);
        for (t, created, ts) in &events {
            let kind = if *created { "subscription_created" } else { "subscription_removed" };
            app.publish(event(kind, *t, *ts)).await;
            let key = (ts.unwrap_or(i64::MAX), order);
            order += 1;
            let e = newest.entry(*t).or_insert((key, *created));
            if key > e.0 {
                *e = (key, *created);
            }
        }
        published += events.len() as i64;
        wait_until(60, "the bridge to queue every event", || async {
            let counters = tickfill::queue::counters(&mut app.redis.clone(), &app.settings.queue.name).await.unwrap();
            counters.iter().any(|(name, n)| name == "events_accepted" && *n >= published)
        })
        .await;
        app.wait_idle(120).await;
        let want: Vec<(i64, String)> = newest
            .iter()
            .map(|(t, (_, created))| (*t, if *created { "active" } else { "inactive" }.to_string()))
            .collect();
        let got = statuses(&app, &tokens).await;
        assert_eq!(got, want, "round {round}, seed {seed}: {} events", events.len());
    }
}

/// An older event that arrives after a newer one changes nothing and spends no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_event_arriving_late_changes_nothing_and_fetches_nothing() {
    let app = TestApp::spawn().await;
    let now = chrono::Utc::now().timestamp();
    let token = 256265;
    app.publish(event("subscription_removed", token, Some(now))).await;
    app.wait_count(20, "SELECT count(*) FROM subscriptions WHERE instrument_token = 256265 AND status = 'inactive'", 1)
        .await;
    let requests = app.sim_stats().await["history_requests"].as_u64().unwrap_or(0);
    app.publish(event("subscription_created", token, Some(now - 5))).await;
    app.wait_count(
        20,
        "SELECT count(*) FROM backfill_runs WHERE instrument_token = 256265 AND reason = 'subscribe' AND outcome = 'skipped'",
        1,
    )
    .await;
    app.wait_idle(20).await;
    assert_eq!(statuses(&app, &[token]).await, [(token, "inactive".to_string())]);
    assert_eq!(app.sim_stats().await["history_requests"].as_u64().unwrap_or(0), requests);
    assert_eq!(app.count("SELECT count(*) FROM minute_bars WHERE instrument_token = 256265").await, 0);
    // A newer one does take effect; an event stamped far in the future is refused at the bridge.
    app.publish(event("subscription_created", token, Some(now + 1))).await;
    app.wait_count(20, "SELECT count(*) FROM subscriptions WHERE instrument_token = 256265 AND status = 'active'", 1)
        .await;
    app.publish(event("subscription_removed", token, Some(now + 3600))).await;
    wait_until(10, "the future event to be rejected", || async {
        tickfill::queue::rejected::list_rejected(&mut app.redis.clone(), &app.settings.queue.name, 10)
            .await
            .map(|r| r.iter().any(|e| e.to_string().contains("after the bridge received it")))
            .unwrap_or(false)
    })
    .await;
    app.wait_idle(20).await;
    assert_eq!(statuses(&app, &[token]).await, [(token, "active".to_string())]);
}
