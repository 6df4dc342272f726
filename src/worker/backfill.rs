//! Backfills: fetch what coverage lacks of a window, through the rate budget and any halt, and
//! write it with its run and coverage rows into the caller's transaction.
//!
//! A backfill is three steps, so that the job that runs it owns its transaction: [`fetch_missing`]
//! (no writes), [`write`] (into the job's transaction) and, once the job has committed,
//! [`announce`]. A `Backfill` job ([`requested_backfill`]) runs them alone; a subscription job
//! (`subscribe`) records the subscription in the same transaction.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use tickfill_jobs::{InstrumentToken, Reason};

use super::{
    chain::push_chain_rebuild,
    fetch::fetch_with_throttle,
    job::{JobError, JobMeta},
    older_checks, Committed, WorkerState,
};
use crate::{
    config::Settings,
    domain::{
        days as day_rules,
        market::{classify, BarTarget, Candle},
        proof::{self, Verdict},
        symbol,
        window::{self, Window},
    },
    metrics,
    store::{
        bars, coverage, days, instruments,
        rollups::{self, Upkeep},
        runs::{self, Outcome, Run},
        subscriptions, suspects,
    },
};

/// What a backfill is for.
pub struct BackfillCtx {
    pub(crate) token: InstrumentToken,
    pub(crate) target: BarTarget,
    pub(crate) reason: Reason,
    /// When the bridge received the event that asked for it, if an event did.
    pub(crate) requested_at: Option<DateTime<Utc>>,
    /// Fetch the whole window even where coverage says it is stored.
    pub(crate) force: bool,
    /// The instrument's segment: its trading calendar.
    pub(crate) segment: Option<String>,
    /// Whether the job keeps the plain rollup tables of what it writes.
    pub(crate) rollups: Upkeep,
    /// The account its requests go to first, when it can serve (its index in the budget):
    /// the subscription's; `None`: any.
    pub(crate) prefer: Option<usize>,
    /// A remark for its run row.
    pub(crate) note: Option<String>,
}

/// Judges an answer in hand for `window` and writes it in one transaction, as a backfill job
/// does once its request is answered: the very functions the worker runs, so that the benches'
/// floors do the same work as the worker and their ratios measure the queue, not the write.
/// Returns the bars written.
pub async fn store_answer(
    pool: &sqlx::PgPool,
    settings: &Settings,
    ctx: &BackfillCtx,
    window: Window,
    candles: Vec<Candle>,
    job_id: &str,
) -> anyhow::Result<u64> {
    let verdict = judge_answer(pool, settings, ctx, window, &candles, &[]).await?;
    let fetched = Fetched::Candles { window, candles, verdict, covered: vec![], accounts: String::new() };
    let meta = JobMeta { id: job_id.to_string(), attempt: 1, last_attempt: false, started_at: Utc::now() };
    let mut tx = pool.begin().await?;
    let written = write(&mut tx, settings, ctx, window, &fetched, &meta).await?;
    tx.commit().await?;
    Ok(written.rows)
}

/// What a backfill fetched.
pub(super) enum Fetched {
    /// Coverage already holds the whole window: nothing was asked.
    Covered,
    /// The candles of `window` (the span of the window's holes, in whole minutes, or all of it
    /// for a check), what they prove of it, and what coverage held of it before.
    Candles { window: Window, candles: Vec<Candle>, verdict: Verdict, covered: Vec<Window>, accounts: String },
}

/// A `Backfill` job (sweep, reconcile or by hand). One for a token no longer subscribed is
/// recorded as skipped, unless a person asked for it.
pub(super) async fn requested_backfill(
    state: &WorkerState,
    token: InstrumentToken,
    window: Window,
    reason: Reason,
    force: bool,
    meta: &JobMeta,
) -> Result<(), JobError> {
    let s = &state.settings;
    if reason != Reason::Manual && s.backfill.subscription_aware {
        let subscribed = subscriptions::is_subscribed(&state.pool, token).await?;
        if subscribed != Some(true) {
            let run = run_row(meta, token, reason, window, None, 0, Outcome::Skipped, Some("not subscribed"));
            runs::upsert_run(&state.pool, &run).await?;
            tracing::info!(token = token.get(), "backfill skipped: the instrument is no longer subscribed");
            return Ok(());
        }
    }
    let stored = instruments::find_instrument(&state.pool, token).await?;
    let (target, segment) = match symbol::resolve_instrument(stored, token, None)
        .and_then(|(i, _)| Ok((classify(&i)?, i.segment)))
    {
        Ok(t) => t,
        Err(why) => return Err(record_failure(state, meta, token, reason, window, None, JobError::GiveUp(why)).await),
    };
    let rollups = state.rollups.get(&state.pool).await?;
    let ctx =
        BackfillCtx { token, target, reason, requested_at: None, force, segment, rollups, prefer: None, note: None };
    let fetched = match fetch_missing(state, &ctx, window, None).await {
        Ok(f) => f,
        Err(e) => return Err(record_failure(state, meta, token, reason, window, None, e).await),
    };
    let mut tx = state.pool.begin().await?;
    let written = write(&mut tx, &state.settings, &ctx, window, &fetched, meta).await?;
    tx.commit().await?;
    announce(state, &ctx, &fetched, written).await;
    Ok(())
}

/// Asks the ticker for what coverage lacks of `window` (`covered`, when the caller has read it
/// already), or for all of it when the backfill is a check (`Verify`). Writes nothing.
#[tracing::instrument(level = "debug", skip_all, fields(token = ctx.token.get(), from = %window.from, to = %window.to))]
pub(super) async fn fetch_missing(
    state: &WorkerState,
    ctx: &BackfillCtx,
    window: Window,
    covered: Option<Vec<Window>>,
) -> Result<Fetched, JobError> {
    let covered = match (covered, ctx.force) {
        (_, true) => vec![],
        (Some(c), false) => c,
        (None, false) => {
            coverage::find_coverage(&state.pool, ctx.token, window, state.settings.backfill.settle).await?
        }
    };
    let holes = window.holes(&covered);
    // Whole minutes only: the ticker answers in minutes and refuses a candle outside the window.
    let fetch = match (holes.first(), holes.last()) {
        // A check asks for the whole window: the stored minutes are what it compares.
        _ if ctx.reason == Reason::Verify => window.floor_minutes(),
        // A sweep planned its window: around suspects it reaches into stored minutes, which an
        // answer must hold to prove anything.
        (Some(_), Some(_)) if ctx.reason == Reason::Sweep => window.floor_minutes(),
        // One request for the span of the holes: fewer requests beat skipping a covered middle.
        (Some(first), Some(last)) => Window::new(window::floor_minute(first.from), last.to),
        _ => return Ok(Fetched::Covered),
    };
    if fetch.is_empty() {
        return Ok(Fetched::Covered);
    }
    // However long the window grew (a job that waited, a wide sweep), no request is longer than
    // the source allows: the fewest requests of at most 60 days each.
    let mut candles = Vec::new();
    let mut served: Vec<usize> = Vec::new();
    for part in fetch.split(window::MAX_CHUNK) {
        let (part, account) = fetch_with_throttle(state, ctx.token, part, ctx.reason.lane(), ctx.prefer).await?;
        candles.extend(part);
        if !served.contains(&account) {
            served.push(account);
        }
    }
    let accounts = served.iter().map(|i| state.budget.account(*i).name.as_str()).collect::<Vec<_>>().join(",");
    let verdict = judge_answer(&state.pool, &state.settings, ctx, fetch, &candles, &covered).await?;
    Ok(Fetched::Candles { window: fetch, candles, verdict, covered, accounts })
}

/// What an answer proves of `fetch`: its trading minutes without a candle are suspect, or
/// confirmed empty once enough answers lacked them. Minutes `covered` already (a request spans
/// the covered stretches between holes) stay covered: only the holes are judged.
async fn judge_answer(
    pool: &sqlx::PgPool,
    s: &Settings,
    ctx: &BackfillCtx,
    fetch: Window,
    candles: &[Candle],
    covered: &[Window],
) -> Result<Verdict, JobError> {
    // The last BACKFILL_SETTLE before now is not judged: a source publishes its newest minutes
    // late (a minute lacking there is neither suspect nor covered).
    let now = Utc::now();
    let settled = s.live_edge(now);
    let trading = s.backfill.calendar.trading_holes(ctx.segment.as_deref(), fetch, covered);
    let minutes: Vec<DateTime<Utc>> = candles.iter().map(|c| c.time).collect();
    let lacking = proof::lacking(&trading, &minutes);
    // An answer that holds every trading minute needs no history of earlier answers, nor a look
    // at what is stored.
    let (prior, consistent, lag) = if lacking.is_empty() {
        (Default::default(), true, chrono::Duration::zero())
    } else {
        let held: std::collections::HashSet<DateTime<Utc>> = minutes.iter().copied().collect();
        let stored = bars::stored_minutes(pool, ctx.token, &ctx.target, fetch).await?;
        let prior = suspects::prior_asks(pool, ctx.token, fetch).await?;
        (prior, stored.iter().all(|m| held.contains(m)), suspects::observed_lag(pool).await?)
    };
    tracing::debug!(lacking = lacking.len(), consistent, candles = candles.len(), "answer judged");
    Ok(proof::judge(&proof::Answer {
        window: fetch,
        lacking: &lacking,
        last_candle: minutes.iter().max().copied(),
        prior: &prior,
        may_not_trade: matches!(ctx.target, BarTarget::Option { .. }),
        consistent,
        now,
        settled,
        backoff: chrono::Duration::from_std(s.backfill.sweep_interval.nominal())
            .unwrap_or(chrono::Duration::minutes(5)),
        lag,
    }))
}

/// What [`write`] wrote.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Written {
    /// Bars inserted or changed.
    pub(super) rows: u64,
    /// A day of an equity changed whole by one ratio: its older history wants checking.
    pub(super) adjusted: bool,
}

/// Writes what was fetched into `tx`: bars, coverage, suspects, the days' checks and revisions,
/// and the run row (`window` is the job's).
#[tracing::instrument(name = "store.write", skip_all, fields(token = ctx.token.get()))]
pub(super) async fn write(
    tx: &mut Transaction<'_, Postgres>,
    settings: &Settings,
    ctx: &BackfillCtx,
    window: Window,
    fetched: &Fetched,
    meta: &JobMeta,
) -> sqlx::Result<Written> {
    let (written, outcome) = match fetched {
        Fetched::Covered => (Written::default(), Outcome::Covered),
        Fetched::Candles { window: fetch, candles, verdict, covered, .. } => {
            // One instrument's writes take turns: its coverage merges see each other.
            coverage::lock_token(tx, ctx.token).await?;
            let check = ctx.reason == Reason::Verify;
            // A check compares with what is stored; so does any fetch of an equity (an adjustment).
            let equity = day_rules::is_equity(&ctx.target, ctx.segment.as_deref());
            let before =
                if check || equity { bars::stored_prices(tx, ctx.token, &ctx.target, *fetch).await? } else { vec![] };
            let up = bars::upsert_bars(tx, ctx.token, &ctx.target, candles).await?;
            if let (Some(touched), Upkeep::Tables) = (up.touched, ctx.rollups) {
                if let Some(family) = rollups::bar_family(ctx.target.table()) {
                    rollups::refresh_bars(tx, family, ctx.token, candles, touched).await?;
                }
            }
            // Coverage is what the answer proved, not what was asked.
            for w in &verdict.covered {
                let held: Vec<DateTime<Utc>> =
                    candles.iter().map(|c| c.time).filter(|t| w.from <= *t && *t < w.to).collect();
                coverage::insert_coverage(tx, ctx.token, *w, &held).await?;
            }
            // An answer asked up to the present shows how late the source publishes, when it is
            // of an instrument that trades every minute (an option's newest minute may simply
            // have had no trade).
            let now = Utc::now();
            let liquid = !matches!(ctx.target, BarTarget::Option { .. });
            let gap = (liquid && fetch.to >= settings.live_edge(now))
                .then(|| candles.iter().map(|c| c.time).max())
                .flatten()
                .map(|last| now - (last + chrono::Duration::minutes(1)));
            suspects::apply_verdict(tx, ctx.token, *fetch, verdict, candles, gap).await?;
            let facts = day_rules::FetchFacts {
                fetch: *fetch,
                candles,
                verdict,
                covered,
                before: &before,
                revised: &up.revised,
            };
            let judge = day_rules::Judge {
                calendar: &settings.backfill.calendar,
                segment: ctx.segment.as_deref(),
                settle: chrono::Duration::from_std(settings.backfill.settle).unwrap_or_default(),
                equity,
            };
            let found = day_rules::judge_days(&judge, &facts, check, Utc::now());
            // A new adjustment (not one found by the checks an earlier one asked for) makes every
            // older stored day suspect until its own check is accepted: none is left silently
            // unadjusted, whether or not its check can reach it.
            let adjusted_days: Vec<chrono::NaiveDate> =
                found.iter().filter(|d| d.adjustment.is_some()).map(|d| d.day).collect();
            let adjusted = !adjusted_days.is_empty() && !days::any_stale(tx, ctx.token, &adjusted_days).await?;
            if adjusted {
                let marked = days::mark_stale(tx, ctx.token, ctx.target.table(), fetch.from).await?;
                tracing::info!(token = ctx.token.get(), days = marked, "adjusted history: older days marked suspect");
            }
            days::add_checks(tx, ctx.token, &found).await?;
            (Written { rows: up.written, adjusted }, Outcome::Stored)
        }
    };
    let mut run = run_row(meta, ctx.token, ctx.reason, window, ctx.requested_at, written.rows, outcome, None);
    if let Fetched::Candles { accounts, .. } = fetched {
        run.accounts = Some(accounts.as_str()).filter(|a| !a.is_empty());
    }
    run.note = ctx.note.as_deref();
    runs::upsert_run(&mut **tx, &run).await?;
    Ok(written)
}

/// After the commit: metrics, the log line, the chain rebuild of an option, and the commit feed
/// of `tickfill dev`.
pub(super) async fn announce(state: &WorkerState, ctx: &BackfillCtx, fetched: &Fetched, written: Written) {
    let token = ctx.token;
    let rows = written.rows;
    let Fetched::Candles { window: fetch, .. } = fetched else {
        tracing::info!(token = token.get(), "window already covered; nothing fetched");
        return;
    };
    let latency = ctx.requested_at.and_then(|r| (Utc::now() - r).to_std().ok());
    metrics::get().rows_upserted.get_or_create(&metrics::l1("table", ctx.target.table())).inc_by(rows);
    state.history.add("rows_stored", rows);
    super::trail::note("committed", serde_json::json!({"rows": rows, "table": ctx.target.table()}));
    if let (Some(l), Reason::Subscribe) = (latency, ctx.reason) {
        metrics::get().event_to_commit.observe(l.as_secs_f64());
    }
    tracing::info!(
        token = token.get(),
        table = ctx.target.table(),
        symbol = ctx.target.label(),
        rows,
        latency_ms = latency.map(|l| l.as_millis() as u64),
        "backfill committed"
    );
    if written.adjusted {
        if let Err(e) = older_checks::push_older_checks(state, token, &ctx.target, *fetch).await {
            tracing::warn!(error = format!("{e:#}"), "failed to push the checks of an adjusted history");
        }
    }
    if let (BarTarget::Option { symbol, expiry, .. }, true) = (&ctx.target, rows > 0) {
        if let Err(e) = push_chain_rebuild(state, symbol, *expiry, *fetch).await {
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
}

/// The `backfill_runs` row of a backfill attempt.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_row<'a>(
    meta: &'a JobMeta,
    token: InstrumentToken,
    reason: Reason,
    window: Window,
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
        accounts: None,
        note: None,
    }
}

/// Writes the failed run row (no bars: nothing partial lands) and passes the error on.
pub(super) async fn record_failure(
    state: &WorkerState,
    meta: &JobMeta,
    token: InstrumentToken,
    reason: Reason,
    window: Window,
    requested_at: Option<DateTime<Utc>>,
    err: JobError,
) -> JobError {
    let (outcome, text) = match &err {
        JobError::Retry(e) if meta.last_attempt => (Outcome::Dead, format!("{e:#}")),
        JobError::PutOff(e) => (Outcome::Failed, format!("{e:#}")),
        JobError::Retry(e) => (Outcome::Failed, format!("{e:#}")),
        JobError::GiveUp(r) => (Outcome::Dead, r.clone()),
    };
    let run = run_row(meta, token, reason, window, requested_at, 0, outcome, Some(&text));
    if let Err(e) = runs::upsert_run(&state.pool, &run).await {
        tracing::warn!(error = %e, "failed to record the failed run");
    }
    err
}
