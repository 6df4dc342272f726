//! Lanes and job kinds an operator paused, fleet-wide: kept in one Redis hash, so a pause holds
//! for every worker and across their restarts until someone resumes it.
//!
//! A paused lane's jobs are held where a worker picked them up (no attempt spent, nothing lost)
//! and start the moment it resumes; a paused kind's jobs are put back to wait a few seconds at a
//! time. `drain` is a pause that reports when the lane's last running job has finished.

use std::collections::BTreeMap;

use chrono::Utc;
use redis::AsyncCommands;

use crate::queue::RedisConn;
use serde::{Deserialize, Serialize};
use tickfill_jobs::{JobKind, Lane};

use super::keys;

/// What is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Lane(Lane),
    Kind(JobKind),
    /// The scheduler's sweeps: no tick pushes one while paused ("sweep now" still does).
    Sweeps,
}

impl Target {
    fn field(self) -> String {
        match self {
            Target::Lane(l) => format!("lane:{}", l.as_str()),
            Target::Kind(k) => format!("kind:{}", k.as_str()),
            Target::Sweeps => "sweeps".into(),
        }
    }
}

/// One pause: since when, by whom, and whether it drains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub since: String,
    pub by: String,
    /// A drain: running jobs finish, no new one starts (a pause, said so).
    #[serde(default)]
    pub drain: bool,
}

/// Everything paused now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Controls {
    pub lanes: BTreeMap<String, Pause>,
    pub kinds: BTreeMap<String, Pause>,
    pub sweeps: Option<Pause>,
}

/// Counts a start of task `id` (kept `keep`) and reads the controls, in one round trip: how many
/// times the task has started (a recovered one starts again) and what is paused.
pub async fn count_start(
    conn: &mut RedisConn,
    ns: &str,
    id: &str,
    keep: std::time::Duration,
) -> redis::RedisResult<(u32, Controls)> {
    let starts = keys::starts(ns, id);
    let (n, hash): (u32, BTreeMap<String, String>) = redis::pipe()
        .incr(&starts, 1)
        .expire(&starts, keep.as_secs().max(3600) as i64)
        .ignore()
        .hgetall(keys::controls(ns))
        .query_async(conn)
        .await?;
    Ok((n, Controls::from_hash(hash)))
}

impl Controls {
    pub fn lane(&self, lane: Lane) -> Option<&Pause> {
        self.lanes.get(lane.as_str())
    }

    pub fn kind(&self, kind: &str) -> Option<&Pause> {
        self.kinds.get(kind)
    }
}

/// Pauses (or drains) `target`; returns false when it was paused already (the first pause is kept).
pub async fn pause(conn: &mut RedisConn, ns: &str, target: Target, by: &str, drain: bool) -> redis::RedisResult<bool> {
    let p = Pause { since: Utc::now().to_rfc3339(), by: by.to_string(), drain };
    let value = serde_json::to_string(&p).expect("a pause serialises");
    conn.hset_nx(keys::controls(ns), target.field(), value).await
}

/// Resumes `target`; returns whether it was paused.
pub async fn resume(conn: &mut RedisConn, ns: &str, target: Target) -> redis::RedisResult<bool> {
    let n: i64 = conn.hdel(keys::controls(ns), target.field()).await?;
    Ok(n > 0)
}

/// What is paused now.
pub async fn read(conn: &mut RedisConn, ns: &str) -> redis::RedisResult<Controls> {
    let all: BTreeMap<String, String> = conn.hgetall(keys::controls(ns)).await?;
    Ok(Controls::from_hash(all))
}

impl Controls {
    /// The controls from their hash (`HGETALL {ns}:controls`, as [`read`] or a caller's own
    /// pipeline reads it); a field that cannot be read is skipped.
    pub fn from_hash(all: BTreeMap<String, String>) -> Controls {
        let mut c = Controls::default();
        for (field, value) in all {
            let Ok(p) = serde_json::from_str::<Pause>(&value) else { continue };
            match field.split_once(':') {
                Some(("lane", l)) => {
                    c.lanes.insert(l.to_string(), p);
                }
                Some(("kind", k)) => {
                    c.kinds.insert(k.to_string(), p);
                }
                None if field == "sweeps" => c.sweeps = Some(p),
                _ => {}
            }
        }
        c
    }
}
