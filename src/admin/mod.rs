//! The admin HTTP API every long-running process serves on `ADMIN_LISTEN`: health, readiness
//! (per dependency, and whether migrations are behind), queue figures, dead letters and rejected
//! events. Mutations need `Authorization: Bearer $ADMIN_TOKEN`; with no token configured they are
//! refused with 403 and the reason.

//!
//! Layout: this file holds the router and the JSON handlers; `page` the operator console's pages
//! and assets; `error` the one error type (a status per variant, an opaque 500 whose cause is
//! logged); `auth` who may read and change; `audit` the record of every change.

pub mod audit;
pub mod auth;
pub mod error;
pub mod page;
pub mod server;

use std::{net::SocketAddr, sync::Arc};
use tickfill_jobs::InstrumentToken;

use axum::{
    extract::{rejection::QueryRejection, Path, Query, RawQuery, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Value};
use sqlx::PgPool;

use self::{
    auth::{Authorized, CanRead, NoBody, NoQuery},
    error::ApiError,
};
use crate::{config::Settings, metrics, queue, shutdown::Shutdown, store};

/// What the admin handlers reach.
#[derive(Clone)]
pub struct AdminState {
    pub settings: Settings,
    pub redis: crate::queue::RedisConn,
    /// The store, for processes that have one (the bridge does not).
    pub pool: Option<PgPool>,
}

type Shared = Arc<AdminState>;

/// The admin routes, so tests can serve them anywhere.
pub fn router(state: AdminState) -> Router {
    let shared = Arc::new(state);
    Router::new()
        .route("/", get(page::overview))
        .route("/jobs", get(page::jobs))
        .route("/jobs/{id}", get(page::job))
        .route("/audit", get(page::audit))
        .route("/static/{*name}", get(page::asset))
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
        .route("/api/days", get(days_summary))
        .route("/api/days/{token}", get(days_of))
        .route("/api/accounts", get(accounts))
        .route("/api/jobs", get(list_jobs))
        .route("/api/jobs/{action}", get(show_job).post(bulk_jobs))
        .route("/api/controls", get(controls))
        .route("/api/history", get(history))
        .route("/api/sweeps", get(sweeps))
        .route("/api/sweeps/{action}", post(sweeps_action))
        .route("/api/lanes/{lane}/{action}", post(lane_control))
        .route("/api/kinds/{kind}/{action}", post(kind_control))
        .route("/kite/callback/{account}", get(kite_callback))
        .route("/api/audit", get(list_audit))
        .route("/api/stream", get(stream))
        .route("/api/session", post(open_session).delete(close_session))
        .layer(axum::middleware::from_fn_with_state(audit::pool_for(&shared), audit::record))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(shared)
}

/// Binds `ADMIN_LISTEN` and serves until `shutdown`; returns the bound address (logged).
pub async fn spawn(state: AdminState, shutdown: Shutdown) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(state.settings.admin.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "admin API listening");
    let app = router(state);
    tokio::spawn(server::serve(listener, app, shutdown));
    Ok(addr)
}

/// What a handler answers: JSON, or an [`ApiError`] with its status.
type ApiResult = Result<Json<Value>, ApiError>;

fn to_json(v: impl serde::Serialize) -> ApiResult {
    Ok(Json(serde_json::to_value(v).map_err(anyhow::Error::new)?))
}

async fn readyz(State(s): State<Shared>) -> Response {
    let mut conn = s.redis.clone();
    let redis_ok = queue::state::ping(&mut conn).await;
    let mut body = json!({"redis": match &redis_ok { Ok(_) => "ok".to_string(), Err(e) => format!("down: {e}") }});
    let mut ready = redis_ok.is_ok();
    // A pause (an expired Kite session) does not make a process unready: restarting it would not
    // help. It is reported so that whoever looks knows why nothing is fetched.
    if let Ok(Some(p)) = queue::requests_halted(&mut conn, &s.settings.queue.name).await {
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
    let ns = &s.settings.queue.name;
    m.rate_limit.set(s.settings.ticker.rate_limit as i64);
    let redis_ok = queue::state::ping(&mut conn).await.is_ok();
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
        if let Ok(p) = queue::requests_halted(&mut conn, ns).await {
            m.paused.set(p.is_some() as i64);
        }
        if let Ok(report) = crate::accounts::report(&s.settings, &mut conn).await {
            crate::accounts::export_gauges(&report);
        }
    }
    let Some(pool) = &s.pool else { return };
    let st = &s.settings;
    let stale_after =
        (st.backfill.settle + st.backfill.gap_threshold + st.backfill.sweep_interval.nominal()).as_secs_f64();
    let r = crate::status::freshness(pool, st, stale_after, chrono::Utc::now()).await;
    metrics::set_up("postgres", r.is_ok());
    if let Ok(f) = r {
        m.subscriptions_active.set(f.active);
        m.freshness_max_age.set(f.oldest_age_s);
        m.freshness_stale.set(f.stale);
    }
    if let Ok(n) = store::suspects::total(pool).await {
        m.suspect_minutes.set(n);
    }
    if let Ok(days) = crate::status::day_states(pool, st, chrono::Utc::now()).await {
        for (state, n) in days {
            m.days.get_or_create(&metrics::l1("state", state.as_str())).set(n);
        }
    }
}

/// Query parameters as name/value pairs, in order, duplicates kept (so a filter can refuse them).
fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    let raw = raw.unwrap_or("");
    reqwest::Url::parse(&format!("http://q/?{raw}"))
        .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default()
}

/// `GET /api/jobs?<filter>&limit=&cursor=`: the jobs the filter lets through, newest first:
/// `{"matched", "jobs", "next"}`.
async fn list_jobs(State(s): State<Shared>, _: CanRead, RawQuery(raw): RawQuery) -> ApiResult {
    let pairs = query_pairs(raw.as_deref());
    let filter = crate::domain::filter::JobFilter::from_pairs(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &["limit", "cursor"],
    )
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let one = |name: &str| one_of(&pairs, name);
    let limit = match one("limit")? {
        None => crate::explore::DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=crate::explore::MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::BadRequest(format!("limit must be 1 … {}", crate::explore::MAX_LIMIT)))?,
    };
    let page = crate::explore::list(
        &mut s.redis.clone(),
        &s.settings.queue.name,
        s.pool.as_ref(),
        &filter,
        limit,
        one("cursor")?,
    )
    .await?;
    to_json(page)
}

/// `GET /api/jobs/{id}`: one job with its payload, its run and its timeline.
async fn show_job(State(s): State<Shared>, _: CanRead, _: NoQuery, Path(id): Path<String>) -> ApiResult {
    let shown = crate::domain::text::inert(&id, 64);
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_#:".contains(c)) {
        return Err(ApiError::BadRequest(format!("{shown:?} is not a job id")));
    }
    match crate::explore::detail(&mut s.redis.clone(), &s.settings.queue.name, s.pool.as_ref(), &id).await? {
        Some(d) => to_json(d),
        None => Err(ApiError::NotFound(format!("no job {shown}"))),
    }
}

/// The one value of `name` among query pairs, refusing it twice.
fn one_of<'a>(pairs: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut found = pairs.iter().filter(|(k, _)| k == name);
    let first = found.next().map(|(_, v)| v.as_str());
    if found.next().is_some() {
        return Err(ApiError::BadRequest(format!("{name} given twice")));
    }
    Ok(first)
}

/// `POST /api/jobs/{retry|purge|cancel}?<filter>[&dry_run=true][&all=true][&cap=N]`: acts on the
/// oldest `cap` (default 1,000) jobs the filter matches, or with `dry_run` says what it would.
async fn bulk_jobs(
    State(s): State<Shared>,
    _: Authorized,
    _: NoBody,
    Path(action): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    use crate::explore::{Action, DEFAULT_CAP};
    let action = Action::parse(&action).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no bulk action {:?}: retry, purge or cancel",
            crate::domain::text::inert(&action, 40)
        ))
    })?;
    let pairs = query_pairs(raw.as_deref());
    let filter = crate::domain::filter::JobFilter::from_pairs(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &["dry_run", "all", "cap"],
    )
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let flag = |name: &str| -> Result<bool, ApiError> {
        match one_of(&pairs, name)? {
            None => Ok(false),
            Some(v) => crate::config::parse_bool(v).map_err(|e| ApiError::BadRequest(format!("{name}: {e}"))),
        }
    };
    let cap = match one_of(&pairs, "cap")? {
        None => DEFAULT_CAP,
        Some(v) => v.parse().map_err(|_| ApiError::BadRequest("cap: a whole number".into()))?,
    };
    let mut conn = s.redis.clone();
    let mut producer = queue::Producer::new(conn.clone(), &s.settings);
    let answer = crate::explore::bulk(
        &mut conn,
        &s.settings.queue.name,
        s.pool.as_ref(),
        &mut producer,
        action,
        &filter,
        flag("all")?,
        cap,
        flag("dry_run")?,
    )
    .await?;
    to_json(answer)
}

/// `GET /api/history?series=&step=1m|1h&since=&lane=&kind=`: one series over time; without
/// `series`, the series kept and their retention.
async fn history(State(s): State<Shared>, _: CanRead, RawQuery(raw): RawQuery) -> ApiResult {
    use crate::queue::history::{self, Step, SERIES};
    let pairs = query_pairs(raw.as_deref());
    if let Some((k, _)) = pairs.iter().find(|(k, _)| !["series", "step", "since", "lane", "kind"].contains(&k.as_str()))
    {
        return Err(ApiError::BadRequest(format!(
            "unknown parameter {:?}: series, step, since, lane, kind",
            crate::domain::text::inert(k, 40)
        )));
    }
    let Some(series) = one_of(&pairs, "series")? else {
        return Ok(Json(json!({"series": SERIES, "retention": {"1m": "8h", "1h": "90d"}})));
    };
    let series = SERIES
        .iter()
        .find(|x| **x == series)
        .ok_or_else(|| ApiError::BadRequest(format!("series: one of {}", SERIES.join(", "))))?;
    let step = match one_of(&pairs, "step")? {
        None => Step::Minute,
        Some(v) => Step::parse(v).ok_or_else(|| ApiError::BadRequest("step: 1m or 1h".into()))?,
    };
    let now = chrono::Utc::now();
    let since = match one_of(&pairs, "since")? {
        None => now - chrono::Duration::seconds(step.seconds() * 60),
        Some(v) => match crate::config::parse_duration(v) {
            Ok(d) => crate::config::ago(now, d).map_err(ApiError::BadRequest)?,
            Err(_) => chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| ApiError::BadRequest("since: a duration (2h) or an RFC 3339 instant".into()))?,
        },
    };
    let field = match (one_of(&pairs, "lane")?, one_of(&pairs, "kind")?) {
        (None, None) => series.to_string(),
        (Some(l), Some(k)) if series.starts_with("jobs_") => {
            if tickfill_jobs::Lane::parse(l).is_none() || tickfill_jobs::JobKind::parse(k).is_none() {
                return Err(ApiError::BadRequest("lane: urgent or bulk; kind: a job kind".into()));
            }
            format!("{series}|{l}|{k}")
        }
        _ => return Err(ApiError::BadRequest("lane and kind go together, on a jobs_ series".into())),
    };
    to_json(history::read(&mut s.redis.clone(), &s.settings.queue.name, &field, step, since).await?)
}

/// Every answer: no framing, no sniffing, no referrer, and a strict policy of what a page may load
/// (its own script and style, nothing inline, nothing from elsewhere).
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::{header, HeaderValue};
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// How often the stream looks for a change.
const STREAM_LOOK: std::time::Duration = std::time::Duration::from_millis(500);
/// How long one stream lasts: less than a connection may (the browser reconnects at once).
const STREAM_LIFE: std::time::Duration = std::time::Duration::from_secs(100);

/// What the stream sends when it changes: the lanes' figures, the shared counters, the pauses
/// and the operator's controls.
async fn snapshot(s: &AdminState) -> Option<Value> {
    let mut conn = s.redis.clone();
    let ns = &s.settings.queue.name;
    let lanes = queue::stats::stats(&mut conn, ns).await.ok()?;
    let counters: std::collections::BTreeMap<String, i64> =
        queue::counters(&mut conn, ns).await.ok()?.into_iter().collect();
    let paused = queue::requests_halted(&mut conn, ns).await.ok()?;
    let controls = queue::controls::read(&mut conn, ns).await.ok()?;
    Some(json!({"lanes": lanes, "counters": counters, "paused": paused, "controls": controls}))
}

/// `GET /api/stream`: server-sent events. A `stats` event with [`snapshot`] at once and whenever
/// it changes (looked at twice a second), so the page updates within a second of a job
/// finishing without polling. The stream ends after [`STREAM_LIFE`] and the browser reconnects.
async fn stream(
    State(s): State<Shared>,
    _: CanRead,
    _: NoQuery,
) -> axum::response::sse::Sse<impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>>
{
    use axum::response::sse::{Event, KeepAlive, Sse};
    let until = tokio::time::Instant::now() + STREAM_LIFE;
    let events = futures::stream::unfold((s, None::<String>, true), move |(s, last, first)| async move {
        let mut wait = !first;
        loop {
            if wait {
                tokio::time::sleep(STREAM_LOOK).await;
            }
            wait = true;
            if tokio::time::Instant::now() >= until {
                return None;
            }
            let Some(snap) = snapshot(&s).await else { continue };
            let text = snap.to_string();
            if last.as_deref() != Some(text.as_str()) {
                let event = Event::default().event("stats").retry(std::time::Duration::from_secs(1)).data(text.clone());
                return Some((Ok(event), (s, Some(text), false)));
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// `GET /api/audit?limit=&before=`: the newest changes, who made them and how they went.
async fn list_audit(State(s): State<Shared>, _: CanRead, RawQuery(raw): RawQuery) -> ApiResult {
    let pairs = query_pairs(raw.as_deref());
    if let Some((k, _)) = pairs.iter().find(|(k, _)| k != "limit" && k != "before") {
        return Err(ApiError::BadRequest(format!(
            "unknown parameter {:?}: limit, before",
            crate::domain::text::inert(k, 40)
        )));
    }
    let limit = match one_of(&pairs, "limit")? {
        None => 100,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::BadRequest("limit: 1 … 1000".into()))?,
    };
    let before = one_of(&pairs, "before")?
        .map(|v| v.parse::<i64>().map_err(|_| ApiError::BadRequest("before: an audit id".into())))
        .transpose()?;
    let Some(pool) = &s.pool else {
        return Err(ApiError::Conflict("the audit is in the store: ask a worker's admin API".into()));
    };
    to_json(crate::store::audit::list(pool, limit, before).await?)
}

/// `POST /api/session` with `Authorization: Bearer TOKEN`: the page's session, as an HttpOnly,
/// SameSite=Strict cookie, for the role of that token (12 hours).
async fn open_session(State(s): State<Shared>, headers: axum::http::HeaderMap, _: NoQuery, _: NoBody) -> Response {
    use rand::distr::{Alphanumeric, SampleString};
    let Some(role) = auth::bearer(&headers).and_then(|given| auth::role_of_token(&s, given)) else {
        return ApiError::Unauthorized.into_response();
    };
    let cookie = Alphanumeric.sample_string(&mut rand::rng(), 40);
    let digest = auth::session_digest(&cookie);
    let set = queue::state::open_admin_session(
        &mut s.redis.clone(),
        &s.settings.queue.name,
        &digest,
        role.name(),
        auth::SESSION_TTL,
    )
    .await;
    if let Err(e) = set {
        return ApiError::from(e).into_response();
    }
    let value = format!(
        "{}={cookie}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        auth::SESSION_COOKIE,
        auth::SESSION_TTL.as_secs()
    );
    ([(axum::http::header::SET_COOKIE, value)], Json(json!({"role": role.name()}))).into_response()
}

/// `DELETE /api/session`: forgets the page's session.
async fn close_session(headers: axum::http::HeaderMap, State(s): State<Shared>) -> Response {
    if let Some(c) = auth::session_cookie(&headers) {
        let digest = auth::session_digest(&c);
        let _ = queue::state::close_admin_session(&mut s.redis.clone(), &s.settings.queue.name, &digest).await;
    }
    let expired = format!("{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0", auth::SESSION_COOKIE);
    ([(axum::http::header::SET_COOKIE, expired)], Json(json!({"closed": true}))).into_response()
}

/// `GET /api/sweeps`: the schedule, the last and next tick, the pause, the last 60 sweeps.
async fn sweeps(State(s): State<Shared>, _: CanRead, _: NoQuery) -> ApiResult {
    to_json(crate::status::sweeps(&s.settings, &mut s.redis.clone(), s.pool.as_ref()).await?)
}

/// `POST /api/sweeps/{now|pause|resume}`.
async fn sweeps_action(
    State(s): State<Shared>,
    _: Authorized,
    _: NoQuery,
    _: NoBody,
    Path(action): Path<String>,
) -> ApiResult {
    match action.as_str() {
        "now" => {
            let tick = crate::status::sweep_now(&s.settings, s.redis.clone()).await?;
            Ok(Json(json!({"action": "now", "tick": tick})))
        }
        "pause" | "resume" => control(&s, queue::controls::Target::Sweeps, &action).await,
        other => Err(ApiError::NotFound(format!(
            "no action {:?}: now, pause or resume",
            crate::domain::text::inert(other, 40)
        ))),
    }
}

/// `GET /api/controls`: the paused lanes and kinds, and per lane how many jobs still run (a
/// drain is done at 0).
async fn controls(State(s): State<Shared>, _: CanRead, _: NoQuery) -> ApiResult {
    let mut conn = s.redis.clone();
    let c = queue::controls::read(&mut conn, &s.settings.queue.name).await?;
    let mut running = serde_json::Map::new();
    for lane in tickfill_jobs::Lane::ALL {
        let d = queue::stats::lane_depths(&mut conn, &s.settings.queue.name, lane).await?;
        running.insert(lane.as_str().into(), json!(d.running));
    }
    Ok(Json(json!({"lanes": c.lanes, "kinds": c.kinds, "sweeps": c.sweeps, "running": running})))
}

/// Pauses, drains or resumes `target`.
async fn control(s: &AdminState, target: queue::controls::Target, action: &str) -> ApiResult {
    let mut conn = s.redis.clone();
    let ns = &s.settings.queue.name;
    let changed = match action {
        "pause" => queue::controls::pause(&mut conn, ns, target, "admin", false).await?,
        "drain" => queue::controls::pause(&mut conn, ns, target, "admin", true).await?,
        "resume" => queue::controls::resume(&mut conn, ns, target).await?,
        other => {
            return Err(ApiError::NotFound(format!(
                "no action {:?}: pause, drain or resume",
                crate::domain::text::inert(other, 40)
            )))
        }
    };
    Ok(Json(json!({"action": action, "changed": changed})))
}

/// `POST /api/lanes/{urgent|bulk}/{pause|drain|resume}`.
async fn lane_control(
    State(s): State<Shared>,
    _: Authorized,
    _: NoQuery,
    _: NoBody,
    Path((lane, action)): Path<(String, String)>,
) -> ApiResult {
    let lane = tickfill_jobs::Lane::parse(&lane).ok_or_else(|| {
        ApiError::NotFound(format!("no lane {:?}: urgent or bulk", crate::domain::text::inert(&lane, 40)))
    })?;
    control(&s, queue::controls::Target::Lane(lane), &action).await
}

/// `POST /api/kinds/{kind}/{pause|resume}`.
async fn kind_control(
    State(s): State<Shared>,
    _: Authorized,
    _: NoQuery,
    _: NoBody,
    Path((kind, action)): Path<(String, String)>,
) -> ApiResult {
    let kind = tickfill_jobs::JobKind::parse(&kind)
        .ok_or_else(|| ApiError::NotFound(format!("no job kind {:?}", crate::domain::text::inert(&kind, 40))))?;
    if action == "drain" {
        return Err(ApiError::NotFound("kinds are paused or resumed; lanes drain".into()));
    }
    control(&s, queue::controls::Target::Kind(kind), &action).await
}

/// `GET /api/accounts`: per account its limit, recent grants, waiting requests, session and
/// breaker (never a token).
async fn accounts(State(s): State<Shared>, _: CanRead, _: NoQuery) -> ApiResult {
    let report = crate::accounts::report(&s.settings, &mut s.redis.clone()).await?;
    crate::accounts::export_gauges(&report);
    to_json(report)
}

/// `GET /kite/callback/{account}`: where Kite sends a person who logged in for `account`. It needs
/// no bearer token (Kite cannot send one): the checksum exchange is the proof, and a bad or
/// replayed `request_token` stores nothing. Answers a short page saying what happened.
async fn kite_callback(
    State(s): State<Shared>,
    Path(account): Path<String>,
    query: Result<Query<crate::accounts::Callback>, QueryRejection>,
) -> Response {
    let page = |status: u16, text: String| {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = format!(
            "<!doctype html><meta charset=utf-8><title>tickfill: Kite login</title><p>{}</p>",
            text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
        );
        (status, [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
    };
    let Ok(Query(cb)) = query else {
        return page(400, "the login redirect's parameters could not be read (each may appear once)".into());
    };
    let client = match crate::ticker::TickerClient::new(&s.settings) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no Kite client for a login");
            return page(500, "tickfill could not build its Kite client; see its log".into());
        }
    };
    let shown = crate::domain::text::inert(&account, 64);
    match crate::accounts::complete_login(&s.settings, &mut s.redis.clone(), &client, &account, &cb).await {
        Ok(user) => page(
            200,
            format!(
                "Kite session of account {shown} stored (user {}). Every worker uses it at its next request.",
                user.user_id
            ),
        ),
        Err(e) => {
            tracing::warn!(account = %shown, error = %e, "Kite login refused; nothing stored");
            page(e.status(), format!("Kite login of account {shown} not stored: {e}."))
        }
    }
}

async fn stats(State(s): State<Shared>, _: CanRead) -> ApiResult {
    to_json(queue::stats::stats(&mut s.redis.clone(), &s.settings.queue.name).await?)
}

async fn list_dead(State(s): State<Shared>, _: CanRead) -> ApiResult {
    to_json(queue::dead::list(&mut s.redis.clone(), &s.settings.queue.name).await?)
}

async fn show_dead(State(s): State<Shared>, _: CanRead, Path(id): Path<String>) -> ApiResult {
    match queue::dead::show(&mut s.redis.clone(), &s.settings.queue.name, &id).await? {
        Some(d) => to_json(d),
        None => Err(ApiError::NotFound(format!("no dead job {id}"))),
    }
}

async fn retry(s: &AdminState, pick: impl Fn(&queue::dead::DeadJob) -> bool) -> ApiResult {
    let mut conn = s.redis.clone();
    let list = queue::dead::list(&mut conn, &s.settings.queue.name).await?;
    let chosen: Vec<queue::dead::DeadJob> = list.into_iter().filter(|d| pick(d)).collect();
    if chosen.is_empty() {
        return Err(ApiError::NotFound("no such dead job".into()));
    }
    let mut producer = queue::Producer::new(conn.clone(), &s.settings);
    let report = queue::dead::retry(&mut conn, &mut producer, &s.settings.queue.name, &chosen).await;
    if report.retried.is_empty() && report.failed.is_empty() {
        return Err(ApiError::NotFound("no such dead job (another retry or purge took it first)".into()));
    }
    let new_ids: Vec<&str> = report.retried.iter().map(|r| r.new_id.as_str()).collect();
    let body = json!({"retried": report.retried.len(), "new_ids": new_ids, "jobs": report.retried,
                      "failed": report.failed, "taken_by_others": report.taken.len()});
    if report.failed.is_empty() {
        return Ok(Json(body));
    }
    // Some could not be retried: say which, and that the others were.
    let mut body = body;
    body["detail"] = json!(format!(
        "{} of {} dead job(s) could not be retried; {} were",
        report.failed.len(),
        chosen.len(),
        report.retried.len()
    ));
    Err(ApiError::Partial(body))
}

async fn retry_one(State(s): State<Shared>, _: Authorized, _: NoQuery, _: NoBody, Path(id): Path<String>) -> ApiResult {
    retry(&s, |d| d.id == id).await
}

async fn running(State(s): State<Shared>, _: CanRead) -> ApiResult {
    to_json(queue::stats::running(&mut s.redis.clone(), &s.settings.queue.name, 200).await?)
}

/// The newest failed or dead runs (the store's record; empty for processes without a store).
async fn failures(State(s): State<Shared>, _: CanRead) -> ApiResult {
    let Some(pool) = &s.pool else { return Ok(Json(json!([]))) };
    to_json(store::runs::recent_failures(pool, 50).await?)
}

/// Per active subscription: newest bar, its age, holes, last outcome.
async fn subscriptions(State(s): State<Shared>, _: CanRead) -> ApiResult {
    let Some(pool) = &s.pool else { return Ok(Json(json!([]))) };
    to_json(crate::status::status(pool, &s.settings, chrono::Utc::now()).await?)
}

/// Every active subscription's days in the lookback, by state, and the suspect minutes.
async fn days_summary(State(s): State<Shared>, _: CanRead, _: NoQuery) -> ApiResult {
    let Some(pool) = &s.pool else { return Ok(Json(json!({"states": {}, "suspect_minutes": 0}))) };
    let states = crate::status::day_states(pool, &s.settings, chrono::Utc::now()).await?;
    let suspect = store::suspects::total(pool).await?;
    Ok(Json(json!({"states": states, "suspect_minutes": suspect})))
}

/// What `GET /api/days/{token}` takes: an optional window, RFC 3339 (default from the start of the
/// token's wanted window, as `tickfill quality`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DaysQuery {
    from: Option<String>,
    to: Option<String>,
}

/// The longest window `GET /api/days/{token}` reads.
const DAYS_MAX_SPAN: chrono::Duration = chrono::Duration::days(400);

/// One instrument's days, as `tickfill quality --json` prints them.
async fn days_of(
    State(s): State<Shared>,
    _: CanRead,
    Path(token): Path<String>,
    q: Result<Query<DaysQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let token = InstrumentToken::parse(&token).map_err(|_| {
        ApiError::BadRequest(format!(
            "token: {:?} is not an instrument token (1 to 4294967295)",
            crate::domain::text::inert(&token, 40)
        ))
    })?;
    let instant = |name: &str, v: &str| {
        chrono::DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| ApiError::BadRequest(format!("{name}: {v:?} is not an RFC 3339 instant ({e})")))
    };
    let now = chrono::Utc::now();
    let to = q.to.as_deref().map(|v| instant("to", v)).transpose()?.unwrap_or(now);
    let from = q.from.as_deref().map(|v| instant("from", v)).transpose()?;
    let Some(pool) = &s.pool else { return Ok(Json(json!([]))) };
    let from = match from {
        Some(f) => f,
        None => crate::status::wanted_start(pool, &s.settings, token, to).await?,
    };
    if from >= to {
        return Err(ApiError::BadRequest(format!("from {from} is not before to {to}")));
    }
    if to - from > DAYS_MAX_SPAN {
        return Err(ApiError::BadRequest(format!("from {from} to {to} spans more than 400 days")));
    }
    let window = crate::domain::window::Window::new(from, to);
    to_json(crate::status::quality(pool, &s.settings, token, window, now).await?)
}

async fn resume(State(s): State<Shared>, _: Authorized, _: NoQuery, _: NoBody) -> ApiResult {
    let was = queue::lift_halt(&mut s.redis.clone(), &s.settings.queue.name).await?;
    Ok(Json(json!({"resumed": was})))
}

async fn retry_all(State(s): State<Shared>, _: Authorized, _: NoQuery, _: NoBody) -> ApiResult {
    retry(&s, |_| true).await
}

async fn delete_dead(
    State(s): State<Shared>,
    _: Authorized,
    _: NoQuery,
    _: NoBody,
    Path(id): Path<String>,
) -> ApiResult {
    if queue::dead::forget_one(&mut s.redis.clone(), &s.settings.queue.name, &id).await? {
        Ok(Json(json!({"deleted": id})))
    } else {
        Err(ApiError::NotFound(format!("no dead job {id}")))
    }
}

/// What `POST /api/dead/purge` takes: exactly one of `older_than=DURATION` and `all=true`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeQuery {
    older_than: Option<String>,
    all: Option<bool>,
}

async fn purge(
    State(s): State<Shared>,
    _: Authorized,
    _: NoBody,
    q: Result<Query<PurgeQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let before = match (q.older_than.as_deref(), q.all) {
        (Some(d), None | Some(false)) => {
            let d = crate::config::parse_duration(d).map_err(|e| ApiError::BadRequest(format!("older_than: {e}")))?;
            Some(
                crate::config::ago(chrono::Utc::now(), d)
                    .map_err(|e| ApiError::BadRequest(format!("older_than: {e}")))?,
            )
        }
        (None, Some(true)) => None,
        (Some(_), Some(true)) => {
            return Err(ApiError::BadRequest("say one of older_than=DURATION and all=true, not both".into()))
        }
        (None, _) => {
            return Err(ApiError::BadRequest(
                "say which dead jobs to purge: older_than=DURATION (90s, 5m, 2h, 7d) or all=true".into(),
            ))
        }
    };
    let n = queue::dead::purge(&mut s.redis.clone(), &s.settings.queue.name, before).await?;
    Ok(Json(json!({"purged": n})))
}

async fn rejected(State(s): State<Shared>, _: CanRead) -> ApiResult {
    to_json(queue::rejected::list_rejected(&mut s.redis.clone(), &s.settings.queue.name, 1000).await?)
}
