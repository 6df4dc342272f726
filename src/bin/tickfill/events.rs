//! `tickfill events rejected`: the newest refused events and the counts by reason.

use clap::Subcommand;
use tickfill::{config::Settings, queue};

#[derive(Subcommand)]
pub enum EventsCommand {
    /// Show the newest rejected events (reason, size, first bytes) and the counts by reason.
    Rejected {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 50)]
        limit: isize,
    },
}

pub async fn run(settings: Settings, command: EventsCommand) -> anyhow::Result<()> {
    let EventsCommand::Rejected { json, limit } = command;
    let mut conn = queue::connect(&settings.redis).await?;
    let list = queue::rejected::list_rejected(&mut conn, &settings.queue.name, limit).await?;
    if json {
        say!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    let counts = queue::counters(&mut conn, &settings.queue.name).await?;
    for (name, n) in counts.iter().filter(|(k, _)| k.starts_with("events_")) {
        say!("{name}: {n}");
    }
    for e in &list {
        say!(
            "{}  {:<18} {:>6} B  {}  {}",
            e["at"].as_str().unwrap_or(""),
            e["code"].as_str().unwrap_or(""),
            e["bytes"],
            e["reason"].as_str().unwrap_or(""),
            e["message"].as_str().unwrap_or("").chars().take(80).collect::<String>().escape_debug()
        );
    }
    if list.is_empty() {
        say!("no rejected events");
    }
    Ok(())
}
