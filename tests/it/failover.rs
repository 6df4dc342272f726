//! A Redis that fails over: a push the old primary acknowledged and the replica never received
//! is pushed again by the bridge and stored; behind one address that switches servers, the
//! bridge and the workers move by themselves. Real servers: a primary, a replica and three
//! sentinels of the test's own, or two Redis servers behind a TCP proxy.

use std::{
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use redis::Value;
use tickfill::{
    bench::ha::{ask, role, Topology},
    config::RedisSettings,
};

use crate::{
    browser::free_port,
    helpers::{wait_until, AppOptions, ChildGuard, TestApp},
};

fn scratch(name: &str) -> std::path::PathBuf {
    let id = uuid::Uuid::new_v4().simple().to_string();
    std::env::temp_dir().join(format!("tickfill-it-{name}-{}", &id[..10]))
}

async fn hlen(port: u16, key: &str) -> Option<i64> {
    match ask(port, redis::cmd("HLEN").arg(key)).await? {
        Value::Int(n) => Some(n),
        _ => None,
    }
}

fn event(token: u32) -> String {
    let now = chrono::Utc::now().timestamp();
    format!(r#"{{"event_type":"subscription_created","instrument_token":{token},"timestamp":{now}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_push_the_replica_never_received_is_pushed_again_and_stored_after_the_failover() {
    let dir = scratch("ha");
    let mut topo = Topology::start(&dir).await.expect("a sentinel topology");
    let app = TestApp::spawn_with(AppOptions {
        redis: Some(topo.settings()),
        start_worker: false,
        // No reconcile against the ticker's list: only the bridge's replay can bring the jobs back.
        tweak: |s| s.ticker.reconcile = false,
        ..Default::default()
    })
    .await;
    let old = topo.primary().await.expect("a primary");
    let replica = topo.data_ports().into_iter().find(|p| *p != old).unwrap();
    let data = format!("{}:urgent:data", app.settings.queue.name);

    // The replica is cut off: frozen first (so it cannot reconnect), then its link killed on the
    // primary, so nothing written from here on reaches it, not even into its socket's buffer.
    topo.freeze(replica).unwrap();
    let killed = ask(old, redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("replica")).await;
    assert_eq!(killed, Some(Value::Int(1)), "the replica's link was not there to cut");
    let tokens = [256265u32, 10000001, 11000000];
    for t in tokens {
        app.publish(event(t)).await;
    }
    wait_until(20, "the primary to hold the three jobs", || async { hlen(old, &data).await == Some(3) }).await;

    // The primary dies with them; the replica, resumed, has none of them and is promoted.
    topo.kill(old).unwrap();
    topo.thaw(replica).unwrap();
    assert_eq!(hlen(replica, &data).await, Some(0), "the replica received the pushes after all");
    let (new, _) = topo.wait_switch(old, Duration::from_secs(60)).await.expect("a promotion");
    assert_eq!(new, replica);

    // Workers start only now: the jobs they run were pushed again by the bridge.
    let _worker = app.start_worker().await;
    // (The subscriptions' bars may come from their own jobs or from the catch-up sweep the bridge
    // pushed on moving; without a reconcile the sweep knows only what the replay brought back.)
    app.wait_count(60, "SELECT count(*) FROM backfill_runs WHERE reason = 'subscribe' AND outcome = 'stored'", 3).await;
    for t in tokens {
        let sql = format!(
            "SELECT (SELECT count(*) FROM minute_bars WHERE instrument_token = {t}) + \
                    (SELECT count(*) FROM futures_bars WHERE instrument_token = {t}) + \
                    (SELECT count(*) FROM option_bars WHERE instrument_token = {t})"
        );
        assert!(app.count(&sql).await >= 100, "token {t} has no bars");
    }
    assert!(app.counter("events_replayed").await >= 3, "the bridge did not push its window again");
    drop(topo);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A plain Redis server of the test's own (no persistence), stopped on drop.
fn redis_server(dir: &std::path::Path, port: u16) -> ChildGuard {
    std::fs::create_dir_all(dir).unwrap();
    ChildGuard(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server"),
    )
}

/// A TCP proxy whose new connections go to whichever server it points at now; connections already
/// open stay where they are (as behind a managed Redis's name during a failover).
struct Proxy {
    port: u16,
    target: Arc<Mutex<u16>>,
}

impl Proxy {
    async fn to(port: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let own = listener.local_addr().unwrap().port();
        let target = Arc::new(Mutex::new(port));
        let t = target.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = *t.lock().unwrap();
                tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Proxy { port: own, target }
    }
}

async fn numsub(port: u16, channel: &str) -> i64 {
    match ask(port, redis::cmd("PUBSUB").arg("NUMSUB").arg(channel)).await {
        Some(Value::Array(v)) => match v.get(1) {
            Some(Value::Int(n)) => *n,
            _ => 0,
        },
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_one_address_that_moves_to_another_server_the_bridge_and_workers_follow_by_themselves() {
    let dir = scratch("proxy");
    let (a, b) = (free_port(), free_port());
    let _a = redis_server(&dir.join("a"), a);
    let _b = redis_server(&dir.join("b"), b);
    wait_until(20, "both servers", || async { role(a).await.is_some() && role(b).await.is_some() }).await;
    ask(b, redis::cmd("REPLICAOF").arg("127.0.0.1").arg(a)).await.expect("b replicates a");
    let proxy = Proxy::to(a).await;
    let url = format!("redis://127.0.0.1:{}", proxy.port);
    let app =
        TestApp::spawn_with(AppOptions { redis: Some(RedisSettings::at(&url).unwrap()), ..Default::default() }).await;
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    app.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE reason = 'subscribe' AND outcome = 'stored'", 1).await;
    wait_until(20, "b to have caught up", || async {
        let info = ask(b, redis::cmd("INFO").arg("replication")).await;
        matches!(info, Some(Value::BulkString(t)) if String::from_utf8_lossy(&t).contains("master_link_status:up"))
    })
    .await;

    // The address moves: b is promoted, new connections go to b, and a turns replica of b with
    // the old connections still open on it.
    ask(b, redis::cmd("REPLICAOF").arg("NO").arg("ONE")).await.expect("promote b");
    *proxy.target.lock().unwrap() = b;
    ask(a, redis::cmd("REPLICAOF").arg("127.0.0.1").arg(b)).await.expect("demote a");
    let moved = std::time::Instant::now();
    wait_until(20, "the bridge to subscribe on b", || async { numsub(b, &app.channel()).await >= 1 }).await;
    assert_eq!(app.subscribe_via_sim(10000001).await, 201);
    // (Its bars may come from its own job or from the catch-up sweep the bridge pushed on moving.)
    app.wait_count(30, "SELECT count(*) FROM futures_bars WHERE instrument_token = 10000001", 120).await;
    eprintln!("stored a subscription made after the move {:?} after it", moved.elapsed());
    assert_eq!(role(a).await.as_deref(), Some("slave"));
    let _ = std::fs::remove_dir_all(&dir);
}
