//! One Redis connection that follows the primary. Every Redis user in tickfill (the apalis
//! storages and producer, the budget and housekeeping scripts, the admin API, the CLI) holds a
//! clone of a [`RedisConn`]; the bridge's SUBSCRIBE asks it for the primary's client and
//! subscribes again whenever it switches ([`RedisConn::switches`]).
//!
//! It finds the primary (behind sentinels: the one they name, checked with `ROLE`; at one address:
//! that address, checked the same way) and swaps to a new one, without a restart, when a command
//! answers `READONLY` (a primary demoted to replica), `NOREPLICAS` or `MASTERDOWN`, when the
//! connection drops or a command goes unanswered for `REDIS_RESPONSE_TIMEOUT` (a frozen primary),
//! when a sentinel announces `+switch-master`, or when the once-a-second `ROLE` check finds it
//! talking to a replica. A command refused as `READONLY`, `NOREPLICAS` or `MASTERDOWN` was not run,
//! so it is sent once more to the new primary; one that timed out or lost its connection may have
//! run, so its error goes back to the caller (whose retries are idempotent). Scripts load themselves
//! on the new primary (`EVALSHA` falls back to `EVAL` on `NOSCRIPT`).

use std::{
    sync::{Arc, RwLock, Weak},
    time::Duration,
};

use futures::StreamExt;
use redis::{
    aio::{ConnectionLike, MultiplexedConnection},
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline,
    RedisConnectionInfo, RedisError, RedisFuture, RedisResult, Value,
};
use tokio::sync::{watch, Mutex};

use crate::config::{RedisSettings, RedisTarget, SentinelTarget};

/// How often an idle process checks that it still talks to the primary.
const ROLE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long one switch keeps looking for a primary before it lets its caller fail (the next
/// failing command looks again).
const SWITCH_PATIENCE: Duration = Duration::from_secs(30);
/// Pause between two looks for a primary.
const LOOK_AGAIN: Duration = Duration::from_millis(200);

/// A clonable handle on the one connection of a process (or of one part of it).
#[derive(Clone)]
pub struct RedisConn {
    shared: Arc<Shared>,
}

struct Shared {
    target: RedisTarget,
    timeout: Duration,
    /// Shared, so a command takes its connection without copying the client or the address.
    now: RwLock<Arc<Current>>,
    /// Held while a switch looks for the primary; commands wait for it instead of using a
    /// connection known to be bad.
    switching: Mutex<Finder>,
    /// The switch count, for those who must act on a switch (the bridge subscribes again and
    /// replays its recent pushes).
    switches: watch::Sender<u64>,
}

struct Current {
    generation: u64,
    conn: MultiplexedConnection,
    client: Client,
    addr: String,
}

/// Finds the primary: at one address, or by asking every sentinel at once (one that hangs, or
/// still names the old primary, does not hold up the others).
enum Finder {
    Url(Client),
    Sentinels(Vec<SentinelClient>),
}

/// Why the connection goes looking for the primary, and whether the failed command may be sent
/// again (it was refused, not run).
fn verdict(e: &RedisError) -> Option<bool> {
    use redis::{ErrorKind::Server, ServerErrorKind::*};
    let code = e.code().unwrap_or("");
    if matches!(e.kind(), Server(ReadOnly | MasterDown)) || ["READONLY", "NOREPLICAS", "MASTERDOWN"].contains(&code) {
        return Some(true);
    }
    if e.is_timeout() || e.is_connection_dropped() || e.is_io_error() || e.is_connection_refusal() {
        return Some(false);
    }
    None
}

impl RedisConn {
    /// Connects to the primary of `settings` (one attempt, bounded by the response timeout) and
    /// starts following it.
    pub async fn connect(settings: &RedisSettings) -> RedisResult<RedisConn> {
        let mut finder = match &settings.target {
            RedisTarget::Url(url) => Finder::Url(Client::open(url.expose())?),
            RedisTarget::Sentinel(s) => Finder::Sentinels(sentinel_clients(s)?),
        };
        let timeout = settings.response_timeout;
        // Patient for a moment: during a failover the sentinels name the new primary one by one.
        let began = tokio::time::Instant::now();
        let first = loop {
            let e = match tokio::time::timeout(timeout * 2, find_primary(&mut finder, timeout)).await {
                Ok(Ok(found)) => break found,
                Ok(Err(e)) => e,
                Err(_) => timed_out("no primary answered"),
            };
            if began.elapsed() >= timeout * 2 {
                return Err(e);
            }
            tokio::time::sleep(LOOK_AGAIN).await;
        };
        let (switches, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            target: settings.target.clone(),
            timeout,
            now: RwLock::new(Arc::new(Current { generation: 0, conn: first.0, client: first.1, addr: first.2 })),
            switching: Mutex::new(finder),
            switches,
        });
        tokio::spawn(check_role(Arc::downgrade(&shared)));
        if let RedisTarget::Sentinel(s) = &settings.target {
            for i in 0..s.sentinels.len() {
                tokio::spawn(hear_switches(Arc::downgrade(&shared), s.clone(), i));
            }
        }
        Ok(RedisConn { shared })
    }

    /// The primary's client now: for connections of their own (pub/sub).
    pub fn client(&self) -> Client {
        self.shared.current().client.clone()
    }

    /// The primary's address now (`host:port`), for logs.
    pub fn primary(&self) -> String {
        self.shared.current().addr.clone()
    }

    /// Changes each time the connection moves to another primary (or reconnects).
    pub fn switches(&self) -> watch::Receiver<u64> {
        self.shared.switches.subscribe()
    }

    /// A pub/sub connection to the primary now, and what changes when the connection moves to
    /// another primary (then subscribe again: the old one's messages stop).
    pub async fn pubsub(&self) -> RedisResult<(redis::aio::PubSub, watch::Receiver<u64>)> {
        let mut switched = self.switches();
        switched.mark_unchanged();
        let client = self.client();
        let pubsub = tokio::time::timeout(self.shared.timeout, client.get_async_pubsub())
            .await
            .map_err(|_| timed_out("the primary did not answer a subscription"))??;
        Ok((pubsub, switched))
    }

    /// Looks for the primary now (as a failed command would) and waits until the connection is on
    /// one; `false` if none answered within the switch's patience.
    pub async fn reconnect(&self, why: &str) -> bool {
        let seen = self.shared.current().generation;
        self.shared.switch(seen, why).await
    }
}

impl Shared {
    fn current(&self) -> Arc<Current> {
        self.now.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for a switch under way to end.
    async fn settled(&self) -> Arc<Current> {
        if self.switching.try_lock().is_err() {
            drop(self.switching.lock().await);
        }
        self.current()
    }

    /// Moves to the primary, unless another caller already moved past `seen`. Returns whether
    /// the connection is on a primary it found after `seen`.
    async fn switch(&self, seen: u64, why: &str) -> bool {
        let mut finder = self.switching.lock().await;
        if self.current().generation != seen {
            return true;
        }
        let began = tokio::time::Instant::now();
        loop {
            match tokio::time::timeout(self.timeout * 2, find_primary(&mut finder, self.timeout)).await {
                Ok(Ok((conn, client, addr))) => {
                    let was = self.current().addr.clone();
                    let generation = seen + 1;
                    *self.now.write().unwrap_or_else(|p| p.into_inner()) =
                        Arc::new(Current { generation, conn, client, addr });
                    let now = self.current().addr.clone();
                    if now == was {
                        tracing::info!(primary = %now, why, "Redis: reconnected");
                    } else {
                        tracing::warn!(from = %was, to = %now, why, "Redis: moved to the new primary");
                    }
                    self.switches.send_replace(generation);
                    crate::metrics::get().redis_switches.inc();
                    return true;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "Redis: no primary yet"),
                Err(_) => tracing::debug!("Redis: the primary did not answer in time"),
            }
            if began.elapsed() > SWITCH_PATIENCE {
                tracing::error!(redis = %self.target.describe(), why, "Redis: no primary found; the next failed command looks again");
                return false;
            }
            tokio::time::sleep(LOOK_AGAIN).await;
        }
    }
}

fn timed_out(what: &'static str) -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, what))
}

/// The connection info of a `host:port` with an optional password.
fn node(host: &str, port: u16, password: Option<&str>, db: i64) -> RedisResult<ConnectionInfo> {
    let mut redis = RedisConnectionInfo::default().set_db(db);
    if let Some(p) = password {
        redis = redis.set_password(p);
    }
    Ok(ConnectionAddr::Tcp(host.to_string(), port).into_connection_info()?.set_redis_settings(redis))
}

/// A Sentinel client per sentinel.
fn sentinel_clients(s: &SentinelTarget) -> RedisResult<Vec<SentinelClient>> {
    let mut data = RedisConnectionInfo::default().set_db(s.db);
    if let Some(p) = &s.password {
        data = data.set_password(p.expose());
    }
    s.sentinels
        .iter()
        .map(|(h, p)| {
            let sentinel = node(h, *p, s.sentinel_password.as_ref().map(|x| x.expose()), 0)?;
            let info = SentinelNodeConnectionInfo::default().set_redis_connection_info(data.clone());
            SentinelClient::build(vec![sentinel], s.master.clone(), Some(info), SentinelServerType::Master)
        })
        .collect()
}

/// A connection to the primary: its client and address. At one address, the server there once it
/// says it is a primary (or cannot say: `ROLE` refused).
async fn find_primary(finder: &mut Finder, timeout: Duration) -> RedisResult<(MultiplexedConnection, Client, String)> {
    let client = match finder {
        Finder::Url(c) => c.clone(),
        Finder::Sentinels(all) => {
            let asks = all.iter_mut().map(|s| {
                Box::pin(async move {
                    tokio::time::timeout(timeout, s.async_get_client())
                        .await
                        .map_err(|_| timed_out("a sentinel did not answer"))?
                })
            });
            futures::future::select_ok(asks).await?.0
        }
    };
    let cfg = AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(Some(timeout));
    let mut conn = client.get_multiplexed_async_connection_with_config(&cfg).await?;
    if !is_primary(&mut conn).await? {
        return Err(RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
            "a replica, not the primary",
        )));
    }
    let addr = match client.get_connection_info().addr() {
        ConnectionAddr::Tcp(h, p) | ConnectionAddr::TcpTls { host: h, port: p, .. } => format!("{h}:{p}"),
        other => other.to_string(),
    };
    Ok((conn, client, addr))
}

/// Whether the server says it is a primary; `true` where `ROLE` is refused (some managed Redis).
async fn is_primary(conn: &mut MultiplexedConnection) -> RedisResult<bool> {
    match redis::cmd("ROLE").query_async::<Value>(conn).await {
        Ok(Value::Array(v)) => Ok(matches!(v.first(), Some(Value::BulkString(b)) if b == b"master")),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => Ok(true),
        Err(e) if verdict(&e).is_some() => Err(e),
        Err(_) => Ok(true),
    }
}

/// Once a second: is the connection still on a primary? A demoted primary that nobody writes to
/// (an idle bridge) would otherwise keep its subscribers for ever.
async fn check_role(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(ROLE_CHECK_EVERY).await;
        let Some(s) = shared.upgrade() else { return };
        let now = s.settled().await;
        let mut conn = now.conn.clone();
        let why = match tokio::time::timeout(s.timeout, is_primary(&mut conn)).await {
            Ok(Ok(true)) => continue,
            Ok(Ok(false)) => "the server turned replica",
            Ok(Err(_)) => "the role check failed",
            Err(_) => "the role check went unanswered",
        };
        s.switch(now.generation, why).await;
    }
}

/// Listens to one sentinel's `+switch-master` for our primary's name and switches at once: the
/// connection moves when the sentinels promote, not when a command first fails. Every sentinel
/// has a listener of its own, so a frozen or lost one does not silence the rest.
async fn hear_switches(shared: Weak<Shared>, target: SentinelTarget, index: usize) {
    let (host, port) = target.sentinels[index].clone();
    loop {
        if shared.strong_count() == 0 {
            return;
        }
        let heard = async {
            let info = node(&host, port, target.sentinel_password.as_ref().map(|x| x.expose()), 0)?;
            let mut pubsub = Client::open(info)?.get_async_pubsub().await?;
            pubsub.subscribe("+switch-master").await?;
            let mut messages = pubsub.on_message();
            while let Some(m) = messages.next().await {
                // "<name> <old ip> <old port> <new ip> <new port>"
                let text: String = m.get_payload().unwrap_or_default();
                let words: Vec<&str> = text.split(' ').collect();
                if words.first() != Some(&target.master.as_str()) {
                    continue;
                }
                let Some(s) = shared.upgrade() else { return Ok(()) };
                let now = s.current();
                if words.len() == 5 && now.addr == format!("{}:{}", words[3], words[4]) {
                    continue; // already there (another sentinel told first)
                }
                tokio::spawn(async move { s.switch(now.generation, "a sentinel announced a new primary").await });
            }
            Ok::<(), RedisError>(())
        };
        // A sentinel that goes away is listened to again once it is back; the others and the role
        // check cover the gap.
        let _ = tokio::time::timeout(Duration::from_secs(3600), heard).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl RedisConn {
    /// After a failed command: moves to the primary if the error says so; `true` when the command
    /// may be sent once more (it was refused, not run, and the connection moved).
    async fn recover(&self, seen: u64, e: &RedisError) -> bool {
        match verdict(e) {
            None => false,
            Some(again) => self.shared.switch(seen, "a command failed").await && again,
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let now = self.shared.settled().await;
            let mut conn = now.conn.clone();
            match conn.req_packed_command(cmd).await {
                Err(e) if self.recover(now.generation, &e).await => {
                    self.shared.current().conn.clone().req_packed_command(cmd).await
                }
                r => r,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let now = self.shared.settled().await;
            let mut conn = now.conn.clone();
            match conn.req_packed_commands(pipeline, offset, count).await {
                Err(e) if self.recover(now.generation, &e).await => {
                    self.shared.current().conn.clone().req_packed_commands(pipeline, offset, count).await
                }
                r => r,
            }
        })
    }

    fn get_db(&self) -> i64 {
        match &self.shared.target {
            RedisTarget::Sentinel(s) => s.db,
            RedisTarget::Url(_) => self.shared.current().client.get_connection_info().redis_settings().db(),
        }
    }
}

/// Connects to the Redis of `redis` (one address, or the primary its sentinels name) with a
/// connection that follows the primary ([`RedisConn`]).
pub async fn connect(redis: &RedisSettings) -> anyhow::Result<RedisConn> {
    use anyhow::Context as _;
    RedisConn::connect(redis).await.with_context(|| format!("failed to connect to Redis ({})", redis.target.describe()))
}

/// Connects to the Redis at `url` (a bench's or a simulator's own), with the default timeouts.
pub async fn connect_url(url: &str) -> anyhow::Result<RedisConn> {
    let settings = RedisSettings::at(url).map_err(|e| anyhow::anyhow!("not a Redis URL: {e}"))?;
    connect(&settings).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(kind: redis::ServerErrorKind, text: &'static str) -> RedisError {
        RedisError::from((redis::ErrorKind::Server(kind), text))
    }

    #[test]
    fn a_refused_write_is_sent_again_a_lost_answer_is_not_and_other_errors_are_the_callers() {
        assert_eq!(
            verdict(&server(redis::ServerErrorKind::ReadOnly, "You can't write against a read only replica")),
            Some(true)
        );
        assert_eq!(verdict(&server(redis::ServerErrorKind::MasterDown, "link with MASTER is down")), Some(true));
        let lost = RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"));
        assert_eq!(verdict(&lost), Some(false));
        let dropped = RedisError::from(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gone"));
        assert_eq!(verdict(&dropped), Some(false));
        assert_eq!(verdict(&server(redis::ServerErrorKind::ResponseError, "wrong number of arguments")), None);
        assert_eq!(verdict(&server(redis::ServerErrorKind::NoScript, "No matching script")), None);
    }
}
