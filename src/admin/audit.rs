//! The audit of the admin API: every change a caller made (a `POST` or `DELETE` under `/api/`
//! that was allowed and acted) is recorded in the store's `audit` table with the token's name,
//! the action, what it named (path and query: the filter or the ids), how many it matched and
//! acted on, and how it went. Refused requests and dry runs change nothing and are not recorded.

use std::sync::Arc;

use axum::{
    body::{to_bytes, Body},
    extract::{Request, State},
    http::Method,
    middleware::Next,
    response::Response,
};
use serde_json::{json, Value};

use super::{auth, AdminState};
use crate::store::audit::{self, NewEntry};

/// The largest answer read for the audit (bulk answers list their jobs).
const ANSWER_CAP: usize = 16 << 20;

/// `jobs.retry` for `/api/jobs/retry`, `lanes.bulk.pause`, `dead.delete` for `DELETE /api/dead/ID`.
fn action_of(method: &Method, path: &str) -> String {
    let parts: Vec<&str> = path.trim_start_matches("/api/").split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::DELETE, [first, ..]) => format!("{first}.delete"),
        (_, [first, _id, verb]) if *first == "dead" => format!("dead.{verb}"),
        _ => parts.iter().map(|p| crate::domain::text::inert(p, 40)).collect::<Vec<_>>().join("."),
    }
}

/// Records the change a request made, after it is answered.
pub async fn record(State(state): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let changes = (method == Method::POST || method == Method::DELETE)
        && path.starts_with("/api/")
        && path != "/api/session"
        && !query.split('&').any(|p| p == "dry_run=true" || p == "dry_run=1");
    if !changes {
        return next.run(req).await;
    }
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_success() || status == axum::http::StatusCode::CONFLICT) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = to_bytes(body, ANSWER_CAP).await.unwrap_or_default();
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let num = |keys: &[&str]| keys.iter().find_map(|k| answer.get(*k).and_then(Value::as_i64));
    let pairs: serde_json::Map<String, Value> = reqwest::Url::parse(&format!("http://q/?{query}"))
        .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), json!(v.into_owned()))).collect())
        .unwrap_or_default();
    let entry = NewEntry {
        // Only the admin token acts (the extractor refused anything else).
        actor: auth::Role::Admin.name(),
        action: &action_of(&method, &path),
        target: json!({"path": path, "query": pairs}),
        matched: num(&["matched"]),
        acted: num(&["acted", "retried", "purged"])
            .or_else(|| answer.get("changed").and_then(Value::as_bool).map(i64::from)),
        ok: status.is_success(),
        result: Some(json!({"status": status.as_u16(), "answer": answer.clone()})),
    };
    let pool = match &state.pool {
        Some(p) => Ok(p.clone()),
        None => {
            sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(state.settings.database_url.expose()).await
        }
    };
    match pool {
        Ok(pool) => {
            if let Err(e) = audit::record(&pool, &entry).await {
                tracing::error!(error = %e, action = entry.action, "a change was made but could not be audited");
            }
        }
        Err(e) => tracing::error!(error = %e, action = entry.action, "a change was made but could not be audited"),
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_named_by_their_path() {
        assert_eq!(action_of(&Method::POST, "/api/jobs/retry"), "jobs.retry");
        assert_eq!(action_of(&Method::POST, "/api/lanes/bulk/pause"), "lanes.bulk.pause");
        assert_eq!(action_of(&Method::DELETE, "/api/dead/01J"), "dead.delete");
        assert_eq!(action_of(&Method::POST, "/api/dead/01J/retry"), "dead.retry");
        assert_eq!(action_of(&Method::POST, "/api/dead/purge"), "dead.purge");
        assert_eq!(action_of(&Method::POST, "/api/resume"), "resume");
    }
}
