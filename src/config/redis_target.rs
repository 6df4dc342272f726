//! Where Redis is: one address (`REDIS_URL`), or a primary that Sentinel names
//! (`REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER`), and how long a command may take before the
//! connection goes looking for the primary again.

use std::time::Duration;

use super::values::{parse_redis_url, within, ConfigError, Reader, Secret};

/// `REDIS_URL` when neither it nor `REDIS_SENTINELS` is set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The most sentinels `REDIS_SENTINELS` may list.
pub const MAX_SENTINELS: usize = 16;

/// How Redis is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One address: a standalone Redis, or a managed one that fails over behind one name.
    Url(Secret),
    /// The primary the sentinels name for `master`.
    Sentinel(SentinelTarget),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelTarget {
    /// `host:port` of each sentinel, in the order given.
    pub sentinels: Vec<(String, u16)>,
    /// The name the sentinels monitor the primary under.
    pub master: String,
    /// `REDIS_SENTINEL_PASSWORD`: the sentinels' own password, if they have one.
    pub sentinel_password: Option<Secret>,
    /// `REDIS_PASSWORD`: the data nodes' password, if they have one.
    pub password: Option<Secret>,
    /// `REDIS_DB`: the database on the data nodes.
    pub db: i64,
}

/// The Redis section of the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub target: RedisTarget,
    /// `REDIS_RESPONSE_TIMEOUT`: a command unanswered this long counts as a lost primary.
    pub response_timeout: Duration,
    /// `BRIDGE_REPLAY_WINDOW`: the bridge pushes the events of this last window again after it
    /// reconnects (a push acknowledged just before a failover can be missing on the new primary).
    pub replay_window: Duration,
}

impl RedisSettings {
    /// One address with the default timeouts (a bench's or a simulator's own Redis).
    pub fn at(url: &str) -> Result<RedisSettings, String> {
        Ok(RedisSettings {
            target: RedisTarget::Url(parse_redis_url(url)?),
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            replay_window: DEFAULT_REPLAY_WINDOW,
        })
    }
}

/// `REDIS_RESPONSE_TIMEOUT` when unset.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// `BRIDGE_REPLAY_WINDOW` when unset: several times the 2–3 s a Sentinel failover takes.
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(30);

impl RedisTarget {
    /// Where it points, without any password: for logs and answers.
    pub fn describe(&self) -> String {
        match self {
            RedisTarget::Url(url) => match reqwest::Url::parse(url.expose()) {
                Ok(mut u) => {
                    let _ = u.set_password(None);
                    let _ = u.set_username("");
                    u.to_string()
                }
                Err(_) => "redis (an address that could not be shown)".into(),
            },
            RedisTarget::Sentinel(s) => {
                let list: Vec<String> = s.sentinels.iter().map(|(h, p)| format!("{h}:{p}")).collect();
                format!("primary {:?} of sentinels {}", s.master, list.join(","))
            }
        }
    }

    /// The variables that make a child process reach the same Redis.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            RedisTarget::Url(url) => vec![("REDIS_URL", url.expose().to_string())],
            RedisTarget::Sentinel(s) => {
                let list: Vec<String> = s.sentinels.iter().map(|(h, p)| format!("{h}:{p}")).collect();
                let mut v = vec![("REDIS_SENTINELS", list.join(",")), ("REDIS_SENTINEL_MASTER", s.master.clone())];
                if let Some(p) = &s.sentinel_password {
                    v.push(("REDIS_SENTINEL_PASSWORD", p.expose().to_string()));
                }
                if let Some(p) = &s.password {
                    v.push(("REDIS_PASSWORD", p.expose().to_string()));
                }
                if s.db != 0 {
                    v.push(("REDIS_DB", s.db.to_string()));
                }
                v
            }
        }
    }

    /// The URL of the one address; `None` behind sentinels.
    pub fn url(&self) -> Option<&str> {
        match self {
            RedisTarget::Url(u) => Some(u.expose()),
            RedisTarget::Sentinel(_) => None,
        }
    }
}

/// `host:port,host:port,…`: each entry a host (a name or an address; IPv6 in brackets) and a port
/// 1 … 65535, no entry empty, none twice, at most [`MAX_SENTINELS`].
pub(super) fn parse_sentinels(s: &str) -> Result<Vec<(String, u16)>, String> {
    let mut out: Vec<(String, u16)> = Vec::new();
    for entry in s.split(',') {
        let e = entry.trim();
        if e.is_empty() {
            return Err("an empty entry: write host:port,host:port".into());
        }
        let (host, port) = e.rsplit_once(':').ok_or_else(|| format!("{e:?} has no port: write host:port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.len() > 253 || !host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:_".contains(c))
        {
            return Err(format!("{e:?}: the host is not a name or an address"));
        }
        let port: u16 =
            port.parse().ok().filter(|p| *p > 0).ok_or_else(|| format!("{e:?}: the port is not 1 … 65535"))?;
        if out.iter().any(|(h, p)| h == host && *p == port) {
            return Err(format!("{e:?} is listed twice"));
        }
        out.push((host.to_string(), port));
    }
    if out.len() > MAX_SENTINELS {
        return Err(format!("at most {MAX_SENTINELS} sentinels"));
    }
    Ok(out)
}

fn parse_master(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() || s.len() > 128 || !s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err("a name of letters, digits, - _ . (at most 128)".into());
    }
    Ok(s.to_string())
}

pub(super) fn read(r: &Reader<'_>) -> Result<RedisSettings, ConfigError> {
    let refuse = |var: &str, value: &str, reason: &str| ConfigError {
        var: var.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let target = match (r.raw("REDIS_SENTINELS"), r.raw("REDIS_URL")) {
        (Some(_), Some(_)) => {
            return Err(refuse(
                "REDIS_SENTINELS",
                r.raw("REDIS_SENTINELS").unwrap_or(""),
                "REDIS_URL is set too: say one (REDIS_URL for one address, REDIS_SENTINELS with REDIS_SENTINEL_MASTER for Sentinel)",
            ))
        }
        (Some(_), None) => {
            let sentinels = r.get("REDIS_SENTINELS", Vec::new(), parse_sentinels)?;
            let master = match r.raw("REDIS_SENTINEL_MASTER") {
                Some(_) => r.get("REDIS_SENTINEL_MASTER", String::new(), parse_master)?,
                None => {
                    return Err(refuse(
                        "REDIS_SENTINEL_MASTER",
                        "",
                        "REDIS_SENTINELS is set: name the primary the sentinels monitor",
                    ))
                }
            };
            let secret = |var: &str| r.raw(var).map(|v| Secret::new(v.trim()));
            let db: i64 = r.get("REDIS_DB", 0, |s| match s.trim().parse::<i64>() {
                Ok(n) if (0..=15).contains(&n) => Ok(n),
                _ => Err("expected a database number 0 … 15".into()),
            })?;
            RedisTarget::Sentinel(SentinelTarget {
                sentinels,
                master,
                sentinel_password: secret("REDIS_SENTINEL_PASSWORD"),
                password: secret("REDIS_PASSWORD"),
                db,
            })
        }
        (None, _) => {
            for var in ["REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD", "REDIS_PASSWORD", "REDIS_DB"] {
                if r.raw(var).is_some() {
                    let shown = if var.contains("PASSWORD") { "***" } else { r.raw(var).unwrap_or("") };
                    return Err(refuse(
                        var,
                        shown,
                        "only read with REDIS_SENTINELS (with REDIS_URL, write it into the URL)",
                    ));
                }
            }
            RedisTarget::Url(r.get("REDIS_URL", Secret::new(DEFAULT_REDIS_URL), parse_redis_url)?)
        }
    };
    Ok(RedisSettings {
        target,
        response_timeout: r.get("REDIS_RESPONSE_TIMEOUT", DEFAULT_RESPONSE_TIMEOUT, |s| {
            within(s, Duration::from_millis(100), Duration::from_secs(60))
        })?,
        replay_window: r.get("BRIDGE_REPLAY_WINDOW", DEFAULT_REPLAY_WINDOW, |s| {
            within(s, Duration::from_secs(0), Duration::from_secs(600))
        })?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read_map(pairs: &[(&str, &str)]) -> Result<RedisSettings, ConfigError> {
        let vars: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        read(&Reader { vars: &vars })
    }

    #[test]
    fn a_url_alone_works_as_before_and_sentinels_need_their_master() {
        let r = read_map(&[]).unwrap();
        assert_eq!(r.target, RedisTarget::Url(Secret::new(DEFAULT_REDIS_URL)));
        let r =
            read_map(&[("REDIS_SENTINELS", "10.0.0.1:26379, sentinel-b:26380"), ("REDIS_SENTINEL_MASTER", "mymaster")])
                .unwrap();
        let RedisTarget::Sentinel(s) = r.target else { panic!() };
        assert_eq!(s.sentinels, vec![("10.0.0.1".into(), 26379), ("sentinel-b".into(), 26380)]);
        assert_eq!(s.master, "mymaster");
        assert_eq!(read_map(&[("REDIS_SENTINELS", "a:1")]).unwrap_err().var, "REDIS_SENTINEL_MASTER");
    }

    #[test]
    fn both_set_a_malformed_list_or_a_stray_password_stop_startup_naming_the_variable() {
        let both =
            read_map(&[("REDIS_URL", "redis://x:6379"), ("REDIS_SENTINELS", "a:1"), ("REDIS_SENTINEL_MASTER", "m")]);
        assert_eq!(both.unwrap_err().var, "REDIS_SENTINELS");
        for bad in ["nohostport", "a:1,,b:2", "a:0", "a:70000", "a:1,a:1", ":1", "a b:1", ","] {
            let e = read_map(&[("REDIS_SENTINELS", bad), ("REDIS_SENTINEL_MASTER", "m")]).unwrap_err();
            assert_eq!(e.var, "REDIS_SENTINELS", "{bad}: {e}");
        }
        let many: Vec<String> = (1..=17).map(|p| format!("h:{p}")).collect();
        assert!(read_map(&[("REDIS_SENTINELS", &many.join(",")), ("REDIS_SENTINEL_MASTER", "m")]).is_err());
        let stray = read_map(&[("REDIS_PASSWORD", "hunter2")]).unwrap_err();
        assert_eq!(stray.var, "REDIS_PASSWORD");
        assert!(!stray.to_string().contains("hunter2"), "{stray}");
        let e = read_map(&[("REDIS_SENTINELS", "a:1"), ("REDIS_SENTINEL_MASTER", "bad name")]).unwrap_err();
        assert_eq!(e.var, "REDIS_SENTINEL_MASTER");
    }

    #[test]
    fn passwords_never_show_in_a_description_or_a_debug_print() {
        let r = read_map(&[
            ("REDIS_SENTINELS", "a:1"),
            ("REDIS_SENTINEL_MASTER", "m"),
            ("REDIS_SENTINEL_PASSWORD", "s3nt"),
            ("REDIS_PASSWORD", "d4ta"),
        ])
        .unwrap();
        let shown = format!("{} {:?}", r.target.describe(), r);
        assert!(!shown.contains("s3nt") && !shown.contains("d4ta"), "{shown}");
        let url = RedisTarget::Url(Secret::new("redis://user:pa55@h:6379/2"));
        assert!(!url.describe().contains("pa55"), "{}", url.describe());
    }
}
