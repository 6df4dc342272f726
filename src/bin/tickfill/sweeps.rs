//! `tickfill sweeps`: the scheduler's schedule, last and next tick and last sweeps; `now`,
//! `pause` and `resume`.

use tickfill::{config::Settings, queue};

#[derive(clap::Subcommand)]
pub enum SweepsCommand {
    /// Push a sweep now (also while sweeps are paused).
    Now,
    /// Stop the scheduler's ticks from pushing sweeps, fleet-wide.
    Pause,
    /// Let them push again.
    Resume,
}

pub async fn run(settings: Settings, command: Option<SweepsCommand>, json: bool) -> anyhow::Result<()> {
    let mut conn = queue::connect(&settings.redis).await?;
    let target = queue::controls::Target::Sweeps;
    match command {
        Some(SweepsCommand::Now) => {
            let tick = tickfill::status::sweep_now(&settings, conn).await?;
            crate::audit::record(&settings, "sweeps.now", serde_json::json!({"tick": tick}), None, Some(1), true).await;
            say!("sweep pushed (tick {})", tick.to_rfc3339());
        }
        Some(SweepsCommand::Pause) => {
            match queue::controls::pause(&mut conn, &settings.queue.name, target, "cli", false).await? {
                true => say!("sweeps paused"),
                false => say!("sweeps were paused already"),
            }
        }
        Some(SweepsCommand::Resume) => match audited(
            &settings,
            "sweeps.resume",
            queue::controls::resume(&mut conn, &settings.queue.name, target).await?,
        )
        .await
        {
            true => say!("sweeps resumed"),
            false => say!("sweeps were not paused"),
        },
        None => {
            let pool = tickfill::store::connect(settings.store.database_url.expose(), 2).await?;
            let s = tickfill::status::sweeps(&settings, &mut conn, Some(&pool)).await?;
            if json {
                say!("{}", serde_json::to_string(&s)?);
                return Ok(());
            }
            say!("{}; last tick {}, next {}", s.interval, s.last_tick.to_rfc3339(), s.next_tick.to_rfc3339());
            if let Some(p) = &s.paused {
                say!("PAUSED since {} (by {}): `tickfill sweeps resume`", p.since, p.by);
            }
            for r in &s.recent {
                say!(
                    "{}  {}  {:>8} ms  {:>6} jobs  {}",
                    r.job_id,
                    r.tick.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    r.duration_ms.map(|d| format!("{d:.0}")).unwrap_or_default(),
                    r.jobs_pushed,
                    r.outcome
                );
            }
        }
    }
    Ok(())
}

/// Records a pause or resume of the sweeps and passes on whether it changed anything.
async fn audited(settings: &Settings, action: &str, changed: bool) -> bool {
    crate::audit::record(settings, action, serde_json::json!({}), None, Some(changed as i64), true).await;
    changed
}
