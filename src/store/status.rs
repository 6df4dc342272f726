//! What operators read about the store: per active subscription its newest bar and last run, and
//! the freshness figures the metrics export.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tickfill_jobs::InstrumentToken;

/// One active subscription with its newest stored bar (any bar table) and its newest run.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SubscriptionRow {
    #[sqlx(try_from = "i64")]
    pub instrument_token: InstrumentToken,
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

/// Per active subscription: its instrument's segment and the end of its newest stored bar (when
/// it was subscribed, with none), for [`crate::status::freshness`].
pub async fn freshness_rows(pool: &PgPool) -> sqlx::Result<Vec<(Option<String>, DateTime<Utc>)>> {
    sqlx::query_as(
        "SELECT coalesce(i.segment, s.segment),
                coalesce(GREATEST(
                    (SELECT max(time) FROM minute_bars b WHERE b.instrument_token = s.instrument_token),
                    (SELECT max(time) FROM futures_bars b WHERE b.instrument_token = s.instrument_token),
                    (SELECT max(time) FROM option_bars b WHERE b.instrument_token = s.instrument_token))
                    + interval '1 minute',
                 s.subscribed_at)
         FROM subscriptions s LEFT JOIN instruments i ON i.instrument_token = s.instrument_token
         WHERE s.status = 'active'",
    )
    .fetch_all(pool)
    .await
}

/// Bars stored per IST day of `token` in `[from, to)`, over the three bar tables.
pub async fn bars_per_day(
    pool: &PgPool,
    token: InstrumentToken,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<(chrono::NaiveDate, i64)>> {
    sqlx::query_as(
        "SELECT ((time AT TIME ZONE 'UTC') + interval '5 hours 30 minutes')::date AS day, count(*)
         FROM (SELECT time FROM minute_bars WHERE instrument_token = $1 AND time >= $2 AND time < $3
               UNION ALL SELECT time FROM futures_bars WHERE instrument_token = $1 AND time >= $2 AND time < $3
               UNION ALL SELECT time FROM option_bars WHERE instrument_token = $1 AND time >= $2 AND time < $3) b
         GROUP BY 1 ORDER BY 1",
    )
    .bind(super::bind_token(token))
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
}
