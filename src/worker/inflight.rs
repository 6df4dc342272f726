//! Jobs a failover stranded. Replication is asynchronous: a worker can finish a job on the old
//! primary (its id leaves the in-flight set, joins the done set) and the new primary, promoted
//! from a replica that never saw that, lists the id in the worker's in-flight set for ever. The
//! worker is alive and beats, so apalis's orphan recovery never looks at it. Here each process
//! compares its workers' in-flight sets with the jobs it is running: an id it has not been
//! running for [`LOOKS`] looks in a row is handed back to its queue (spending no attempt), where
//! it runs again; the handlers are idempotent, so a job that had finished finishes again as
//! "covered".

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
    time::Duration,
};

use tickfill_jobs::Lane;

use crate::{queue, shutdown::Shutdown};

/// How many looks in a row an id must be in an in-flight set without running here.
pub const LOOKS: u32 = 3;

/// The task ids this process is running now.
#[derive(Default)]
pub struct Running(Mutex<HashSet<String>>);

/// Keeps an id in [`Running`] while it lives.
pub struct RunningGuard<'a> {
    running: &'a Running,
    id: String,
}

impl Running {
    pub fn enter(&self, id: &str) -> RunningGuard<'_> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string());
        RunningGuard { running: self, id: id.to_string() }
    }

    fn contains(&self, id: &str) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).contains(id)
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.running.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

/// Looks every `every` at the in-flight sets of the workers named `name-…` and hands back the
/// ids they hold that this process has not run for [`LOOKS`] looks.
pub async fn look_forever(
    conn: queue::RedisConn,
    ns: String,
    name: String,
    running: std::sync::Arc<Running>,
    every: Duration,
    shutdown: Shutdown,
) {
    let mut idle: HashMap<(&str, String), u32> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => return,
        }
        let mut seen: HashMap<(&str, String), u32> = HashMap::new();
        for lane in Lane::ALL {
            let sets = match queue::housekeeping::own_inflight(&mut conn.clone(), &ns, lane, &name).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "could not read the in-flight sets");
                    continue;
                }
            };
            for (set, ids) in sets {
                let mut stranded = Vec::new();
                for id in ids.into_iter().filter(|id| !running.contains(id)) {
                    let n = idle.get(&(lane.as_str(), id.clone())).copied().unwrap_or(0) + 1;
                    if n >= LOOKS {
                        stranded.push(id);
                    } else {
                        seen.insert((lane.as_str(), id), n);
                    }
                }
                match queue::housekeeping::hand_back_ids(&mut conn.clone(), &ns, lane, &set, &stranded).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::warn!(
                            lane = lane.as_str(),
                            jobs = n,
                            "handed back jobs left in flight without running (a failover lost their acknowledgement)"
                        );
                        queue::count_by(&mut conn.clone(), &ns, "jobs_stranded_handed_back", n).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "could not hand back stranded jobs"),
                }
            }
        }
        idle = seen;
    }
}
