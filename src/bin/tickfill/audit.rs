//! `tickfill audit`: every change made through the admin API or the CLI, newest first; and the
//! record the CLI's own changes leave there.

use serde_json::Value;
use tickfill::{config::Settings, store};

/// Records a change the CLI made (`actor` `cli`). A change that could not be recorded is said
/// on stderr: it was made.
pub async fn record(
    settings: &Settings,
    action: &str,
    target: Value,
    matched: Option<i64>,
    acted: Option<i64>,
    ok: bool,
) {
    let entry = store::audit::NewEntry { actor: "cli", action, target, matched, acted, ok, result: None };
    let recorded = match store::connect(settings.store.database_url.expose(), 1).await {
        Ok(pool) => store::audit::record(&pool, &entry).await.map(|_| ()).map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    if let Err(e) = recorded {
        eprintln!("tickfill: {action} was done but could not be audited: {e:#}");
    }
}

pub async fn run(settings: Settings, limit: i64, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!((1..=1000).contains(&limit), "--limit must be 1 … 1000");
    let pool = store::connect(settings.store.database_url.expose(), 1).await?;
    let entries = store::audit::list(&pool, limit, None).await?;
    if json {
        say!("{}", serde_json::to_string(&entries)?);
        return Ok(());
    }
    for e in entries {
        say!(
            "{}  {}  {:<6} {:<24} matched {:>6}  acted {:>6}  {}  {}",
            e.id,
            e.at.to_rfc3339(),
            e.actor,
            e.action,
            e.matched.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            e.acted.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            if e.ok { "ok" } else { "FAILED" },
            tickfill::domain::text::inert(&e.target.to_string(), 200)
        );
    }
    Ok(())
}
