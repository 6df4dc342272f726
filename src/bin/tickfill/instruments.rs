//! `tickfill instruments load`: upsert a Kite instrument dump.

use clap::Subcommand;
use tickfill::{config::Settings, load, store};

#[derive(Subcommand)]
pub enum InstrumentsCommand {
    /// Upsert a Kite instrument dump (file path, http(s) URL, or - for stdin).
    Load {
        source: String,
        /// The dump lists all of its segments: their instruments it omits become inactive.
        #[arg(long)]
        full: bool,
    },
}

pub async fn run(settings: Settings, command: InstrumentsCommand) -> anyhow::Result<()> {
    let InstrumentsCommand::Load { source, full } = command;
    let pool = store::connect(settings.database_url.expose(), 2).await?;
    let bytes = load::read_source(&source).await?;
    // indicatif draws only when stderr is a terminal.
    let bar = indicatif::ProgressBar::new(0).with_style(progress_style());
    let report = load::load_with(&pool, &bytes, full, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .await?;
    bar.finish_and_clear();
    for (line, why) in &report.rejected {
        eprintln!("line {line}: {why}");
    }
    say!(
        "{} rows read: {} inserted, {} updated, {} unchanged, {} rejected",
        report.rows,
        report.inserted,
        report.updated,
        report.unchanged,
        report.rejected.len()
    );
    match (&report.deactivated, &report.full_skipped) {
        (Some(n), _) => say!("--full: {n} instrument(s) of the dump's segments no longer listed, now inactive"),
        (None, Some(why)) => say!("--full: nothing deactivated: {why}"),
        _ => {}
    }
    Ok(())
}

fn progress_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("[{bar:30}] {pos}/{len} rows")
        .expect("a valid template")
        .progress_chars("#-")
}
