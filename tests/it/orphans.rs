//! A worker killed mid-job: its job runs elsewhere within the orphan timeout, counting an attempt,
//! so a job that keeps killing its workers ends dead instead of looping.

use std::time::Duration;

use tickfill::{jobs::Lane, sim::SimOptions};

use crate::helpers::{spawn_worker_process, wait_until, AppOptions, ChildGuard, TestApp};

fn fast_orphans(s: &mut tickfill::config::Settings) {
    s.queue.heartbeat = Duration::from_secs(1);
    s.queue.orphan_after = Duration::from_secs(3);
    s.queue.max_attempts = 2;
}

fn spawn_worker(app: &TestApp) -> ChildGuard {
    let env = [
        ("TICKFILL_HEARTBEAT", "1s"),
        ("TICKFILL_ORPHAN_AFTER", "3s"),
        ("TICKFILL_MAX_ATTEMPTS", "2"),
        ("TICKFILL_CONCURRENCY", "1"),
    ];
    spawn_worker_process(app, &env)
}

/// The urgent lane's in-flight sets that hold a job: one per worker running something.
async fn busy_workers(app: &TestApp) -> Vec<String> {
    let mut conn = app.redis.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:urgent:inflight:*", app.settings.queue.name))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut busy = Vec::new();
    for k in keys {
        if redis::cmd("SCARD").arg(&k).query_async::<i64>(&mut conn).await.unwrap() > 0 {
            busy.push(k);
        }
    }
    busy
}

/// Starts a worker process, waits until it (not a worker killed before) runs the job, and
/// SIGKILLs it; returns its in-flight set.
async fn kill_while_running(app: &TestApp, killed_before: &[String]) -> String {
    let mut worker = spawn_worker(app);
    let new_busy = || async { busy_workers(app).await.into_iter().find(|k| !killed_before.contains(k)) };
    wait_until(30, "a new worker process to run the job", || async { new_busy().await.is_some() }).await;
    let running = new_busy().await.expect("still running");
    // Claimed is not yet started: wait for its request to reach the ticker, so the handler runs.
    let runs = killed_before.len() as i64 + 1;
    wait_until(30, "the job's request at the ticker", || async {
        app.sim_stats().await["history_requests"].as_i64().unwrap_or(0) >= runs
    })
    .await;
    worker.kill().unwrap(); // SIGKILL
    worker.wait().unwrap();
    running
}

fn slow() -> AppOptions {
    AppOptions {
        sim: SimOptions { latency_ms: (4000, 4000), ..Default::default() },
        start_worker: false,
        tweak: fast_orphans,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_job_runs_elsewhere_and_counts_an_attempt() {
    let app = TestApp::spawn_with(slow()).await;
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    kill_while_running(&app, &[]).await;
    app.start_worker().await;
    app.wait_count(30, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM backfill_runs").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_killing_its_workers_ends_dead() {
    let app = TestApp::spawn_with(slow()).await;
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    let first = kill_while_running(&app, &[]).await;
    // A second worker process finds the orphan once its worker is seen dead, runs it, and dies too.
    kill_while_running(&app, &[first]).await;
    // A third attempt would exceed TICKFILL_MAX_ATTEMPTS=2: the next worker sends it to the dead set.
    app.start_worker().await;
    wait_until(30, "the job in the dead set", || async { app.depths(Lane::Urgent).await.dead == 1 }).await;
    assert_eq!(app.count("SELECT count(*) FROM minute_bars").await, 0);
    // The third worker refused the job before asking the ticker anything.
    assert!(app.sim_stats().await["history_requests"].as_i64().unwrap() <= 2);
    let dead = crate::helpers::run_cli(&app.settings, &["jobs", "dead", "list", "--json"], &[]).1;
    assert!(dead.contains("abandoned by workers that died running it"), "{dead}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_job_is_not_taken_for_an_orphan() {
    let app = TestApp::spawn_with(AppOptions {
        sim: SimOptions { latency_ms: (7000, 7000), ..Default::default() },
        start_worker: false,
        tweak: fast_orphans,
        ..Default::default()
    })
    .await;
    // Two worker processes of one slot each: while they run 7 s jobs (more than twice the 3 s
    // orphan timeout) with a third waiting, each must keep seeing the other alive.
    let mut a = spawn_worker(&app);
    let mut b = spawn_worker(&app);
    for token in [256265, 10_000_001, 11_000_020] {
        assert_eq!(app.subscribe_via_sim(token).await, 201);
    }
    app.wait_count(40, "SELECT count(*) FROM backfill_runs WHERE kind = 'backfill' AND outcome = 'stored'", 3).await;
    let _ = (a.kill(), b.kill(), a.wait(), b.wait());
    assert_eq!(app.sim_stats().await["history_requests"], 3, "each job ran once");
    let retried = app.count("SELECT count(*) FROM backfill_runs WHERE kind = 'backfill' AND attempts > 1").await;
    assert_eq!(retried, 0);
}
