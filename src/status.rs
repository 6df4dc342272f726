//! `tickfill status`: per active subscription, its newest bar and that bar's age, the coverage
//! holes in the lookback, and the last run's outcome.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::{config::Settings, store, sweep};

/// One line of `tickfill status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubscriptionStatus {
    pub instrument_token: u32,
    pub tradingsymbol: Option<String>,
    pub subscribed_at: DateTime<Utc>,
    pub newest_bar: Option<DateTime<Utc>>,
    pub newest_bar_age_s: Option<i64>,
    pub holes: usize,
    pub missing_minutes: i64,
    pub last_outcome: Option<String>,
    pub last_run_at: Option<DateTime<Utc>>,
}

/// Per active subscription: newest stored bar and its age, coverage holes in the lookback, and
/// the last run's outcome.
pub async fn status(pool: &PgPool, settings: &Settings, now: DateTime<Utc>) -> anyhow::Result<Vec<SubscriptionStatus>> {
    let rows = store::status::active_subscription_rows(pool).await?;
    // Every hole counts here, however short.
    let mut strict = settings.clone();
    strict.gap_threshold = Duration::ZERO;
    strict.backfill_subscription_aware = true;
    let mut holes: HashMap<u32, (usize, i64)> = HashMap::new();
    for gap in sweep::find_gaps(pool, &strict, now).await? {
        let e = holes.entry(gap.token).or_default();
        e.0 += 1;
        e.1 += (gap.window.to - gap.window.from).num_minutes();
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let token = r.instrument_token as u32;
            let (n, minutes) = holes.get(&token).copied().unwrap_or_default();
            SubscriptionStatus {
                instrument_token: token,
                tradingsymbol: r.tradingsymbol,
                subscribed_at: r.subscribed_at,
                newest_bar: r.newest_bar,
                newest_bar_age_s: r.newest_bar.map(|b| (now - b).num_seconds()),
                holes: n,
                missing_minutes: minutes,
                last_outcome: r.last_outcome,
                last_run_at: r.last_run_at,
            }
        })
        .collect())
}
