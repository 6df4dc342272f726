//! The queued jobs (pending, scheduled, running, dead) as the explorer lists them, read straight
//! from apalis-redis's keys in a few pipelined round trips per lane and state: the ids, then
//! their payloads in chunks, then the metadata of the jobs that pass the filter so far.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use redis::{aio::ConnectionManager, AsyncCommands};
use tickfill_jobs::{Envelope, Lane};

use super::{dead::error_of, housekeeping::scan_keys, keys::LaneKeys};
use crate::domain::filter::{JobFilter, JobRow, JobState};

/// How many ids one round trip reads.
const CHUNK: usize = 1000;

/// The creation instant of a ULID task id.
fn created(id: &str) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ulid::Ulid::from_string(id).ok()?.timestamp_ms() as i64)
}

/// The ids of one lane in `state`, each with its worker when running.
async fn ids(
    conn: &mut ConnectionManager,
    k: &LaneKeys,
    state: JobState,
    now: i64,
) -> redis::RedisResult<Vec<(String, Option<String>)>> {
    let plain = |v: Vec<String>| v.into_iter().map(|id| (id, None)).collect();
    Ok(match state {
        JobState::Pending => {
            let mut active: Vec<String> = conn.lrange(k.active(), 0, -1).await?;
            let due: Vec<String> = conn.zrangebyscore(k.scheduled(), "-inf", now).await?;
            active.extend(due);
            plain(active)
        }
        JobState::Scheduled => plain(conn.zrangebyscore(k.scheduled(), format!("({now}"), "+inf").await?),
        JobState::Dead => plain(conn.smembers(k.dead()).await?),
        JobState::Running => {
            let prefix = k.inflight_prefix();
            let mut out = Vec::new();
            for set in scan_keys(conn, &format!("{prefix}*")).await? {
                let members: Vec<String> = conn.smembers(&set).await?;
                let worker = set.trim_start_matches(&prefix).to_string();
                out.extend(members.into_iter().map(|id| (id, Some(worker.clone()))));
            }
            out
        }
        JobState::Finished => Vec::new(),
    })
}

/// Every queued job of the namespace that `filter` lets through (`tokens`: the filter's symbol
/// resolved, if it names one).
pub async fn queued(
    conn: &mut ConnectionManager,
    ns: &str,
    filter: &JobFilter,
    tokens: Option<&[u32]>,
) -> redis::RedisResult<Vec<JobRow>> {
    let now = Utc::now().timestamp();
    let mut out = Vec::new();
    for lane in Lane::ALL.into_iter().filter(|l| filter.lane.is_none_or(|f| f == *l)) {
        let k = LaneKeys::new(ns, lane);
        for state in JobState::ALL.into_iter().filter(|s| s.queued() && filter.wants_state(*s)) {
            let listed = ids(conn, &k, state, now).await?;
            for chunk in listed.chunks(CHUNK) {
                let id_list: Vec<&str> = chunk.iter().map(|(id, _)| id.as_str()).collect();
                let payloads: Vec<Option<Vec<u8>>> =
                    redis::cmd("HMGET").arg(k.data()).arg(&id_list).query_async(conn).await?;
                // What the payload tells, filtered on before any metadata is read.
                let mut rows: Vec<(JobRow, Option<Envelope>)> = Vec::new();
                for ((id, worker), payload) in chunk.iter().zip(payloads) {
                    let envelope = payload.as_deref().and_then(|p| serde_json::from_slice::<Envelope>(p).ok());
                    let job = envelope.as_ref().and_then(|e| e.decode().ok());
                    let row = JobRow {
                        id: id.clone(),
                        state,
                        lane: Some(lane),
                        kind: job.as_ref().map_or_else(|| "unreadable".into(), |j| j.kind().to_string()),
                        token: job.as_ref().and_then(|j| j.token()).map(|t| t.get()),
                        attempts: envelope.as_ref().map_or(1, Envelope::attempt),
                        error: envelope.as_ref().and_then(|e| e.failures.last()).map(|f| f.error.clone()),
                        at: created(id),
                        outcome: None,
                        worker: worker.clone(),
                    };
                    // Dead jobs are judged once their metadata (error, when they failed) is read.
                    if state == JobState::Dead || filter.matches(&row, tokens) {
                        rows.push((row, envelope));
                    }
                }
                if state == JobState::Dead {
                    let mut pipe = redis::pipe();
                    for (row, _) in &rows {
                        pipe.cmd("HMGET").arg(k.meta(&row.id)).arg(&["attempts", "result", "done_at"]);
                    }
                    let metas: Vec<(Option<u32>, Option<String>, Option<i64>)> = pipe.query_async(conn).await?;
                    for ((mut row, _), (attempts, result, done_at)) in rows.into_iter().zip(metas) {
                        row.attempts = row.attempts.max(attempts.unwrap_or(0));
                        row.error = error_of(result.as_ref()).or(row.error);
                        row.at = done_at.and_then(|t| DateTime::from_timestamp(t, 0)).or(row.at);
                        if filter.matches(&row, tokens) {
                            out.push(row);
                        }
                    }
                } else {
                    out.extend(rows.into_iter().map(|(r, _)| r));
                }
            }
        }
    }
    Ok(out)
}

/// The payload and metadata of one queued job, wherever it is; `None` if no lane holds it.
pub async fn payload(
    conn: &mut ConnectionManager,
    ns: &str,
    id: &str,
) -> redis::RedisResult<Option<(Lane, serde_json::Value, HashMap<String, String>)>> {
    for lane in Lane::ALL {
        let k = LaneKeys::new(ns, lane);
        let data: Option<Vec<u8>> = conn.hget(k.data(), id).await?;
        if let Some(d) = data {
            let meta: HashMap<String, String> = conn.hgetall(k.meta(id)).await?;
            let v = serde_json::from_slice(&d).unwrap_or(serde_json::Value::Null);
            return Ok(Some((lane, v, meta)));
        }
    }
    Ok(None)
}
