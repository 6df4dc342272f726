//! The operator console: four pages rendered from the templates in `page/templates` (compiled
//! into the binary), each drawn and kept current by its script in `page/static`, which reads the
//! JSON routes. The charts use uPlot, vendored in `page/vendor/uplot` with its licence.
//!
//! A page itself shows no data, so it needs no token; it says who is signed in (the page's session
//! cookie) so that only the admin sees buttons that change anything.

use askama::Template;
use axum::{
    extract::{Path, RawQuery, State},
    http::{header, HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
};

use super::{auth, Shared};
use crate::domain::filter::JobState;

/// Who is looking at a page.
pub struct Viewer {
    /// `admin`, `read` or `none` (not signed in).
    pub role: &'static str,
    /// The page may offer changes: the admin's session, on a server with `ADMIN_TOKEN`.
    pub can_act: bool,
    pub mutations_configured: bool,
    /// `ADMIN_READ_TOKEN` is set: nothing shows before signing in.
    pub reads_need_token: bool,
}

async fn viewer(s: &Shared, headers: &HeaderMap) -> Viewer {
    let role = auth::page_role(headers, s).await;
    let mutations_configured = s.settings.admin.token.is_some();
    Viewer {
        role: role.map_or("none", auth::Role::name),
        can_act: mutations_configured && role == Some(auth::Role::Admin),
        mutations_configured,
        reads_need_token: s.settings.admin.read_token.is_some(),
    }
}

#[derive(Template)]
#[template(path = "overview.html", config = "src/admin/page/askama.toml")]
struct Overview {
    viewer: Viewer,
    active: &'static str,
    /// Every kind of job, comma-separated (the kinds table's rows).
    kinds: String,
}

/// The filter fields as given in the address, to fill the form again (not checked here: the
/// list's answer says what is wrong with them).
#[derive(Default)]
struct FilterForm {
    token: String,
    symbol: String,
    kind: String,
    lane: String,
    state: String,
    error: String,
    from: String,
    to: String,
    min_attempts: String,
}

impl FilterForm {
    fn from_query(raw: Option<&str>) -> FilterForm {
        let mut f = FilterForm::default();
        for (k, v) in super::query_pairs(raw) {
            let v: String = v.chars().take(200).collect();
            match k.as_str() {
                "token" => f.token = v,
                "symbol" => f.symbol = v,
                "kind" => f.kind = v,
                "lane" => f.lane = v,
                "state" => f.state = v,
                "error" => f.error = v,
                "from" => f.from = v,
                "to" => f.to = v,
                "min_attempts" => f.min_attempts = v,
                _ => {}
            }
        }
        f
    }
}

#[derive(Template)]
#[template(path = "jobs.html", config = "src/admin/page/askama.toml")]
struct Jobs {
    viewer: Viewer,
    active: &'static str,
    f: FilterForm,
    kinds: Vec<&'static str>,
    lanes: Vec<&'static str>,
    states: Vec<&'static str>,
}

#[derive(Template)]
#[template(path = "job.html", config = "src/admin/page/askama.toml")]
struct Job {
    viewer: Viewer,
    active: &'static str,
    id: String,
}

#[derive(Template)]
#[template(path = "audit.html", config = "src/admin/page/askama.toml")]
struct Audit {
    viewer: Viewer,
    active: &'static str,
}

fn html(t: impl Template) -> Response {
    match t.render() {
        Ok(body) => ([(header::CACHE_CONTROL, "no-store")], Html(body)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "an operator page could not be rendered");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered; see the log").into_response()
        }
    }
}

/// `GET /`: the overview.
pub async fn overview(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let kinds = tickfill_jobs::JobKind::ALL.map(tickfill_jobs::JobKind::as_str).join(",");
    html(Overview { viewer: viewer(&s, &headers).await, active: "overview", kinds })
}

/// `GET /jobs?<filter>`: the job explorer, its filter in the address.
pub async fn jobs(State(s): State<Shared>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    html(Jobs {
        viewer: viewer(&s, &headers).await,
        active: "jobs",
        f: FilterForm::from_query(raw.as_deref()),
        kinds: tickfill_jobs::JobKind::ALL.map(tickfill_jobs::JobKind::as_str).to_vec(),
        lanes: tickfill_jobs::Lane::ALL.map(tickfill_jobs::Lane::as_str).to_vec(),
        states: JobState::ALL.map(JobState::as_str).to_vec(),
    })
}

/// `GET /jobs/{id}`: one job and its timeline.
pub async fn job(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if id.is_empty() || id.len() > 64 {
        return (StatusCode::BAD_REQUEST, "a job id has 1 to 64 characters").into_response();
    }
    html(Job { viewer: viewer(&s, &headers).await, active: "jobs", id })
}

/// `GET /audit`: who changed what.
pub async fn audit(State(s): State<Shared>, headers: HeaderMap) -> Response {
    html(Audit { viewer: viewer(&s, &headers).await, active: "audit" })
}

/// The pages' scripts, style and vendored chart library, compiled into the binary.
const ASSETS: [(&str, &str, &str); 10] = [
    ("common.js", JS, include_str!("page/static/common.js")),
    ("overview.js", JS, include_str!("page/static/overview.js")),
    ("charts.js", JS, include_str!("page/static/charts.js")),
    ("jobs.js", JS, include_str!("page/static/jobs.js")),
    ("job.js", JS, include_str!("page/static/job.js")),
    ("audit.js", JS, include_str!("page/static/audit.js")),
    ("tickfill.css", CSS, include_str!("page/static/tickfill.css")),
    ("vendor/uPlot.iife.min.js", JS, include_str!("page/vendor/uplot/uPlot.iife.min.js")),
    ("vendor/uPlot.min.css", CSS, include_str!("page/vendor/uplot/uPlot.min.css")),
    ("vendor/LICENSE.uPlot.txt", TEXT, include_str!("page/vendor/uplot/LICENSE")),
];
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// `GET /static/{name}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => {
            ([(header::CONTENT_TYPE, *kind), (header::CACHE_CONTROL, "no-cache")], *body).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
