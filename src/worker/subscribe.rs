//! Subscription events: record the subscription and backfill its window, or mark it inactive.

use super::*;

pub(super) fn subscription(event: &SubscriptionEvent) -> Subscription<'_> {
    Subscription {
        instrument_token: event.instrument_token,
        tradingsymbol: event.tradingsymbol.as_deref(),
        segment: event.segment.as_deref(),
        requested_mode: event.requested_mode.as_deref(),
        account_id: event.account_id.as_deref(),
        at: DateTime::from_timestamp_millis(event.received_ms).unwrap_or_else(Utc::now),
        source: "event",
    }
}

/// The instrument of `token`: the store's row, else what the event's metadata tells.
pub(super) async fn find_instrument(
    state: &WorkerState,
    token: u32,
    event: Option<&SubscriptionEvent>,
) -> Result<(Instrument, Source), JobError> {
    let stored = instruments::find_instrument(&state.pool, token).await?;
    instrument_or_event(stored, token, event).map_err(JobError::GiveUp)
}

/// The store's row (completed from its symbol where a dump left fields empty), else the
/// instrument the event's metadata describes.
fn instrument_or_event(
    stored: Option<Instrument>,
    token: u32,
    event: Option<&SubscriptionEvent>,
) -> Result<(Instrument, Source), String> {
    if let Some(mut inst) = stored {
        // Some dumps leave a derivative's name or expiry empty: its symbol tells them.
        crate::domain::symbol::complete_from_symbol(&mut inst);
        return Ok((inst, Source::Dump));
    }
    let from_event = event.and_then(|e| {
        let mut inst = Instrument {
            instrument_token: token,
            tradingsymbol: e.tradingsymbol.clone()?,
            segment: e.segment.clone(),
            ..Default::default()
        };
        let parsed = crate::domain::symbol::complete_from_symbol(&mut inst);
        inst.segment.is_some().then_some((inst, if parsed { Source::Parsed } else { Source::Event }))
    });
    from_event.ok_or_else(|| {
        format!(
            "unknown instrument {token}: not in instruments and the event carries no tradingsymbol and segment \
             (load the instrument dump with `tickfill instruments load`, then retry the job)"
        )
    })
}

pub(super) async fn subscribed(state: &WorkerState, event: &SubscriptionEvent, meta: &JobMeta) -> Result<(), JobError> {
    let token = event.instrument_token;
    let s = &state.settings;
    let requested_at = DateTime::from_timestamp_millis(event.received_ms);
    let window = subscription_window(requested_at.unwrap_or_else(Utc::now), Utc::now(), s.window_minutes);
    // The instrument and what is already stored of the window, in one round trip.
    let (stored, covered) = instruments::find_with_coverage(&state.pool, token, window.0, window.1, s.settle).await?;
    let found = instrument_or_event(stored, token, Some(event));
    let record = Recording { event, instrument: found.as_ref().ok().map(|(i, s)| (i, *s)) };
    if !(s.subscription_events_enabled && s.backfill_enabled && s.backfill_immediate_on_subscribe) {
        let mut tx = state.pool.begin().await?;
        record_subscription(&mut tx, &record).await?;
        let run = run_row(meta, token, Reason::Subscribe, window, requested_at, 0, Outcome::Disabled, None);
        runs::upsert_run(&mut *tx, &run).await?;
        tx.commit().await?;
        tracing::info!(token, "subscription recorded; immediate backfill switched off");
        return Ok(());
    }
    let prepared = match &found {
        Ok((inst, _)) => classify(inst),
        Err(why) => Err(why.clone()),
    };
    let target = match prepared.map_err(JobError::GiveUp) {
        Ok(t) => t,
        Err(e) => {
            record_alone(state, &record).await?;
            return Err(record_failure(state, meta, token, Reason::Subscribe, window, requested_at, e).await);
        }
    };
    let ctx = BackfillCtx {
        token,
        target: &target,
        reason: Reason::Subscribe,
        requested_at,
        force: false,
        record: Some(record),
        covered: Some(covered),
    };
    backfill(state, &ctx, window, meta).await
}

/// A subscription to record in the same transaction as its backfill: one commit per job.
pub(super) struct Recording<'a> {
    pub(super) event: &'a SubscriptionEvent,
    pub(super) instrument: Option<(&'a Instrument, Source)>,
}

pub(super) async fn record_subscription(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    r: &Recording<'_>,
) -> sqlx::Result<()> {
    subscriptions::activate_subscription(tx, &subscription(r.event)).await?;
    if let Some((inst, source)) = r.instrument {
        if source != Source::Dump {
            instruments::insert_instrument_if_absent(tx, inst, source).await?;
        }
    }
    Ok(())
}

/// Records the subscription on its own (the backfill will not commit anything).
pub(super) async fn record_alone(state: &WorkerState, r: &Recording<'_>) -> Result<(), JobError> {
    let mut tx = state.pool.begin().await?;
    record_subscription(&mut tx, r).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn unsubscribed(state: &WorkerState, event: &SubscriptionEvent) -> Result<(), JobError> {
    let mut tx = state.pool.begin().await?;
    subscriptions::deactivate_subscription(&mut tx, &subscription(event)).await?;
    tx.commit().await?;
    tracing::info!(token = event.instrument_token, "subscription marked inactive");
    Ok(())
}
