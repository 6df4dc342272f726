//! Graceful shutdown of a real worker process: SIGTERM lets in-flight jobs finish within
//! TICKFILL_SHUTDOWN_TIMEOUT, and hands back what could not finish.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use tickfill::{jobs::Lane, sim::SimOptions};

use crate::helpers::{spawn_worker_process, wait_until, AppOptions, ChildGuard, TestApp};

fn spawn_worker(app: &TestApp, shutdown_timeout: &str) -> ChildGuard {
    spawn_worker_process(app, &[("TICKFILL_SHUTDOWN_TIMEOUT", shutdown_timeout)])
}

fn sigterm(child: &ChildGuard) {
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
}

/// Waits for the process to exit; returns its exit code and how long it took.
async fn wait_exit(child: &mut ChildGuard, secs: u64) -> (Option<i32>, Duration) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    panic!("the worker did not exit within {secs} s of SIGTERM");
}

fn slow_sim(ms: u64) -> AppOptions {
    AppOptions {
        sim: SimOptions { latency_ms: (ms, ms), ..Default::default() },
        start_worker: false,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_job_finish_then_exits() {
    let app = TestApp::spawn_with(slow_sim(1500)).await;
    let mut worker = spawn_worker(&app, "30s");
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    wait_until(15, "the job to be running", || async { app.depths(Lane::Urgent).await.running == 1 }).await;
    // Claimed is not yet started: wait for its request to reach the ticker.
    wait_until(15, "the job's request at the ticker", || async {
        app.sim_stats().await["history_requests"].as_i64().unwrap_or(0) >= 1
    })
    .await;
    sigterm(&worker);
    let (code, _) = wait_exit(&mut worker, 20).await;
    assert_eq!(code, Some(0));
    assert_eq!(app.count("SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM minute_bars").await, 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_outlives_the_grace_period_is_handed_back_and_finished_elsewhere() {
    let app = TestApp::spawn_with(slow_sim(4000)).await;
    let mut worker = spawn_worker(&app, "1s");
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    wait_until(15, "the job to be running", || async { app.depths(Lane::Urgent).await.running == 1 }).await;
    sigterm(&worker);
    let (code, took) = wait_exit(&mut worker, 10).await;
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(4), "the grace period is 1 s; exiting took {took:?}");
    assert_eq!(app.count("SELECT count(*) FROM minute_bars").await, 0, "nothing half-written");
    let d = app.depths(Lane::Urgent).await;
    assert_eq!((d.active, d.running), (1, 0), "handed back to the head of its queue");
    app.start_worker().await;
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE outcome = 'stored'", 1).await;
}
