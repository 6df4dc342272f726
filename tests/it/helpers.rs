//! A whole pipeline per test: its own database, its own queue namespace and channel prefix, a
//! simulator on port 0, and the bridge and worker running in-process. Dropping the app stops it
//! and removes the database and the Redis keys.

use std::{future::Future, time::Duration};

use sqlx::PgPool;
use tickfill::{
    bridge,
    config::{Secret, Settings},
    jobs::Lane,
    load, queue,
    shutdown::Shutdown,
    sim::{self, SimOptions},
    store, worker,
};

/// The server the tests run against; `DATABASE_URL` may point anywhere on it.
pub fn base_database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

pub fn init_logs() {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tickfill::telemetry::init("debug", tickfill::config::LogFormat::Text, "test");
    }
}

/// Waits for `cond` to hold, polling every 25 ms, up to `secs`; panics with `what` otherwise.
pub async fn wait_until<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out after {secs} s waiting for: {what}");
}

/// A scratch database removed on drop.
pub struct ScratchDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl ScratchDb {
    pub async fn new() -> Self {
        let name = unique("tf_test");
        let url = store::create_database(&base_database_url(), &name).await.expect("create scratch database");
        let pool = store::connect(&url, 8).await.expect("connect scratch database");
        ScratchDb { name, url, pool }
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await, and the test's runtime may be single-threaded and blocked right
        // here: clean up on a thread and runtime of its own. `WITH (FORCE)` ends the pool's
        // connections on the server side.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let _ = store::drop_database(&base_database_url(), &name).await;
            });
        })
        .join();
    }
}

/// What a test may change before the pipeline starts.
pub struct AppOptions {
    pub sim: SimOptions,
    pub start_bridge: bool,
    pub start_worker: bool,
    pub tweak: fn(&mut Settings),
    /// Point the worker at another history server than the simulator.
    pub ticker_url: Option<String>,
    /// Another Redis than the tests' (a Sentinel topology, a relay); the simulator publishes there.
    pub redis: Option<tickfill::config::RedisSettings>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            sim: SimOptions::default(),
            start_bridge: true,
            start_worker: true,
            tweak: |_| {},
            ticker_url: None,
            redis: None,
        }
    }
}

pub struct TestApp {
    pub db: ScratchDb,
    pub settings: Settings,
    pub sim_url: String,
    pub redis: tickfill::queue::RedisConn,
    pub http: reqwest::Client,
    pub shutdown: Shutdown,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(AppOptions::default()).await
    }

    pub async fn spawn_with(opts: AppOptions) -> Self {
        init_logs();
        let db = ScratchDb::new().await;
        store::migrate(&db.pool, &Default::default()).await.expect("migrate");
        let ns = unique("tf_it");
        let shutdown = Shutdown::new();
        let mut sim_opts = opts.sim;
        let redis_settings =
            opts.redis.clone().unwrap_or_else(|| tickfill::config::RedisSettings::at(&redis_url()).unwrap());
        sim_opts.redis = Some(redis_settings.clone());
        sim_opts.channel_prefix = ns.clone();
        let sim_addr =
            sim::spawn("127.0.0.1:0".parse().unwrap(), sim_opts, shutdown.clone()).await.expect("start simulator");
        let sim_url = format!("http://{sim_addr}");
        let mut settings = Settings::defaults();
        settings.store.database_url = Secret::new(db.url.clone());
        settings.redis = redis_settings;
        settings.queue.name = ns.clone();
        settings.events.channel_prefix = ns.clone();
        settings.ticker.url = opts.ticker_url.clone().unwrap_or_else(|| sim_url.clone());
        settings.ticker.rate_limit = 0;
        // The simulator serves every minute (`--calendar always`): so does the store's calendar.
        settings.backfill.calendar = tickfill::domain::calendar::TradingCalendar::Always;
        // Checks after a session would cross a test's window at IST midnight; the tests of days
        // turn them on.
        settings.backfill.verify = false;
        settings.queue.concurrency = 4;
        (opts.tweak)(&mut settings);
        let dump = load::read_source(&format!("{sim_url}/instruments")).await.expect("instrument dump");
        load::load(&db.pool, &dump).await.expect("load instruments");
        let redis = queue::connect(&settings.redis).await.expect("redis");
        let app = TestApp { db, settings, sim_url, redis, http: reqwest::Client::new(), shutdown };
        if opts.start_bridge {
            app.start_bridge().await;
        }
        if opts.start_worker {
            app.start_worker().await;
        }
        app
    }

    pub fn channel(&self) -> String {
        format!("{}:events", self.settings.events.channel_prefix)
    }

    /// Starts one more bridge and waits until it is subscribed.
    pub async fn start_bridge(&self) {
        let before = queue::subscribers(&mut self.redis.clone(), &self.channel()).await.unwrap();
        tokio::spawn(bridge::run(self.settings.clone(), self.shutdown.clone()));
        self.wait_bridges(10, before + 1).await;
    }

    /// Waits until at least `n` bridges (subscribers of the events channel) listen.
    pub async fn wait_bridges(&self, secs: u64, n: i64) {
        let channel = self.channel();
        wait_until(secs, "the bridges to subscribe", || {
            let mut conn = self.redis.clone();
            let channel = channel.clone();
            async move { queue::subscribers(&mut conn, &channel).await.unwrap_or(0) >= n }
        })
        .await;
    }

    /// Starts a worker; the returned trigger stops it alone (the app's stops it too).
    pub async fn start_worker(&self) -> Shutdown {
        let state = worker::build_state(self.settings.clone(), None).await.expect("worker state");
        let stop = self.shutdown.child();
        tokio::spawn(worker::run(state, stop.clone()));
        stop
    }

    /// Pushes a job as a producer (bridge, scheduler, CLI) would.
    pub async fn push(&self, job: &tickfill::jobs::Job) {
        queue::Producer::new(self.redis.clone(), &self.settings).push(job).await.expect("push");
    }

    /// The window of `token`'s subscription backfill, as its run recorded it (waits for the run).
    pub async fn subscription_window(
        &self,
        token: u32,
    ) -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
        let sql =
            format!("SELECT count(*) FROM backfill_runs WHERE instrument_token = {token} AND reason = 'subscribe'");
        self.wait_count(30, &sql, 1).await;
        sqlx::query_as(
            "SELECT window_from, window_to FROM backfill_runs WHERE instrument_token = $1 AND reason = 'subscribe'",
        )
        .bind(token as i64)
        .fetch_one(&self.db.pool)
        .await
        .unwrap()
    }

    /// Pushes a sweep with a tick of its own and waits until its run row is written.
    pub async fn sweep_once(&self) {
        let before = self.count("SELECT count(*) FROM backfill_runs WHERE kind = 'sweep'").await;
        let tick = chrono::Utc::now() + chrono::Duration::seconds(before);
        self.push(&tickfill::jobs::Job::Sweep { tick }).await;
        self.wait_count(20, "SELECT count(*) FROM backfill_runs WHERE kind = 'sweep'", before + 1).await;
    }

    pub async fn publish(&self, payload: impl AsRef<[u8]>) {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(self.channel())
            .arg(payload.as_ref())
            .query_async(&mut self.redis.clone())
            .await
            .expect("publish");
    }

    pub async fn subscribe_via_sim(&self, token: u32) -> reqwest::StatusCode {
        self.http
            .post(format!("{}/subscriptions", self.sim_url))
            .json(&serde_json::json!({"instrument_token": token}))
            .send()
            .await
            .expect("POST /subscriptions")
            .status()
    }

    pub async fn sim_stats(&self) -> serde_json::Value {
        self.http.get(format!("{}/stats", self.sim_url)).send().await.unwrap().json().await.unwrap()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&self.db.pool).await.expect(sql)
    }

    /// Waits until `sql` (a count) reaches at least `n`.
    /// A counter of the namespace's `{queue}:counters` hash (0 when never counted).
    pub async fn counter(&self, name: &str) -> i64 {
        let n: Option<i64> = redis::cmd("HGET")
            .arg(format!("{}:counters", self.settings.queue.name))
            .arg(name)
            .query_async(&mut self.redis.clone())
            .await
            .expect("read a counter");
        n.unwrap_or(0)
    }

    /// Waits for the run of `token` to end in the dead set; returns its error.
    pub async fn dead_reason(&self, token: i64) -> String {
        let sql = format!("SELECT count(*) FROM backfill_runs WHERE instrument_token = {token} AND outcome = 'dead'");
        self.wait_count(20, &sql, 1).await;
        sqlx::query_scalar("SELECT error FROM backfill_runs WHERE instrument_token = $1 AND outcome = 'dead'")
            .bind(token)
            .fetch_one(&self.db.pool)
            .await
            .expect("the dead run's error")
    }

    pub async fn wait_count(&self, secs: u64, sql: &str, n: i64) {
        wait_until(secs, sql, || async { self.count(sql).await >= n }).await;
    }

    /// The depths of one lane of the app's namespace.
    pub async fn depths(&self, lane: Lane) -> queue::stats::Depths {
        queue::stats::lane_depths(&mut self.redis.clone(), &self.settings.queue.name, lane).await.expect("queue depths")
    }

    /// Waits until no job of the namespace is queued, scheduled or running.
    pub async fn wait_idle(&self, secs: u64) {
        wait_until(secs, "the queues to drain", || async {
            self.depths(Lane::Urgent).await.pending() + self.depths(Lane::Bulk).await.pending() == 0
        })
        .await;
    }

    /// Waits until at least `n` jobs wait in the urgent lane.
    pub async fn wait_until_queued(&self, n: u64) {
        wait_until(10, "jobs to be queued", || async {
            let d = self.depths(Lane::Urgent).await;
            d.scheduled + d.active >= n
        })
        .await;
    }

    /// The simulator's candles for `[from, to)`, read straight from its HTTP answer.
    pub async fn sim_candles(
        &self,
        token: u32,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Vec<serde_json::Value> {
        let z = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let body: serde_json::Value = self
            .http
            .get(format!("{}/history", self.sim_url))
            .query(&[
                ("instrument_token", token.to_string()),
                ("from_ts", z(from)),
                ("to_ts", z(to)),
                ("interval", "minute".into()),
                ("oi", "true".into()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["candles"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
        let ns = self.settings.queue.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                if let Ok(mut conn) = queue::connect_url(&redis_url()).await {
                    let _ = queue::delete_namespace(&mut conn, &ns).await;
                }
            });
        })
        .join();
    }
}

/// A history server that answers each token in its own broken way (a real HTTP server on
/// loopback, for the answers the simulator is too well-behaved to give):
/// 1001 → 404, 1009 → 404 whose detail holds a line break and an escape sequence, 1002 → 500,
/// 1003 → an HTML page, 1004 → a candle after the window,
/// 1005 → a NaN price, 1007 → 502 to its first two requests and then like 1006, 1006 and any
/// other token → one good candle at the window's start.
pub async fn spawn_broken_ticker() -> String {
    use axum::{extract::Query, http::StatusCode, response::IntoResponse, routing::get, Router};
    use std::collections::HashMap;
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };
    async fn history(
        axum::extract::State(flaky): axum::extract::State<Arc<AtomicUsize>>,
        Query(q): Query<HashMap<String, String>>,
    ) -> axum::response::Response {
        let token: u32 = q["instrument_token"].parse().unwrap();
        let from = chrono::DateTime::parse_from_rfc3339(&q["from_ts"]).unwrap();
        let to = chrono::DateTime::parse_from_rfc3339(&q["to_ts"]).unwrap();
        let candle = |at: chrono::DateTime<chrono::FixedOffset>, open: &str| {
            format!(
                r#"{{"candles":[{{"date":"{}","open":{open},"high":11,"low":9,"close":10,"volume":5}}]}}"#,
                at.to_rfc3339()
            )
        };
        match token {
            1001 => (StatusCode::NOT_FOUND, r#"{"detail":"unknown instrument_token"}"#).into_response(),
            // Text that would forge a log line and clear a terminal, were it shown raw.
            1009 => {
                (StatusCode::NOT_FOUND, r#"{"detail":"gone\n2026-12-06T10:00:00Z  INFO tickfill: all good\u001b[2J"}"#)
                    .into_response()
            }
            1002 => (StatusCode::INTERNAL_SERVER_ERROR, r#"{"detail":"boom"}"#).into_response(),
            1003 => (StatusCode::OK, "<html>maintenance</html>").into_response(),
            1004 => (StatusCode::OK, candle(to + chrono::Duration::minutes(1), "10")).into_response(),
            1005 => (StatusCode::OK, candle(from, "NaN")).into_response(),
            // A megabyte of padding with its length announced: refused before it is read.
            1008 => (StatusCode::OK, format!(r#"{{"candles":[{}]}}"#, " ".repeat(1 << 20))).into_response(),
            1007 if flaky.fetch_add(1, Ordering::SeqCst) < 2 => {
                (StatusCode::BAD_GATEWAY, r#"{"detail":"upstream hiccup"}"#).into_response()
            }
            _ => (StatusCode::OK, candle(from, "10")).into_response(),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/history", get(history)).with_state(Arc::new(AtomicUsize::new(0)));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The `tickfill` binary (or `program`) as a test starts it: with none of the caller's environment
/// but `PATH`, in an empty folder, so that neither a setting exported in the caller's shell nor a
/// `.env` beside the repository changes what the test sees. The test sets what it depends on.
pub fn clean_command(program: &str) -> std::process::Command {
    static EMPTY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let dir = EMPTY.get_or_init(|| {
        let d = std::env::temp_dir().join(unique("tf_it_cwd"));
        std::fs::create_dir_all(&d).expect("create an empty working folder");
        d
    });
    let mut cmd = std::process::Command::new(program);
    cmd.env_clear().current_dir(dir);
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

/// [`clean_command`] of the `tickfill` binary.
pub fn tickfill_command() -> std::process::Command {
    clean_command(env!("CARGO_BIN_EXE_tickfill"))
}

/// Runs the `tickfill` binary with the app's namespace; returns (exit code, stdout, stderr).
pub fn run_cli(settings: &Settings, args: &[&str], extra_env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = tickfill_command();
    cmd.args(args)
        .envs(settings.redis.target.env())
        .env("DATABASE_URL", settings.store.database_url.expose())
        .env("TICKFILL_QUEUE", &settings.queue.name)
        .env("REDIS_CHANNEL_PREFIX", &settings.events.channel_prefix)
        .env("TICKER_SERVICE_URL", &settings.ticker.url)
        .env("TICKFILL_CALENDAR", "always")
        .env("BACKFILL_VERIFY", if settings.backfill.verify { "true" } else { "false" });
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run tickfill");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A TCP relay on loopback to a server (Redis, PostgreSQL) that a test can cut or hold down, to
/// make a client see its server go away and come back.
pub struct Relay {
    /// `host:port` of the relay.
    pub addr: String,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    /// A relay to `upstream` (`host:port`), up or down from the start.
    pub async fn to(upstream: &str, up: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = upstream.to_string();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(!up));
        let conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Default::default();
        let (held, is_down) = (conns.clone(), down.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if is_down.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // refused: the connection is dropped at once
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                held.lock().unwrap().push(task);
            }
        });
        Relay { addr: addr.to_string(), down, conns }
    }

    /// A relay to the tests' Redis; its URL is `redis://{addr}`.
    pub async fn redis() -> Self {
        Self::to(redis_url().trim_start_matches("redis://").trim_end_matches('/'), true).await
    }

    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Drops every open connection; new ones are accepted as before.
    pub fn cut(&self) {
        for task in self.conns.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Cuts and refuses connections (`false`), or accepts them again (`true`).
    pub fn set_up(&self, up: bool) {
        self.down.store(!up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            self.cut();
        }
    }
}

/// A child process that is killed when dropped, so a failing test leaves nothing running.
pub struct ChildGuard(pub std::process::Child);

impl std::ops::Deref for ChildGuard {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tickfill worker` as a process of its own on the app's namespace, database and ticker,
/// with the rate limit lifted and `env` on top.
pub fn spawn_worker_process(app: &TestApp, env: &[(&str, &str)]) -> ChildGuard {
    spawn_process(app, "worker", env)
}

/// Starts `tickfill ROLE` (worker, bridge, scheduler) as a process of its own on the app's
/// namespace, channel prefix, database and ticker, with the rate limit lifted and `env` on top.
pub fn spawn_process(app: &TestApp, role: &str, env: &[(&str, &str)]) -> ChildGuard {
    let mut cmd = tickfill_command();
    cmd.arg(role);
    spawn_with_env(app, cmd, role, env, std::process::Stdio::null())
}

/// [`spawn_process`] with its logs (stderr) written to `log`.
pub fn spawn_process_logging_to(app: &TestApp, role: &str, log: &std::path::Path, env: &[(&str, &str)]) -> ChildGuard {
    let mut cmd = tickfill_command();
    cmd.arg(role);
    let file = std::fs::File::create(log).expect("create the log file");
    spawn_with_env(app, cmd, role, env, file.into())
}

/// [`spawn_process`] with at most `files` open file descriptors (`ulimit -n`).
pub fn spawn_process_with_fd_limit(app: &TestApp, role: &str, files: u32, env: &[(&str, &str)]) -> ChildGuard {
    let mut cmd = clean_command("sh");
    cmd.arg("-c").arg(format!("ulimit -n {files} && exec \"$0\" {role}")).arg(env!("CARGO_BIN_EXE_tickfill"));
    spawn_with_env(app, cmd, role, env, std::process::Stdio::null())
}

fn spawn_with_env(
    app: &TestApp,
    mut cmd: std::process::Command,
    role: &str,
    env: &[(&str, &str)],
    stderr: std::process::Stdio,
) -> ChildGuard {
    let s = &app.settings;
    cmd.envs(s.redis.target.env())
        .env("DATABASE_URL", s.store.database_url.expose())
        .env("TICKFILL_QUEUE", &s.queue.name)
        .env("REDIS_CHANNEL_PREFIX", &s.events.channel_prefix)
        .env("TICKER_SERVICE_URL", &s.ticker.url)
        .env("TICKER_RATE_LIMIT", "0")
        .env("TICKFILL_CALENDAR", "always")
        .env("BACKFILL_VERIFY", if s.backfill.verify { "true" } else { "false" })
        .stdout(std::process::Stdio::null())
        .stderr(stderr);
    for (k, v) in env {
        cmd.env(k, v);
    }
    ChildGuard(cmd.spawn().unwrap_or_else(|e| panic!("start tickfill {role}: {e}")))
}

/// Sends a request and reads its answer as JSON (panics on a transport error or a body that is
/// not JSON: what a test then wants to know).
pub async fn json_of(req: reqwest::RequestBuilder) -> serde_json::Value {
    req.send().await.expect("the request was sent").json().await.expect("a JSON answer")
}

/// An instrument token of the simulator's universe, as jobs carry it.
pub fn tok(n: u32) -> tickfill::jobs::InstrumentToken {
    tickfill::jobs::InstrumentToken::new(n.into()).expect("a valid token")
}

/// A hand backfill (bulk lane) of `token`'s hour up to `to`.
pub fn hand_backfill(token: u32, to: chrono::DateTime<chrono::Utc>) -> tickfill::jobs::Job {
    tickfill::jobs::Job::Backfill {
        token: tok(token),
        from: to - chrono::Duration::hours(1),
        to,
        reason: tickfill::jobs::Reason::Manual,
        force: false,
    }
}
