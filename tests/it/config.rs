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
    ] {
        let (code, _, err) = run_cli(&s, &["migrate"], &[(var, value)]);
        assert_eq!(code, 2, "{var}={value}: {err}");
        assert!(err.contains(var), "{var}: {err}");
    }
    let (code, _, err) = run_cli(&s, &["migrate"], &[("TICKER_API", "kite"), ("KITE_API_KEY", "k-very-secret")]);
    assert_eq!(code, 2);
    assert!(!err.contains("k-very-secret"), "{err}");
}
