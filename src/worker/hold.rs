//! Lanes and kinds an operator paused (`queue::controls`): a job of a paused lane is held where
//! it was picked up until the lane resumes (the lane takes no more meanwhile: its slots are held);
//! a job of a paused kind is put back to wait. Neither spends an attempt.

use std::{sync::atomic::Ordering, time::Duration};

use tickfill_jobs::Job;

use super::WorkerState;
use crate::queue::controls::{self, Controls};

/// How often a held job looks whether its lane resumed.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// How long a job of a paused kind waits before it is picked up again.
pub const KIND_WAIT: Duration = Duration::from_secs(5);

/// The controls now: one small read per job, so a pause holds for every job started after it.
/// Redis unreachable: nothing is taken as paused (the job then meets the outage itself).
async fn current(state: &WorkerState) -> Controls {
    controls::read(&mut state.redis.clone(), &state.settings.queue).await.unwrap_or_default()
}

/// What a job may do now.
pub(super) enum Hold {
    Go,
    /// Its kind is paused: put it back to wait.
    KindPaused(String),
    /// Its lane is paused and the worker is stopping: hand it back.
    Stopping(String),
}

/// Waits while the job's lane is paused; says whether its kind is paused.
pub(super) async fn wait_for_controls(state: &WorkerState, job: &Job) -> Hold {
    let lane = job.lane();
    let mut said = false;
    loop {
        let c = current(state).await;
        if let Some(p) = c.lane(lane) {
            if state.stopping.load(Ordering::Relaxed) {
                return Hold::Stopping(format!("the {} lane is paused and the worker is stopping", lane.as_str()));
            }
            if !said {
                said = true;
                super::trail::note("held", serde_json::json!({"lane": lane.as_str(), "since": p.since}));
                tracing::info!(lane = lane.as_str(), since = %p.since, by = %p.by, "lane paused: job held until it resumes");
            }
            tokio::time::sleep(LOOK_EVERY).await;
            continue;
        }
        if let Some(p) = c.kind(job.kind()) {
            return Hold::KindPaused(format!(
                "jobs of kind {} are paused (since {}, by {})",
                job.kind(),
                p.since,
                p.by
            ));
        }
        return Hold::Go;
    }
}
