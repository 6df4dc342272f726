//! A job's timeline: what happened to it attempt by attempt (started, waited for the budget,
//! throttled, put off, held, committed, ended), kept in one Redis list per job
//! (`{ns}:timeline:{first id}`) for as long as finished jobs are (`TICKFILL_RETENTION`). Each
//! attempt appends its marks in one round trip when it ends.

use chrono::{DateTime, Utc};
use redis::AsyncCommands;

use crate::queue::RedisConn;
use serde::{Deserialize, Serialize};

/// The most marks one job keeps (the oldest go first).
const MAX_MARKS: isize = 500;

/// One thing that happened to a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    pub at: DateTime<Utc>,
    pub what: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

fn key(ns: &str, origin: &str) -> String {
    format!("{ns}:timeline:{origin}")
}

/// Appends `marks` to the timeline of the job first pushed as `origin`.
pub async fn append(
    conn: &mut RedisConn,
    ns: &str,
    origin: &str,
    marks: &[Mark],
    keep: std::time::Duration,
) -> redis::RedisResult<()> {
    if marks.is_empty() {
        return Ok(());
    }
    let k = key(ns, origin);
    let values: Vec<String> = marks.iter().map(|m| serde_json::to_string(m).expect("a mark serialises")).collect();
    redis::pipe()
        .rpush(&k, values)
        .ignore()
        .ltrim(&k, -MAX_MARKS, -1)
        .ignore()
        .expire(&k, keep.as_secs().max(3600) as i64)
        .ignore()
        .query_async(conn)
        .await
}

/// The recorded marks of the job first pushed as `origin`, oldest first.
pub async fn read(conn: &mut RedisConn, ns: &str, origin: &str) -> redis::RedisResult<Vec<Mark>> {
    let raw: Vec<String> = conn.lrange(key(ns, origin), 0, -1).await?;
    Ok(raw.iter().filter_map(|r| serde_json::from_str(r).ok()).collect())
}
