//! The accounts history requests are spread over: `TICKFILL_ACCOUNTS=primary,secondary`, each
//! with its own budget (`ACCOUNT_<NAME>_RATE_LIMIT`) and, in Kite mode, its own app
//! (`ACCOUNT_<NAME>_KITE_API_KEY`, `ACCOUNT_<NAME>_KITE_API_SECRET`) and session, held in Redis.
//! `<NAME>` is the account's name upper-cased with `-` as `_`.
//!
//! Without `TICKFILL_ACCOUNTS` there is one account, [`DEFAULT_ACCOUNT`], configured as before:
//! `TICKER_RATE_LIMIT`, `KITE_API_KEY`, `KITE_ACCESS_TOKEN`; its requests name no account.

#[cfg(test)]
use std::collections::HashMap;
use std::collections::HashSet;

use super::values::{ConfigError, Reader, Secret};

/// The name of the one account of a deployment without `TICKFILL_ACCOUNTS`.
pub const DEFAULT_ACCOUNT: &str = "default";

/// The most accounts one deployment names.
pub const MAX_ACCOUNTS: usize = 64;

/// The per-account variables, after `ACCOUNT_<NAME>_`.
const PER_ACCOUNT: [&str; 3] = ["RATE_LIMIT", "KITE_API_KEY", "KITE_API_SECRET"];

/// One account of `TICKFILL_ACCOUNTS`, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedAccount {
    /// As the ticker service spells its `account_id`.
    pub name: String,
    /// `ACCOUNT_<NAME>_RATE_LIMIT`, or `None` for `TICKER_RATE_LIMIT`.
    pub rate_limit: Option<u32>,
    pub kite_api_key: Secret,
    pub kite_api_secret: Secret,
}

/// The accounts section of the settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountSettings {
    /// `TICKFILL_ACCOUNTS` and each account's variables; empty: one account, [`DEFAULT_ACCOUNT`],
    /// configured by `TICKER_RATE_LIMIT` and the three variables below.
    pub named: Vec<NamedAccount>,
    /// `KITE_API_KEY`: the one account's Kite app (without `TICKFILL_ACCOUNTS`).
    pub kite_api_key: Secret,
    /// `KITE_ACCESS_TOKEN`: the one account's Kite session, if it is not kept in Redis.
    pub kite_access_token: Secret,
    /// `KITE_API_SECRET`: the one account's Kite API secret, for `tickfill kite login`.
    pub kite_api_secret: Secret,
}

impl AccountSettings {
    /// The accounts as the worker uses them, in the order `TICKFILL_ACCOUNTS` lists them;
    /// `default_limit` is the rate limit of those that set none of their own.
    pub fn list(&self, default_limit: u32) -> Vec<Account> {
        if self.named.is_empty() {
            return vec![Account {
                name: DEFAULT_ACCOUNT.into(),
                named: false,
                rate_limit: default_limit,
                kite_api_key: self.kite_api_key.clone(),
                kite_api_secret: self.kite_api_secret.clone(),
                env_session: Some(self.kite_access_token.clone()).filter(|t| !t.is_empty()),
            }];
        }
        self.named
            .iter()
            .map(|a| Account {
                name: a.name.clone(),
                named: true,
                rate_limit: a.rate_limit.unwrap_or(default_limit),
                kite_api_key: a.kite_api_key.clone(),
                kite_api_secret: a.kite_api_secret.clone(),
                env_session: None,
            })
            .collect()
    }
}

/// One account as the worker uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    /// Whether requests carry its name (`account_id`): every account of `TICKFILL_ACCOUNTS`; not
    /// the default one, whose requests go out as they always did.
    pub named: bool,
    /// History requests per second, all replicas together; 0 = unlimited.
    pub rate_limit: u32,
    pub kite_api_key: Secret,
    pub kite_api_secret: Secret,
    /// The Kite session given by `KITE_ACCESS_TOKEN` (the default account only); `None`: the
    /// session lives in Redis, set by `tickfill kite login` or `tickfill kite session set`.
    pub env_session: Option<Secret>,
}

/// The highest rate limit: more requests a second than any history API allows, and the most
/// grants one account's window holds in Redis.
pub const MAX_RATE_LIMIT: u32 = 100_000;

/// A rate limit: requests a second, 0 (unlimited) to [`MAX_RATE_LIMIT`].
pub(super) fn parse_rate_limit(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n <= MAX_RATE_LIMIT => Ok(n),
        _ => Err(format!("expected whole requests a second, 0 (unlimited) to {MAX_RATE_LIMIT}")),
    }
}

/// `primary` → `PRIMARY`, `desk-1` → `DESK_1`: the account's part of its variables' names.
pub fn env_name(account: &str) -> String {
    account.to_ascii_uppercase().replace('-', "_")
}

/// The name of one of an account's variables, e.g. `ACCOUNT_DESK_1_RATE_LIMIT`.
pub fn variable(account: &str, what: &str) -> String {
    format!("ACCOUNT_{}_{what}", env_name(account))
}

/// Whether `s` can name an account: 1–64 of `A-Z a-z 0-9 _ -`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn refused(var: impl Into<String>, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError { var: var.into(), value: value.to_string(), reason: reason.into() }
}

/// Reads the accounts section. `kite` says whether each account needs its Kite key (and, without
/// `TICKFILL_ACCOUNTS`, whether the one account needs `KITE_API_KEY` and `KITE_ACCESS_TOKEN`).
pub(super) fn read(r: &Reader<'_>, kite: bool) -> Result<AccountSettings, ConfigError> {
    let section = AccountSettings {
        named: read_named(r, kite)?,
        kite_api_key: Secret::new(r.string("KITE_API_KEY", "")),
        kite_access_token: Secret::new(r.string("KITE_ACCESS_TOKEN", "")),
        kite_api_secret: Secret::new(r.string("KITE_API_SECRET", "")),
    };
    // Named accounts keep their sessions in Redis; the one account reads it as it always did.
    if section.named.is_empty() && kite {
        let missing = [("KITE_API_KEY", &section.kite_api_key), ("KITE_ACCESS_TOKEN", &section.kite_access_token)];
        if let Some((var, _)) = missing.iter().find(|(_, v)| v.is_empty()) {
            return Err(refused(
                *var,
                "",
                "TICKER_API=kite without TICKFILL_ACCOUNTS needs KITE_API_KEY and KITE_ACCESS_TOKEN",
            ));
        }
    }
    Ok(section)
}

/// Reads `TICKFILL_ACCOUNTS` and each account's variables. A variable `ACCOUNT_…_RATE_LIMIT` (or `_KITE_API_KEY`, `_KITE_API_SECRET`)
/// of no listed account is refused: it is a typo that would silently leave an account on the
/// defaults.
fn read_named(r: &Reader<'_>, kite: bool) -> Result<Vec<NamedAccount>, ConfigError> {
    const VAR: &str = "TICKFILL_ACCOUNTS";
    let mut accounts = Vec::new();
    if let Some(list) = r.raw(VAR) {
        let mut seen = HashSet::new();
        for name in list.split(',').map(str::trim) {
            if name.is_empty() {
                return Err(refused(VAR, list, "an empty account name (write names separated by single commas)"));
            }
            if !valid_name(name) {
                return Err(refused(
                    VAR,
                    list,
                    format!("{name:?} is not an account name: use 1-64 of A-Z a-z 0-9 _ -"),
                ));
            }
            if !seen.insert(env_name(name)) {
                return Err(refused(
                    VAR,
                    list,
                    format!("{name:?} is listed twice (names equal upper-cased with - as _ are one account)"),
                ));
            }
            accounts.push(name.to_string());
        }
        if accounts.len() > MAX_ACCOUNTS {
            return Err(refused(VAR, list, format!("{} accounts; at most {MAX_ACCOUNTS}", accounts.len())));
        }
    }
    let listed: HashSet<String> = accounts.iter().map(|a| env_name(a)).collect();
    let mut strays: Vec<&String> = r
        .vars
        .keys()
        .filter(|k| {
            let Some(rest) = k.strip_prefix("ACCOUNT_") else { return false };
            PER_ACCOUNT.iter().any(|what| {
                rest.strip_suffix(what).and_then(|n| n.strip_suffix('_')).is_some_and(|n| !listed.contains(n))
            })
        })
        .collect();
    strays.sort();
    if let Some(stray) = strays.first() {
        let why = if accounts.is_empty() {
            "TICKFILL_ACCOUNTS is not set, so no account reads it".to_string()
        } else {
            format!("it names no account of TICKFILL_ACCOUNTS ({})", accounts.join(","))
        };
        return Err(refused(stray.as_str(), "***", why));
    }
    accounts
        .into_iter()
        .map(|name| {
            let rate_limit = match r.raw(&variable(&name, "RATE_LIMIT")) {
                None => None,
                Some(_) => Some(r.get(&variable(&name, "RATE_LIMIT"), 0, parse_rate_limit)?),
            };
            let key = Secret::new(r.string(&variable(&name, "KITE_API_KEY"), ""));
            if kite && key.is_empty() {
                return Err(refused(
                    variable(&name, "KITE_API_KEY"),
                    "",
                    format!("TICKER_API=kite needs the Kite API key of account {name}"),
                ));
            }
            let secret = Secret::new(r.string(&variable(&name, "KITE_API_SECRET"), ""));
            Ok(NamedAccount { name, rate_limit, kite_api_key: key, kite_api_secret: secret })
        })
        .collect()
}

/// Every per-account variable of `accounts`, for the list of what tickfill reads.
pub fn variables(accounts: &[NamedAccount]) -> Vec<String> {
    accounts.iter().flat_map(|a| PER_ACCOUNT.iter().map(|w| variable(&a.name, w))).collect()
}

/// The accounts of a map of variables by name, for tests.
#[cfg(test)]
pub(super) fn names(vars: &HashMap<String, String>) -> Result<Vec<String>, ConfigError> {
    let r = Reader { vars };
    Ok(read_named(&r, false)?.into_iter().map(|a| a.name).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn names_are_listed_once_each_and_well_formed() {
        assert_eq!(names(&map(&[])).unwrap(), Vec::<String>::new());
        assert_eq!(names(&map(&[("TICKFILL_ACCOUNTS", " a , desk-1 ")])).unwrap(), vec!["a", "desk-1"]);
        for bad in ["a,,b", ",a", "a,", "a,a", "desk-1,DESK_1", "a b", "a;b", "ü"] {
            let e = names(&map(&[("TICKFILL_ACCOUNTS", bad)])).unwrap_err();
            assert_eq!(e.var, "TICKFILL_ACCOUNTS", "{bad}: {e}");
        }
        let many = (0..65).map(|i| format!("a{i}")).collect::<Vec<_>>().join(",");
        assert!(names(&map(&[("TICKFILL_ACCOUNTS", &many)])).is_err());
    }

    #[test]
    fn a_variable_of_no_listed_account_is_refused_by_name() {
        let e = names(&map(&[("TICKFILL_ACCOUNTS", "primary"), ("ACCOUNT_PRIMRY_RATE_LIMIT", "2")])).unwrap_err();
        assert_eq!(e.var, "ACCOUNT_PRIMRY_RATE_LIMIT");
        let e = names(&map(&[("ACCOUNT_A_KITE_API_SECRET", "hush")])).unwrap_err();
        assert!(!e.to_string().contains("hush"), "{e}");
        // Other ACCOUNT_ variables are none of ours.
        assert!(names(&map(&[("ACCOUNT_HOLDER", "x")])).is_ok());
    }

    #[test]
    fn rate_limits_are_whole_requests_a_second_within_bounds() {
        let vars = map(&[("TICKFILL_ACCOUNTS", "a,b"), ("ACCOUNT_A_RATE_LIMIT", "0"), ("ACCOUNT_B_RATE_LIMIT", "7")]);
        let got: Vec<Option<u32>> =
            read_named(&Reader { vars: &vars }, false).unwrap().into_iter().map(|a| a.rate_limit).collect();
        assert_eq!(got, vec![Some(0), Some(7)]);
        for bad in ["-1", "2.5", "100001", "three", "4294967296"] {
            let vars = map(&[("TICKFILL_ACCOUNTS", "a"), ("ACCOUNT_A_RATE_LIMIT", bad)]);
            assert_eq!(read_named(&Reader { vars: &vars }, false).unwrap_err().var, "ACCOUNT_A_RATE_LIMIT", "{bad}");
        }
    }

    #[test]
    fn kite_accounts_need_their_key() {
        let vars =
            map(&[("TICKFILL_ACCOUNTS", "a,b"), ("ACCOUNT_A_KITE_API_KEY", "k"), ("ACCOUNT_B_KITE_API_SECRET", "s")]);
        let e = read_named(&Reader { vars: &vars }, true).unwrap_err();
        assert_eq!(e.var, "ACCOUNT_B_KITE_API_KEY");
        assert!(!e.to_string().contains('s') || !e.to_string().contains("\"s\""), "{e}");
        assert!(read_named(&Reader { vars: &vars }, false).is_ok());
    }
}
