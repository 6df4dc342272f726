//! Queue figures, read straight from apalis-redis's keys (its own introspection does not work in
//! 1.0): what waits, runs and finished in each lane, and which jobs are running now.

use chrono::{DateTime, Utc};
use redis::AsyncCommands;

use crate::queue::RedisConn;
use tickfill_jobs::{InstrumentToken, Lane};

use super::{dead::read_job, housekeeping::inflight_sets, keys::LaneKeys};

/// How many jobs of one lane are in each state, read straight from apalis-redis's keys (its own
/// introspection does not work in 1.0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Depths {
    pub scheduled: u64,
    pub active: u64,
    pub running: u64,
    pub done: u64,
    pub dead: u64,
}

impl Depths {
    /// Jobs not yet finished: waiting, due or running.
    pub fn pending(&self) -> u64 {
        self.scheduled + self.active + self.running
    }
}

/// Reads the depths of one lane.
pub async fn lane_depths(conn: &mut RedisConn, ns: &str, lane: Lane) -> redis::RedisResult<Depths> {
    let k = LaneKeys::new(ns, lane);
    let inflight = inflight_sets(conn, &k).await?;
    let mut running = 0;
    if !inflight.is_empty() {
        let mut pipe = redis::pipe();
        for (key, _) in &inflight {
            pipe.scard(key);
        }
        let counts: Vec<u64> = pipe.query_async(conn).await?;
        running = counts.into_iter().sum();
    }
    Ok(Depths {
        scheduled: conn.zcard(k.scheduled()).await?,
        active: conn.llen(k.active()).await?,
        running,
        done: conn.scard(k.done()).await?,
        dead: conn.scard(k.dead()).await?,
    })
}

/// The queue figures of one lane.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LaneStats {
    pub lane: Lane,
    /// Due and waiting for a worker.
    pub pending: u64,
    /// Waiting for their time (delayed pushes, retries).
    pub scheduled: u64,
    pub running: u64,
    pub done: u64,
    pub dead: u64,
    /// How long the oldest due job has waited, in seconds.
    pub oldest_pending_age_s: Option<f64>,
    /// The lane's pause (or drain), if an operator paused it.
    pub paused: Option<super::controls::Pause>,
    /// The job kinds paused (fleet-wide, in every lane).
    pub paused_kinds: Vec<String>,
}

/// Seconds since the creation of the job with this ULID id (apalis and tickfill ids are ULIDs).
fn age_of(id: &str, now: DateTime<Utc>) -> Option<f64> {
    let ms = ulid::Ulid::from_string(id).ok()?.timestamp_ms() as i64;
    Some((now.timestamp_millis() - ms).max(0) as f64 / 1000.0)
}

/// Queue figures of both lanes.
pub async fn stats(conn: &mut RedisConn, ns: &str) -> redis::RedisResult<Vec<LaneStats>> {
    let now = Utc::now();
    let controls = super::controls::read(conn, ns).await?;
    let mut out = Vec::new();
    for lane in Lane::ALL {
        let k = LaneKeys::new(ns, lane);
        let d = lane_depths(conn, ns, lane).await?;
        let first_active: Vec<String> = conn.lrange(k.active(), 0, 0).await?;
        let due: Vec<String> = conn.zrangebyscore_limit(k.scheduled(), "-inf", now.timestamp(), 0, 1).await?;
        let oldest = first_active.iter().chain(due.iter()).filter_map(|id| age_of(id, now)).reduce(f64::max);
        let due_count: u64 = conn.zcount(k.scheduled(), "-inf", now.timestamp()).await?;
        out.push(LaneStats {
            lane,
            pending: d.active + due_count,
            scheduled: d.scheduled - due_count.min(d.scheduled),
            running: d.running,
            done: d.done,
            dead: d.dead,
            oldest_pending_age_s: oldest.map(|a| (a * 10.0).round() / 10.0),
            paused: controls.lane(lane).cloned(),
            paused_kinds: controls.kinds.keys().cloned().collect(),
        });
    }
    Ok(out)
}

/// A job a worker is running now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunningJob {
    pub id: String,
    pub lane: Lane,
    pub kind: String,
    pub token: Option<InstrumentToken>,
    pub attempts: u32,
    pub worker: String,
}

/// The jobs in the in-flight sets of every worker of the namespace (at most `limit`).
pub async fn running(conn: &mut RedisConn, ns: &str, limit: usize) -> redis::RedisResult<Vec<RunningJob>> {
    let mut out = Vec::new();
    for lane in Lane::ALL {
        for (set, worker) in inflight_sets(conn, &LaneKeys::new(ns, lane)).await? {
            let ids: Vec<String> = conn.smembers(&set).await?;
            for id in ids {
                if out.len() >= limit {
                    return Ok(out);
                }
                if let Some(d) = read_job(conn, ns, lane, &id).await? {
                    let s = d.summary;
                    out.push(RunningJob {
                        id: s.id,
                        lane: s.lane,
                        kind: s.kind,
                        token: s.token,
                        attempts: s.attempts,
                        worker: worker.clone(),
                    });
                }
            }
        }
    }
    Ok(out)
}
