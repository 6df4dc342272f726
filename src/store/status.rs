//! What operators read about the store: per active subscription its newest bar and last run, and
//! the freshness figures the metrics export.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// One active subscription with its newest stored bar (any bar table) and its newest run.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SubscriptionRow {
    pub instrument_token: i64,
    pub tradingsymbol: Option<String>,
    pub subscribed_at: DateTime<Utc>,
    pub newest_bar: Option<DateTime<Utc>>,
    pub last_outcome: Option<String>,
    pub last_run_at: Option<DateTime<Utc>>,
}

/// Every active subscription, by token.
pub async fn active_subscription_rows(pool: &PgPool) -> sqlx::Result<Vec<SubscriptionRow>> {
    sqlx::query_as(
        "SELECT s.instrument_token, s.tradingsymbol, s.subscribed_at,
                GREATEST((SELECT max(time) FROM minute_bars b WHERE b.instrument_token = s.instrument_token),
                         (SELECT max(time) FROM futures_bars b WHERE b.instrument_token = s.instrument_token),
                         (SELECT max(time) FROM option_bars b WHERE b.instrument_token = s.instrument_token))
                    AS newest_bar,
                r.outcome AS last_outcome, r.finished_at AS last_run_at
         FROM subscriptions s
         LEFT JOIN LATERAL (SELECT outcome, finished_at FROM backfill_runs r
                            WHERE r.instrument_token = s.instrument_token
                            ORDER BY finished_at DESC NULLS LAST LIMIT 1) r ON true
         WHERE s.status = 'active' ORDER BY s.instrument_token",
    )
    .fetch_all(pool)
    .await
}

/// How fresh the active subscriptions are, by the end of their newest coverage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Freshness {
    pub active: i64,
    /// The oldest subscription's age in seconds (0 with none).
    pub oldest_age_s: f64,
    /// Subscriptions older than the threshold asked for.
    pub stale: i64,
}

/// The freshness of every active subscription; `stale_after_s` decides which count as stale.
pub async fn freshness(pool: &PgPool, stale_after_s: f64) -> sqlx::Result<Freshness> {
    let (active, oldest_age_s, stale): (i64, f64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(max(age), 0)::float8, count(*) FILTER (WHERE age > $1)
         FROM (SELECT extract(epoch FROM now() - coalesce(
                   (SELECT max(c.window_to) FROM coverage c WHERE c.instrument_token = s.instrument_token),
                   s.subscribed_at))::float8 AS age
               FROM subscriptions s WHERE s.status = 'active') a",
    )
    .bind(stale_after_s)
    .fetch_one(pool)
    .await?;
    Ok(Freshness { active, oldest_age_s, stale })
}
