//! `audit`: every operator mutation, who made it and how it went.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// One mutation.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Entry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `admin` (the admin token), `cli`, …
    pub actor: String,
    /// e.g. `jobs.retry`, `lanes.bulk.pause`, `dead.purge`.
    pub action: String,
    /// The filter or the ids it named.
    pub target: serde_json::Value,
    pub matched: Option<i64>,
    pub acted: Option<i64>,
    pub ok: bool,
    pub result: Option<serde_json::Value>,
}

/// What to record.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: serde_json::Value,
    pub matched: Option<i64>,
    pub acted: Option<i64>,
    pub ok: bool,
    pub result: Option<serde_json::Value>,
}

/// Records one mutation; returns its id.
pub async fn record(pool: &PgPool, e: &NewEntry<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO audit (actor, action, target, matched, acted, ok, result)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(e.actor)
    .bind(e.action)
    .bind(&e.target)
    .bind(e.matched)
    .bind(e.acted)
    .bind(e.ok)
    .bind(&e.result)
    .fetch_one(pool)
    .await
}

/// The newest `limit` mutations, before the one with id `before` if given.
pub async fn list(pool: &PgPool, limit: i64, before: Option<i64>) -> sqlx::Result<Vec<Entry>> {
    sqlx::query_as(
        "SELECT id, at, actor, action, target, matched, acted, ok, result FROM audit
         WHERE ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .bind(before)
    .fetch_all(pool)
    .await
}
