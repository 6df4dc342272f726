//! Subscription events: record the subscription and backfill its window in one transaction, or
//! mark it inactive.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use tickfill_jobs::{Reason, SubscriptionEvent};

use super::{
    backfill::{self, record_failure, run_row, BackfillCtx},
    job::{JobError, JobMeta},
    WorkerState,
};
use crate::{
    domain::{
        instrument::{Instrument, Source},
        market::classify,
        symbol,
        text::inert,
        window::subscription_window,
    },
    store::{
        instruments,
        runs::{self, Outcome},
        subscriptions::{self, EventOrder, Subscription},
    },
};

/// The `subscriptions` row an event asks for.
fn subscription(event: &SubscriptionEvent) -> Subscription<'_> {
    Subscription {
        instrument_token: event.instrument_token,
        tradingsymbol: event.tradingsymbol.as_deref(),
        segment: event.segment.as_deref(),
        requested_mode: event.requested_mode.as_deref(),
        account_id: event.account_id.as_deref(),
        at: DateTime::from_timestamp_millis(event.received_ms).unwrap_or_else(Utc::now),
        source: "event",
        order: order(event),
    }
}

/// Where an event stands among the token's events: its timestamp (its receipt when it has
/// none), then its receipt.
fn order(event: &SubscriptionEvent) -> EventOrder {
    let received = DateTime::from_timestamp_millis(event.received_ms).unwrap_or_else(Utc::now);
    let at = event.published_at.and_then(|s| DateTime::from_timestamp(s, 0)).unwrap_or(received);
    EventOrder { at, received }
}

/// A `Subscribed` job: the subscription, and the backfill of its window, in one commit.
pub(super) async fn subscribed(state: &WorkerState, event: &SubscriptionEvent, meta: &JobMeta) -> Result<(), JobError> {
    let token = event.instrument_token;
    let s = &state.settings;
    let requested_at = DateTime::from_timestamp_millis(event.received_ms);
    let window = subscription_window(requested_at.unwrap_or_else(Utc::now), Utc::now(), s.backfill.window_minutes);
    // A removal newer than this event has run already: the desk is gone, nothing to fetch.
    if subscriptions::superseded(&state.pool, token, order(event)).await? {
        let run = run_row(meta, token, Reason::Subscribe, window, requested_at, 0, Outcome::Skipped, None);
        runs::upsert_run(&state.pool, &run).await?;
        tracing::info!(token = token.get(), "subscription event superseded by a newer one; nothing fetched");
        return Ok(());
    }
    // The instrument and what is already stored of the window, in one round trip.
    let (stored, covered) = instruments::find_with_coverage(&state.pool, token, window, s.backfill.settle).await?;
    let found = symbol::resolve_instrument(stored, token, Some(event));
    let instrument = found.as_ref().ok().map(|(i, s)| (i, *s));
    if !(s.events.enabled && s.backfill.enabled && s.backfill.on_subscribe) {
        let mut tx = state.pool.begin().await?;
        activate(&mut tx, event, instrument).await?;
        let run = run_row(meta, token, Reason::Subscribe, window, requested_at, 0, Outcome::Disabled, None);
        runs::upsert_run(&mut *tx, &run).await?;
        tx.commit().await?;
        tracing::info!(token = token.get(), "subscription recorded; immediate backfill switched off");
        return Ok(());
    }
    let prepared = match &found {
        Ok((inst, _)) => classify(inst).map_err(JobError::GiveUp),
        Err(why) => Err(JobError::GiveUp(why.clone())),
    };
    let fetched = match prepared {
        Ok(target) => {
            let segment = found.as_ref().ok().and_then(|(i, _)| i.segment.clone());
            let rollups = state.rollups.get(&state.pool).await?;
            let (prefer, note) = account_of(state, event);
            let ctx = BackfillCtx {
                token,
                target,
                reason: Reason::Subscribe,
                requested_at,
                force: false,
                segment,
                rollups,
                prefer,
                note,
            };
            backfill::fetch_missing(state, &ctx, window, Some(covered)).await.map(|f| (ctx, f))
        }
        Err(e) => Err(e),
    };
    let (ctx, fetched) = match fetched {
        Ok(t) => t,
        Err(e) => {
            // Nothing to store, but the desk did subscribe: that is recorded on its own.
            let mut tx = state.pool.begin().await?;
            activate(&mut tx, event, instrument).await?;
            tx.commit().await?;
            return Err(record_failure(state, meta, token, Reason::Subscribe, window, requested_at, e).await);
        }
    };
    let mut tx = state.pool.begin().await?;
    activate(&mut tx, event, instrument).await?;
    let written = backfill::write(&mut tx, &state.settings, &ctx, window, &fetched, meta).await?;
    tx.commit().await?;
    backfill::announce(state, &ctx, &fetched, written).await;
    Ok(())
}

/// The account a subscription's requests go to first: its own (`metadata.account_id`) when
/// configured, else the default account, saying so for the run. Without `TICKFILL_ACCOUNTS`
/// requests name no account, as before.
fn account_of(state: &WorkerState, event: &SubscriptionEvent) -> (Option<usize>, Option<String>) {
    if state.settings.accounts.named.is_empty() {
        return (None, None);
    }
    let default = state.budget.account(0).name.as_str();
    match event.account_id.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        None => (Some(0), None),
        Some(name) => match state.budget.find(name) {
            Some(i) => (Some(i), None),
            None => (
                Some(0),
                Some(format!(
                    "account_id {:?} names no configured account (TICKFILL_ACCOUNTS); served by the default account {default} first",
                    inert(name, 64)
                )),
            ),
        },
    }
}

/// Activates the subscription, and adds an instrument the dump did not know (from the event's
/// metadata or its parsed tradingsymbol).
async fn activate(
    tx: &mut Transaction<'_, Postgres>,
    event: &SubscriptionEvent,
    instrument: Option<(&Instrument, Source)>,
) -> sqlx::Result<()> {
    if !subscriptions::activate_subscription(tx, &subscription(event)).await? {
        tracing::info!(token = event.instrument_token.get(), "a newer event removed this subscription; left inactive");
    }
    if let Some((inst, source)) = instrument {
        if source != Source::Dump {
            instruments::insert_instrument_if_absent(tx, inst, source).await?;
        }
    }
    Ok(())
}

/// An `Unsubscribed` job: the subscription is marked inactive.
pub(super) async fn unsubscribed(state: &WorkerState, event: &SubscriptionEvent) -> Result<(), JobError> {
    let mut tx = state.pool.begin().await?;
    let changed = subscriptions::deactivate_subscription(&mut tx, &subscription(event)).await?;
    tx.commit().await?;
    if changed {
        tracing::info!(token = event.instrument_token.get(), "subscription marked inactive");
    } else {
        tracing::info!(
            token = event.instrument_token.get(),
            "removal older than the subscription's newest event; nothing changed"
        );
    }
    Ok(())
}
