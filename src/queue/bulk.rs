//! Acting on many queued jobs by id, each claimed atomically so that callers acting at once never
//! both act on one job: purging dead jobs, cancelling waiting ones, retrying dead ones.

use std::sync::LazyLock;

use tickfill_jobs::Lane;

use super::{dead, keys::LaneKeys, state::count, Producer};
use crate::queue::RedisConn;

/// What a bulk action did, job by job.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct BulkReport {
    /// The jobs acted on (for a retry, with the new job's id).
    pub acted: Vec<Acted>,
    /// The jobs it could not act on, and why.
    pub failed: Vec<Failed>,
    /// Jobs another caller or a worker took first (retried, purged, started).
    pub taken: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Acted {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_id: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Failed {
    pub id: String,
    pub error: String,
}

/// Forgets the dead jobs `ids` (of their lanes).
pub async fn purge(conn: &mut RedisConn, ns: &str, ids: &[(Lane, String)]) -> redis::RedisResult<BulkReport> {
    let mut r = BulkReport::default();
    for (lane, id) in ids {
        if dead::forget_in(conn, ns, *lane, id).await? {
            r.acted.push(Acted { id: id.clone(), new_id: None });
        } else {
            r.taken.push(id.clone());
        }
    }
    if !r.acted.is_empty() {
        count(conn, ns, "dead_purged").await;
    }
    Ok(r)
}

/// Cancels the waiting (scheduled or due) jobs `ids`; one already running or gone is taken.
pub async fn cancel(conn: &mut RedisConn, ns: &str, ids: &[(Lane, String)]) -> redis::RedisResult<BulkReport> {
    static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("lua/cancel_ids.lua")));
    let mut r = BulkReport::default();
    for lane in Lane::ALL {
        let mine: Vec<&String> = ids.iter().filter(|(l, _)| *l == lane).map(|(_, id)| id).collect();
        for chunk in mine.chunks(500) {
            let k = LaneKeys::new(ns, lane);
            let mut call = SCRIPT.key(k.scheduled());
            call.key(k.active()).key(k.data()).arg(k.meta_prefix());
            for id in chunk {
                call.arg(id.as_str());
            }
            let done: Vec<i64> = call.invoke_async(conn).await?;
            for (id, d) in chunk.iter().zip(done) {
                if d == 1 {
                    r.acted.push(Acted { id: (*id).clone(), new_id: None });
                } else {
                    r.taken.push((*id).clone());
                }
            }
        }
    }
    if !r.acted.is_empty() {
        count(conn, ns, "jobs_cancelled").await;
    }
    Ok(r)
}

/// Pushes the dead jobs `ids` again as new jobs and forgets their dead entries.
pub async fn retry(
    conn: &mut RedisConn,
    producer: &mut Producer,
    ns: &str,
    ids: &[(Lane, String)],
) -> redis::RedisResult<BulkReport> {
    let mut jobs = Vec::with_capacity(ids.len());
    let mut r = BulkReport::default();
    for (lane, id) in ids {
        match dead::read_job(conn, ns, *lane, id).await? {
            Some(d) => jobs.push(d.summary),
            None => r.taken.push(id.clone()),
        }
    }
    let done = dead::retry(conn, producer, ns, &jobs).await;
    r.acted.extend(done.retried.into_iter().map(|x| Acted { id: x.id, new_id: Some(x.new_id) }));
    r.failed.extend(done.failed.into_iter().map(|x| Failed { id: x.id, error: x.error }));
    r.taken.extend(done.taken);
    Ok(r)
}
