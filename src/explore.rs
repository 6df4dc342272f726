//! The job explorer: every job of a deployment, queued (Redis) or finished (`backfill_runs`),
//! narrowed by one [`JobFilter`], newest first, counted and paged. The API (`GET /api/jobs`), the
//! CLI (`tickfill jobs list`) and the page all call [`list`], so they give the same answers.

use crate::queue::RedisConn;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tickfill_jobs::InstrumentToken;

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
pub async fn symbol_tokens(
    pool: Option<&PgPool>,
    filter: &JobFilter,
) -> Result<Option<Vec<InstrumentToken>>, ExploreError> {
    let Some(symbol) = &filter.symbol else { return Ok(None) };
    let pool = pool.ok_or(ExploreError::NeedsStore("a symbol filter needs the store: ask a worker's admin API"))?;
    Ok(Some(store::instruments::tokens_of_symbol(pool, symbol).await?))
}

/// The tokens a filter allows runs of: its `token`, its `symbol`'s tokens, or both at once.
fn run_tokens(filter: &JobFilter, symbol: Option<&[InstrumentToken]>) -> Option<Vec<InstrumentToken>> {
    match (filter.token, symbol) {
        (Some(t), Some(ts)) => Some(ts.iter().copied().filter(|x| *x == t).collect()),
        (Some(t), None) => Some(vec![t]),
        (None, ts) => ts.map(<[InstrumentToken]>::to_vec),
    }
}

/// The jobs `filter` lets through, newest first: `limit` of them after `cursor`.
pub async fn list(
    conn: &mut RedisConn,
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
                let narrowed = run_tokens(filter, tokens.as_deref());
                let (n, runs) = store::runs::explore(pool, filter, narrowed.as_deref(), at, limit as i64 + 1).await?;
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

/// What a bulk action does to the jobs a filter matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Push dead jobs again as new jobs.
    Retry,
    /// Forget dead jobs.
    Purge,
    /// Drop waiting (pending or scheduled) jobs.
    Cancel,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "retry" => Some(Action::Retry),
            "purge" => Some(Action::Purge),
            "cancel" => Some(Action::Cancel),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Purge => "purge",
            Action::Cancel => "cancel",
        }
    }

    /// The states of the jobs it acts on.
    pub fn states(self) -> &'static [JobState] {
        match self {
            Action::Retry | Action::Purge => &[JobState::Dead],
            Action::Cancel => &[JobState::Pending, JobState::Scheduled],
        }
    }
}

/// How many jobs a bulk action acts on when the caller does not say.
pub const DEFAULT_CAP: usize = 1000;
/// The most one bulk action acts on.
pub const MAX_CAP: usize = 10_000;
/// How many of the matched jobs a dry run shows.
pub const SAMPLE: usize = 10;

/// What a bulk action answers: for a dry run what it would do, else what it did.
#[derive(Debug, Clone, Serialize)]
pub struct BulkAnswer {
    pub action: Action,
    pub dry_run: bool,
    pub filter: JobFilter,
    pub matched: u64,
    /// The most it acts on at once.
    pub cap: usize,
    /// Matched jobs left beyond the cap (act again for them).
    pub remaining: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_act: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<Vec<JobRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acted: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<Vec<queue::bulk::Failed>>,
    /// Jobs a concurrent action or a worker took first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taken_by_others: Option<u64>,
    /// Job by job: what was acted on (a retry's new id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs: Option<Vec<queue::bulk::Acted>>,
}

/// Acts (or, with `dry_run`, says what it would act) on the oldest `cap` jobs that `filter`
/// matches in the states `action` acts on. A filter that narrows nothing needs `all`.
#[allow(clippy::too_many_arguments)]
pub async fn bulk(
    conn: &mut RedisConn,
    ns: &str,
    pool: Option<&PgPool>,
    producer: &mut queue::Producer,
    action: Action,
    filter: &JobFilter,
    all: bool,
    cap: usize,
    dry_run: bool,
) -> Result<BulkAnswer, ExploreError> {
    let refuse = |name: &str, reason: String| ExploreError::Filter(FilterError { name: name.into(), reason });
    if filter.is_empty() && !all {
        return Err(refuse("all", format!("a {} of every job needs all=true", action.as_str())));
    }
    if let Some(s) = filter.state.filter(|s| !action.states().contains(s)) {
        let states: Vec<&str> = action.states().iter().map(|s| s.as_str()).collect();
        return Err(refuse("state", format!("{} acts on {} jobs, not {s}", action.as_str(), states.join(" or "))));
    }
    if !(1..=MAX_CAP).contains(&cap) {
        return Err(refuse("cap", format!("must be 1 … {MAX_CAP}")));
    }
    let tokens = symbol_tokens(pool, filter).await?;
    let mut rows = Vec::new();
    for state in action.states().iter().filter(|s| filter.wants_state(**s)) {
        let f = JobFilter { state: Some(*state), ..filter.clone() };
        rows.extend(queue::explore::queued(conn, ns, &f, tokens.as_deref()).await?);
    }
    // Oldest first: a capped action works through a backlog in order.
    rows.sort_by(|a, b| key(a).cmp(&key(b)));
    let matched = rows.len() as u64;
    rows.truncate(cap);
    let chosen = rows.len() as u64;
    let mut answer = BulkAnswer {
        action,
        dry_run,
        filter: filter.clone(),
        matched,
        cap,
        remaining: matched - chosen,
        would_act: None,
        sample: None,
        acted: None,
        failed: None,
        taken_by_others: None,
        jobs: None,
    };
    if dry_run {
        answer.would_act = Some(chosen);
        answer.sample = Some(rows.into_iter().take(SAMPLE).collect());
        return Ok(answer);
    }
    let ids: Vec<(tickfill_jobs::Lane, String)> = rows.into_iter().filter_map(|r| Some((r.lane?, r.id))).collect();
    let report = match action {
        Action::Retry => queue::bulk::retry(conn, producer, ns, &ids).await?,
        Action::Purge => queue::bulk::purge(conn, ns, &ids).await?,
        Action::Cancel => queue::bulk::cancel(conn, ns, &ids).await?,
    };
    answer.acted = Some(report.acted.len() as u64);
    answer.taken_by_others = Some(report.taken.len() as u64);
    answer.failed = Some(report.failed);
    answer.jobs = Some(report.acted);
    Ok(answer)
}

/// One job in full: where it is, its payload, its run, and its timeline.
#[derive(Debug, Clone, Serialize)]
pub struct JobDetail {
    pub id: String,
    /// The id of its first attempt (its run row's and its timeline's).
    pub origin: String,
    /// The lane holding it now, if it is queued.
    pub lane: Option<tickfill_jobs::Lane>,
    pub payload: Option<serde_json::Value>,
    pub run: Option<store::runs::RunRow>,
    /// Oldest first: received by the bridge, pushed, then what each attempt did.
    pub timeline: Vec<queue::timeline::Mark>,
}

/// The job `id` (a task id of any attempt, or its first id), or `None` if nothing knows it.
pub async fn detail(
    conn: &mut RedisConn,
    ns: &str,
    pool: Option<&PgPool>,
    id: &str,
) -> Result<Option<JobDetail>, ExploreError> {
    use queue::timeline::Mark;
    let queued = queue::explore::payload(conn, ns, id).await?;
    let origin = queued
        .as_ref()
        .and_then(|(_, p, _)| p.get("origin").and_then(|o| o.as_str()).map(String::from))
        .unwrap_or_else(|| id.to_string());
    let run = match pool {
        Some(p) => store::runs::find(p, &origin).await?,
        None => None,
    };
    let recorded = queue::timeline::read(conn, ns, &origin).await?;
    if queued.is_none() && run.is_none() && recorded.is_empty() {
        return Ok(None);
    }
    let mut timeline = Vec::new();
    // Received: the bridge's receipt of the event (a subscription's), as the payload or the run
    // carries it.
    let received = queued
        .as_ref()
        .and_then(|(_, p, _)| p["job"]["event"]["received_ms"].as_i64())
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .or(run.as_ref().filter(|r| r.reason.as_deref() == Some("subscribe")).and_then(|r| r.requested_at));
    if let Some(at) = received {
        timeline.push(Mark { at, what: "received".into(), detail: serde_json::Value::Null });
    }
    if let Some(at) =
        ulid::Ulid::from_string(&origin).ok().and_then(|u| DateTime::from_timestamp_millis(u.timestamp_ms() as i64))
    {
        timeline.push(Mark { at, what: "pushed".into(), detail: serde_json::Value::Null });
    }
    timeline.extend(recorded);
    if let Some(r) = &run {
        if let Some(at) = r.finished_at {
            let detail = serde_json::json!({"outcome": r.outcome, "rows": r.rows, "attempts": r.attempts});
            timeline.push(Mark { at, what: "run recorded".into(), detail });
        }
    }
    timeline.sort_by_key(|m| m.at);
    let (lane, payload) = match queued {
        Some((lane, payload, _)) => (Some(lane), Some(payload)),
        None => (None, None),
    };
    Ok(Some(JobDetail { id: id.to_string(), origin, lane, payload, run, timeline }))
}
