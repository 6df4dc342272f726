//! Backfills: fetch what coverage lacks, through the rate budget and any pause, and store it
//! with its run and coverage rows in one transaction.

use super::*;

/// A `Backfill` job (sweep, reconcile or by hand). One for a token no longer subscribed is
/// recorded as skipped, unless a person asked for it.
pub(super) async fn requested_backfill(
    state: &WorkerState,
    token: u32,
    window: (DateTime<Utc>, DateTime<Utc>),
    reason: Reason,
    force: bool,
    meta: &JobMeta,
) -> Result<(), JobError> {
    let s = &state.settings;
    if reason != Reason::Manual && s.backfill_subscription_aware {
        let subscribed = subscriptions::is_subscribed(&state.pool, token).await?;
        if subscribed != Some(true) {
            let run = run_row(meta, token, reason, window, None, 0, Outcome::Skipped, Some("not subscribed"));
            runs::upsert_run(&state.pool, &run).await?;
            tracing::info!(token, "backfill skipped: the instrument is no longer subscribed");
            return Ok(());
        }
    }
    let target =
        match find_instrument(state, token, None).await.and_then(|(i, _)| classify(&i).map_err(JobError::GiveUp)) {
            Ok(t) => t,
            Err(e) => return Err(record_failure(state, meta, token, reason, window, None, e).await),
        };
    let ctx = BackfillCtx { token, target: &target, reason, requested_at: None, force, record: None, covered: None };
    backfill(state, &ctx, window, meta).await
}

pub(super) struct BackfillCtx<'a> {
    pub(super) token: u32,
    pub(super) target: &'a BarTarget,
    pub(super) reason: Reason,
    pub(super) requested_at: Option<DateTime<Utc>>,
    pub(super) force: bool,
    /// A new subscription, recorded with whatever this backfill commits.
    pub(super) record: Option<Recording<'a>>,
    /// The window's coverage, when the caller has read it already.
    pub(super) covered: Option<Vec<(DateTime<Utc>, DateTime<Utc>)>>,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn run_row<'a>(
    meta: &'a JobMeta,
    token: u32,
    reason: Reason,
    window: (DateTime<Utc>, DateTime<Utc>),
    requested_at: Option<DateTime<Utc>>,
    rows: u64,
    outcome: Outcome,
    error: Option<&'a str>,
) -> Run<'a> {
    Run {
        job_id: &meta.id,
        kind: "backfill",
        instrument_token: Some(token),
        reason: Some(reason.as_str()),
        window: Some(window),
        requested_at,
        started_at: meta.started_at,
        attempts: meta.attempt.max(1) as i32,
        rows: rows.min(i32::MAX as u64) as i32,
        outcome,
        error,
    }
}

/// Writes the failed run row (no bars: nothing partial lands) and passes the error on.
pub(super) async fn record_failure(
    state: &WorkerState,
    meta: &JobMeta,
    token: u32,
    reason: Reason,
    window: (DateTime<Utc>, DateTime<Utc>),
    requested_at: Option<DateTime<Utc>>,
    err: JobError,
) -> JobError {
    let (outcome, text) = match &err {
        JobError::Retry(e) if meta.last_attempt => (Outcome::Dead, format!("{e:#}")),
        JobError::Pause(e) => (Outcome::Failed, format!("{e:#}")),
        JobError::Retry(e) => (Outcome::Failed, format!("{e:#}")),
        JobError::GiveUp(r) => (Outcome::Dead, r.clone()),
    };
    let run = run_row(meta, token, reason, window, requested_at, 0, outcome, Some(&text));
    if let Err(e) = runs::upsert_run(&state.pool, &run).await {
        tracing::warn!(error = %e, "failed to record the failed run");
    }
    err
}

/// Fetches what coverage lacks of `window` and stores it: bars, run row and coverage in one
/// transaction.
pub(super) async fn backfill(
    state: &WorkerState,
    ctx: &BackfillCtx<'_>,
    window: (DateTime<Utc>, DateTime<Utc>),
    meta: &JobMeta,
) -> Result<(), JobError> {
    let token = ctx.token;
    let covered = match (&ctx.covered, ctx.force) {
        (_, true) => vec![],
        (Some(c), false) => c.clone(),
        (None, false) => runs::find_coverage(&state.pool, token, window.0, window.1, state.settings.settle).await?,
    };
    let holes = window::holes(window.0, window.1, &covered);
    let (Some(first), Some(last)) = (holes.first(), holes.last()) else {
        let mut tx = state.pool.begin().await?;
        if let Some(r) = &ctx.record {
            record_subscription(&mut tx, r).await?;
        }
        let run = run_row(meta, token, ctx.reason, window, ctx.requested_at, 0, Outcome::Covered, None);
        runs::upsert_run(&mut *tx, &run).await?;
        tx.commit().await?;
        tracing::info!(token, "window already covered; nothing fetched");
        return Ok(());
    };
    // One request for the span of the holes: fewer requests beat skipping a covered middle.
    // Whole minutes only: the ticker answers in minutes and refuses a candle outside the window.
    let fetch = (window::floor_minute(first.0), last.1);
    let candles = match fetch_with_throttle(state, token, fetch, ctx.reason.lane()).await {
        Ok(c) => c,
        Err(e) => {
            if let Some(r) = &ctx.record {
                record_alone(state, r).await?;
            }
            return Err(record_failure(state, meta, token, ctx.reason, window, ctx.requested_at, e).await);
        }
    };
    let mut tx = state.pool.begin().await?;
    if let Some(r) = &ctx.record {
        record_subscription(&mut tx, r).await?;
    }
    let rows = bars::upsert_bars(&mut tx, token, ctx.target, &candles).await?;
    runs::insert_coverage(&mut tx, token, fetch.0, fetch.1, candles.len() as i32).await?;
    let run = run_row(meta, token, ctx.reason, window, ctx.requested_at, rows, Outcome::Stored, None);
    runs::upsert_run(&mut *tx, &run).await?;
    tx.commit().await?;
    let latency = ctx.requested_at.and_then(|r| (Utc::now() - r).to_std().ok());
    metrics::get().rows_upserted.get_or_create(&metrics::l1("table", ctx.target.table())).inc_by(rows);
    if let (Some(l), Reason::Subscribe) = (latency, ctx.reason) {
        metrics::get().event_to_commit.observe(l.as_secs_f64());
    }
    tracing::info!(
        token,
        table = ctx.target.table(),
        symbol = ctx.target.label(),
        rows,
        latency_ms = latency.map(|l| l.as_millis() as u64),
        "backfill committed"
    );
    if let (BarTarget::Option { symbol, expiry, .. }, true) = (ctx.target, rows > 0) {
        if let Err(e) = push_chain_rebuild(state, symbol, *expiry, fetch).await {
            tracing::warn!(error = format!("{e:#}"), "failed to push a chain rebuild; the next option backfill will");
        }
    }
    if let Some(tx) = &state.commits {
        let _ = tx.send(Committed {
            token,
            label: ctx.target.label().to_string(),
            table: ctx.target.table(),
            rows,
            latency,
        });
    }
    Ok(())
}

/// How often a job waiting out a pause looks whether it was lifted.
pub(super) const PAUSE_POLL: Duration = Duration::from_secs(2);

/// How long a look that found no pause holds for every job of the process.
pub(super) const PAUSE_FRESH: Duration = Duration::from_secs(1);

/// When this process last found history requests not paused.
pub(super) static NOT_PAUSED_AT: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);

/// Waits while history requests are paused (Kite session expired), holding the job's slot: the
/// worker takes no more work meanwhile, and nothing spends an attempt.
pub(super) async fn wait_while_paused(state: &WorkerState) {
    // One look per PAUSE_FRESH for the whole process, not one per request: a pause is noticed
    // that much later, and a busy worker spends no round trip on it.
    if NOT_PAUSED_AT.lock().expect("pause clock").is_some_and(|t| t.elapsed() < PAUSE_FRESH) {
        return;
    }
    let mut redis = state.redis.clone();
    let mut waited = Duration::ZERO;
    while let Ok(Some(why)) = queue::paused(&mut redis, &state.settings.queue).await {
        if waited.as_secs().is_multiple_of(60) {
            tracing::warn!(paused = %why, "history requests are paused; renew the session, then run `tickfill jobs resume`");
        }
        tokio::time::sleep(PAUSE_POLL).await;
        waited += PAUSE_POLL;
    }
    *NOT_PAUSED_AT.lock().expect("pause clock") = Some(std::time::Instant::now());
}

/// Asks the ticker, sitting out 429s (which are not the job's fault and cost no attempt) and
/// pauses (an expired Kite session).
pub(super) async fn fetch_with_throttle(
    state: &WorkerState,
    token: u32,
    window: (DateTime<Utc>, DateTime<Utc>),
    lane: Lane,
) -> Result<Vec<crate::domain::market::Candle>, JobError> {
    let mut redis = state.redis.clone();
    let mut throttled = 0;
    while throttled < MAX_THROTTLE_WAITS {
        wait_while_paused(state).await;
        if let Some(budget) = &state.budget {
            let waited = budget.take(lane).await;
            metrics::get().rate_limit_wait.observe(waited.as_secs_f64());
            if waited > Duration::from_secs(1) {
                tracing::debug!(token, waited_ms = waited.as_millis() as u64, "waited for rate budget");
            }
        }
        let answer = state.ticker.history(token, window.0, window.1).await;
        if let Err(e) = &answer {
            queue::count(&mut redis, &state.settings.queue, &format!("ticker_errors:{}", e.label())).await;
        }
        match answer {
            Ok(c) => return Ok(c),
            Err(TickerError::Throttled { retry_after }) => {
                throttled += 1;
                let pause = retry_after.unwrap_or(state.settings.throttle_pause);
                tracing::info!(token, pause_ms = pause.as_millis() as u64, "ticker throttled; waiting");
                tokio::time::sleep(pause).await;
            }
            Err(TickerError::SessionExpired(msg)) => {
                // The next look goes to Redis, and finds the pause.
                *NOT_PAUSED_AT.lock().expect("pause clock") = None;
                match queue::pause(&mut redis, &state.settings.queue, &msg).await {
                    Ok(true) => tracing::error!(reason = %msg, "history requests paused until `tickfill jobs resume`"),
                    Ok(false) => {}
                    Err(e) => return Err(JobError::Pause(anyhow::anyhow!("{msg} (and the pause failed: {e})"))),
                }
            }
            Err(e @ TickerError::Unreachable(_)) => return Err(JobError::Pause(e.into())),
            Err(e @ TickerError::Transient(_)) => return Err(JobError::Retry(e.into())),
            Err(TickerError::Permanent(msg)) => return Err(JobError::GiveUp(msg)),
        }
    }
    Err(JobError::Retry(anyhow::anyhow!("ticker kept throttling token {token}")))
}
