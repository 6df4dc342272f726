//! What traces cost: PUBLISH → committed rows with the bridge and a worker as processes of their
//! own, once exporting every span over OTLP/HTTP to a receiver the bench starts, once without
//! any `OTEL_*` setting, in alternating rounds so that drift falls on both alike.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde_json::json;

use super::procs::{wait_for, Fleet};
use crate::{config::Settings, queue, shutdown::Shutdown};

/// Rounds per mode; each publishes `events / (2 · ROUNDS)` events.
const ROUNDS: usize = 5;

/// An OTLP/HTTP receiver that accepts every export and counts them; its endpoint and the count.
async fn receiver(shutdown: &Shutdown) -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let exports = Arc::new(AtomicU64::new(0));
    let n = exports.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |_: axum::body::Bytes| {
            n.fetch_add(1, Ordering::Relaxed);
            async { axum::http::StatusCode::OK }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = shutdown.clone();
    tokio::spawn(
        async move { axum::serve(listener, app).with_graceful_shutdown(async move { stop.wait().await }).await },
    );
    Ok((format!("http://{addr}"), exports))
}

/// One round: publishes `events` subscriptions at `rate` to a bridge and a worker (exporting to
/// `endpoint` when given) and returns each event's ms from PUBLISH to its committed run.
async fn round(base: &Settings, events: usize, rate: f64, endpoint: Option<&str>) -> anyhow::Result<Vec<f64>> {
    let got = super::with_processes(base, "latency-traced", |db_url, ns, dir| async move {
        let shutdown = Shutdown::new();
        let (sim_url, pool, tokens) = super::sim_and_store(&db_url, events, 4, &shutdown).await?;
        let mut extra = vec![("TICKER_RATE_LIMIT", "0")];
        if let Some(e) = endpoint {
            extra.push(("OTEL_EXPORTER_OTLP_ENDPOINT", e));
        }
        let mut fleet = Fleet::new(&dir, &db_url, &base.redis.target, &ns, &sim_url, &extra)?;
        fleet.add("bridge", &[])?;
        fleet.add("worker", &[])?;
        let mut conn = queue::connect(&base.redis).await?;
        let channel = queue::keys::events_channel(&ns);
        wait_for(30, "the bridge to subscribe", || {
            let (mut conn, channel) = (conn.clone(), channel.clone());
            async move { queue::subscribers(&mut conn, &channel).await.unwrap_or(0) >= 1 }
        })
        .await?;
        // The worker registers before the first event, so start-up is not measured.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let mut published: HashMap<i64, DateTime<Utc>> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        for token in &tokens {
            tick.tick().await;
            let msg = json!({"event_type": "subscription_created", "instrument_token": token,
                             "timestamp": Utc::now().timestamp()});
            published.insert(*token as i64, Utc::now());
            let _: i64 = redis::cmd("PUBLISH").arg(&channel).arg(msg.to_string()).query_async(&mut conn).await?;
        }
        let mut rows: Vec<(i64, DateTime<Utc>)> = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while rows.len() < events && tokio::time::Instant::now() < deadline {
            rows = sqlx::query_as(
                "SELECT instrument_token, finished_at FROM backfill_runs WHERE outcome = 'stored' AND reason = 'subscribe'",
            )
            .fetch_all(&pool)
            .await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        fleet.stop_all(Duration::from_secs(10));
        shutdown.trigger();
        pool.close().await;
        anyhow::ensure!(rows.len() >= events, "only {} of {events} backfills committed within 60 s", rows.len());
        let ms: Vec<f64> = rows
            .iter()
            .filter_map(|(t, done)| published.get(t).map(|p| (*done - *p).num_microseconds().unwrap_or(0) as f64 / 1000.0))
            .collect();
        Ok(json!(ms))
    })
    .await?;
    Ok(serde_json::from_value(got)?)
}

/// `p50_with_traces`, `p50_without` and `trace_overhead` (their ratio), over `events` events.
pub async fn overhead(base: &Settings, events: usize, rate: f64) -> anyhow::Result<serde_json::Value> {
    let shutdown = Shutdown::new();
    let (endpoint, exports) = receiver(&shutdown).await?;
    let per_round = (events / (2 * ROUNDS)).max(1);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        without.extend(round(base, per_round, rate, None).await?);
        with.extend(round(base, per_round, rate, Some(&endpoint)).await?);
    }
    shutdown.trigger();
    let p50 = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        super::percentile(v, 50.0)
    };
    let (p_with, p_without) = (p50(&mut with), p50(&mut without));
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    Ok(json!({
        "p50_with_traces": r2(p_with),
        "p50_without": r2(p_without),
        "trace_overhead": r2(p_with / p_without),
        "traced_events": with.len(),
        "untraced_events": without.len(),
        "trace_exports_received": exports.load(Ordering::Relaxed),
    }))
}
