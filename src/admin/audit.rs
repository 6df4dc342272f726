//! The audit of the admin API: every change a caller made (a `POST` or `DELETE` under `/api/`
//! that was allowed and acted) is recorded in the store's `audit` table with the token's name,
//! the action, what it named (path and query: the filter or the ids), how many it matched and
//! acted on, and how it went. Refused requests and dry runs change nothing and are not recorded.

use axum::{
    body::{to_bytes, Body},
    extract::{Request, State},
    http::Method,
    middleware::Next,
    response::Response,
};
use serde_json::{json, Value};

use sqlx::PgPool;

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

/// Where the audit is written: the process's store, or for a process without one (the bridge) a
/// pool of one connection made when the first change is recorded.
pub fn pool_for(state: &AdminState) -> Option<PgPool> {
    state.pool.clone().or_else(|| {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy(state.settings.store.database_url.expose())
            .ok()
    })
}

/// Records the change a request made, after it is answered.
pub async fn record(State(pool): State<Option<PgPool>>, req: Request, next: Next) -> Response {
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
    let pairs: serde_json::Map<String, Value> =
        super::query_pairs(Some(&query)).into_iter().map(|(k, v)| (k, json!(v))).collect();
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
    let recorded = match &pool {
        Some(pool) => audit::record(pool, &entry).await.map(|_| ()),
        None => Err(sqlx::Error::PoolClosed),
    };
    if let Err(e) = recorded {
        tracing::error!(error = %e, action = entry.action, "a change was made but could not be audited");
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
