//! One attempt of one job: decode it, run it in its own span, and decide what a failure means.
//!
//! tickfill keeps its own retry policy (apalis-redis 1.0 would retry 25 times at `now + attempt`
//! seconds): a transient failure pushes the next attempt as a delayed job carrying every earlier
//! error, so the schedule lives in Redis and survives a crash; an outage puts the job off without
//! spending an attempt; the last allowed attempt, or a permanent failure, goes to the dead set
//! with the reasons.

use std::{sync::Arc, time::Duration};

use apalis::prelude::{AbortError, BoxDynError, Data, TaskId};
use chrono::Utc;
use tickfill_jobs::{Envelope, Job};
use tracing::Instrument as _;

use super::{
    backfill::requested_backfill,
    chain::rebuild_chain,
    job::{JobError, JobMeta},
    subscribe::{subscribed, unsubscribed},
    sweep_job::run_sweep,
    WorkerState,
};
use crate::{domain::window::Window, metrics, queue};

/// The retry delay before attempt `next` (2, 3, …): `base · 2^(next − 2)`, at most `max`, then
/// scaled by a random factor in [0.5, 1] so that jobs that failed together do not retry together.
/// apalis-redis schedules in whole seconds, so the delay is at least one.
pub fn backoff(next: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = next.saturating_sub(2).min(30);
    let full = base.saturating_mul(1u32 << exp).min(max);
    let scaled = full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
    Duration::from_secs(scaled.as_secs_f64().ceil().max(1.0) as u64)
}

/// Every error of a job's attempts, for the dead set and the log.
fn all_errors(envelope: &Envelope, last: &str) -> String {
    let mut parts: Vec<String> =
        envelope.failures.iter().enumerate().map(|(i, f)| format!("attempt {}: {}", i + 1, f.error)).collect();
    parts.push(format!("attempt {}: {last}", envelope.attempt()));
    parts.join("; ")
}

/// The apalis handler: decode, dispatch, and decide what a failure means. tickfill keeps its own
/// retry policy (apalis-redis 1.0 would retry 25 times at `now + attempt` seconds): a transient
/// failure pushes the next attempt as a delayed job carrying every earlier error, so the schedule
/// lives in Redis and survives a crash; the last allowed attempt, or a permanent failure, goes to
/// the dead set with the reasons.
pub(super) async fn handle_job(
    envelope: Envelope,
    task_id: TaskId,
    state: Data<Arc<WorkerState>>,
) -> Result<(), BoxDynError> {
    let this_id = task_id.to_string();
    let _running = state.running.enter(&this_id);
    // A task id that starts again was recovered from a worker that died running it: that counts
    // as an attempt, so a job that crashes its worker ends dead instead of looping.
    // The count lives as long as finished jobs do (`TICKFILL_RETENTION`), so it needs no second
    // round trip to clear it.
    // The same round trip reads the operator's controls (paused lanes and kinds).
    let mut redis = state.redis.clone();
    let counted =
        queue::controls::count_start(&mut redis, &state.settings.queue.name, &this_id, state.settings.queue.retention)
            .await;
    // Redis unreachable: one start, nothing paused (the job then meets the outage itself).
    let (starts, controls) = counted.unwrap_or((1, Default::default()));
    let attempt = envelope.attempt() + starts.saturating_sub(1);
    let (result, mut marks) = super::trail::gather(async {
        let mut started = serde_json::json!({"attempt": attempt, "task": this_id});
        if starts > 1 {
            // Recovered from a worker that died running it (orphan recovery).
            started["recovered"] = serde_json::json!(starts - 1);
        }
        super::trail::note("started", started);
        handle_attempt(&envelope, &this_id, attempt, &controls, &state).await
    })
    .await;
    let ended = match &result {
        Ok(()) => serde_json::json!({"result": "ok"}),
        Err(e) => serde_json::json!({"result": "failed", "error": crate::domain::text::inert(&e.to_string(), 500)}),
    };
    marks.push(queue::timeline::Mark { at: Utc::now(), what: "ended".into(), detail: ended });
    let origin = envelope.origin.clone().unwrap_or_else(|| this_id.clone());
    let keep = state.settings.queue.retention;
    if let Err(e) = queue::timeline::append(&mut redis, &state.settings.queue.name, &origin, &marks, keep).await {
        tracing::debug!(error = %e, "the job's timeline could not be written");
    }
    result
}

/// Pushes the job's next envelope to run after `delay` and completes this run. If it cannot be
/// scheduled, this run fails with the original error instead, and apalis runs it again.
async fn put_off(
    state: &WorkerState,
    job: &Job,
    error: anyhow::Error,
    next: Envelope,
    key: &str,
    delay: Duration,
    counter: &str,
) -> Result<(), BoxDynError> {
    super::trail::note("put_off", serde_json::json!({"why": format!("{error:#}"), "delay_s": delay.as_secs()}));
    if let Err(push) = state.producer.clone().push_envelope(job, next, key, Some(delay)).await {
        tracing::warn!(error = format!("{push:#}"), "could not schedule the job again");
        return Err(error.into());
    }
    tracing::warn!(error = format!("{error:#}"), retry_in_s = delay.as_secs(), "job put off; it runs again later");
    queue::count(&mut state.redis.clone(), &state.settings.queue.name, &format!("{counter}:{}", job.kind())).await;
    Ok(())
}

async fn handle_attempt(
    envelope: &Envelope,
    this_id: &str,
    attempt: u32,
    controls: &queue::controls::Controls,
    state: &WorkerState,
) -> Result<(), BoxDynError> {
    if attempt > state.settings.queue.max_attempts {
        let reason = format!(
            "gave up after {attempt} attempts: the job was abandoned by workers that died running it; {}",
            all_errors(envelope, "worker died")
        );
        tracing::error!(job_id = %this_id, reason = %reason, "job failed for good; sent to the dead set");
        queue::count(&mut state.redis.clone(), &state.settings.queue.name, "jobs_dead:crashed_worker").await;
        state.history.add("jobs_dead", 1);
        metrics::get().jobs_dead.get_or_create(&metrics::l1("kind", "crashed_worker")).inc();
        return Err(Box::new(AbortError::new(reason)));
    }
    let meta = JobMeta {
        id: envelope.origin.clone().unwrap_or_else(|| this_id.to_string()),
        attempt: attempt as usize,
        last_attempt: attempt >= state.settings.queue.max_attempts,
        started_at: Utc::now(),
    };
    let job = match envelope.decode() {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(job_id = %this_id, error = %e, "job refused");
            queue::count(&mut state.redis.clone(), &state.settings.queue.name, "jobs_refused").await;
            return Err(Box::new(AbortError::new(e)));
        }
    };
    // A job of a lane or kind an operator paused goes back to wait (no attempt spent).
    match super::hold::check(controls, &job) {
        super::hold::Hold::Go => {}
        super::hold::Hold::KindPaused(why) => {
            let (next, key) = envelope.put_off(this_id, &job.idempotency_key());
            return put_off(state, &job, anyhow::anyhow!(why), next, &key, super::hold::KIND_WAIT, "jobs_kind_paused")
                .await;
        }
        super::hold::Hold::LanePaused(why) => {
            let (next, key) = envelope.put_off(this_id, &job.idempotency_key());
            return put_off(state, &job, anyhow::anyhow!(why), next, &key, super::hold::LANE_WAIT, "jobs_lane_paused")
                .await;
        }
    }
    let span = tracing::info_span!("job", job_id = %meta.id, kind = job.kind(), token = job.token().map(|t| t.get()), attempt, trace_id = tracing::field::Empty);
    // The attempt continues its event's trace, after the wait in the queue.
    let pushed =
        envelope.pushed_ms.map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64));
    crate::telemetry::continue_trace(&span, envelope.trace.as_deref(), pushed);
    let kind = metrics::l1("kind", job.kind());
    let m = metrics::get();
    m.jobs_started.get_or_create(&kind).inc();
    let started = std::time::Instant::now();
    let result = run_job(state, &job, &meta).instrument(span.clone()).await;
    m.job_duration.get_or_create(&kind).observe(started.elapsed().as_secs_f64());
    let lane = job.lane().as_str();
    match &result {
        Ok(()) => {
            m.jobs_succeeded.get_or_create(&kind).inc();
            state.history.add_for("jobs_done", lane, job.kind(), 1);
        }
        Err(JobError::PutOff(_)) => {
            m.jobs_put_off.get_or_create(&kind).inc();
        }
        Err(JobError::Retry(_)) if !meta.last_attempt => {
            m.jobs_retried.get_or_create(&kind).inc();
            state.history.add_for("jobs_failed", lane, job.kind(), 1);
        }
        Err(_) => {
            m.jobs_dead.get_or_create(&kind).inc();
            state.history.add_for("jobs_dead", lane, job.kind(), 1);
        }
    };
    // What follows logs in the job's span too; the span is entered per poll (`.instrument`), never
    // held across an await, so no other job's lines land in it.
    settle(state, envelope, this_id, attempt, &job, &meta, result).instrument(span).await
}

/// Decides what a finished run means: done, put off, retried later, or dead.
async fn settle(
    state: &WorkerState,
    envelope: &Envelope,
    this_id: &str,
    attempt: u32,
    job: &Job,
    meta: &JobMeta,
    result: Result<(), JobError>,
) -> Result<(), BoxDynError> {
    let mut redis = state.redis.clone();
    let ns = &state.settings.queue.name;
    match result {
        Ok(()) => Ok(()),
        Err(JobError::PutOff(e)) => {
            // An outage is no fault of the job: wait (doubling up to TICKFILL_RETRY_MAX) without
            // spending an attempt, however long the outage lasts.
            let s = &state.settings;
            let delay = backoff(envelope.put_offs + 2, s.queue.retry_base, s.queue.retry_max, rand::random());
            let (next, key) = envelope.put_off(this_id, &job.idempotency_key());
            put_off(state, job, e, next, &key, delay, "jobs_put_off").await
        }
        Err(JobError::Retry(e)) if !meta.last_attempt => {
            let s = &state.settings;
            let delay = backoff(attempt + 1, s.queue.retry_base, s.queue.retry_max, rand::random());
            let mut next = envelope.next_attempt(this_id, format!("{e:#}"), Utc::now());
            // Attempts lost to dead workers count as failures too.
            while next.attempt() < attempt + 1 {
                next = next.next_attempt(this_id, "the worker running it died".into(), Utc::now());
            }
            let key = envelope.next_key(&job.idempotency_key());
            put_off(state, job, e, next, &key, delay, "jobs_retried").await
        }
        Err(JobError::Retry(e)) => {
            let reason = format!("gave up after {attempt} attempts: {}", all_errors(envelope, &format!("{e:#}")));
            tracing::error!(reason = %reason, "job failed for good; sent to the dead set");
            queue::count(&mut redis, ns, &format!("jobs_dead:{}", job.kind())).await;
            Err(Box::new(AbortError::new(reason)))
        }
        Err(JobError::GiveUp(reason)) => {
            let reason = if envelope.failures.is_empty() { reason } else { all_errors(envelope, &reason) };
            tracing::error!(reason = %reason, "job failed for good; sent to the dead set");
            queue::count(&mut redis, ns, &format!("jobs_dead:{}", job.kind())).await;
            Err(Box::new(AbortError::new(reason)))
        }
    }
}

async fn run_job(state: &WorkerState, job: &Job, meta: &JobMeta) -> Result<(), JobError> {
    match job {
        Job::Subscribed { event } => subscribed(state, event, meta).await,
        Job::Unsubscribed { event } => unsubscribed(state, event).await,
        Job::Backfill { token, from, to, reason, force } => {
            requested_backfill(state, *token, Window::new(*from, *to), *reason, *force, meta).await
        }
        Job::Sweep { tick } => run_sweep(state, *tick, meta).await,
        Job::ChainMetrics { underlying, expiry, from, to } => {
            rebuild_chain(state, underlying, *expiry, Window::new(*from, *to), meta).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_and_whole_seconds() {
        let (base, max) = (Duration::from_secs(2), Duration::from_secs(300));
        let full: Vec<u64> = (2..12).map(|n| backoff(n, base, max, 1.0).as_secs()).collect();
        assert_eq!(full, vec![2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(5, base, max, 0.0), Duration::from_secs(8), "half of 16 at the lowest jitter");
        for j in [0.0, 0.3, 0.9] {
            let d = backoff(4, base, max, j).as_secs();
            assert!((4..=8).contains(&d), "{d}");
        }
        assert_eq!(backoff(2, Duration::from_millis(100), max, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(u32::MAX, base, max, 1.0), max);
    }
}
