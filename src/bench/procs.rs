//! Real processes of this binary for the benches that need them, each logging to a file.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;

/// A free TCP port on loopback (bound, read and released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// CPU seconds (user + system) a process has used.
pub fn cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// A memory figure of a process from `/proc/PID/status`, in MiB: `VmRSS` (resident now) or
/// `VmHWM` (the largest resident set so far).
pub fn memory_mb(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// One of our own processes (`tickfill ROLE`), logging to a file of its own.
struct Proc {
    role: &'static str,
    n: usize,
    starts: usize,
    child: Option<Child>,
}

pub struct Fleet {
    exe: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
    procs: Vec<Proc>,
}

impl Fleet {
    /// A fleet of this binary's processes on one store, Redis, queue namespace (also the channel
    /// prefix) and ticker, with the admin API on free ports, logging into `dir`; `extra` settings
    /// on top.
    pub fn new(
        dir: &std::path::Path,
        database_url: &str,
        redis: &crate::config::RedisTarget,
        ns: &str,
        ticker_url: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Fleet> {
        let common = [
            ("DATABASE_URL", database_url),
            ("TICKFILL_QUEUE", ns),
            ("REDIS_CHANNEL_PREFIX", ns),
            ("TICKER_SERVICE_URL", ticker_url),
            ("ADMIN_LISTEN", "127.0.0.1:0"),
            // The benches' simulators serve every minute.
            ("TICKFILL_CALENDAR", "always"),
            // Their windows are the last hours: a check after IST midnight would be noise.
            ("BACKFILL_VERIFY", "false"),
        ];
        let env = redis
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .chain(common.iter().chain(extra).map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        Ok(Fleet { exe: std::env::current_exe()?, dir: dir.to_path_buf(), env, procs: Vec::new() })
    }

    pub fn add(&mut self, role: &'static str, args: &[&str]) -> anyhow::Result<usize> {
        let n = self.procs.iter().filter(|p| p.role == role).count();
        self.procs.push(Proc { role, n, starts: 0, child: None });
        let i = self.procs.len() - 1;
        self.start(i, args)?;
        Ok(i)
    }

    pub fn start(&mut self, i: usize, args: &[&str]) -> anyhow::Result<()> {
        let p = &mut self.procs[i];
        p.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}-{}.log", p.role, p.n)))?;
        let child = Command::new(&self.exe)
            .arg(p.role)
            .args(args)
            // Where Redis is comes from the fleet's own settings, never from this process's.
            .env_remove("REDIS_URL")
            .env_remove("REDIS_SENTINELS")
            .env_remove("REDIS_SENTINEL_MASTER")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("failed to start tickfill {}", p.role))?;
        p.child = Some(child);
        Ok(())
    }

    /// The process ids of the running processes of `role`.
    pub fn pids(&self, role: &str) -> Vec<u32> {
        self.procs.iter().filter(|p| p.role == role).filter_map(|p| p.child.as_ref().map(Child::id)).collect()
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.start(i, &[])
    }

    /// SIGTERM to everyone, then SIGKILL whatever is still running after `grace`.
    pub fn stop_all(&mut self, grace: Duration) {
        for p in &self.procs {
            if let Some(c) = &p.child {
                let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            }
        }
        let until = Instant::now() + grace;
        for p in &mut self.procs {
            if let Some(mut c) = p.child.take() {
                while Instant::now() < until && matches!(c.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
}

/// Polls `ready` every 200 ms until it holds, or fails after `secs`.
pub async fn wait_for<F, Fut>(secs: u64, what: &str, mut ready: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if ready().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("{what} did not happen within {secs} s")
}
