//! `tickfill backfill`: a hand backfill of one instrument's window (or `backfill cancel`).

use clap::Subcommand;
use tickfill::{
    config::Settings,
    domain::{instrument::InstrumentToken, window::Window},
    manual, queue, store,
};

use crate::args::past_instant;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackfillArgs {
    #[command(subcommand)]
    command: Option<BackfillCommand>,
    #[arg(long)]
    token: Option<InstrumentToken>,
    /// Start (RFC 3339), inclusive.
    #[arg(long, value_parser = past_instant)]
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// End (RFC 3339), exclusive.
    #[arg(long, value_parser = past_instant)]
    to: Option<chrono::DateTime<chrono::Utc>>,
    /// Fetch again even where coverage says the window is stored (the source revises candles).
    #[arg(long)]
    force: bool,
    /// Push the jobs and return without waiting for them.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Subcommand)]
pub enum BackfillCommand {
    /// Drop the pending backfills of a token.
    Cancel {
        #[arg(long)]
        token: InstrumentToken,
    },
}

pub async fn run(settings: Settings, a: BackfillArgs) -> anyhow::Result<()> {
    let mut conn = queue::connect(&settings.redis).await?;
    if let Some(BackfillCommand::Cancel { token }) = a.command {
        let n = queue::cancel::cancel_backfills(&mut conn, &settings.queue.name, token).await?;
        say!("cancelled {n} pending backfill(s) of {token}");
        return Ok(());
    }
    let (Some(token), Some(from), Some(to)) = (a.token, a.from, a.to) else {
        anyhow::bail!("backfill needs --token, --from and --to (or: backfill cancel --token T)");
    };
    let mut producer = queue::Producer::new(conn, &settings);
    let chunks = manual::push_backfill(&mut producer, token, Window::new(from, to), a.force).await?;
    say!("pushed {} backfill job(s) for {token}", chunks.len());
    let job_ids: Vec<String> = chunks.into_iter().map(|(_, id)| id).collect();
    if a.no_wait {
        return Ok(());
    }
    let pool = store::connect(settings.store.database_url.expose(), 2).await?;
    let (rows, dead) = manual::wait_for_backfill(&pool, &job_ids).await?;
    say!("{rows} rows stored");
    anyhow::ensure!(dead == 0, "{dead} chunk(s) failed: see `tickfill status` and backfill_runs.error");
    Ok(())
}
