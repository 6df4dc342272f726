//! Dead letters, read straight from apalis-redis's keys (its own introspection does not work in
//! 1.0): list, show, retry and purge the jobs that failed for good.
//!
//! A retried dead job is pushed again as a new task under a key derived from its original one
//! (`…#retry-<ms>`): apalis-redis never frees the original key before its TTL, so re-using it would
//! drop the retry without a word.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;

use crate::queue::RedisConn;
use tickfill_jobs::{Envelope, InstrumentToken, Job, Lane};

use super::{keys::LaneKeys, state::count, Producer};

/// One dead job, as `tickfill jobs dead list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadJob {
    pub id: String,
    pub lane: Lane,
    pub kind: String,
    pub token: Option<InstrumentToken>,
    pub attempts: u32,
    /// The error the job died of, as the worker reported it.
    pub error: Option<String>,
    pub failed_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub job: Option<Job>,
    #[serde(skip)]
    pub idempotency_key: Option<String>,
}

/// The full record of a dead job (`jobs dead show`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadDetail {
    #[serde(flatten)]
    pub summary: DeadJob,
    pub payload: serde_json::Value,
    pub meta: HashMap<String, String>,
}

/// The error text apalis-redis stored as the job's result (`{"Err": "AbortError: …"}` or similar),
/// without apalis's wrapper.
pub(super) fn error_of(result: Option<&String>) -> Option<String> {
    let raw = result?;
    let text = match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Object(m)) => m
            .get("Err")
            .or_else(|| m.values().next())
            .map(|v| v.as_str().map(String::from).unwrap_or_else(|| v.to_string())),
        Ok(serde_json::Value::String(s)) => Some(s),
        _ => Some(raw.clone()),
    }?;
    Some(text.strip_prefix("AbortError: ").map(String::from).unwrap_or(text))
}

pub(super) async fn read_job(
    conn: &mut RedisConn,
    ns: &str,
    lane: Lane,
    id: &str,
) -> redis::RedisResult<Option<DeadDetail>> {
    let k = LaneKeys::new(ns, lane);
    let data: Option<Vec<u8>> = conn.hget(k.data(), id).await?;
    let meta: HashMap<String, String> = conn.hgetall(k.meta(id)).await?;
    if data.is_none() && meta.is_empty() {
        return Ok(None);
    }
    let payload: serde_json::Value =
        data.as_deref().and_then(|d| serde_json::from_slice(d).ok()).unwrap_or(serde_json::Value::Null);
    let envelope = serde_json::from_value::<Envelope>(payload.clone()).ok();
    let job = envelope.as_ref().and_then(|e| e.decode().ok());
    let kind = job
        .as_ref()
        .map(|j| j.kind().to_string())
        .or_else(|| payload["job"]["kind"].as_str().map(String::from))
        .unwrap_or_else(|| "unreadable".into());
    let summary = DeadJob {
        id: id.to_string(),
        lane,
        kind,
        token: job.as_ref().and_then(Job::token),
        // Every attempt of tickfill's retry policy is a task of its own: the envelope counts them
        // all (apalis's own count is this task's alone).
        attempts: meta
            .get("attempts")
            .and_then(|a| a.parse().ok())
            .unwrap_or(0)
            .max(envelope.as_ref().map_or(0, Envelope::attempt)),
        error: error_of(meta.get("result")),
        failed_at: meta.get("done_at").and_then(|t| t.parse::<i64>().ok()).and_then(|t| DateTime::from_timestamp(t, 0)),
        idempotency_key: meta.get("idempotency_key").filter(|k| !k.is_empty()).cloned(),
        job,
    };
    Ok(Some(DeadDetail { summary, payload, meta }))
}

/// Every dead job of the namespace, oldest failure first.
pub async fn list(conn: &mut RedisConn, ns: &str) -> redis::RedisResult<Vec<DeadJob>> {
    let mut all = Vec::new();
    for lane in Lane::ALL {
        let ids: Vec<String> = conn.smembers(LaneKeys::new(ns, lane).dead()).await?;
        for id in ids {
            if let Some(d) = read_job(conn, ns, lane, &id).await? {
                all.push(d.summary);
            }
        }
    }
    all.sort_by(|a, b| a.failed_at.cmp(&b.failed_at).then(a.id.cmp(&b.id)));
    Ok(all)
}

/// One dead job in full.
pub async fn show(conn: &mut RedisConn, ns: &str, id: &str) -> redis::RedisResult<Option<DeadDetail>> {
    for lane in Lane::ALL {
        let dead: bool = conn.sismember(LaneKeys::new(ns, lane).dead(), id).await?;
        if dead {
            return read_job(conn, ns, lane, id).await;
        }
    }
    Ok(None)
}

/// Claims a dead entry: removes it from the dead set, and says whether this caller did. `SREM` is
/// atomic, so of callers acting on one entry at once (two retry-alls, a purge beside a retry)
/// exactly one gets it, and their reports add up to the dead set.
async fn claim(conn: &mut RedisConn, ns: &str, lane: Lane, id: &str) -> redis::RedisResult<bool> {
    let removed: i64 = conn.srem(LaneKeys::new(ns, lane).dead(), id).await?;
    Ok(removed == 1)
}

/// Gives a claimed entry back to the dead set (what was to be done with it failed).
async fn unclaim(conn: &mut RedisConn, ns: &str, lane: Lane, id: &str) -> redis::RedisResult<()> {
    conn.sadd(LaneKeys::new(ns, lane).dead(), id).await
}

/// Removes a claimed dead job's data and meta.
async fn drop_claimed(conn: &mut RedisConn, ns: &str, lane: Lane, id: &str) -> redis::RedisResult<()> {
    let k = LaneKeys::new(ns, lane);
    redis::pipe().hdel(k.data(), id).ignore().del(k.meta(id)).ignore().query_async(conn).await
}

/// Claims a dead job of `lane` and removes it; returns whether this caller did.
pub(super) async fn forget_in(conn: &mut RedisConn, ns: &str, lane: Lane, id: &str) -> redis::RedisResult<bool> {
    forget(conn, ns, lane, id).await
}

/// Claims a dead job and removes it; returns whether this caller did.
async fn forget(conn: &mut RedisConn, ns: &str, lane: Lane, id: &str) -> redis::RedisResult<bool> {
    if !claim(conn, ns, lane, id).await? {
        return Ok(false);
    }
    drop_claimed(conn, ns, lane, id).await?;
    Ok(true)
}

/// Pushes dead jobs again as new tasks and forgets the dead entries; returns the new ids.
pub async fn retry(conn: &mut RedisConn, producer: &mut Producer, ns: &str, jobs: &[DeadJob]) -> RetryReport {
    let mut report = RetryReport::default();
    for d in jobs {
        match retry_one(conn, producer, ns, d).await {
            Ok(Some(new_id)) => report.retried.push(Retried { id: d.id.clone(), new_id }),
            Ok(None) => report.taken.push(d.id.clone()),
            Err(e) => report.failed.push(NotRetried { id: d.id.clone(), error: format!("{e:#}") }),
        }
    }
    if !report.retried.is_empty() {
        count(conn, ns, "dead_retried").await;
    }
    report
}

/// Claims one dead job, pushes it again and removes its dead entry; returns the new id, or `None`
/// when another caller claimed it first. A push that fails gives the entry back.
async fn retry_one(
    conn: &mut RedisConn,
    producer: &mut Producer,
    ns: &str,
    d: &DeadJob,
) -> anyhow::Result<Option<String>> {
    let Some(job) = &d.job else {
        anyhow::bail!("dead job {} cannot be read (schema or payload), so it cannot be retried; purge it", d.id);
    };
    if !claim(conn, ns, d.lane, &d.id).await? {
        return Ok(None);
    }
    let base = d.idempotency_key.clone().unwrap_or_else(|| job.idempotency_key());
    // The dead id makes the key unique to this entry: a millisecond is not (two retries at once).
    let key = format!("{base}#retry-{}-{}", d.id, Utc::now().timestamp_millis());
    let new_id = match producer.push_as(job, &key, None).await {
        Ok(id) => id,
        Err(e) => {
            unclaim(conn, ns, d.lane, &d.id).await?;
            return Err(e);
        }
    };
    drop_claimed(conn, ns, d.lane, &d.id).await?;
    Ok(Some(new_id))
}

/// What a retry of dead jobs did, job by job: a bulk retry goes on past a job it cannot retry.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RetryReport {
    pub retried: Vec<Retried>,
    pub failed: Vec<NotRetried>,
    /// Dead entries another caller (a concurrent retry or purge) took first: not retried here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub taken: Vec<String>,
}

/// A dead job pushed again, under its new id.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Retried {
    pub id: String,
    pub new_id: String,
}

/// A dead job left in the dead set, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NotRetried {
    pub id: String,
    pub error: String,
}

/// Forgets dead jobs that failed before `before` (all of them with `None`); returns how many.
pub async fn purge(conn: &mut RedisConn, ns: &str, before: Option<DateTime<Utc>>) -> redis::RedisResult<usize> {
    let dead = list(conn, ns).await?;
    let mut n = 0;
    for d in dead.iter().filter(|d| before.is_none_or(|b| d.failed_at.is_none_or(|f| f < b))) {
        if forget(conn, ns, d.lane, &d.id).await? {
            n += 1;
        }
    }
    Ok(n)
}

/// Forgets one dead job by id; returns whether it was there.
pub async fn forget_one(conn: &mut RedisConn, ns: &str, id: &str) -> redis::RedisResult<bool> {
    for lane in Lane::ALL {
        let dead: bool = conn.sismember(LaneKeys::new(ns, lane).dead(), id).await?;
        if dead {
            return forget(conn, ns, lane, id).await;
        }
    }
    Ok(false)
}
