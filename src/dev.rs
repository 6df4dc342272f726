//! `tickfill dev`: the whole pipeline in one process against local Redis and PostgreSQL —
//! migrations, the simulator (at `TICKER_SERVICE_URL`'s host and port), an instrument load from it,
//! the bridge, the worker and the scheduler — then a few demo subscriptions through the simulator's
//! `POST /subscriptions`, printing a line per finished backfill.

use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::{bridge, config::Settings, load, queue, scheduler, shutdown::Shutdown, sim, store, worker};

/// Subscribed at start: the index, the near future, and an at-the-money call and put.
pub const DEMO_TOKENS: [u32; 4] = [sim::NIFTY_TOKEN, 10_000_001, 11_000_020, 11_000_021];

pub async fn run(mut settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    // The simulator serves every minute, so that `dev` works at any hour: so does the store.
    settings.backfill.calendar = crate::domain::calendar::TradingCalendar::Always;
    let pool =
        crate::shutdown::patiently("PostgreSQL", &shutdown, || store::connect(settings.store.database_url.expose(), 4))
            .await?;
    let migrated = store::migrate(&pool, &settings.store.timescale).await?;
    if let Some(w) = migrated.plain.as_ref().and_then(|p| p.warning()) {
        tracing::warn!("{w}");
    }
    println!("migrations applied ({})", migrated.summary());

    let url = reqwest::Url::parse(&settings.ticker.url)?;
    let host = url.host_str().context("TICKER_SERVICE_URL has no host")?.to_string();
    let port = url.port_or_known_default().context("TICKER_SERVICE_URL has no port")?;
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .next()
        .with_context(|| format!("cannot resolve {host}"))?;
    let opts = sim::SimOptions {
        redis: Some(settings.redis.clone()),
        channel_prefix: settings.events.channel_prefix.clone(),
        ..Default::default()
    };
    let bound = sim::spawn(addr, opts, shutdown.clone())
        .await
        .with_context(|| format!("failed to start the simulator on {addr} (is something else on that port?)"))?;
    println!("simulator on http://{bound}");

    let dump = load::read_source(&format!("{}/instruments", settings.ticker.url)).await?;
    let report = load::load(&pool, &dump).await?;
    println!("instruments loaded: {} rows ({} new or changed)", report.rows, report.upserted());

    let (tx, mut rx) = mpsc::unbounded_channel();
    let state = worker::build_state(settings.clone(), Some(tx)).await?;
    let bridge_task = tokio::spawn(bridge::run(settings.clone(), shutdown.clone()));
    let worker_task = tokio::spawn(worker::run(state, shutdown.clone()));
    let scheduler_task = tokio::spawn(scheduler::run(settings.clone(), shutdown.clone()));

    let mut conn = queue::connect(&settings.redis).await?;
    let channel = crate::queue::keys::events_channel(&settings.events.channel_prefix);
    while queue::subscribers(&mut conn, &channel).await? < 1 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let http = reqwest::Client::new();
    for token in DEMO_TOKENS {
        let resp = http
            .post(format!("{}/subscriptions", settings.ticker.url))
            .json(&serde_json::json!({"instrument_token": token}))
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "subscribing {token} answered {}", resp.status());
    }
    println!("subscribed {} demo instruments; Ctrl-C stops", DEMO_TOKENS.len());
    loop {
        tokio::select! {
            Some(c) = rx.recv() => println!(
                "backfilled {:<22} {:>5} rows into {:<13} {}",
                c.label,
                c.rows,
                c.table,
                c.latency.map(|l| format!("{} ms from event to commit", l.as_millis())).unwrap_or_default()
            ),
            _ = shutdown.wait() => break,
        }
    }
    let _ = tokio::time::timeout(settings.queue.shutdown_timeout, async {
        let _ = bridge_task.await;
        let _ = worker_task.await;
        let _ = scheduler_task.await;
    })
    .await;
    Ok(())
}
