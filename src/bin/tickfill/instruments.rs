//! `tickfill instruments load`: upsert a Kite instrument dump.

use clap::Subcommand;
use tickfill::{
    config::Settings,
    load::{self, Full, Progress},
    store,
};

use crate::args::fraction;

#[derive(Subcommand)]
pub enum InstrumentsCommand {
    /// Upsert a Kite instrument dump (file path, http(s) URL, or - for stdin).
    Load {
        source: String,
        /// The dump lists all of its segments: their instruments it omits become inactive
        /// (never when a row was rejected).
        #[arg(long)]
        full: bool,
        /// With --full: the largest share of a segment's active instruments it may retire.
        #[arg(long, value_name = "FRACTION", default_value_t = load::DEFAULT_MAX_RETIRE_SHARE, value_parser = fraction, requires = "full")]
        max_retire_share: f64,
        /// With --full: retire however many the dump omits.
        #[arg(long, requires = "full")]
        force: bool,
    },
}

pub async fn run(settings: Settings, command: InstrumentsCommand) -> anyhow::Result<()> {
    let InstrumentsCommand::Load { source, full, max_retire_share, force } = command;
    let pool = store::connect(settings.store.database_url.expose(), 3).await?;
    let dump = load::open_source(&source).await?;
    // indicatif draws only when stderr is a terminal; rejected rows are printed as they are read.
    let bar = indicatif::ProgressBar::new(dump.len.unwrap_or(0)).with_style(progress_style());
    let full = full.then_some(Full { max_share: max_retire_share, force });
    let report = load::load_from(&pool, dump.reader, full, |p| match p {
        Progress::Written { rows, bytes } => {
            bar.set_position(bytes);
            bar.set_message(format!("{rows} rows written"));
        }
        Progress::Rejected { line, why } => bar.suspend(|| eprintln!("line {line}: {why}")),
    })
    .await?;
    bar.finish_and_clear();
    say!(
        "{} rows read: {} inserted, {} updated, {} unchanged, {} rejected",
        report.rows,
        report.inserted,
        report.updated,
        report.unchanged,
        report.rejected
    );
    match (&report.deactivated, &report.full_skipped) {
        (Some(n), _) => say!("--full: {n} instrument(s) of the dump's segments no longer listed, now inactive"),
        // The rows are in; the retirement asked for did not happen, so the command fails.
        (None, Some(why)) => anyhow::bail!("--full: nothing deactivated: {why}"),
        _ => {}
    }
    Ok(())
}

fn progress_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("[{bar:30}] {bytes}/{total_bytes} {msg}")
        .expect("a valid template")
        .progress_chars("#-")
}
