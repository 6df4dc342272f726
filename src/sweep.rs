//! Sweeps: make the store converge to complete for every subscribed instrument, whatever was
//! missed, without wasting the ticker's budget.
//!
//! A sweep job (pushed by the scheduler, or by a bridge after it reconnects) first reconciles
//! `subscriptions` with the ticker's own list, then plans: for each active subscription the wanted
//! window is `[max(subscribed_at − BACKFILL_WINDOW_MINUTES, now − BACKFILL_LOOKBACK), now −
//! BACKFILL_SETTLE)`, minus coverage. An instrument's holes become the fewest
//! `Backfill{reason: sweep}` jobs of at most 60 days that hold them all (one request each: the
//! covered minutes between holes are asked again, which costs no budget), keyed by token and
//! window so that overlapping sweeps push each once. A hole at the live edge shorter than
//! `BACKFILL_GAP_THRESHOLD` waits for the next sweep.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use tickfill_jobs::{InstrumentToken, Job, Reason};

use crate::{
    config::{Settings, TickerApi},
    domain::{
        instrument::{Instrument, Source},
        window::{self, floor_minute, immediate_window, Window},
    },
    queue::{self, Producer},
    store::{
        coverage,
        days::{self, DaysOf},
        instruments, runs,
        subscriptions::{self, EventOrder, Subscription},
        suspects,
    },
    ticker::TickerClient,
};

/// How long a sweep leaves a new subscription to its own (urgent) backfill before it fills the
/// window itself; long enough for a deep urgent backlog at 3 requests/s.
pub const IMMEDIATE_GRACE: Duration = Duration::minutes(15);

/// One backfill a sweep wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub token: InstrumentToken,
    pub window: Window,
}

/// One instrument a sweep looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub token: InstrumentToken,
    /// The start of its wanted window.
    pub start: DateTime<Utc>,
    /// Its segment, which decides the calendar its holes are cut to.
    pub segment: Option<String>,
}

/// What the store knows that a sweep plans around.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Coverage (settle-clipped), and the suspect minutes not due yet, as if covered.
    pub coverage: Vec<(InstrumentToken, Window)>,
    /// Every suspect minute of each token, with the answers that have lacked it.
    pub suspects: HashMap<InstrumentToken, Vec<(DateTime<Utc>, i32)>>,
    /// The tokens with suspect minutes due to be asked again, short of the live edge.
    pub owed: HashSet<InstrumentToken>,
}

/// The holes of each target in its wanted window, from (settle-clipped, sorted) coverage, cut to
/// the instrument's trading sessions (`TICKFILL_CALENDAR`): a closed day is never asked for and
/// never counts as missing. A hole at the live edge shorter than `BACKFILL_GAP_THRESHOLD` is left
/// for the next sweep.
pub fn plan_holes(
    targets: &[Target],
    coverage: &[(InstrumentToken, Window)],
    settings: &Settings,
    now: DateTime<Utc>,
) -> Vec<(InstrumentToken, Vec<Window>)> {
    plan_holes_owing(targets, coverage, &HashSet::new(), settings, now)
}

/// [`plan_holes`], but the holes of a token that `owed` names (it has suspect minutes due) are
/// all asked for, a short one at the live edge too: the request for the suspects brings it along,
/// and holding candles after a tail makes its answer evidence.
pub fn plan_holes_owing(
    targets: &[Target],
    coverage: &[(InstrumentToken, Window)],
    owed: &HashSet<InstrumentToken>,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Vec<(InstrumentToken, Vec<Window>)> {
    let mut by_token: HashMap<InstrumentToken, Vec<Window>> = HashMap::new();
    for (t, w) in coverage {
        by_token.entry(*t).or_default().push(*w);
    }
    for windows in by_token.values_mut() {
        windows.sort_unstable();
    }
    let end = settings.live_edge(now);
    let threshold = Duration::from_std(settings.backfill.gap_threshold).unwrap_or_default();
    let mut out = Vec::new();
    for Target { token, start, segment } in targets {
        let start = floor_minute(*start);
        if start >= end {
            continue;
        }
        let covered = by_token.get(token).map(Vec::as_slice).unwrap_or(&[]);
        let mut holes = settings.backfill.calendar.trading_holes(segment.as_deref(), Window::new(start, end), covered);
        // A short hole at the live edge fills at the next sweep, in one request with more.
        if !owed.contains(token) {
            holes.retain(|hole| !(hole.to == end && hole.to - hole.from < threshold));
        }
        if !holes.is_empty() {
            out.push((*token, holes));
        }
    }
    out
}

/// How far a request for suspect minutes reaches into the stored minutes around them: an answer
/// that holds those proves it left nothing out there, and one that lacks them proves nothing.
pub const SUSPECT_MARGIN: Duration = Duration::hours(6);

/// The windows of a sweep: each instrument's holes as the fewest ≤ 60-day windows, those of an
/// instrument with suspects due widened by [`SUSPECT_MARGIN`] within its wanted window.
fn plan_windows(targets: &[Target], known: &Known, settings: &Settings, now: DateTime<Utc>) -> Vec<Gap> {
    let end = settings.live_edge(now);
    let starts: HashMap<InstrumentToken, DateTime<Utc>> =
        targets.iter().map(|t| (t.token, floor_minute(t.start))).collect();
    let mut gaps = spans_of(plan_holes_owing(targets, &known.coverage, &known.owed, settings, now));
    for g in gaps.iter_mut().filter(|g| known.owed.contains(&g.token)) {
        let start = starts.get(&g.token).copied().unwrap_or(g.window.from);
        let wide = Window::new((g.window.from - SUSPECT_MARGIN).max(start), (g.window.to + SUSPECT_MARGIN).min(end));
        if wide.to - wide.from <= window::MAX_CHUNK {
            g.window = Window::new(wide.from.min(g.window.from), wide.to.max(g.window.to));
        }
    }
    gaps
}

/// Plans the backfills of a sweep: the budget is per request, not per hole, so each instrument's
/// holes become the fewest ≤ 60-day windows holding them all.
pub fn plan_gaps(
    targets: &[Target],
    coverage: &[(InstrumentToken, Window)],
    settings: &Settings,
    now: DateTime<Utc>,
) -> Vec<Gap> {
    spans_of(plan_holes(targets, coverage, settings, now))
}

/// Each instrument's holes as the fewest ≤ 60-day windows holding them.
fn spans_of(holes: Vec<(InstrumentToken, Vec<Window>)>) -> Vec<Gap> {
    holes
        .into_iter()
        .flat_map(|(token, holes)| {
            window::spans(&holes, window::MAX_CHUNK).into_iter().map(move |span| Gap { token, window: span })
        })
        .collect()
}

/// The targets of a sweep: active subscriptions (start = subscribed_at − window, not before the
/// lookback), or every active instrument when `BACKFILL_SUBSCRIPTION_AWARE` is off.
pub async fn find_targets(pool: &PgPool, settings: &Settings, now: DateTime<Utc>) -> sqlx::Result<Vec<Target>> {
    let lookback_start = now - Duration::from_std(settings.backfill.lookback).unwrap_or_default();
    let window = Duration::minutes(settings.backfill.window_minutes as i64);
    if settings.backfill.subscription_aware {
        let subs = subscriptions::active_subscriptions(pool).await?;
        Ok(subs
            .into_iter()
            .map(|(token, at, segment)| Target { token, start: (at - window).max(lookback_start), segment })
            .collect())
    } else {
        let all = instruments::active_instruments(pool).await?;
        Ok(all.into_iter().map(|(token, segment)| Target { token, start: lookback_start, segment }).collect())
    }
}

/// Targets and coverage read from the store, then planned.
pub async fn find_gaps(pool: &PgPool, settings: &Settings, now: DateTime<Utc>) -> sqlx::Result<Vec<Gap>> {
    let targets = find_targets(pool, settings, now).await?;
    find_gaps_of(pool, &targets, settings, now).await
}

/// Every target's holes as [`plan_holes`] finds them, read from the store.
pub async fn find_holes(
    pool: &PgPool,
    settings: &Settings,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<(InstrumentToken, Vec<Window>)>> {
    let targets = find_targets(pool, settings, now).await?;
    let known = read_known(pool, settings, now).await?;
    Ok(plan_holes_owing(&targets, &known.coverage, &known.owed, settings, now))
}

/// The gaps of given targets, against the coverage read from the store.
async fn find_gaps_of(
    pool: &PgPool,
    targets: &[Target],
    settings: &Settings,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<Gap>> {
    let known = read_known(pool, settings, now).await?;
    Ok(plan_windows(targets, &known, settings, now))
}

/// What a sweep plans around: the lookback's coverage, settle-clipped, and the suspect minutes
/// (those not yet due to be asked again count as covered: their backoff runs).
pub async fn read_known(pool: &PgPool, settings: &Settings, now: DateTime<Utc>) -> sqlx::Result<Known> {
    let since = now - Duration::from_std(settings.backfill.lookback).unwrap_or_default();
    let mut known = Known {
        coverage: coverage::coverage_since(pool, since, settings.backfill.settle).await?,
        ..Default::default()
    };
    // A due suspect at the live edge (within BACKFILL_GAP_THRESHOLD of it) waits with the edge.
    let settle = Duration::from_std(settings.backfill.settle).unwrap_or_default();
    let edge = now - settle - Duration::from_std(settings.backfill.gap_threshold).unwrap_or_default();
    for s in suspects::all(pool).await? {
        if s.next_ask_at > now {
            known.coverage.push((s.token, Window::new(s.minute, s.minute + Duration::minutes(1))));
        } else if s.minute < edge {
            known.owed.insert(s.token);
        }
        known.suspects.entry(s.token).or_default().push((s.minute, s.asks));
    }
    Ok(known)
}

/// The checks a sweep wants (`BACKFILL_VERIFY`): per target, its days whose session ended
/// `BACKFILL_SETTLE` ago with every minute proved and no accepted check (or suspect since a later
/// adjustment), and, for an equity (whose history the source back-adjusts), its final days last
/// checked `BACKFILL_RECHECK` ago; as the fewest ≤ 60-day windows holding them (one request
/// checks them all), each with the (day, checks so far) of its days. A day whose check was not
/// accepted waits a doubling backoff, and gets [`crate::store::days::MAX_CHECKS`] checks at most.
pub async fn find_checks(
    pool: &PgPool,
    settings: &Settings,
    targets: &[Target],
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<(Gap, Vec<(i64, i64)>)>> {
    let settle = Duration::from_std(settings.backfill.settle).unwrap_or_default();
    let recheck = settings.backfill.recheck.and_then(|r| Duration::from_std(r).ok());
    let end = settings.live_edge(now);
    let of: Vec<DaysOf> = targets
        .iter()
        .filter(|t| floor_minute(t.start) < end)
        .map(|t| DaysOf { token: t.token, segment: t.segment.clone(), window: Window::new(floor_minute(t.start), end) })
        .collect();
    let facts = days::facts(pool, settings, &of).await?;
    let backoff = Duration::from_std(settings.backfill.sweep_interval.nominal()).unwrap_or(Duration::minutes(5));
    let waiting = days::checks_not_due(pool, now, backoff).await?;
    let mut out = Vec::new();
    for (o, (token, facts)) in of.iter().zip(facts) {
        let adjustable = crate::domain::market::may_be_adjusted(o.segment.as_deref());
        let wanted: Vec<(Window, (i64, i64))> = settings
            .backfill
            .calendar
            .days(o.segment.as_deref(), o.window)
            .iter()
            .zip(&facts)
            .filter(|(_, f)| {
                let due = f.wants_check(now, settle) && !waiting.contains(&(token, f.date));
                due || (adjustable && recheck.is_some_and(|every| f.wants_recheck(now, every)))
            })
            .filter_map(|(d, f)| {
                let day = (d.date - chrono::NaiveDate::default()).num_days();
                Some((Window::new(d.sessions.first()?.from, d.sessions.last()?.to), (day, f.checks)))
            })
            .collect();
        let windows: Vec<Window> = wanted.iter().map(|w| w.0).collect();
        for span in window::spans(&windows, window::MAX_CHUNK) {
            let checks = wanted.iter().filter(|(w, _)| span.from <= w.from && w.to <= span.to).map(|w| w.1).collect();
            out.push((Gap { token, window: span }, checks));
        }
    }
    Ok(out)
}

/// What a reconcile changed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reconciled {
    /// Entries of the ticker's list that passed the checks.
    pub listed: usize,
    /// Entries refused (kept in the rejected list).
    pub refused: usize,
    pub added: Vec<InstrumentToken>,
    pub deactivated: Vec<InstrumentToken>,
    /// Why nothing was deactivated although the ticker's list lacked some of ours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deactivation_skipped: Option<String>,
}

/// Brings `subscriptions` in line with the ticker's list: a subscription we never heard about is
/// recorded and gets its immediate backfill; one the ticker no longer lists becomes inactive.
#[tracing::instrument(skip_all)]
pub async fn reconcile(
    pool: &PgPool,
    ticker: &TickerClient,
    producer: &mut Producer,
    settings: &Settings,
) -> anyhow::Result<Reconciled> {
    // What the list says is so as of the moment it was asked for: an event newer than that wins.
    let asked = EventOrder::now(Utc::now());
    let mut listed = Vec::new();
    let mut refused = Vec::new();
    // Tokens of refused entries that still name one: listed, so never deactivated for the fault.
    let mut refused_tokens = HashSet::new();
    for entry in ticker.active_subscriptions().await? {
        match entry {
            Ok(s) => listed.push(s),
            Err(bad) => {
                // Kept for inspection like a rejected event; the rest of the list stands.
                refused_tokens.extend(bad.token);
                tracing::warn!(code = bad.why.code.as_str(), reason = %bad.why.reason, "subscription list entry refused");
                refused.push((bad.raw, bad.why));
            }
        }
    }
    // Counted once, when first kept, however many reconciles meet the entry again.
    for why in queue::rejected::keep_new_rejections(producer.conn(), &settings.queue.name, &refused).await {
        crate::metrics::get().events_rejected.get_or_create(&crate::metrics::l1("reason", why.code.as_str())).inc();
    }
    let ours: HashSet<InstrumentToken> =
        subscriptions::active_subscriptions(pool).await?.into_iter().map(|s| s.0).collect();
    // A subscription whose event is still queued is the event's job to record and fill; adding it
    // here too would fetch its window twice.
    let since = (Utc::now() - IMMEDIATE_GRACE).timestamp_millis();
    let queued: HashSet<InstrumentToken> =
        match queue::queued_subscriptions(producer.conn(), &settings.queue.name, since).await {
            Ok(q) => q.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not read queued subscriptions");
                HashSet::new()
            }
        };
    let theirs: HashSet<InstrumentToken> = listed.iter().map(|s| s.instrument_token).chain(refused_tokens).collect();
    let now = Utc::now();
    let mut report = Reconciled { listed: listed.len(), refused: refused.len(), ..Default::default() };
    let mut tx = pool.begin().await?;
    for s in listed.iter().filter(|s| !ours.contains(&s.instrument_token) && !queued.contains(&s.instrument_token)) {
        let token = s.instrument_token;
        let sub = Subscription {
            instrument_token: token,
            tradingsymbol: s.tradingsymbol.as_deref(),
            segment: s.segment.as_deref(),
            requested_mode: s.requested_mode.as_deref(),
            account_id: s.account_id.as_deref(),
            at: now,
            source: "reconcile",
            order: asked,
        };
        if !subscriptions::activate_subscription(&mut tx, &sub).await? {
            continue; // removed by an event newer than the list
        }
        if let (Some(sym), Some(seg)) = (&s.tradingsymbol, &s.segment) {
            let inst = Instrument::named(token, sym.clone(), Some(seg.clone()));
            instruments::insert_instrument_if_absent(&mut tx, &inst, Source::Event).await?;
        }
        report.added.push(token);
    }
    let mut gone: Vec<InstrumentToken> = ours.difference(&theirs).copied().collect();
    // An empty list while we hold active subscriptions is far likelier a fault of the ticker than
    // every desk leaving at once (and real removals arrive as events anyway): keep them.
    if listed.is_empty() && !gone.is_empty() {
        tracing::warn!(ours = gone.len(), "the ticker lists no subscriptions; deactivating none of ours");
        report.deactivation_skipped =
            Some(format!("the ticker listed none of our {} active subscriptions", gone.len()));
        gone.clear();
    }
    report.deactivated = subscriptions::deactivate_many(&mut tx, &gone, asked).await?;
    tx.commit().await?;
    report.added.sort_unstable();
    report.deactivated.sort_unstable();
    let Window { from, to } = immediate_window(now, settings.backfill.window_minutes);
    for token in report.added.iter().copied() {
        producer.push(&Job::Backfill { token, from, to, reason: Reason::Reconcile, force: false }).await?;
    }
    Ok(report)
}

/// What a sweep did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SweepReport {
    pub reconciled: Option<Reconciled>,
    pub targets: usize,
    /// Backfills pushed for holes.
    pub jobs: usize,
    /// Checks of settled days pushed.
    pub checks: usize,
}

/// Runs one sweep: reconcile (when on and the ticker answers), plan, push.
#[tracing::instrument(skip_all)]
pub async fn sweep(
    pool: &PgPool,
    ticker: &TickerClient,
    producer: &mut Producer,
    settings: &Settings,
    now: DateTime<Utc>,
) -> anyhow::Result<SweepReport> {
    let mut report = SweepReport::default();
    if !settings.backfill.enabled {
        tracing::info!("BACKFILL_ENABLED=false: sweep skipped");
        return Ok(report);
    }
    if settings.ticker.reconcile && settings.ticker.api == TickerApi::TickerService {
        match reconcile(pool, ticker, producer, settings).await {
            Ok(r) => report.reconciled = Some(r),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "reconcile failed; sweeping from the table"),
        }
    }
    // Instruments reconcile just added have their immediate backfill queued already, and so do
    // recent subscriptions whose own backfill has not settled: a sweep backfill for them would
    // spend a second request on the same window. Past the grace, the sweep steps in anyway.
    let mut fresh: HashSet<InstrumentToken> = report.reconciled.iter().flat_map(|r| r.added.iter().copied()).collect();
    fresh.extend(subscriptions::awaiting_immediate_backfill(pool, now - IMMEDIATE_GRACE).await?);
    let targets = find_targets(pool, settings, now).await?;
    report.targets = targets.len();
    let known = read_known(pool, settings, now).await?;
    let gaps = plan_windows(&targets, &known, settings, now);
    let edge = settings.live_edge(now);
    // A sweep re-pushes the same window deliberately once the earlier job ran and left it
    // unproved (a suspect asked again, a check not accepted): its key then names how many answers
    // were had, so that it is not dropped as a duplicate, while sweeps that overlap a queued job
    // still push it once.
    let asks = &known.suspects;
    let gaps: Vec<Gap> = gaps.into_iter().filter(|g| !fresh.contains(&g.token)).collect();
    // A window at the live edge is asked again once an answer for the token was stored since the
    // last push: the edge's minutes the source had not published then are not suspects, so only
    // this says the state moved on.
    let at_edge: Vec<InstrumentToken> = gaps.iter().filter(|g| g.window.to == edge).map(|g| g.token).collect();
    let answered = runs::last_stored(pool, &at_edge).await?;
    let mut jobs: Vec<(Job, String)> = Vec::with_capacity(gaps.len());
    for g in gaps {
        let job =
            Job::Backfill { token: g.token, from: g.window.from, to: g.window.to, reason: Reason::Sweep, force: false };
        let asked: Vec<(i64, i64)> = asks.get(&g.token).map_or(vec![], |a| {
            a.iter()
                .filter(|(m, _)| g.window.from <= *m && *m < g.window.to)
                .map(|(m, n)| (m.timestamp(), *n as i64))
                .collect()
        });
        let mut state = asked;
        if let Some(at) = answered.get(&g.token) {
            state.push((i64::MIN, at.timestamp_millis()));
        }
        jobs.push(keyed(job, state_mark(state), edge));
    }
    report.jobs = jobs.len();
    if settings.backfill.verify {
        for (g, checks) in find_checks(pool, settings, &targets, now).await? {
            if fresh.contains(&g.token) {
                continue;
            }
            let job = Job::Backfill {
                token: g.token,
                from: g.window.from,
                to: g.window.to,
                reason: Reason::Verify,
                force: false,
            };
            jobs.push(keyed(job, state_mark(checks), edge));
        }
        report.checks = jobs.len() - report.jobs;
    }
    let jobs: Vec<(&Job, String)> = jobs.iter().map(|(j, k)| (j, k.clone())).collect();
    producer.push_many_keyed(&jobs).await?;
    Ok(report)
}

/// A mark of what the store held when a re-ask was planned: the (minute or day, answers so far)
/// pairs of what it asks again, and for a window at the live edge when the token's last answer was
/// stored, hashed (FNV-1a, stable across builds). Two different states get
/// different marks, so a re-ask is never dropped as the duplicate of a spent one; the same state
/// planned by overlapping sweeps gets the same mark, so it is pushed once. 0: nothing asked again.
fn state_mark(mut asked: Vec<(i64, i64)>) -> u64 {
    if asked.is_empty() {
        return 0;
    }
    asked.sort_unstable();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in asked.iter().flat_map(|(a, n)| a.to_le_bytes().into_iter().chain(n.to_le_bytes())) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

/// `job` under its idempotency key, marked with the state its window was planned from (`round`,
/// [`state_mark`]). A window that ends at the live edge (`edge`) is keyed by its start and the
/// quarter hour: the edge moves with every sweep, and a job still queued for the same start holds
/// the same request (one that failed for good holds it a quarter of an hour at most).
fn keyed(job: Job, round: u64, edge: DateTime<Utc>) -> (Job, String) {
    let base = match &job {
        Job::Backfill { token, from, to, .. } if *to == edge => {
            format!("bf:{token}:{}:edge{}", from.timestamp(), edge.timestamp().div_euclid(900))
        }
        _ => job.idempotency_key(),
    };
    let key = match round {
        0 => base,
        n => format!("{base}#s{n:016x}"),
    };
    (job, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::instrument::tok;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 11, 4, h, m, 0).unwrap()
    }

    /// The defaults with every minute a trading minute, as the simulator serves them.
    fn always() -> Settings {
        let mut s = Settings::defaults();
        s.backfill.calendar = crate::domain::calendar::TradingCalendar::Always;
        s
    }

    fn target(n: u32, start: DateTime<Utc>) -> Target {
        in_segment(n, start, None)
    }

    fn in_segment(n: u32, start: DateTime<Utc>, segment: Option<&str>) -> Target {
        Target { token: tok(n), start, segment: segment.map(String::from) }
    }

    #[test]
    fn a_re_ask_is_keyed_by_the_suspects_it_asks_for_not_by_their_number() {
        let edge = at(12, 0);
        let job = || Job::Backfill {
            token: InstrumentToken::new(256265).unwrap(),
            from: at(11, 0),
            to: edge,
            reason: Reason::Sweep,
            force: false,
        };
        let key = |asked: Vec<(i64, i64)>| keyed(job(), state_mark(asked), edge).1;
        // Two sets of suspects with the same sum of asks (3) are two states, two keys.
        let (a, b) = (key(vec![(60, 1), (120, 2)]), key(vec![(180, 1), (240, 1), (300, 1)]));
        assert_ne!(a, b);
        // The same state planned by two sweeps is one key, in any order.
        assert_eq!(a, key(vec![(120, 2), (60, 1)]));
        // Nothing asked again: the plain key.
        assert_eq!(key(vec![]), format!("bf:256265:{}:edge{}", at(11, 0).timestamp(), edge.timestamp() / 900));
        assert!(a.starts_with(&key(vec![])) && a.contains("#s"), "{a}");
    }

    #[test]
    fn middle_holes_count_and_short_live_edge_gaps_wait() {
        let s = always(); // window 120 min, settle 2 min, threshold 3 min
        let now = at(12, 0);
        let targets = vec![target(1, at(8, 0)), target(2, at(8, 0))];
        let coverage = vec![
            (tok(1), Window::new(at(8, 0), at(9, 0))),
            (tok(1), Window::new(at(10, 0), at(11, 57))), // 1 minute short of the wanted end (11:58): waits
            (tok(2), Window::new(at(8, 0), at(11, 50))),  // 8 minutes short: fetched
        ];
        let gaps = plan_gaps(&targets, &coverage, &s, now);
        assert_eq!(
            gaps,
            vec![
                Gap { token: tok(1), window: Window::new(at(9, 0), at(10, 0)) },
                Gap { token: tok(2), window: Window::new(at(11, 50), at(11, 58)) }
            ]
        );
    }

    #[test]
    fn an_instruments_holes_are_one_request() {
        let s = always();
        let coverage = vec![
            (tok(1), Window::new(at(8, 0), at(8, 30))),
            (tok(1), Window::new(at(8, 40), at(9, 30))),
            (tok(1), Window::new(at(9, 45), at(11, 0))),
            (tok(1), Window::new(at(11, 5), at(11, 58))),
        ];
        let gaps = plan_gaps(&[target(1, at(8, 0))], &coverage, &s, at(12, 0));
        assert_eq!(gaps, vec![Gap { token: tok(1), window: Window::new(at(8, 30), at(11, 5)) }]);
    }

    #[test]
    fn nothing_is_planned_for_complete_instruments() {
        let s = always();
        let gaps = plan_gaps(&[target(1, at(10, 0))], &[(tok(1), Window::new(at(9, 0), at(11, 59)))], &s, at(12, 0));
        assert!(gaps.is_empty());
    }

    #[test]
    fn under_the_exchange_calendar_holes_are_cut_to_sessions() {
        let s = Settings::defaults(); // TICKFILL_CALENDAR=exchange
        let utc = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        // Nothing stored from Friday 2026-11-27 14:00 IST to Tuesday 2026-12-01 10:00 IST.
        let now = utc("2026-12-01T10:02:00+05:30");
        let nse = in_segment(1, utc("2026-11-27T14:00:00+05:30"), Some("NFO-OPT"));
        let mcx = in_segment(2, utc("2026-11-27T14:00:00+05:30"), Some("MCX-FUT"));
        let gaps = plan_gaps(&[nse, mcx], &[], &s, now);
        assert_eq!(
            gaps,
            vec![
                // Friday's last 90 minutes to Tuesday's first 45 (the weekend and nights inside one
                // request cost nothing more).
                Gap {
                    token: tok(1),
                    window: Window::new(utc("2026-11-27T14:00:00+05:30"), utc("2026-12-01T10:00:00+05:30"))
                },
                Gap {
                    token: tok(2),
                    window: Window::new(utc("2026-11-27T14:00:00+05:30"), utc("2026-12-01T10:00:00+05:30"))
                },
            ]
        );
        // A weekend alone is no hole at all, and neither is a holiday.
        let weekend = in_segment(1, utc("2026-11-28T09:00:00+05:30"), Some("NSE"));
        assert!(plan_gaps(&[weekend], &[], &s, utc("2026-11-30T09:10:00+05:30")).is_empty());
        let holiday = in_segment(1, utc("2026-12-25T00:00:00+05:30"), Some("NSE"));
        assert!(plan_gaps(&[holiday], &[], &s, utc("2026-12-26T00:00:00+05:30")).is_empty());
        // The same window under `always` is one hole of every minute.
        let weekend = in_segment(1, utc("2026-11-28T09:00:00+05:30"), Some("NSE"));
        assert_eq!(plan_gaps(&[weekend], &[], &always(), utc("2026-11-30T09:10:00+05:30")).len(), 1);
    }
}
