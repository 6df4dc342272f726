//! `tickfill jobs`: queue figures, dead letters (list, show, retry, purge) and lifting a pause.

use clap::Subcommand;
use tickfill::{
    config::{self, Settings},
    domain::text::inert,
    jobs::JobKind,
    queue,
};

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Per lane: pending, scheduled, running, done, oldest pending age.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Jobs that failed for good.
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
    /// Lift a pause of history requests (after renewing an expired Kite session).
    Resume,
}

#[derive(Subcommand)]
pub enum DeadCommand {
    /// id, kind, token, attempts, error, failed at.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One dead job in full (payload and metadata), as JSON.
    Show { id: String },
    /// Push dead jobs again as new jobs.
    Retry {
        /// The job to retry.
        id: Option<String>,
        #[arg(long, conflicts_with_all = ["id", "kind"])]
        all: bool,
        /// Every dead job of this kind (subscribed, backfill, sweep, …).
        #[arg(long, conflicts_with = "id")]
        kind: Option<JobKind>,
    },
    /// Forget dead jobs.
    Purge {
        /// Those that failed longer ago than this (90s, 5m, 2h, 7d).
        #[arg(long, value_parser = tickfill::config::parse_duration, conflicts_with = "all")]
        older_than: Option<std::time::Duration>,
        #[arg(long)]
        all: bool,
    },
}

pub async fn run(settings: Settings, command: JobsCommand) -> anyhow::Result<()> {
    let mut conn = queue::connect(settings.redis_url.expose()).await?;
    let ns = settings.queue.clone();
    match command {
        JobsCommand::Resume => {
            if queue::resume(&mut conn, &ns).await? {
                say!("history requests resumed");
            } else {
                say!("history requests were not paused");
            }
        }
        JobsCommand::Stats { json } => {
            let stats = queue::stats::stats(&mut conn, &ns).await?;
            if json {
                say!("{}", serde_json::to_string(&stats)?);
            } else {
                if let Some(p) = &queue::paused(&mut conn, &ns).await? {
                    say!(
                        "PAUSED: {} (since {}); renew the session, then run `tickfill jobs resume`\n",
                        p["reason"].as_str().unwrap_or("?"),
                        p["since"].as_str().unwrap_or("?")
                    );
                }
                say!(
                    "{:<7} {:>8} {:>9} {:>8} {:>8} {:>6}  oldest pending",
                    "lane",
                    "pending",
                    "scheduled",
                    "running",
                    "done",
                    "dead"
                );
                for s in stats {
                    let age = s.oldest_pending_age_s.map(|a| format!("{a:.1}s")).unwrap_or_else(|| "-".into());
                    say!(
                        "{:<7} {:>8} {:>9} {:>8} {:>8} {:>6}  {age}",
                        s.lane,
                        s.pending,
                        s.scheduled,
                        s.running,
                        s.done,
                        s.dead
                    );
                }
            }
        }
        JobsCommand::Dead { command: DeadCommand::List { json } } => {
            let list = queue::dead::list(&mut conn, &ns).await?;
            if json {
                say!("{}", serde_json::to_string(&list)?);
            } else if list.is_empty() {
                say!("no dead jobs");
            } else {
                for d in list {
                    say!(
                        "{}  {:<6} {:<13} {:>10}  attempts {}  {}  {}",
                        d.id,
                        d.lane,
                        inert(&d.kind, 40),
                        d.token.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                        d.attempts,
                        d.failed_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into()),
                        // What a ticker said, shown, never obeyed by the terminal.
                        inert(d.error.as_deref().unwrap_or_default(), 500)
                    );
                }
            }
        }
        JobsCommand::Dead { command: DeadCommand::Show { id } } => {
            match queue::dead::show(&mut conn, &ns, &id).await? {
                Some(d) => say!("{}", serde_json::to_string_pretty(&d)?),
                None => anyhow::bail!("no dead job {id}"),
            }
        }
        JobsCommand::Dead { command: DeadCommand::Retry { id, all, kind } } => {
            let list = queue::dead::list(&mut conn, &ns).await?;
            let chosen: Vec<queue::dead::DeadJob> = match (id, all, kind) {
                (Some(id), _, _) => {
                    let one: Vec<_> = list.into_iter().filter(|d| d.id == id).collect();
                    anyhow::ensure!(!one.is_empty(), "no dead job {id}");
                    one
                }
                (None, true, _) => list,
                (None, false, Some(k)) => list.into_iter().filter(|d| d.kind == k.as_str()).collect(),
                (None, false, None) => anyhow::bail!("say which: an ID, --all or --kind K"),
            };
            let mut producer = queue::Producer::new(conn.clone(), &settings);
            let report = queue::dead::retry(&mut conn, &mut producer, &ns, &chosen).await;
            for r in &report.retried {
                eprintln!("retried {} as {}", r.id, r.new_id);
            }
            for f in &report.failed {
                eprintln!("not retried {}: {}", f.id, inert(&f.error, 500));
            }
            if !report.taken.is_empty() {
                eprintln!("{} dead job(s) were taken by another retry or purge first", report.taken.len());
            }
            say!("retried {} dead job(s)", report.retried.len());
            anyhow::ensure!(report.failed.is_empty(), "{} dead job(s) could not be retried", report.failed.len());
        }
        JobsCommand::Dead { command: DeadCommand::Purge { older_than, all } } => {
            anyhow::ensure!(all || older_than.is_some(), "say which: --older-than DUR or --all");
            let before =
                older_than.map(|d| config::ago(chrono::Utc::now(), d)).transpose().map_err(anyhow::Error::msg)?;
            let n = queue::dead::purge(&mut conn, &ns, before).await?;
            say!("purged {n} dead job(s)");
        }
    }
    Ok(())
}
