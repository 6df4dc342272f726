//! Every Redis key and channel name of a deployment, in one place.
//!
//! A deployment's keys live under its namespace `TICKFILL_QUEUE` (`ns`):
//! - `{ns}:urgent:*`, `{ns}:bulk:*`: the apalis-redis queues of the two lanes. Their key names
//!   come from `apalis_redis::Config` (see [`LaneKeys`]), so they follow apalis, never a copy.
//! - `{ns}:rejected` (capped list of refused events), `{ns}:counters` (hash of counts),
//!   `{ns}:paused` (set while history requests are paused), `{ns}:controls` (paused lanes and
//!   kinds), `{ns}:subscribing` (sorted set of
//!   queued subscription events), `{ns}:starts:{id}` (how often a job started),
//!   `{ns}:budget:*` (the rate budget; `{ns}:budget:{account}:*` per named account),
//!   `{ns}:account:{account}:*` (an account's session, breaker and recent grants, see
//!   [`AccountKeys`]), `{ns}:chain-pending:{underlying}:{expiry}` (windows
//!   waiting for a chain rebuild).
//! - Channels: `{REDIS_CHANNEL_PREFIX}:events` (the ticker service's events) and
//!   `{ns}:{lane}:wake` (a producer's nudge to idle workers).
//!
//! apalis-redis also keeps one global key outside any namespace, [`APALIS_QUEUES`].

use apalis_redis::Config;
use chrono::NaiveDate;
use tickfill_jobs::{queue_name, Lane};

/// The global sorted set in which apalis-redis registers each queue's workers key.
pub const APALIS_QUEUES: &str = "core:apalis:queues:list";

/// The ticker service's subscription-event channel.
pub fn events_channel(prefix: &str) -> String {
    format!("{prefix}:events")
}

/// What every key of a namespace starts with.
pub fn namespace_prefix(ns: &str) -> String {
    format!("{ns}:")
}

/// Every key of a namespace, as a SCAN pattern.
pub fn namespace_pattern(ns: &str) -> String {
    format!("{ns}:*")
}

/// The newest rejected events (capped list).
pub fn rejected(ns: &str) -> String {
    format!("{ns}:rejected")
}

/// The hash of counters every process and the CLI share.
pub fn counters(ns: &str) -> String {
    format!("{ns}:counters")
}

/// While set, every history request of the namespace is halted (its value says why). The key keeps
/// the name it has always had, so a deployment upgraded while halted stays halted.
pub fn halted(ns: &str) -> String {
    format!("{ns}:paused")
}

/// Hash of the lanes and kinds an operator paused (`lane:bulk`, `kind:sweep` → who, when, how).
pub fn controls(ns: &str) -> String {
    format!("{ns}:controls")
}

/// An admin page session (by the digest of its cookie): the role it was opened with.
pub fn admin_session(ns: &str, digest: &str) -> String {
    format!("{ns}:admin-session:{digest}")
}

/// Tokens whose subscription event the bridge queued, scored by receipt.
pub fn subscribing(ns: &str) -> String {
    format!("{ns}:subscribing")
}

/// How many times task `id` has started: a second start means a worker died running it.
pub fn starts(ns: &str, id: &str) -> String {
    format!("{}{id}", starts_prefix(ns))
}

/// The common prefix of every [`starts`] key (a script appends the id).
pub fn starts_prefix(ns: &str) -> String {
    format!("{ns}:starts:")
}

/// The rate budget's keys: the grant log, the urgent-waiting flag, the last bulk grant. The
/// default account keeps the keys of the single budget it was; a named account has its own.
pub fn budget(ns: &str, account: Option<&str>) -> [String; 3] {
    let base = match account {
        None => format!("{ns}:budget"),
        Some(a) => format!("{ns}:budget:{a}"),
    };
    [format!("{base}:log"), format!("{base}:urgent"), format!("{base}:bulk")]
}

/// What a deployment keeps of one account beside its budget.
pub struct AccountKeys {
    base: String,
}

impl AccountKeys {
    pub fn new(ns: &str, account: &str) -> Self {
        AccountKeys { base: format!("{ns}:account:{account}") }
    }

    /// Hash: the Kite session (`token`, `expires_us`, `set_at`, `via`, `user`), or why it ended
    /// (`ended`, `ended_at`).
    pub fn session(&self) -> String {
        format!("{}:session", self.base)
    }

    /// Set while the account's breaker is open (it expires when the breaker closes).
    pub fn breaker(&self) -> String {
        format!("{}:breaker", self.base)
    }

    /// The account's throttle record: recent 429s and the breaker's level.
    pub fn throttles(&self) -> String {
        format!("{}:throttles", self.base)
    }

    /// Sorted set of the grants of the last minute (scored by time).
    pub fn recent(&self) -> String {
        format!("{}:recent", self.base)
    }

    /// Sorted set of the callers waiting for a grant, preferring this account (scored by when
    /// their wait lapses unless renewed).
    pub fn waiting(&self) -> String {
        format!("{}:waiting", self.base)
    }

    /// How many login redirects the account had in the minute `minute` (since the epoch).
    pub fn callbacks(&self, minute: i64) -> String {
        format!("{}:callbacks:{minute}", self.base)
    }

    /// Set for an hour once a Kite `request_token` was presented, so a replay stores nothing.
    pub fn request_token(&self, digest: &str) -> String {
        format!("{}:request-token:{digest}", self.base)
    }
}

/// The windows waiting for a chain's next rebuild (members `from` and `to`).
pub fn chain_pending(ns: &str, underlying: &str, expiry: NaiveDate) -> String {
    format!("{ns}:chain-pending:{underlying}:{expiry}")
}

/// The keys apalis-redis keeps for one lane of a namespace, named by apalis's own `Config`.
pub struct LaneKeys {
    queue: String,
    config: Config,
}

impl LaneKeys {
    pub fn new(ns: &str, lane: Lane) -> Self {
        let queue = queue_name(ns, lane);
        LaneKeys { config: Config::default().queue(&queue), queue }
    }

    /// The apalis queue name, `{ns}:{lane}`.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Jobs waiting for their time (a sorted set scored by when they are due).
    pub fn scheduled(&self) -> String {
        self.config.scheduled_jobs_set()
    }

    /// Due jobs, in the order workers take them.
    pub fn active(&self) -> String {
        self.config.active_jobs_list()
    }

    /// Every job's payload (a hash by job id).
    pub fn data(&self) -> String {
        self.config.job_data_hash()
    }

    /// The common prefix of the per-job meta hashes (a script appends `:{id}`).
    pub fn meta_prefix(&self) -> String {
        self.config.job_meta_hash()
    }

    /// One job's meta hash (attempts, result, done_at, idempotency key).
    pub fn meta(&self, id: &str) -> String {
        format!("{}:{id}", self.config.job_meta_hash())
    }

    pub fn dead(&self) -> String {
        self.config.dead_jobs_set()
    }

    pub fn done(&self) -> String {
        self.config.done_jobs_set()
    }

    /// The registered workers (a sorted set by last heartbeat).
    pub fn workers(&self) -> String {
        self.config.workers_set()
    }

    /// The list apalis's fetch blocks on.
    pub fn signal(&self) -> String {
        self.config.signal_list()
    }

    /// The common prefix of the per-worker in-flight sets (`{prefix}{worker}`).
    pub fn inflight_prefix(&self) -> String {
        format!("{}:", self.config.inflight_jobs_set())
    }

    /// The channel a producer pings after pushing, so idle workers fetch at once.
    pub fn wake(&self) -> String {
        format!("{}:wake", self.queue())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_keys_follow_apalis_under_the_namespace() {
        let k = LaneKeys::new("desk1", Lane::Urgent);
        assert_eq!(k.queue(), "desk1:urgent");
        assert_eq!(k.scheduled(), "desk1:urgent:scheduled");
        assert_eq!(k.active(), "desk1:urgent:active");
        assert_eq!(k.data(), "desk1:urgent:data");
        assert_eq!(k.meta("01J"), "desk1:urgent:meta:01J");
        assert_eq!(k.dead(), "desk1:urgent:dead");
        assert_eq!(k.done(), "desk1:urgent:done");
        assert_eq!(k.workers(), "desk1:urgent:workers");
        assert_eq!(k.signal(), "desk1:urgent:signal");
        assert_eq!(k.inflight_prefix(), "desk1:urgent:inflight:");
        assert_eq!(k.wake(), "desk1:urgent:wake");
        assert_eq!(starts("desk1", "01J"), "desk1:starts:01J");
    }
}
