//! `subscriptions`: the instruments the ticker service streams, active or not.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

/// A subscription as an event announced it.
#[derive(Debug, Clone)]
pub struct Subscription<'a> {
    pub instrument_token: u32,
    pub tradingsymbol: Option<&'a str>,
    pub segment: Option<&'a str>,
    pub requested_mode: Option<&'a str>,
    pub account_id: Option<&'a str>,
    pub at: DateTime<Utc>,
    /// Who told us: `event` (the bridge) or `reconcile` (the ticker's subscription list).
    pub source: &'a str,
}

/// Marks a subscription active. `subscribed_at` moves only when it was inactive (a re-subscribe),
/// so a repeated event does not shift the window sweeps look at.
pub async fn activate_subscription(tx: &mut Transaction<'_, Postgres>, s: &Subscription<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO subscriptions (instrument_token, tradingsymbol, segment, status, requested_mode, account_id, subscribed_at, updated_at, source)
         VALUES ($1, $2, $3, 'active', $4, $5, $6, now(), $7)
         ON CONFLICT (instrument_token) DO UPDATE SET
             tradingsymbol = COALESCE(EXCLUDED.tradingsymbol, subscriptions.tradingsymbol),
             segment = COALESCE(EXCLUDED.segment, subscriptions.segment),
             requested_mode = COALESCE(EXCLUDED.requested_mode, subscriptions.requested_mode),
             account_id = COALESCE(EXCLUDED.account_id, subscriptions.account_id),
             subscribed_at = CASE WHEN subscriptions.status = 'active' THEN subscriptions.subscribed_at
                                  ELSE EXCLUDED.subscribed_at END,
             status = 'active', updated_at = now()",
    )
    .bind(s.instrument_token as i64)
    .bind(s.tradingsymbol)
    .bind(s.segment)
    .bind(s.requested_mode)
    .bind(s.account_id)
    .bind(s.at)
    .bind(s.source)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks a subscription inactive, creating the row if the store never saw it active.
pub async fn deactivate_subscription(tx: &mut Transaction<'_, Postgres>, s: &Subscription<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO subscriptions (instrument_token, tradingsymbol, segment, status, requested_mode, account_id, subscribed_at, updated_at, source)
         VALUES ($1, $2, $3, 'inactive', $4, $5, $6, now(), $7)
         ON CONFLICT (instrument_token) DO UPDATE SET status = 'inactive', updated_at = now()",
    )
    .bind(s.instrument_token as i64)
    .bind(s.tradingsymbol)
    .bind(s.segment)
    .bind(s.requested_mode)
    .bind(s.account_id)
    .bind(s.at)
    .bind(s.source)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Active subscriptions with when they started, by token.
pub async fn active_subscriptions(pool: &PgPool) -> sqlx::Result<Vec<(u32, DateTime<Utc>)>> {
    let rows: Vec<(i64, DateTime<Utc>)> =
        sqlx::query_as("SELECT instrument_token, subscribed_at FROM subscriptions WHERE status = 'active' ORDER BY 1")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|(t, at)| (t as u32, at)).collect())
}

/// Active subscriptions started after `since` whose own backfill (subscribe or reconcile) has
/// not settled yet: no run of it stored, found covered, switched off or dead since they started.
pub async fn awaiting_immediate_backfill(pool: &PgPool, since: DateTime<Utc>) -> sqlx::Result<Vec<u32>> {
    let rows: Vec<i64> = sqlx::query_scalar(
        "SELECT s.instrument_token FROM subscriptions s
         WHERE s.status = 'active' AND s.subscribed_at > $1
           AND NOT EXISTS (
               SELECT 1 FROM backfill_runs r
               WHERE r.instrument_token = s.instrument_token AND r.reason IN ('subscribe', 'reconcile')
                 AND r.outcome IN ('stored', 'covered', 'disabled', 'dead')
                 AND r.finished_at >= s.subscribed_at)",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|t| t as u32).collect())
}

/// Whether the subscription of `token` is active (`None` when the store never heard of it).
pub async fn is_subscribed(pool: &PgPool, token: u32) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar("SELECT status = 'active' FROM subscriptions WHERE instrument_token = $1")
        .bind(token as i64)
        .fetch_optional(pool)
        .await
}

/// Marks inactive every listed subscription; returns how many changed.
pub async fn deactivate_many(tx: &mut Transaction<'_, Postgres>, tokens: &[u32]) -> sqlx::Result<u64> {
    let tokens: Vec<i64> = tokens.iter().map(|t| *t as i64).collect();
    let done = sqlx::query(
        "UPDATE subscriptions SET status = 'inactive', updated_at = now()
         WHERE instrument_token = ANY($1) AND status = 'active'",
    )
    .bind(&tokens)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}
