//! A bad setting stops startup with a message naming the variable, and secrets stay out of it.

use tickfill::config::Settings;

use crate::helpers::run_cli;

#[test]
fn a_bad_value_stops_the_binary_naming_the_variable() {
    let s = Settings::defaults();
    for (var, value) in [
        ("BACKFILL_LOOKBACK", "30"),
        ("TICKER_RATE_LIMIT", "fast"),
        ("REDIS_URL", "localhost:6379"),
        ("LOG_FORMAT", "xml"),
        // Values that parse but could never work.
        ("TICKER_SERVICE_TIMEOUT", "0s"),
        ("BACKFILL_LOOKBACK", "0s"),
        ("BACKFILL_LOOKBACK", "401d"),
        ("SWEEP_INTERVAL", "0 0 30 2 *"),
        ("SWEEP_INTERVAL", "60 * * * *"),
        ("BACKFILL_RECHECK", "10s"),
    ] {
        let (code, _, err) = run_cli(&s, &["migrate"], &[(var, value)]);
        assert_eq!(code, 2, "{var}={value}: {err}");
        assert!(err.contains(var), "{var}: {err}");
    }
    let (code, _, err) = run_cli(&s, &["migrate"], &[("TICKER_API", "kite"), ("KITE_API_KEY", "k-very-secret")]);
    assert_eq!(code, 2);
    assert!(!err.contains("k-very-secret"), "{err}");
}

#[test]
fn a_url_that_can_never_work_stops_startup_at_once_without_printing_it() {
    let s = Settings::defaults();
    for (var, value) in [
        ("DATABASE_URL", "garbage"),
        ("DATABASE_URL", "mysql://u:TOPSECRET@127.0.0.1:3306/x"),
        ("DATABASE_URL", "postgres://u:TOPSECRET@127.0.0.1:notaport/x"),
        ("REDIS_URL", "redis://:TOPSECRET@127.0.0.1:notaport"),
        ("SWEEP_INTERVAL", "61 * * * *"),
        ("TICKFILL_RETENTION", "99999999999d"),
    ] {
        let started = std::time::Instant::now();
        // `worker` would otherwise wait for its dependencies for ever.
        let (code, _, err) = run_cli(&s, &["worker"], &[(var, value)]);
        assert_eq!(code, 2, "{var}={value}: {err}");
        assert!(err.contains(var), "{var}: {err}");
        assert!(!err.contains("TOPSECRET"), "{var} printed its secret: {err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{var}={value} did not stop at once");
    }
}

#[test]
fn database_url_parts_are_percent_encoded() {
    let mut vars = std::collections::HashMap::new();
    for (k, v) in [("DB_HOST", "db"), ("DB_USER", "desk user"), ("DB_PASSWORD", "p@ss:w/rd?x=1"), ("DB_NAME", "bars")] {
        vars.insert(k.to_string(), v.to_string());
    }
    let s = Settings::from_map(&vars).unwrap();
    assert_eq!(s.store.database_url.expose(), "postgres://desk%20user:p%40ss%3Aw%2Frd%3Fx%3D1@db:5432/bars");
}
