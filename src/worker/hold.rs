//! Lanes and kinds an operator paused (`queue::controls`). A paused lane's apalis worker is
//! paused ([`LaneSwitches`]): it takes no job, so they stay pending, and its running jobs finish
//! (a drain). A job it took just before the pause reached it is held where it is until the lane
//! resumes. A job of a paused kind is put back to wait. None spends an attempt.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use crate::queue::RedisConn;
use apalis_core::worker::context::WorkerContext;
use tickfill_jobs::Lane;

use crate::shutdown::Shutdown;

use tickfill_jobs::Job;

use crate::queue::controls::{self, Controls};

/// How long a job of a paused kind waits before it is picked up again.
pub const KIND_WAIT: Duration = Duration::from_secs(5);

/// What a job may do now.
pub(super) enum Hold {
    Go,
    /// Its lane is paused (the worker took it just before it knew): put it back, pending.
    LanePaused(String),
    /// Its kind is paused: put it back to wait.
    KindPaused(String),
}

/// How long a job of a paused lane waits before it is due again (its lane's worker is paused
/// meanwhile, so it stays pending until the lane resumes).
pub const LANE_WAIT: Duration = Duration::from_secs(1);

/// Whether the job's lane or kind is paused, by the controls read as the attempt started (in the
/// same round trip as its start count, so a pause holds for every job started after it).
pub(super) fn check(c: &Controls, job: &Job) -> Hold {
    let lane = job.lane();
    if let Some(p) = c.lane(lane) {
        super::trail::note("held", serde_json::json!({"lane": lane.as_str(), "since": p.since}));
        return Hold::LanePaused(format!("the {} lane is paused (since {}, by {})", lane.as_str(), p.since, p.by));
    }
    if let Some(p) = c.kind(job.kind()) {
        return Hold::KindPaused(format!("jobs of kind {} are paused (since {}, by {})", job.kind(), p.since, p.by));
    }
    Hold::Go
}

/// How often a worker process looks at the lanes' pauses.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// The process's apalis workers per lane, paused and resumed as the operator's controls say.
#[derive(Clone, Default)]
pub struct LaneSwitches {
    paused: Arc<[AtomicBool; 2]>,
    workers: Arc<Mutex<Vec<(Lane, WorkerContext)>>>,
}

impl LaneSwitches {
    /// The switches, set to the pauses in force now.
    pub async fn new(conn: &mut RedisConn, ns: &str) -> LaneSwitches {
        let c = controls::read(conn, ns).await.unwrap_or_default();
        let s = LaneSwitches::default();
        for lane in Lane::ALL {
            s.paused[lane as usize].store(c.lane(lane).is_some(), Ordering::Relaxed);
        }
        s
    }

    /// A lane's worker started (or restarted): paused at once if its lane is.
    pub fn started(&self, lane: Lane, ctx: &WorkerContext) {
        if self.paused[lane as usize].load(Ordering::Relaxed) {
            let _ = ctx.pause();
        }
        let mut w = self.workers.lock().expect("lane workers");
        w.retain(|(l, c)| !(*l == lane && c.name() == ctx.name()));
        w.push((lane, ctx.clone()));
    }

    /// Follows the controls until `shutdown`, pausing and resuming the lanes' workers.
    pub async fn follow(self, mut conn: RedisConn, ns: String, shutdown: Shutdown) {
        while !shutdown.is_triggered() {
            if let Ok(c) = controls::read(&mut conn, &ns).await {
                for lane in Lane::ALL {
                    let want = c.lane(lane).is_some();
                    let was = self.paused[lane as usize].swap(want, Ordering::Relaxed);
                    if want != was {
                        tracing::info!(
                            lane = lane.as_str(),
                            paused = want,
                            "lane {}",
                            if want { "paused" } else { "resumed" }
                        );
                    }
                    for (l, ctx) in self.workers.lock().expect("lane workers").iter() {
                        if *l != lane || !ctx.is_running() && !ctx.is_paused() {
                            continue;
                        }
                        if want && !ctx.is_paused() {
                            let _ = ctx.pause();
                        } else if !want && ctx.is_paused() {
                            let _ = ctx.resume();
                        }
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_EVERY) => {}
                _ = shutdown.wait() => {}
            }
        }
    }
}
