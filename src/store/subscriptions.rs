//! `subscriptions`: the instruments the ticker service streams, active or not.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use tickfill_jobs::InstrumentToken;

/// A subscription as an event announced it.
#[derive(Debug, Clone)]
pub struct Subscription<'a> {
    pub instrument_token: InstrumentToken,
    pub tradingsymbol: Option<&'a str>,
    pub segment: Option<&'a str>,
    pub requested_mode: Option<&'a str>,
    pub account_id: Option<&'a str>,
    pub at: DateTime<Utc>,
    /// Who told us: `event` (the bridge) or `reconcile` (the ticker's subscription list).
    pub source: &'a str,
    /// When it was so: a newer order already applied leaves the row as it is.
    pub order: EventOrder,
}

/// When an event (or a reconcile) says what it says: its own timestamp, then its receipt.
/// Compared as a pair, so events stamped in the same second keep the order they were received in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventOrder {
    pub at: DateTime<Utc>,
    pub received: DateTime<Utc>,
}

impl EventOrder {
    /// For what is observed now (a reconcile's list).
    pub fn now(now: DateTime<Utc>) -> EventOrder {
        EventOrder { at: now, received: now }
    }
}

/// The SQL condition under which the order in two placeholders (its time, its receipt) may change
/// a `subscriptions` row: no newer order was applied to it.
macro_rules! not_older {
    ($at:literal, $received:literal) => {
        concat!(
            "(coalesce(subscriptions.event_at, '-infinity'), coalesce(subscriptions.event_received_at, '-infinity')) <= (",
            $at,
            "::timestamptz, ",
            $received,
            "::timestamptz)"
        )
    };
}

/// Marks a subscription active, unless a newer event already said otherwise; returns whether it
/// changed the row. `subscribed_at` moves only when it was inactive (a re-subscribe), so a
/// repeated event does not shift the window sweeps look at.
pub async fn activate_subscription(tx: &mut Transaction<'_, Postgres>, s: &Subscription<'_>) -> sqlx::Result<bool> {
    let done = sqlx::query(concat!(
        "INSERT INTO subscriptions (instrument_token, tradingsymbol, segment, status, requested_mode, account_id,
                                    subscribed_at, updated_at, source, event_at, event_received_at)
         VALUES ($1, $2, $3, 'active', $4, $5, $6, now(), $7, $8, $9)
         ON CONFLICT (instrument_token) DO UPDATE SET
             tradingsymbol = COALESCE(EXCLUDED.tradingsymbol, subscriptions.tradingsymbol),
             segment = COALESCE(EXCLUDED.segment, subscriptions.segment),
             requested_mode = COALESCE(EXCLUDED.requested_mode, subscriptions.requested_mode),
             account_id = COALESCE(EXCLUDED.account_id, subscriptions.account_id),
             subscribed_at = CASE WHEN subscriptions.status = 'active' THEN subscriptions.subscribed_at
                                  ELSE EXCLUDED.subscribed_at END,
             status = 'active', updated_at = now(),
             event_at = EXCLUDED.event_at, event_received_at = EXCLUDED.event_received_at
         WHERE ",
        not_older!("$8", "$9")
    ))
    .bind(super::bind_token(s.instrument_token))
    .bind(s.tradingsymbol)
    .bind(s.segment)
    .bind(s.requested_mode)
    .bind(s.account_id)
    .bind(s.at)
    .bind(s.source)
    .bind(s.order.at)
    .bind(s.order.received)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks a subscription inactive (creating the row if the store never saw it active), unless a
/// newer event already said otherwise; returns whether it changed the row.
pub async fn deactivate_subscription(tx: &mut Transaction<'_, Postgres>, s: &Subscription<'_>) -> sqlx::Result<bool> {
    let done = sqlx::query(concat!(
        "INSERT INTO subscriptions (instrument_token, tradingsymbol, segment, status, requested_mode, account_id,
                                    subscribed_at, updated_at, source, event_at, event_received_at)
         VALUES ($1, $2, $3, 'inactive', $4, $5, $6, now(), $7, $8, $9)
         ON CONFLICT (instrument_token) DO UPDATE SET status = 'inactive', updated_at = now(),
             event_at = EXCLUDED.event_at, event_received_at = EXCLUDED.event_received_at
         WHERE ",
        not_older!("$8", "$9")
    ))
    .bind(super::bind_token(s.instrument_token))
    .bind(s.tradingsymbol)
    .bind(s.segment)
    .bind(s.requested_mode)
    .bind(s.account_id)
    .bind(s.at)
    .bind(s.source)
    .bind(s.order.at)
    .bind(s.order.received)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether an event newer than `order` has already been applied to the subscription of `token`.
pub async fn superseded(pool: &PgPool, token: InstrumentToken, order: EventOrder) -> sqlx::Result<bool> {
    sqlx::query_scalar(concat!(
        "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE instrument_token = $1 AND NOT ",
        not_older!("$2", "$3"),
        ")"
    ))
    .bind(super::bind_token(token))
    .bind(order.at)
    .bind(order.received)
    .fetch_one(pool)
    .await
}

/// Active subscriptions by token: when each started, and its instrument's segment (from
/// `instruments`, else the event's), which decides its trading calendar.
pub async fn active_subscriptions(
    pool: &PgPool,
) -> sqlx::Result<Vec<(InstrumentToken, DateTime<Utc>, Option<String>)>> {
    let rows: Vec<(i64, DateTime<Utc>, Option<String>)> = sqlx::query_as(
        "SELECT s.instrument_token, s.subscribed_at, coalesce(i.segment, s.segment) FROM subscriptions s
         LEFT JOIN instruments i ON i.instrument_token = s.instrument_token
         WHERE s.status = 'active' ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(|(t, at, seg)| Ok((super::token_from_db(t)?, at, seg))).collect()
}

/// Active subscriptions started after `since` whose own backfill (subscribe or reconcile) has
/// not settled yet: no run of it stored, found covered, switched off or dead since they started.
pub async fn awaiting_immediate_backfill(pool: &PgPool, since: DateTime<Utc>) -> sqlx::Result<Vec<InstrumentToken>> {
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
    rows.into_iter().map(super::token_from_db).collect()
}

/// Whether the subscription of `token` is active (`None` when the store never heard of it).
pub async fn is_subscribed(pool: &PgPool, token: InstrumentToken) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar("SELECT status = 'active' FROM subscriptions WHERE instrument_token = $1")
        .bind(super::bind_token(token))
        .fetch_optional(pool)
        .await
}

/// Marks inactive every listed subscription that no event newer than `order` keeps active;
/// returns the tokens it changed.
pub async fn deactivate_many(
    tx: &mut Transaction<'_, Postgres>,
    tokens: &[InstrumentToken],
    order: EventOrder,
) -> sqlx::Result<Vec<InstrumentToken>> {
    let tokens: Vec<i64> = tokens.iter().map(|t| super::bind_token(*t)).collect();
    let done: Vec<i64> = sqlx::query_scalar(concat!(
        "UPDATE subscriptions SET status = 'inactive', updated_at = now(), event_at = $2, event_received_at = $3
         WHERE instrument_token = ANY($1) AND status = 'active' AND ",
        not_older!("$2", "$3"),
        " RETURNING instrument_token"
    ))
    .bind(&tokens)
    .bind(order.at)
    .bind(order.received)
    .fetch_all(&mut **tx)
    .await?;
    done.into_iter().map(super::token_from_db).collect()
}
