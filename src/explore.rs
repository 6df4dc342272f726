//! The job explorer: every job of a deployment, queued (Redis) or finished (`backfill_runs`),
//! narrowed by one [`JobFilter`], newest first, counted and paged. The API (`GET /api/jobs`), the
//! CLI (`tickfill jobs list`) and the page all call [`list`], so they give the same answers.

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use serde::Serialize;
use sqlx::PgPool;

use crate::{
    domain::filter::{FilterError, JobFilter, JobRow, JobState},
    queue, store,
};

/// Jobs a page holds when the caller does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// The most jobs one page holds.
pub const MAX_LIMIT: usize = 1000;

/// One page of matching jobs.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    /// How many jobs match, on every page.
    pub matched: u64,
    pub jobs: Vec<JobRow>,
    /// The cursor of the next page, if there is one.
    pub next: Option<String>,
}

/// Why a listing could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExploreError {
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("{0}")]
    NeedsStore(&'static str),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("PostgreSQL: {0}")]
    Store(#[from] sqlx::Error),
}

/// Where a job stands in the order: newest first, then by id.
fn key(row: &JobRow) -> (i64, &str) {
    (row.at.map_or(0, |t| t.timestamp_millis()), row.id.as_str())
}

/// A cursor: the order key of the last job of the page before.
fn cursor_of(row: &JobRow) -> String {
    let (ms, id) = key(row);
    format!("{ms}.{id}")
}

fn parse_cursor(s: &str) -> Result<(i64, String), FilterError> {
    let bad = || FilterError { name: "cursor".into(), reason: "not a cursor this listing gave".into() };
    let (ms, id) = s.split_once('.').ok_or_else(bad)?;
    let ms = ms.parse::<i64>().map_err(|_| bad())?;
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_#:".contains(c)) {
        return Err(bad());
    }
    Ok((ms, id.to_string()))
}

/// The tokens a filter's `symbol` names, read from the store.
pub async fn symbol_tokens(pool: Option<&PgPool>, filter: &JobFilter) -> Result<Option<Vec<u32>>, ExploreError> {
    let Some(symbol) = &filter.symbol else { return Ok(None) };
    let pool = pool.ok_or(ExploreError::NeedsStore("a symbol filter needs the store: ask a worker's admin API"))?;
    Ok(Some(store::instruments::tokens_of_symbol(pool, symbol).await?))
}

/// The jobs `filter` lets through, newest first: `limit` of them after `cursor`.
pub async fn list(
    conn: &mut ConnectionManager,
    ns: &str,
    pool: Option<&PgPool>,
    filter: &JobFilter,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page, ExploreError> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let after = cursor.map(parse_cursor).transpose()?;
    let before = |row: &JobRow| after.as_ref().is_none_or(|(ms, id)| key(row) < (*ms, id.as_str()));
    let tokens = symbol_tokens(pool, filter).await?;
    let mut queued = queue::explore::queued(conn, ns, filter, tokens.as_deref()).await?;
    let mut matched = queued.len() as u64;
    queued.retain(|r| before(r));
    queued.sort_by(|a, b| key(b).cmp(&key(a)));
    queued.truncate(limit + 1);
    let mut jobs = queued;
    if filter.wants_state(JobState::Finished) {
        match pool {
            Some(pool) => {
                let at = after
                    .as_ref()
                    .and_then(|(ms, id)| Some((DateTime::<Utc>::from_timestamp_millis(*ms)?, id.as_str())));
                let (n, runs) = store::runs::explore(pool, filter, tokens.as_deref(), at, limit as i64 + 1).await?;
                matched += n as u64;
                jobs.extend(runs);
                jobs.sort_by(|a, b| key(b).cmp(&key(a)));
            }
            None if filter.state == Some(JobState::Finished) => {
                return Err(ExploreError::NeedsStore("finished runs are in the store: ask a worker's admin API"));
            }
            None => {}
        }
    }
    let next = (jobs.len() > limit).then(|| cursor_of(&jobs[limit - 1]));
    jobs.truncate(limit);
    Ok(Page { matched, jobs, next })
}
