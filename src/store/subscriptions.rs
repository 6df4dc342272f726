//! `subscriptions`: the instruments the ticker service streams, active or not.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

/// A subscription as an event announced it.
#[derive(Debug, Clone)]
pub struct Subscription<'a> {
    pub instrument_token: u32,
    pub tradingsymbol: Option<&'a str>,
    pub segment: Option<&'a str>,
    pub requested_mode: Option<&'a str>,
    pub account_id: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// Marks a subscription active. `subscribed_at` moves only when it was inactive (a re-subscribe),
/// so a repeated event does not shift the window sweeps look at.
pub async fn activate_subscription(
    tx: &mut Transaction<'_, Postgres>,
    s: &Subscription<'_>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO subscriptions (instrument_token, tradingsymbol, segment, status, requested_mode, account_id, subscribed_at, updated_at, source)
         VALUES ($1, $2, $3, 'active', $4, $5, $6, now(), 'event')
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
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks a subscription inactive, creating the row if the store never saw it active.
pub async fn deactivate_subscription(
    tx: &mut Transaction<'_, Postgres>,
    s: &Subscription<'_>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO subscriptions (instrument_token, tradingsymbol, segment, status, requested_mode, account_id, subscribed_at, updated_at, source)
         VALUES ($1, $2, $3, 'inactive', $4, $5, $6, now(), 'event')
         ON CONFLICT (instrument_token) DO UPDATE SET status = 'inactive', updated_at = now()",
    )
    .bind(s.instrument_token as i64)
    .bind(s.tradingsymbol)
    .bind(s.segment)
    .bind(s.requested_mode)
    .bind(s.account_id)
    .bind(s.at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
