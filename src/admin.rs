//! The admin HTTP API every long-running process serves on `ADMIN_LISTEN`: health, readiness
//! (per dependency, and whether migrations are behind), queue figures, dead letters and rejected
//! events. Mutations need `Authorization: Bearer $ADMIN_TOKEN`; with no token configured they are
//! refused with 403 and the reason.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde_json::json;
use sqlx::PgPool;

use crate::{bridge, config::Settings, metrics, queue, scheduler::Interval, shutdown::Shutdown, store};

/// What the admin handlers reach.
#[derive(Clone)]
pub struct AdminState {
    pub settings: Settings,
    pub redis: redis::aio::ConnectionManager,
    /// The store, for processes that have one (the bridge does not).
    pub pool: Option<PgPool>,
}

type Shared = Arc<AdminState>;

/// The admin routes, so tests can serve them anywhere.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(operator_page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/stats", get(stats))
        .route("/api/dead", get(list_dead))
        .route("/api/dead/retry-all", post(retry_all))
        .route("/api/dead/purge", post(purge))
        .route("/api/dead/{id}", get(show_dead).delete(delete_dead))
        .route("/api/dead/{id}/retry", post(retry_one))
        .route("/api/rejected", get(rejected))
        .route("/api/resume", post(resume))
        .route("/api/running", get(running))
        .route("/api/failures", get(failures))
        .route("/api/subscriptions", get(subscriptions))
        .with_state(Arc::new(state))
}

/// Binds `ADMIN_LISTEN` and serves until `shutdown`; returns the bound address (logged).
pub async fn spawn(state: AdminState, shutdown: Shutdown) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(state.settings.admin_listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "admin API listening");
    let app = router(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.wait().await }).await;
    });
    Ok(addr)
}

fn error(status: StatusCode, detail: impl Into<String>) -> Response {
    (status, Json(json!({"detail": detail.into()}))).into_response()
}

/// The refusal of a mutation that does not carry the configured bearer token, if it does not.
fn refuse(state: &AdminState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &state.settings.admin_token else {
        return Some(error(StatusCode::FORBIDDEN, "mutations are disabled: set ADMIN_TOKEN to enable them"));
    };
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    (given != Some(token.expose())).then(|| error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"))
}

fn internal(e: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn readyz(State(s): State<Shared>) -> Response {
    let mut conn = s.redis.clone();
    let redis_ok: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
    let mut body = json!({"redis": match &redis_ok { Ok(_) => "ok".to_string(), Err(e) => format!("down: {e}") }});
    let mut ready = redis_ok.is_ok();
    // A pause (an expired Kite session) does not make a process unready: restarting it would not
    // help. It is reported so that whoever looks knows why nothing is fetched.
    if let Ok(Some(p)) = queue::paused(&mut conn, &s.settings.queue).await {
        body["paused"] = p;
    }
    if let Some(pool) = &s.pool {
        match store::pending_migrations(pool).await {
            Ok(0) => body["postgres"] = json!("ok"),
            Ok(n) => {
                body["postgres"] = json!(format!("{n} migration(s) behind: run tickfill migrate"));
                ready = false;
            }
            Err(e) => {
                body["postgres"] = json!(format!("down: {e}"));
                ready = false;
            }
        }
    }
    body["ready"] = json!(ready);
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body)).into_response()
}

/// `GET /metrics`: the process's counters, with the shared gauges read now.
async fn metrics_text(State(s): State<Shared>) -> Response {
    refresh_gauges(&s).await;
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(axum::http::header::CONTENT_TYPE, content_type)], metrics::get().render()).into_response()
}

/// Reads queue depths, the dead set, reachability and subscription freshness into the gauges.
async fn refresh_gauges(s: &AdminState) {
    let m = metrics::get();
    let mut conn = s.redis.clone();
    let ns = &s.settings.queue;
    m.rate_limit.set(s.settings.rate_limit as i64);
    let redis_ok = redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok();
    metrics::set_up("redis", redis_ok);
    if redis_ok {
        if let Ok(lanes) = queue::stats::stats(&mut conn, ns).await {
            for l in lanes {
                for (state, n) in [("pending", l.pending), ("scheduled", l.scheduled), ("running", l.running)] {
                    m.queue_depth
                        .get_or_create(&[("lane", l.lane.to_string()), ("state", state.to_string())])
                        .set(n as i64);
                }
                m.dead_jobs.get_or_create(&metrics::l1("lane", l.lane.as_str())).set(l.dead as i64);
                m.queue_oldest_pending
                    .get_or_create(&metrics::l1("lane", l.lane.as_str()))
                    .set(l.oldest_pending_age_s.unwrap_or(0.0));
            }
        }
        if let Ok(p) = queue::paused(&mut conn, ns).await {
            m.paused.set(p.is_some() as i64);
        }
    }
    let Some(pool) = &s.pool else { return };
    let st = &s.settings;
    let sweep = match Interval::parse(&st.sweep_interval) {
        Ok(Interval::Every(d)) => d,
        _ => std::time::Duration::from_secs(300),
    };
    let stale_after = (st.settle + st.gap_threshold + sweep).as_secs_f64();
    let r: sqlx::Result<(i64, f64, i64)> = sqlx::query_as(
        "SELECT count(*), coalesce(max(age), 0)::float8, count(*) FILTER (WHERE age > $1)
         FROM (SELECT extract(epoch FROM now() - coalesce(
                   (SELECT max(c.window_to) FROM coverage c WHERE c.instrument_token = s.instrument_token),
                   s.subscribed_at))::float8 AS age
               FROM subscriptions s WHERE s.status = 'active') a",
    )
    .bind(stale_after)
    .fetch_one(pool)
    .await;
    metrics::set_up("postgres", r.is_ok());
    if let Ok((active, oldest, stale)) = r {
        m.subscriptions_active.set(active);
        m.freshness_max_age.set(oldest);
        m.freshness_stale.set(stale);
    }
}

async fn stats(State(s): State<Shared>) -> Response {
    match queue::stats::stats(&mut s.redis.clone(), &s.settings.queue).await {
        Ok(st) => Json(st).into_response(),
        Err(e) => internal(e),
    }
}

async fn list_dead(State(s): State<Shared>) -> Response {
    match queue::dead::list(&mut s.redis.clone(), &s.settings.queue).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => internal(e),
    }
}

async fn show_dead(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    match queue::dead::show(&mut s.redis.clone(), &s.settings.queue, &id).await {
        Ok(Some(d)) => Json(d).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no dead job {id}")),
        Err(e) => internal(e),
    }
}

async fn retry(s: &AdminState, pick: impl Fn(&queue::dead::DeadJob) -> bool) -> Response {
    let mut conn = s.redis.clone();
    let list = match queue::dead::list(&mut conn, &s.settings.queue).await {
        Ok(l) => l,
        Err(e) => return internal(e),
    };
    let chosen: Vec<queue::dead::DeadJob> = list.into_iter().filter(|d| pick(d)).collect();
    if chosen.is_empty() {
        return error(StatusCode::NOT_FOUND, "no such dead job");
    }
    let mut producer = queue::Producer::new(conn.clone(), &s.settings);
    match queue::dead::retry(&mut conn, &mut producer, &s.settings.queue, &chosen).await {
        Ok(ids) => Json(json!({"retried": ids.len(), "new_ids": ids})).into_response(),
        Err(e) => error(StatusCode::CONFLICT, format!("{e:#}")),
    }
}

async fn retry_one(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    retry(&s, |d| d.id == id).await
}

/// `GET /`: the operator page (one self-contained HTML file; it reads the JSON routes below and
/// refreshes itself).
async fn operator_page() -> Response {
    axum::response::Html(include_str!("operator.html")).into_response()
}

async fn running(State(s): State<Shared>) -> Response {
    match queue::stats::running(&mut s.redis.clone(), &s.settings.queue, 200).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => internal(e),
    }
}

/// The newest failed or dead runs (the store's record; empty for processes without a store).
async fn failures(State(s): State<Shared>) -> Response {
    let Some(pool) = &s.pool else { return Json(json!([])).into_response() };
    type Row = (
        String,
        String,
        Option<i64>,
        Option<String>,
        Option<chrono::DateTime<chrono::Utc>>,
        i32,
        String,
        Option<String>,
    );
    let rows: sqlx::Result<Vec<Row>> = sqlx::query_as(
        "SELECT job_id, kind, instrument_token, reason, finished_at, attempts, outcome, error FROM backfill_runs
         WHERE outcome IN ('failed', 'dead') ORDER BY finished_at DESC NULLS LAST LIMIT 50",
    )
    .fetch_all(pool)
    .await;
    match rows {
        Ok(rows) => Json(
            rows.into_iter()
                .map(|(id, kind, token, reason, at, attempts, outcome, error)| {
                    json!({"job_id": id, "kind": kind, "token": token, "reason": reason, "finished_at": at,
                           "attempts": attempts, "outcome": outcome, "error": error})
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => internal(e),
    }
}

/// Per active subscription: newest bar, its age, holes, last outcome.
async fn subscriptions(State(s): State<Shared>) -> Response {
    let Some(pool) = &s.pool else { return Json(json!([])).into_response() };
    match crate::ops::status(pool, &s.settings, chrono::Utc::now()).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

async fn resume(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    match queue::resume(&mut s.redis.clone(), &s.settings.queue).await {
        Ok(was) => Json(json!({"resumed": was})).into_response(),
        Err(e) => internal(e),
    }
}

async fn retry_all(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    retry(&s, |_| true).await
}

async fn delete_dead(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    match queue::dead::forget_one(&mut s.redis.clone(), &s.settings.queue, &id).await {
        Ok(true) => Json(json!({"deleted": id})).into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no dead job {id}")),
        Err(e) => internal(e),
    }
}

#[derive(serde::Deserialize)]
struct PurgeQuery {
    older_than: Option<String>,
}

async fn purge(State(s): State<Shared>, headers: HeaderMap, Query(q): Query<PurgeQuery>) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    let before = match q.older_than.as_deref().map(crate::config::parse_duration) {
        None => None,
        Some(Ok(d)) => Some(chrono::Utc::now() - chrono::Duration::from_std(d).unwrap_or_default()),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("older_than: {e}")),
    };
    match queue::dead::purge(&mut s.redis.clone(), &s.settings.queue, before).await {
        Ok(n) => Json(json!({"purged": n})).into_response(),
        Err(e) => internal(e),
    }
}

async fn rejected(State(s): State<Shared>) -> Response {
    match bridge::list_rejected(&mut s.redis.clone(), &s.settings.queue, 1000).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => internal(e),
    }
}
