//! The long-running processes (bridge, worker, scheduler, dev) and `migrate`. Each serves the
//! admin API on `ADMIN_LISTEN` beside its work and stops on SIGTERM or SIGINT.

use anyhow::Context;
use tickfill::{
    admin, bridge,
    config::Settings,
    dev, queue, scheduler,
    shutdown::{patiently, Shutdown},
    store, worker,
};

pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let pool = store::connect(settings.store.database_url.expose(), 1).await?;
    let migrated = store::migrate(&pool, &settings.store.timescale).await?;
    if let Some(w) = migrated.plain.as_ref().and_then(|p| p.warning()) {
        eprintln!("tickfill: warning: {w}");
    }
    say!("migrations applied; {}", migrated.summary());
    Ok(())
}

pub async fn bridge(settings: Settings) -> anyhow::Result<()> {
    let shutdown = stopped_by_signals();
    serve_admin(&settings, None, &shutdown).await?;
    bridge::run(settings, shutdown).await
}

pub async fn worker(settings: Settings) -> anyhow::Result<()> {
    let shutdown = stopped_by_signals();
    let state = patiently("PostgreSQL and Redis", &shutdown, || worker::build_state(settings.clone(), None)).await?;
    serve_admin(&state.settings, Some(state.pool.clone()), &shutdown).await?;
    worker::run(state, shutdown).await
}

pub async fn scheduler(settings: Settings) -> anyhow::Result<()> {
    let shutdown = stopped_by_signals();
    serve_admin(&settings, None, &shutdown).await?;
    scheduler::run(settings, shutdown).await
}

pub async fn dev(settings: Settings) -> anyhow::Result<()> {
    let shutdown = stopped_by_signals();
    let pool = patiently("PostgreSQL", &shutdown, || store::connect(settings.store.database_url.expose(), 2)).await?;
    serve_admin(&settings, Some(pool), &shutdown).await?;
    dev::run(settings, shutdown).await
}

fn stopped_by_signals() -> Shutdown {
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    shutdown
}

/// Serves the admin API on `ADMIN_LISTEN` for a long-running process, once Redis answers (a
/// process started while Redis is down waits for it, saying so, rather than exiting).
async fn serve_admin(settings: &Settings, pool: Option<sqlx::PgPool>, shutdown: &Shutdown) -> anyhow::Result<()> {
    let redis = patiently("Redis", shutdown, || queue::connect(&settings.redis)).await?;
    let state = admin::AdminState { settings: settings.clone(), redis, pool };
    admin::spawn(state, shutdown.clone())
        .await
        .with_context(|| format!("ADMIN_LISTEN={}: cannot listen there", settings.admin.listen))?;
    Ok(())
}
