//! Kite Connect's historical-candles API (`TICKER_API=kite`): IST wall-clock windows with an
//! inclusive end, the Kite headers, candles as arrays with OI by length, and errors mapped by
//! Kite's `error_type`.

use std::time::Duration;
use tickfill_jobs::InstrumentToken;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{check_candles, read_answer, request_failed, snippet, CandleBody, TickerClient, TickerError};
use crate::{config::Secret, domain::market::Candle, domain::text::inert};

impl TickerClient {
    /// Kite's `GET /instruments/historical/{token}/minute`: IST wall-clock `from` and an inclusive
    /// `to` (the last minute wanted), `oi=1`; errors mapped by Kite's `error_type`.
    pub(super) async fn kite_history(
        &self,
        auth: &str,
        token: InstrumentToken,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Candle>, TickerError> {
        let ist = chrono::FixedOffset::east_opt(5 * 3600 + 1800).expect("IST offset");
        let wall = |t: DateTime<Utc>| t.with_timezone(&ist).format("%Y-%m-%d %H:%M:%S").to_string();
        let last = to - chrono::Duration::minutes(1);
        let resp = self
            .http
            .get(format!("{}/instruments/historical/{token}/minute", self.base))
            .query(&[("from", wall(from)), ("to", wall(last)), ("oi", "1".into())])
            .header("X-Kite-Version", "3")
            .header(reqwest::header::AUTHORIZATION, auth)
            .send()
            .await
            .map_err(request_failed)?;
        let cap = super::answer_cap(crate::domain::window::Window { from, to }, self.max_body);
        let (status, retry_after, body) = read_answer(resp, cap).await?;
        if status.is_success() {
            // Kite also refuses with a 200 carrying its error envelope (a throttle, for one).
            if let Some(as_if) = error_in_success(&body) {
                return Err(kite_error(as_if, &body, token, None));
            }
            return parse_kite_history(&body, token, from, to);
        }
        Err(kite_error(status.as_u16(), &body, token, retry_after))
    }
}

/// Who a Kite session belongs to, from `POST /session/token` or `GET /user/profile`.
#[derive(Debug, Clone)]
pub struct KiteUser {
    pub user_id: String,
}

impl TickerClient {
    /// Kite's `POST /session/token`: exchanges a login's `request_token` for an access token,
    /// proving the app's secret with `checksum` (see [`crate::domain::session::kite_checksum`]).
    /// Kite's refusal comes back as an error carrying its message, never the token or secret.
    pub async fn kite_session_token(
        &self,
        api_key: &Secret,
        request_token: &str,
        checksum: &str,
    ) -> Result<(Secret, KiteUser), TickerError> {
        let resp = self
            .http
            .post(format!("{}/session/token", self.base))
            .header("X-Kite-Version", "3")
            .form(&[("api_key", api_key.expose()), ("request_token", request_token), ("checksum", checksum)])
            .send()
            .await
            .map_err(request_failed)?;
        let (status, retry_after, body) = read_answer(resp, 64 * 1024).await?;
        #[derive(Deserialize)]
        struct Session {
            access_token: String,
            #[serde(default)]
            user_id: String,
        }
        let data: Session = kite_data(status.as_u16(), &body, retry_after, "the session exchange")?;
        if !crate::domain::session::plausible_token(&data.access_token) {
            return Err(TickerError::Permanent("Kite's session exchange answered no usable access token".into()));
        }
        Ok((Secret::new(data.access_token), KiteUser { user_id: inert(&data.user_id, 40) }))
    }

    /// Kite's `GET /user/profile` as `api_key` with `access_token`: whether the session works.
    pub async fn kite_profile(&self, api_key: &Secret, access_token: &Secret) -> Result<KiteUser, TickerError> {
        let resp = self
            .http
            .get(format!("{}/user/profile", self.base))
            .header("X-Kite-Version", "3")
            .header(reqwest::header::AUTHORIZATION, format!("token {}:{}", api_key.expose(), access_token.expose()))
            .send()
            .await
            .map_err(request_failed)?;
        let (status, retry_after, body) = read_answer(resp, 256 * 1024).await?;
        #[derive(Deserialize)]
        struct Profile {
            #[serde(default)]
            user_id: String,
        }
        let data: Profile = kite_data(status.as_u16(), &body, retry_after, "the profile check")?;
        Ok(KiteUser { user_id: inert(&data.user_id, 40) })
    }
}

/// The `data` of a Kite answer to one of its own routes, or the error it carries.
fn kite_data<T: serde::de::DeserializeOwned>(
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
    what: &str,
) -> Result<T, TickerError> {
    let status = match (status, error_in_success(body)) {
        (200..=299, Some(as_if)) => as_if,
        (s, _) => s,
    };
    if !(200..300).contains(&status) {
        let parsed = serde_json::from_slice::<KiteError>(body).ok();
        let (kind, message) = match &parsed {
            Some(e) => (inert(&e.error_type, 40), inert(&e.message, 200)),
            None => (String::new(), snippet(body)),
        };
        let msg = format!("Kite refused {what} ({status} {kind}): {message}");
        return Err(match (status, kind.as_str()) {
            (429, _) => TickerError::Throttled { retry_after },
            (_, "TokenException") => TickerError::SessionExpired(msg),
            (500..=599, _) => TickerError::Transient(msg),
            _ => TickerError::Permanent(msg),
        });
    }
    #[derive(Deserialize)]
    struct Envelope<T> {
        data: T,
    }
    serde_json::from_slice::<Envelope<T>>(body)
        .map(|e| e.data)
        .map_err(|e| TickerError::Permanent(format!("Kite answered {what} with an unexpected body: {e}")))
}

/// When a 2xx body is Kite's error envelope (`"status": "error"`), the HTTP status Kite sends for
/// that error otherwise, so that both are mapped alike: "Too many requests" (`NetworkException`)
/// as 429, another `NetworkException` or a `DataException` as 503, `TokenException` as 403,
/// `InputException` as 400, anything else as 500.
pub fn error_in_success(body: &[u8]) -> Option<u16> {
    #[derive(Deserialize)]
    struct Envelope {
        status: String,
        #[serde(default)]
        error_type: String,
        #[serde(default)]
        message: String,
    }
    let e = serde_json::from_slice::<Envelope>(body).ok().filter(|e| e.status == "error")?;
    Some(match e.error_type.as_str() {
        "NetworkException" if e.message.to_ascii_lowercase().contains("too many") => 429,
        "NetworkException" | "DataException" => 503,
        "TokenException" => 403,
        "InputException" => 400,
        _ => 500,
    })
}

/// Maps a Kite error answer: 429 → throttled; `TokenException` → session expired;
/// `InputException` and other 4xx → permanent; 5xx → transient.
pub fn kite_error(status: u16, body: &[u8], token: InstrumentToken, retry_after: Option<Duration>) -> TickerError {
    let parsed = serde_json::from_slice::<KiteError>(body).ok();
    let (kind, message) = match &parsed {
        Some(e) => (e.error_type.as_str(), crate::domain::text::inert(&e.message, 200)),
        None => ("", snippet(body)),
    };
    let msg = format!("Kite answered {status} {} for token {token}: {message}", crate::domain::text::inert(kind, 40));
    match (status, kind) {
        (429, _) => TickerError::Throttled { retry_after },
        (_, "TokenException") => TickerError::SessionExpired(msg),
        (500..=599, _) => TickerError::Transient(msg),
        _ => TickerError::Permanent(msg),
    }
}

/// Parses and checks a Kite historical-candles body (`data.candles` as arrays
/// `[time, open, high, low, close, volume(, oi)]`) for `[from, to)`.
pub fn parse_kite_history(
    body: &[u8],
    token: InstrumentToken,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Candle>, TickerError> {
    let bad = |why: String| TickerError::Permanent(format!("bad Kite history response for token {token}: {why}"));
    let parsed: KiteBody =
        serde_json::from_slice(body).map_err(|e| bad(format!("{e} (body starts {:?})", snippet(body))))?;
    if parsed.status != "success" {
        return Err(bad(format!("status {:?}", parsed.status)));
    }
    let mut candles = Vec::with_capacity(parsed.data.candles.len());
    for row in parsed.data.candles {
        let num = |i: usize| row.get(i).and_then(serde_json::Value::as_f64);
        let (Some(date), Some(open), Some(high), Some(low), Some(close), Some(volume)) =
            (row.first().and_then(|d| d.as_str()), num(1), num(2), num(3), num(4), num(5))
        else {
            return Err(bad(format!("a candle is not [time, open, high, low, close, volume(, oi)]: {row:?}")));
        };
        if row.len() > 7 || (row.len() == 7 && num(6).is_none()) {
            return Err(bad(format!("a candle has an unexpected tail: {row:?}")));
        }
        candles.push(CandleBody {
            date: date.to_string(),
            open,
            high,
            low,
            close,
            volume,
            oi: num(6),
            ..Default::default()
        });
    }
    check_candles(candles, token, from, to)
}

#[derive(Deserialize)]
struct KiteBody {
    status: String,
    data: KiteData,
}

#[derive(Deserialize)]
struct KiteData {
    candles: Vec<Vec<serde_json::Value>>,
}

/// Kite's error envelope: `{"status":"error","message":…,"data":null,"error_type":…}`.
#[derive(Deserialize)]
struct KiteError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    error_type: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_envelope_in_a_200_is_mapped_like_the_same_error_sent_with_its_status() {
        let throttled =
            br#"{"status":"error","error_type":"NetworkException","message":"Too many requests","data":null}"#;
        let as_if = error_in_success(throttled).unwrap();
        assert!(matches!(
            kite_error(as_if, throttled, crate::domain::instrument::tok(1), None),
            TickerError::Throttled { .. }
        ));
        let session =
            br#"{"status":"error","error_type":"TokenException","message":"Incorrect `api_key` or `access_token`."}"#;
        let as_if = error_in_success(session).unwrap();
        assert!(matches!(
            kite_error(as_if, session, crate::domain::instrument::tok(1), None),
            TickerError::SessionExpired(_)
        ));
        let input = br#"{"status":"error","error_type":"InputException","message":"invalid token"}"#;
        assert!(matches!(
            kite_error(error_in_success(input).unwrap(), input, crate::domain::instrument::tok(1), None),
            TickerError::Permanent(_)
        ));
        let network = br#"{"status":"error","error_type":"NetworkException","message":"Gateway timed out"}"#;
        assert!(matches!(
            kite_error(error_in_success(network).unwrap(), network, crate::domain::instrument::tok(1), None),
            TickerError::Transient(_)
        ));
        // A success body is no error, whatever it holds.
        assert_eq!(error_in_success(br#"{"status":"success","data":{"candles":[]}}"#), None);
        assert_eq!(error_in_success(b"not json"), None);
    }
}
