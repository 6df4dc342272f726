//! The queued jobs (pending, scheduled, running, dead) as the explorer lists them, read straight
//! from apalis-redis's keys in a few pipelined round trips per lane and state: the ids, then
//! their payloads in chunks, then the metadata of the jobs that pass the filter so far.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;

use crate::queue::RedisConn;
use tickfill_jobs::{Envelope, InstrumentToken, Lane};

use super::{dead::error_of, housekeeping::inflight_sets, keys::LaneKeys};
use crate::domain::filter::{JobFilter, JobRow, JobState};

/// How many ids one round trip reads.
const CHUNK: usize = 1000;

/// What the explorer needs of a payload, read without building the job: its kind, its token,
/// how many attempts failed before.
#[derive(serde::Deserialize)]
struct Peek<'a> {
    v: u32,
    #[serde(borrow)]
    job: PeekJob<'a>,
    #[serde(default)]
    failures: Vec<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct PeekJob<'a> {
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    token: Option<u64>,
    event: Option<PeekEvent>,
}

#[derive(serde::Deserialize)]
struct PeekEvent {
    instrument_token: u64,
}

/// The kind, token and attempt of a payload; `None` when it is not one this version reads.
fn peek(payload: &[u8]) -> Option<(&'static str, Option<InstrumentToken>, u32)> {
    let p: Peek<'_> = serde_json::from_slice(payload).ok()?;
    if p.v != tickfill_jobs::SCHEMA_VERSION {
        return None;
    }
    let kind = tickfill_jobs::JobKind::parse(&p.job.kind)?.as_str();
    let token = p.job.token.or(p.job.event.map(|e| e.instrument_token)).and_then(|t| InstrumentToken::new(t).ok());
    Some((kind, token, p.failures.len() as u32 + 1))
}

/// The creation instant of a ULID task id.
fn created(id: &str) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ulid::Ulid::from_string(id).ok()?.timestamp_ms() as i64)
}

/// The ids of one lane in `state`, each with its worker when running.
async fn ids(
    conn: &mut RedisConn,
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
            let mut out = Vec::new();
            for (set, worker) in inflight_sets(conn, k).await? {
                let members: Vec<String> = conn.smembers(&set).await?;
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
    conn: &mut RedisConn,
    ns: &str,
    filter: &JobFilter,
    tokens: Option<&[InstrumentToken]>,
) -> redis::RedisResult<Vec<JobRow>> {
    let now = Utc::now().timestamp();
    // What a dead job's payload alone can be judged on; its error, attempts and time come with
    // its metadata, read only for the jobs that pass this.
    let by_payload = JobFilter { error: None, from: None, to: None, min_attempts: None, ..filter.clone() };
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
                    let peeked = payload.as_deref().and_then(peek);
                    let mut row = JobRow {
                        id: id.clone(),
                        state,
                        lane: Some(lane),
                        kind: peeked.map_or("unreadable", |p| p.0).to_string(),
                        token: peeked.and_then(|p| p.1),
                        attempts: peeked.map_or(1, |p| p.2),
                        error: None,
                        at: created(id),
                        outcome: None,
                        worker: worker.clone(),
                    };
                    // A waiting job's error is its last failed attempt's, in the payload; a dead
                    // job's comes with its metadata, and it is judged in full once that is read.
                    if state != JobState::Dead && by_payload.matches(&row, tokens) {
                        let envelope = payload.as_deref().and_then(|p| serde_json::from_slice::<Envelope>(p).ok());
                        row.error = envelope.as_ref().and_then(|e| e.failures.last()).map(|f| f.error.clone());
                    }
                    let judge = if state == JobState::Dead { &by_payload } else { filter };
                    if judge.matches(&row, tokens) {
                        rows.push((row, None));
                    }
                }
                if state == JobState::Dead && !rows.is_empty() {
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
                } else if state != JobState::Dead {
                    out.extend(rows.into_iter().map(|(r, _)| r));
                }
            }
        }
    }
    Ok(out)
}

/// The payload and metadata of one queued job, wherever it is; `None` if no lane holds it.
pub async fn payload(
    conn: &mut RedisConn,
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
