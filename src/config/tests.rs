//! The settings' tests: every variable read, refused or defaulted as documented.

use super::*;
use chrono::TimeZone;
use std::time::Duration;

fn with(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let map = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Settings::from_map(&map)
}

#[test]
fn defaults_match_the_design() {
    let s = Settings::defaults();
    assert_eq!(s.events.channel_prefix, "ticker:nifty");
    assert_eq!(s.queue.name, "tickfill");
    assert_eq!(s.ticker.rate_limit, 3);
    assert_eq!(s.backfill.window_minutes, 120);
    assert_eq!(s.backfill.settle, Duration::from_secs(120));
    assert_eq!(s.ticker.url, "http://localhost:8080");
    assert!(s.events.enabled && s.backfill.enabled);
    assert_eq!(s.store.database_url.expose(), "postgres://postgres@127.0.0.1:5432/tickfill");
}

#[test]
fn each_section_starts_from_its_named_defaults() {
    let s = Settings::defaults();
    assert_eq!(s.events.channel_prefix, DEFAULT_CHANNEL_PREFIX);
    let q = &s.queue;
    assert_eq!(q.name, DEFAULT_QUEUE);
    assert_eq!(
        (q.max_attempts, q.retry_base, q.retry_max),
        (DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_BASE, DEFAULT_RETRY_MAX)
    );
    assert_eq!((q.heartbeat, q.orphan_after), (DEFAULT_HEARTBEAT, DEFAULT_ORPHAN_AFTER));
    assert_eq!(
        (q.retention, q.shutdown_timeout, q.concurrency),
        (DEFAULT_RETENTION, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_CONCURRENCY)
    );
    let t = &s.ticker;
    assert_eq!(
        (t.api, t.url.as_str(), t.kite_url.as_str()),
        (TickerApi::TickerService, DEFAULT_TICKER_URL, DEFAULT_KITE_URL)
    );
    assert_eq!(
        (t.timeout, t.max_body, t.rate_limit),
        (DEFAULT_TICKER_TIMEOUT, DEFAULT_TICKER_MAX_BODY, DEFAULT_RATE_LIMIT)
    );
    assert_eq!((t.bulk_share, t.throttle_pause, t.reconcile), (DEFAULT_BULK_SHARE, DEFAULT_THROTTLE_PAUSE, true));
    assert_eq!(s.accounts, AccountSettings::default());
    assert_eq!(
        s.account_list().iter().map(|a| (a.name.as_str(), a.rate_limit)).collect::<Vec<_>>(),
        [(DEFAULT_ACCOUNT, DEFAULT_RATE_LIMIT)]
    );
    let b = &s.backfill;
    assert_eq!(
        (b.window_minutes, b.lookback, b.gap_threshold),
        (DEFAULT_WINDOW_MINUTES, DEFAULT_LOOKBACK, DEFAULT_GAP_THRESHOLD)
    );
    assert_eq!(
        (b.settle, b.recheck, b.chain_debounce),
        (DEFAULT_SETTLE, Some(DEFAULT_RECHECK), DEFAULT_CHAIN_DEBOUNCE)
    );
    assert_eq!(b.sweep_interval.nominal(), DEFAULT_SWEEP_INTERVAL);
    assert!(b.enabled && b.on_subscribe && b.subscription_aware && b.verify);
    assert_eq!(s.store.timescale, TimescalePolicy::default());
    assert_eq!(s.admin.listen.to_string(), DEFAULT_ADMIN_LISTEN);
    assert_eq!((s.admin.token.is_none(), s.admin.read_token.is_none()), (true, true));
    assert_eq!((s.log.level.as_str(), s.log.format), (DEFAULT_LOG_LEVEL, LogFormat::Text));
}

#[test]
fn sizes_have_units_and_bounds() {
    assert_eq!(parse_size("32MiB"), Ok(32 << 20));
    assert_eq!(parse_size("512 KB"), Ok(512 << 10));
    assert_eq!(parse_size("1048576"), Ok(1 << 20));
    for bad in ["", "MiB", "12XB", "-5MiB", "1.5MiB", "2GiB", "1000", "99999999999999999999", "18446744073709551615GiB"]
    {
        assert!(parse_size(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn durations_need_a_unit() {
    assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
    assert!(parse_duration("30").is_err());
    for huge in ["99999999999d", "999999999999d", "3381903080180084463m", "36501d", "18446744073709551616s"] {
        let e = parse_duration(huge).unwrap_err();
        assert!(e.contains(huge), "{huge}: {e}");
    }
    assert_eq!(parse_duration("36500d"), Ok(MAX_DURATION));
    assert!(ago(Utc::now(), MAX_DURATION).is_ok());
    assert!(parse_duration("5 minutes").is_err());
}

#[test]
fn timescale_policies_are_durations_or_none_and_retention_outlives_the_lookback() {
    let d = Settings::defaults().store.timescale;
    assert_eq!((d.compress_after, d.retention), (Some(DEFAULT_COMPRESS_AFTER), None));
    let s = with(&[("TIMESCALE_COMPRESS_AFTER", "none"), ("TIMESCALE_RETENTION", "90d")]).unwrap();
    assert_eq!(s.store.timescale.compress_after, None);
    assert_eq!(s.store.timescale.retention, Some(Duration::from_secs(90 * 86_400)));
    for (var, value, says) in [
        ("TIMESCALE_RETENTION", "7d", "BACKFILL_LOOKBACK"),
        ("TIMESCALE_RETENTION", "0s", "more than zero"),
        ("TIMESCALE_COMPRESS_AFTER", "7", "unit"),
        ("TIMESCALE_COMPRESS_AFTER", "forever", "unit"),
    ] {
        let e = with(&[(var, value)]).unwrap_err();
        assert_eq!(e.var, var);
        assert!(e.to_string().contains(says), "{e}");
    }
}

#[test]
fn a_bad_value_names_its_variable() {
    let e = with(&[("BACKFILL_LOOKBACK", "30")]).unwrap_err();
    assert_eq!(e.var, "BACKFILL_LOOKBACK");
    assert!(e.to_string().contains("BACKFILL_LOOKBACK"));
    let e = with(&[("BACKFILL_ENABLED", "maybe")]).unwrap_err();
    assert_eq!(e.var, "BACKFILL_ENABLED");
    let e = with(&[("TICKER_SERVICE_URL", "ftp://x")]).unwrap_err();
    assert_eq!(e.var, "TICKER_SERVICE_URL");
}

#[test]
fn the_read_token_must_differ_from_the_admin_token() {
    assert!(with(&[("ADMIN_TOKEN", "a"), ("ADMIN_READ_TOKEN", "b")]).is_ok());
    let e = with(&[("ADMIN_TOKEN", "same"), ("ADMIN_READ_TOKEN", "same")]).unwrap_err();
    assert_eq!(e.var, "ADMIN_READ_TOKEN");
    assert!(!e.to_string().contains("same"), "{e}");
}

#[test]
fn secrets_never_print() {
    let s = with(&[("ADMIN_TOKEN", "hunter2"), ("DB_PASSWORD", "pw123")]).unwrap();
    let shown = format!("{s:?}");
    assert!(!shown.contains("hunter2") && !shown.contains("pw123"), "{shown}");
    let e = with(&[("TICKER_API", "kite"), ("KITE_API_KEY", "k-secret")]).unwrap_err();
    assert!(!e.to_string().contains("k-secret"));
}

#[test]
fn kite_without_accounts_names_the_one_variable_it_lacks() {
    let var = |pairs: &[(&str, &str)]| with(pairs).unwrap_err().var;
    assert_eq!(var(&[("TICKER_API", "kite")]), "KITE_API_KEY");
    assert_eq!(var(&[("TICKER_API", "kite"), ("KITE_API_KEY", "k")]), "KITE_ACCESS_TOKEN");
    assert_eq!(var(&[("TICKER_API", "kite"), ("KITE_ACCESS_TOKEN", "t")]), "KITE_API_KEY");
    assert!(with(&[("TICKER_API", "kite"), ("KITE_API_KEY", "k"), ("KITE_ACCESS_TOKEN", "t")]).is_ok());
}

#[test]
fn env_example_lists_every_variable_and_its_defaults_parse() {
    let text = include_str!("../../.env.example");
    let mut map = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && l.contains('=')) {
        let (k, v) = line.split_once('=').unwrap();
        map.insert(k.trim().to_string(), v.trim().to_string());
    }
    for var in VARIABLES {
        assert!(map.contains_key(*var), "{var} missing from .env.example");
    }
    assert_eq!(map.len(), VARIABLES.len(), ".env.example lists a variable tickfill does not read");
    let s = Settings::from_map(&map).unwrap();
    let d = Settings::defaults();
    assert_eq!(
        (s.ticker.rate_limit, s.backfill.lookback, s.queue.name.as_str()),
        (d.ticker.rate_limit, d.backfill.lookback, d.queue.name.as_str())
    );
}

#[test]
fn db_parts_build_the_url_when_database_url_is_unset() {
    let s =
        with(&[("DB_HOST", "db"), ("DB_PORT", "6543"), ("DB_NAME", "bars"), ("DB_USER", "u"), ("DB_PASSWORD", "p")])
            .unwrap();
    assert_eq!(s.store.database_url.expose(), "postgres://u:p@db:6543/bars");
    assert_eq!(with(&[("DB_PORT", "x")]).unwrap_err().var, "DB_PORT");
}

// Sweep intervals.

#[test]
fn duration_ticks_are_aligned_and_only_the_latest_counts() {
    let i = Interval::parse("5m").unwrap();
    let now = Utc.with_ymd_and_hms(2025, 11, 4, 10, 7, 31).unwrap();
    assert_eq!(i.latest_tick(now), Utc.with_ymd_and_hms(2025, 11, 4, 10, 5, 0).unwrap());
    assert_eq!(i.next_tick(i.latest_tick(now)), Utc.with_ymd_and_hms(2025, 11, 4, 10, 10, 0).unwrap());
    // Down for an hour: the latest tick is the one that fires.
    let later = now + chrono::Duration::hours(1);
    assert_eq!(i.latest_tick(later), Utc.with_ymd_and_hms(2025, 11, 4, 11, 5, 0).unwrap());
}

#[test]
fn cron_expressions_with_five_or_six_fields() {
    let i = Interval::parse("*/15 * * * *").unwrap();
    let now = Utc.with_ymd_and_hms(2025, 11, 4, 10, 7, 31).unwrap();
    assert_eq!(i.latest_tick(now), Utc.with_ymd_and_hms(2025, 11, 4, 10, 0, 0).unwrap());
    assert_eq!(i.next_tick(i.latest_tick(now)), Utc.with_ymd_and_hms(2025, 11, 4, 10, 15, 0).unwrap());
    let on = Utc.with_ymd_and_hms(2025, 11, 4, 10, 15, 0).unwrap();
    assert_eq!(i.latest_tick(on), on);
    assert!(Interval::parse("0 30 9 * * Mon-Fri").is_ok());
    assert!(Interval::parse("every now and then").is_err());
}

#[test]
fn cron_schedules_that_never_fire_or_name_impossible_values_are_refused_in_our_words() {
    let never = Interval::parse("0 0 30 2 *").unwrap_err().to_string();
    assert!(never.contains("never fires"), "{never}");
    let leap = Interval::parse("0 0 29 2 *").map(|_| ()).map_err(|e| e.to_string());
    // 29 February fires within a year only in the year before a leap day.
    if let Err(e) = leap {
        assert!(e.contains("more than 366 days away"), "{e}");
    }
    assert!(Interval::parse("59 * * * *").is_ok(), "59 is a minute");
    let sixty = Interval::parse("60 * * * *").unwrap_err().to_string();
    assert!(sixty.contains("minute field \"60\" holds 60, outside 0–59"), "{sixty}");
    let err = with(&[("SWEEP_INTERVAL", "0 0 30 2 *")]).unwrap_err();
    assert_eq!(err.var, "SWEEP_INTERVAL");
}

#[test]
fn settings_that_can_never_work_are_refused_naming_the_variable() {
    for (var, value) in [
        ("TICKER_SERVICE_TIMEOUT", "0s"),
        ("BACKFILL_LOOKBACK", "0s"),
        ("BACKFILL_LOOKBACK", "401d"),
        ("BACKFILL_RECHECK", "0s"),
    ] {
        let err = with(&[(var, value)]).unwrap_err();
        assert_eq!(err.var, var, "{value}");
    }
    assert_eq!(with(&[("BACKFILL_LOOKBACK", "400d")]).unwrap().backfill.lookback, MAX_LOOKBACK);
    assert_eq!(with(&[("BACKFILL_RECHECK", "none")]).unwrap().backfill.recheck, None);
    assert_eq!(with(&[("TICKER_SERVICE_TIMEOUT", "1s")]).unwrap().ticker.timeout, Duration::from_secs(1));
}
