//! Kite sessions: when one ends, and the checksum that turns a login's `request_token` into one.

use chrono::{DateTime, Duration, NaiveTime, Utc};
use sha2::{Digest, Sha256};

use super::calendar::ist;

/// The IST wall-clock time every Kite session ends (Kite logs every session out each morning).
pub const KITE_SESSION_END: NaiveTime = NaiveTime::from_hms_opt(6, 0, 0).expect("06:00");

/// The end of a Kite session that was valid at `at`: the next 06:00 IST after it.
pub fn kite_session_end(at: DateTime<Utc>) -> DateTime<Utc> {
    let local = at.with_timezone(&ist());
    let today = local.date_naive().and_time(KITE_SESSION_END);
    let end = if local.naive_local() < today { today } else { today + Duration::days(1) };
    end.and_local_timezone(ist()).single().expect("IST has no gaps").with_timezone(&Utc)
}

/// Kite's login checksum: the hex SHA-256 of `api_key + request_token + api_secret`.
pub fn kite_checksum(api_key: &str, request_token: &str, api_secret: &str) -> String {
    digest(&[api_key, request_token, api_secret])
}

/// The hex SHA-256 of `parts` one after the other: what a secret is kept or compared under, never
/// the secret itself (a presented `request_token`, an admin page's session cookie).
pub fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Whether `s` can be a Kite `request_token` or access token: 1–128 of `A-Z a-z 0-9`. Anything
/// else is refused before it reaches a header, a log line or Redis.
pub fn plausible_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_at_the_next_six_in_the_morning_ist() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // 05:59 IST ends a minute later; 06:00 and later end the next morning.
        assert_eq!(kite_session_end(at("2026-12-06T05:59:00+05:30")), at("2026-12-06T06:00:00+05:30"));
        assert_eq!(kite_session_end(at("2026-12-06T06:00:00+05:30")), at("2026-12-07T06:00:00+05:30"));
        assert_eq!(kite_session_end(at("2026-12-06T23:30:00+05:30")), at("2026-12-07T06:00:00+05:30"));
    }

    #[test]
    fn the_checksum_is_the_hex_sha256_of_key_request_token_and_secret() {
        // sha256("abc") from FIPS 180-2's example.
        assert_eq!(kite_checksum("a", "b", "c"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(
            plausible_token("Abc123") && !plausible_token("") && !plausible_token("a b") && !plausible_token("a\n")
        );
        assert!(!plausible_token(&"a".repeat(129)));
    }
}
