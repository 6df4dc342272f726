//! Keeping the queues healthy beside apalis-redis 1.0: promoting due jobs in chunks, pruning
//! finished ones, handing a stopping worker's jobs back, and the scans and deletes of a namespace.
//!
//! apalis-redis lands every push in `:scheduled` and its fetch moves *all* due ids to `:active`
//! in one `unpack`, which fails from about 8,000 ids on. [`promote_due`] moves them in chunks of
//! [`PROMOTE_CHUNK`] and runs before and beside every worker, so the fetch never meets a large batch.

use std::sync::LazyLock;

use apalis_redis::Config;

use crate::queue::RedisConn;
use redis::AsyncCommands;
use tickfill_jobs::Lane;

use super::keys::{self, LaneKeys};

/// Chunk size of [`promote_due`]: far below the size at which a Lua `unpack` fails.
pub const PROMOTE_CHUNK: usize = 1000;

/// Moves due jobs of one queue from `:scheduled` to `:active` in chunks; returns how many moved.
pub async fn promote_due(conn: &mut RedisConn, config: &Config) -> redis::RedisResult<u64> {
    static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("lua/promote_due.lua")));
    let now = chrono::Utc::now().timestamp();
    let mut total = 0;
    loop {
        let moved: u64 = SCRIPT
            .key(config.scheduled_jobs_set())
            .key(config.active_jobs_list())
            .key(config.signal_list())
            .arg(now)
            .arg(PROMOTE_CHUNK)
            .invoke_async(conn)
            .await?;
        total += moved;
        if moved < PROMOTE_CHUNK as u64 {
            return Ok(total);
        }
    }
}

/// How many keys one SCAN step looks at: a namespace holds a key per job's metadata, so the
/// default (10) would take a round trip per ten jobs.
const SCAN_COUNT: usize = 1000;

/// Every key matching `pattern`, found with SCAN (never KEYS, which blocks Redis).
pub async fn scan_keys(conn: &mut RedisConn, pattern: &str) -> redis::RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(conn)
            .await?;
        keys.extend(found);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// The in-flight sets of a lane's registered workers, each with its worker's name. apalis keeps
/// a set per worker it lists in the lane's workers set (its own orphan recovery walks the same
/// list), so no SCAN of the namespace, which holds a key per job, is needed.
pub async fn inflight_sets(conn: &mut RedisConn, k: &LaneKeys) -> redis::RedisResult<Vec<(String, String)>> {
    let workers: Vec<String> = redis::AsyncCommands::zrange(conn, k.workers(), 0, -1).await?;
    let prefix = k.inflight_prefix();
    Ok(workers.into_iter().map(|w| (format!("{prefix}{w}"), w)).collect())
}

/// The ids in the in-flight sets of this process's workers (names starting `worker_prefix`) of a
/// lane, by set.
pub async fn own_inflight(
    conn: &mut RedisConn,
    ns: &str,
    lane: Lane,
    worker_prefix: &str,
) -> redis::RedisResult<Vec<(String, Vec<String>)>> {
    let k = LaneKeys::new(ns, lane);
    let mut out = Vec::new();
    for (set, worker) in inflight_sets(conn, &k).await? {
        if worker.starts_with(&format!("{worker_prefix}-")) {
            let ids: Vec<String> = redis::AsyncCommands::smembers(conn, &set).await?;
            out.push((set, ids));
        }
    }
    Ok(out)
}

/// Hands `ids` of the in-flight set `set` back to the head of the lane's active list, spending no
/// attempt; returns how many moved.
pub async fn hand_back_ids(
    conn: &mut RedisConn,
    ns: &str,
    lane: Lane,
    set: &str,
    ids: &[String],
) -> redis::RedisResult<u64> {
    static SCRIPT: LazyLock<redis::Script> =
        LazyLock::new(|| redis::Script::new(include_str!("lua/hand_back_ids.lua")));
    if ids.is_empty() {
        return Ok(0);
    }
    let k = LaneKeys::new(ns, lane);
    let mut inv = SCRIPT.key(set);
    inv.key(k.active()).key(k.signal()).arg(keys::starts_prefix(ns));
    for id in ids {
        inv.arg(id);
    }
    inv.invoke_async(conn).await
}

/// Deletes every key of a namespace (scratch namespaces of tests and benches only).
pub async fn delete_namespace(conn: &mut RedisConn, ns: &str) -> redis::RedisResult<u64> {
    let keys = scan_keys(conn, &keys::namespace_pattern(ns)).await?;
    let mut deleted = 0;
    for chunk in keys.chunks(500) {
        deleted += conn.del::<_, u64>(chunk).await?;
    }
    // apalis-redis registers every queue in one global set; forget this namespace's entries.
    let registered: Vec<String> = conn.zrange(keys::APALIS_QUEUES, 0, -1).await?;
    let ours: Vec<&String> = registered.iter().filter(|k| k.starts_with(&keys::namespace_prefix(ns))).collect();
    if !ours.is_empty() {
        conn.zrem::<_, _, i64>(keys::APALIS_QUEUES, ours).await?;
    }
    Ok(deleted)
}

/// How many subscribers a pub/sub channel has (the bridge's readiness from outside).
pub async fn subscribers(conn: &mut RedisConn, channel: &str) -> redis::RedisResult<i64> {
    let (_, n): (String, i64) = redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(conn).await?;
    Ok(n)
}

/// Deletes finished (done) jobs of one lane that finished before `before`: their entry in the done
/// set, their data and their metadata, in chunks. apalis-redis keeps them forever (about 370 bytes
/// each), so without this Redis grows with every job ever run. Returns how many went.
pub async fn prune_done(conn: &mut RedisConn, ns: &str, lane: Lane, before: i64) -> redis::RedisResult<u64> {
    let k = LaneKeys::new(ns, lane);
    let done_key = k.done();
    let mut cursor = 0u64;
    let mut pruned = 0;
    loop {
        let (next, ids): (u64, Vec<String>) =
            redis::cmd("SSCAN").arg(&done_key).arg(cursor).arg("COUNT").arg(1000).query_async(conn).await?;
        if !ids.is_empty() {
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.hget(k.meta(id), "done_at");
            }
            let finished: Vec<Option<i64>> = pipe.query_async(conn).await?;
            let expired: Vec<&String> =
                ids.iter().zip(finished).filter(|(_, at)| at.is_none_or(|t| t < before)).map(|(id, _)| id).collect();
            if !expired.is_empty() {
                let mut pipe = redis::pipe();
                pipe.srem(&done_key, &expired).ignore().hdel(k.data(), &expired).ignore();
                for id in &expired {
                    pipe.del(k.meta(id)).ignore();
                }
                pipe.query_async::<()>(conn).await?;
                pruned += expired.len() as u64;
            }
        }
        if next == 0 {
            return Ok(pruned);
        }
        cursor = next;
    }
}

/// Warns when Redis keeps nothing on disk: queued jobs would not survive its restart.
pub async fn warn_without_persistence(conn: &mut RedisConn) {
    let aof: redis::RedisResult<Vec<String>> =
        redis::cmd("CONFIG").arg("GET").arg("appendonly").query_async(conn).await;
    match aof.as_deref() {
        Ok([_, v]) if v == "yes" => {}
        Ok(_) => tracing::warn!(
            "Redis runs without appendonly: queued jobs would be lost if Redis restarts (set appendonly yes)"
        ),
        // Managed Redis often forbids CONFIG; say so rather than guess.
        Err(e) => tracing::info!(error = %e, "cannot read Redis's appendonly setting"),
    }
}

/// Moves the jobs claimed by this process's workers (names starting `worker_prefix`) back to the
/// head of the active list and unregisters those workers; returns how many jobs moved. A job
/// handed back was stopped on purpose, not by a crash: its start is forgotten (`keys::starts`), so it
/// spends no attempt.
pub async fn hand_back(conn: &mut RedisConn, ns: &str, lane: Lane, worker_prefix: &str) -> redis::RedisResult<u64> {
    static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("lua/hand_back.lua")));
    let k = LaneKeys::new(ns, lane);
    let prefix = k.inflight_prefix();
    let sets = scan_keys(conn, &format!("{prefix}{worker_prefix}-*")).await?;
    let mut moved = 0;
    for set in sets {
        let worker = set.trim_start_matches(&prefix).to_string();
        moved += SCRIPT
            .key(&set)
            .key(k.active())
            .key(k.workers())
            .key(k.signal())
            .arg(worker)
            .arg(keys::starts_prefix(ns))
            .invoke_async::<u64>(conn)
            .await?;
    }
    Ok(moved)
}
