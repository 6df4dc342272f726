//! A Redis of its own that fails over, for the failover bench and tests: one primary, one replica
//! and three sentinels (`redis-server FILE --sentinel`, one writable file each) on free loopback
//! ports, in a scratch directory, with `down-after-milliseconds 1000` and `failover-timeout 5000`.
//! Every server is stopped when the topology is dropped (a frozen one is resumed first).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use redis::Value;

use super::procs::free_port;
use crate::config::{RedisSettings, RedisTarget, SentinelTarget, DEFAULT_REPLAY_WINDOW, DEFAULT_RESPONSE_TIMEOUT};

/// The name the sentinels monitor the primary under.
pub const MASTER: &str = "tickfill";

/// One server: its port, configuration file and process.
struct Server {
    port: u16,
    conf: PathBuf,
    sentinel: bool,
    child: Option<Child>,
}

impl Server {
    fn spawn(&mut self, dir: &Path) -> anyhow::Result<()> {
        let mut cmd = Command::new("redis-server");
        cmd.arg(&self.conf);
        if self.sentinel {
            cmd.arg("--sentinel");
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("{}.log", self.port)))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .context("failed to start redis-server (install Debian's redis-server package)")?;
        self.child = Some(child);
        Ok(())
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").arg(format!("-{sig}")).arg(c.id().to_string()).status();
        }
    }

    fn stop(&mut self) {
        self.signal("CONT");
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Asks the sentinels who the primary is.
#[derive(Clone)]
pub struct Watcher {
    sentinels: Vec<u16>,
}

impl Watcher {
    /// The primary now: the first port a sentinel names that says `ROLE master`.
    pub async fn primary(&self) -> Option<u16> {
        for s in &self.sentinels {
            let Some(Value::Array(addr)) =
                ask(*s, redis::cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(MASTER)).await
            else {
                continue;
            };
            let Some(port) = addr.get(1).map(text).and_then(|p| p.parse::<u16>().ok()) else { continue };
            if role(port).await.as_deref() == Some("master") {
                return Some(port);
            }
        }
        None
    }

    /// Waits until the sentinels name a primary other than `old` that says so; it and when.
    pub async fn wait_switch(&self, old: u16, within: Duration) -> anyhow::Result<(u16, Instant)> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(p) = self.primary().await.filter(|p| *p != old) {
                return Ok((p, Instant::now()));
            }
            anyhow::ensure!(Instant::now() < deadline, "no replica was promoted within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A primary, a replica and three sentinels.
pub struct Topology {
    dir: PathBuf,
    data: Vec<Server>,
    sentinels: Vec<Server>,
}

/// A short-lived connection to a port: one command with a deadline, `None` if it did not answer.
pub async fn ask(port: u16, cmd: &redis::Cmd) -> Option<Value> {
    let run = async {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)));
        let mut conn = client.get_multiplexed_async_connection_with_config(&cfg).await.ok()?;
        cmd.query_async::<Value>(&mut conn).await.ok()
    };
    tokio::time::timeout(Duration::from_secs(1), run).await.ok().flatten()
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        _ => String::new(),
    }
}

/// The first word of `ROLE` on `port` (`master`, `slave`, `sentinel`), if it answers.
pub async fn role(port: u16) -> Option<String> {
    match ask(port, &redis::cmd("ROLE")).await? {
        Value::Array(v) => v.first().map(text),
        _ => None,
    }
}

impl Topology {
    /// Starts the five servers under `dir` and waits until the sentinels agree and see the
    /// replica's link up.
    pub async fn start(dir: &Path) -> anyhow::Result<Topology> {
        std::fs::create_dir_all(dir)?;
        let mut t = Topology { dir: dir.to_path_buf(), data: Vec::new(), sentinels: Vec::new() };
        let primary = free_port()?;
        for (i, replica_of) in [None, Some(primary)].into_iter().enumerate() {
            let port = if i == 0 { primary } else { free_port()? };
            let data = dir.join(format!("n{port}"));
            std::fs::create_dir_all(&data)?;
            let mut conf = format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\nappendonly yes\nappendfsync always\nsave \"\"\n",
                data.display()
            );
            if let Some(p) = replica_of {
                conf.push_str(&format!("replicaof 127.0.0.1 {p}\n"));
            }
            let path = dir.join(format!("n{port}.conf"));
            std::fs::write(&path, conf)?;
            let mut s = Server { port, conf: path, sentinel: false, child: None };
            s.spawn(dir)?;
            t.data.push(s);
        }
        for _ in 0..3 {
            let port = free_port()?;
            let conf = format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\n\
                 sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 5000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                dir.display()
            );
            let path = dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(&path, conf)?;
            let mut s = Server { port, conf: path, sentinel: true, child: None };
            s.spawn(dir)?;
            t.sentinels.push(s);
        }
        let replica = t.data[1].port;
        let deadline = Instant::now() + Duration::from_secs(40);
        while !t.ready(replica).await {
            anyhow::ensure!(Instant::now() < deadline, "the sentinel topology was not ready within 40 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(t)
    }

    /// Every sentinel sees a quorum of three and `replica` as a healthy replica with its link up.
    pub async fn ready(&self, replica: u16) -> bool {
        let info = ask(replica, redis::cmd("INFO").arg("replication")).await.map(|v| text(&v)).unwrap_or_default();
        if !info.contains("master_link_status:up") {
            return false;
        }
        for s in &self.sentinels {
            let quorum = ask(s.port, redis::cmd("SENTINEL").arg("CKQUORUM").arg(MASTER)).await.map(|v| text(&v));
            if !quorum.is_some_and(|q| q.starts_with("OK 3 usable")) {
                return false;
            }
            let Some(Value::Array(replicas)) = ask(s.port, redis::cmd("SENTINEL").arg("REPLICAS").arg(MASTER)).await
            else {
                return false;
            };
            let healthy = replicas.iter().any(|r| {
                let Value::Array(fields) = r else { return false };
                let f: Vec<String> = fields.iter().map(text).collect();
                let get = |k: &str| f.iter().position(|x| x == k).and_then(|i| f.get(i + 1)).cloned();
                get("port") == Some(replica.to_string()) && get("flags").as_deref() == Some("slave")
            });
            if !healthy {
                return false;
            }
        }
        true
    }

    /// How tickfill reaches it: through the sentinels.
    pub fn settings(&self) -> RedisSettings {
        RedisSettings {
            target: self.target(),
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            replay_window: DEFAULT_REPLAY_WINDOW,
        }
    }

    pub fn target(&self) -> RedisTarget {
        RedisTarget::Sentinel(SentinelTarget {
            sentinels: self.sentinels.iter().map(|s| ("127.0.0.1".to_string(), s.port)).collect(),
            master: MASTER.into(),
            sentinel_password: None,
            password: None,
            db: 0,
        })
    }

    /// The data nodes' ports.
    pub fn data_ports(&self) -> Vec<u16> {
        self.data.iter().map(|s| s.port).collect()
    }

    /// What asks the sentinels, for a task of its own.
    pub fn watcher(&self) -> Watcher {
        Watcher { sentinels: self.sentinels.iter().map(|s| s.port).collect() }
    }

    /// The primary now (see [`Watcher::primary`]).
    pub async fn primary(&self) -> Option<u16> {
        self.watcher().primary().await
    }

    /// See [`Watcher::wait_switch`].
    pub async fn wait_switch(&self, old: u16, within: Duration) -> anyhow::Result<(u16, Instant)> {
        self.watcher().wait_switch(old, within).await
    }

    /// Waits until `port` is a replica with its link up and the sentinels list it as healthy.
    pub async fn wait_replica(&self, port: u16, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while !(role(port).await.as_deref() == Some("slave") && self.ready(port).await) {
            anyhow::ensure!(Instant::now() < deadline, "{port} did not rejoin as a replica within {within:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    fn server(&mut self, port: u16) -> anyhow::Result<&mut Server> {
        self.data.iter_mut().find(|s| s.port == port).with_context(|| format!("no data node on {port}"))
    }

    /// SIGSTOP: the server holds its connections and answers nothing.
    pub fn freeze(&mut self, port: u16) -> anyhow::Result<()> {
        self.server(port)?.signal("STOP");
        Ok(())
    }

    /// SIGCONT after [`Topology::freeze`].
    pub fn thaw(&mut self, port: u16) -> anyhow::Result<()> {
        self.server(port)?.signal("CONT");
        Ok(())
    }

    /// SIGKILL.
    pub fn kill(&mut self, port: u16) -> anyhow::Result<()> {
        let s = self.server(port)?;
        if let Some(mut c) = s.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Ok(())
    }

    /// Starts a killed server again on its files (the sentinels make it a replica).
    pub fn restart(&mut self, port: u16) -> anyhow::Result<()> {
        let dir = self.dir.clone();
        let s = self.server(port)?;
        anyhow::ensure!(s.child.is_none(), "{port} is running");
        s.spawn(&dir)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for s in self.data.iter_mut().chain(self.sentinels.iter_mut()) {
            s.stop();
        }
    }
}
