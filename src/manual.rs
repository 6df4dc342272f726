//! Hand backfills: pushing a window of one instrument in chunks the ticker accepts, and waiting
//! for them with a progress bar.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sqlx::PgPool;
use tickfill_jobs::{InstrumentToken, Job, Reason};

use crate::{
    domain::window::{self, Window},
    queue::Producer,
    store,
};

/// Pushes a hand backfill of `[from, to)` for `token`, in chunks the ticker accepts. Each run
/// gets keys of its own: a second hand backfill of the same window is a deliberate rebuild and
/// must not be swallowed by the first one's idempotency keys.
pub async fn push_backfill(
    producer: &mut Producer,
    token: InstrumentToken,
    window: Window,
    force: bool,
) -> anyhow::Result<Vec<(Window, String)>> {
    let window = window.floor_minutes();
    anyhow::ensure!(!window.is_empty(), "--from must be before --to (after rounding down to the minute)");
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut pushed = Vec::new();
    for chunk in window.split(window::MAX_CHUNK) {
        let job = Job::Backfill { token, from: chunk.from, to: chunk.to, reason: Reason::Manual, force };
        let key = format!("manual:{run}:{}", job.idempotency_key());
        let id = producer.push_as(&job, &key, None).await?;
        pushed.push((chunk, id));
    }
    Ok(pushed)
}

/// Draws a progress bar on stderr until every chunk has finished; returns (rows, dead chunks).
pub async fn wait_for_backfill(pool: &PgPool, job_ids: &[String]) -> anyhow::Result<(i64, usize)> {
    // indicatif draws only when stderr is a terminal.
    let style = ProgressStyle::with_template("[{bar:30}] {pos}/{len} chunks  {msg}")
        .expect("a valid template")
        .progress_chars("#-");
    let bar = ProgressBar::new(job_ids.len() as u64).with_style(style);
    loop {
        let (done, rows, dead) = store::runs::progress(pool, job_ids).await?;
        let failed = if dead > 0 { format!("  {dead} failed") } else { String::new() };
        bar.set_position(done as u64);
        bar.set_message(format!("{rows} rows{failed}"));
        if done >= job_ids.len() {
            bar.finish();
            return Ok((rows, dead));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
