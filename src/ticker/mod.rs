//! The client of the ticker service's history API: one shared `reqwest::Client` with timeouts,
//! strict about what it accepts back. Pacing is the caller's: workers take a grant of the
//! fleet-wide budget (`budget`) before each request.
//!
//! Every answer is checked before anything is written: a candle outside the asked window, a
//! duplicate minute, a non-finite or negative price, `high < low`, or a body that is not the
//! documented JSON makes the whole answer an error, so a broken response never half-lands.
//!
//! Layout: this file holds the client, its errors and the ticker service's own API (`/history`,
//! `/subscriptions`); `kite` holds Kite Connect's historical API; `budget` the fleet-wide rate
//! budget every request takes a grant of.

pub mod budget;
pub mod kite;

use std::time::Duration;
use tickfill_jobs::InstrumentToken;

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde::Deserialize;

use crate::{
    config::{Account, Secret, Settings, TickerApi},
    domain::{
        event::{listed_token, parse_listed, ListedSubscription, Rejection},
        market::Candle,
        text::inert,
        window::Window,
    },
};

/// What went wrong with a history request, sorted by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum TickerError {
    /// 429: wait (the service's `Retry-After`, else the configured pause) and ask again.
    #[error("throttled by the ticker service (retry after {retry_after:?})")]
    Throttled { retry_after: Option<Duration> },
    /// Worth retrying later: 5xx, a broken answer stream.
    #[error("ticker service unavailable: {0}")]
    Transient(String),
    /// The service cannot be reached at all (the connection fails): an outage, not
    /// the job's fault, so it costs the job no attempt.
    #[error("ticker service unreachable: {0}")]
    Unreachable(String),
    /// Retrying cannot help: unknown token, bad window, a response that breaks the contract.
    #[error("{0}")]
    Permanent(String),
    /// Kite's `TokenException`: the session (access token) expired or is invalid. Nothing can be
    /// fetched until an operator renews it; the queues pause.
    #[error("Kite session expired or invalid: {0}")]
    SessionExpired(String),
}

impl TickerError {
    /// A short, stable label for counters.
    pub fn label(&self) -> &'static str {
        match self {
            TickerError::Throttled { .. } => "throttled",
            TickerError::Transient(_) => "transient",
            TickerError::Unreachable(_) => "unreachable",
            TickerError::Permanent(_) => "permanent",
            TickerError::SessionExpired(_) => "session_expired",
        }
    }
}

/// The history API client, built once and shared by every job of a worker process.
#[derive(Clone)]
pub struct TickerClient {
    http: reqwest::Client,
    base: String,
    kite: bool,
    /// `TICKER_MAX_BODY`: no answer is read past this.
    max_body: u64,
}

/// Whom a request goes out as: the account it names to the ticker service (`account_id`; none
/// for the default account), or in Kite mode the app key and session it sends.
#[derive(Debug, Clone, Copy, Default)]
pub struct Via<'a> {
    pub account_id: Option<&'a str>,
    pub kite_api_key: Option<&'a Secret>,
    pub kite_access_token: Option<&'a Secret>,
}

impl<'a> Via<'a> {
    /// As `account` goes out, with `session` (Kite, from Redis) or else its own from the settings.
    pub fn of(account: &'a Account, session: Option<&'a Secret>) -> Self {
        Via {
            account_id: account.named.then_some(account.name.as_str()),
            kite_api_key: Some(&account.kite_api_key),
            kite_access_token: session.or(account.env_session.as_ref()),
        }
    }
}

/// The most a history answer for `window` may be: one candle a minute at most, each well under
/// 1 KiB even with every optional field, plus 64 KiB for the envelope; never over `max_body`.
/// Anything bigger is not an answer to the question asked.
pub fn answer_cap(window: Window, max_body: u64) -> u64 {
    let minutes = (window.to - window.from).num_minutes().max(0) as u64;
    (64 * 1024 + minutes.saturating_mul(1024)).min(max_body)
}

/// How much of an error answer is read: enough for its `detail`.
const ERROR_BODY_CAP: u64 = 64 * 1024;

impl TickerClient {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(settings.ticker.timeout)
            .connect_timeout(Duration::from_secs(5).min(settings.ticker.timeout))
            .pool_max_idle_per_host(64)
            .build()?;
        let kite = settings.ticker.api == TickerApi::Kite;
        let base = match kite {
            false => settings.ticker.url.clone(),
            true => settings.ticker.kite_url.trim_end_matches('/').to_string(),
        };
        Ok(TickerClient { http, base, kite, max_body: settings.ticker.max_body })
    }

    /// Fetches the 1-minute candles of `token` in `window` (half-open, `[from, to)`), as `via`.
    #[tracing::instrument(name = "ticker.history", skip_all, fields(token = token.get(), from = %window.from, to = %window.to, account = via.account_id))]
    pub async fn history(
        &self,
        token: InstrumentToken,
        window: Window,
        via: Via<'_>,
    ) -> Result<Vec<Candle>, TickerError> {
        let Window { from, to } = window;
        if self.kite {
            let (Some(key), Some(access)) = (via.kite_api_key, via.kite_access_token) else {
                return Err(TickerError::SessionExpired("no Kite session to send".into()));
            };
            let auth = format!("token {}:{}", key.expose(), access.expose());
            return self.kite_history(&auth, token, from, to).await;
        }
        let z = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut query = vec![
            ("instrument_token", token.to_string()),
            ("from_ts", z(from)),
            ("to_ts", z(to)),
            ("interval", "minute".into()),
            ("oi", "true".into()),
        ];
        if let Some(account) = via.account_id {
            query.push(("account_id", account.to_string()));
        }
        let mut request = self.http.get(format!("{}/history", self.base)).query(&query);
        // The request carries its trace, so the ticker's side can be joined to it.
        if let Some(tp) = crate::telemetry::traceparent() {
            request = request.header("traceparent", tp);
        }
        let resp = request.send().await.map_err(request_failed)?;
        let (status, retry_after, body) = read_answer(resp, answer_cap(window, self.max_body)).await?;
        if status.as_u16() == 429 {
            return Err(TickerError::Throttled { retry_after });
        }
        if !status.is_success() {
            let detail = serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| inert(&b.detail, 200))
                .unwrap_or_else(|_| snippet(&body));
            let msg = format!("ticker answered {} for token {token}: {detail}", status.as_u16());
            return Err(if status.is_server_error() {
                TickerError::Transient(msg)
            } else {
                TickerError::Permanent(msg)
            });
        }
        tracing::info_span!("ticker.parse", bytes = body.len()).in_scope(|| parse_history(&body, token, from, to))
    }
}

/// One entry of the ticker's subscription list: checked, or refused.
pub type ListedEntry = Result<ListedSubscription, RefusedEntry>;

/// A list entry that failed the checks: why, its text, and the token it still names, if any.
#[derive(Debug, Clone)]
pub struct RefusedEntry {
    pub why: Rejection,
    pub raw: Vec<u8>,
    pub token: Option<InstrumentToken>,
}

/// Page size of `GET /subscriptions` (the service's maximum).
pub const SUBSCRIPTIONS_PAGE: usize = 1000;

impl TickerClient {
    /// Every active subscription the ticker service lists, paging through `GET /subscriptions`.
    /// Each entry is checked on its own ([`parse_listed`]): a bad one is returned refused, beside
    /// the rest.
    pub async fn active_subscriptions(&self) -> Result<Vec<ListedEntry>, TickerError> {
        let mut all = Vec::new();
        loop {
            let mut resp = self
                .http
                .get(format!("{}/subscriptions", self.base))
                .query(&[
                    ("status", "active".to_string()),
                    ("limit", SUBSCRIPTIONS_PAGE.to_string()),
                    ("offset", all.len().to_string()),
                ])
                .send()
                .await
                .map_err(|e| TickerError::Transient(format!("listing subscriptions failed: {}", without_url(&e))))?;
            let status = resp.status();
            if !status.is_success() {
                let msg = format!("listing subscriptions answered {}", status.as_u16());
                return Err(if status.is_client_error() {
                    TickerError::Permanent(msg)
                } else {
                    TickerError::Transient(msg)
                });
            }
            let body = read_capped(&mut resp, self.max_body, true).await?;
            let page: Vec<serde_json::Value> = serde_json::from_slice(&body)
                .map_err(|e| TickerError::Permanent(format!("bad subscriptions page: {e}")))?;
            let page: Vec<ListedEntry> = page
                .into_iter()
                .map(|entry| {
                    parse_listed(&entry).map_err(|why| RefusedEntry {
                        why,
                        raw: entry.to_string().into_bytes(),
                        token: listed_token(&entry),
                    })
                })
                .collect();
            let n = page.len();
            all.extend(page);
            if n < SUBSCRIPTIONS_PAGE {
                return Ok(all);
            }
        }
    }
}

/// A history answer, counted by status: the status, its `Retry-After` in seconds, the body.
/// A successful answer over `cap` bytes is refused as soon as that is known (by its length, or
/// while it streams in), so a huge body is never held; an error answer is read to 64 KiB.
pub(super) async fn read_answer(
    mut resp: reqwest::Response,
    cap: u64,
) -> Result<(reqwest::StatusCode, Option<Duration>, Vec<u8>), TickerError> {
    let status = resp.status();
    crate::metrics::history_request(Some(status.as_u16()));
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let limit = if status.is_success() { cap } else { ERROR_BODY_CAP.min(cap) };
    let body = read_capped(&mut resp, limit, status.is_success()).await.inspect_err(|e| {
        if matches!(e, TickerError::Permanent(_)) {
            crate::metrics::get().ticker_oversize.inc();
        }
    })?;
    Ok((status, retry_after, body))
}

/// Reads a body of at most `cap` bytes. Over it: refused (`strict`: an answer that size is
/// not an answer; the rest is never read), or cut there (an error's text).
async fn read_capped(resp: &mut reqwest::Response, cap: u64, strict: bool) -> Result<Vec<u8>, TickerError> {
    let oversize = |n: u64| {
        TickerError::Permanent(format!(
            "the answer is over {cap} bytes ({n} bytes or more), more than a legal answer can be; \
             refused unread (TICKER_MAX_BODY)"
        ))
    };
    if let Some(n) = resp.content_length().filter(|n| strict && *n > cap) {
        return Err(oversize(n));
    }
    let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0).min(cap) as usize);
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| TickerError::Transient(format!("reading the response failed: {}", without_url(&e))))?
    {
        let room = cap as usize - body.len();
        if chunk.len() > room {
            if strict {
                return Err(oversize((body.len() + chunk.len()) as u64));
            }
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A history request that got no answer: unreachable if the connection failed, else transient.
pub(super) fn request_failed(e: reqwest::Error) -> TickerError {
    crate::metrics::history_request(None);
    let msg = format!("request failed: {}", without_url(&e));
    if e.is_connect() {
        TickerError::Unreachable(msg)
    } else {
        TickerError::Transient(msg)
    }
}

/// A reqwest error's message without the URL (it could carry credentials in Kite mode).
fn without_url(e: &reqwest::Error) -> String {
    let mut e = e.to_string();
    if let Some(i) = e.find(" for url") {
        e.truncate(i);
    }
    e
}

/// The start of an answer's body for an error message, inert (the ticker's text is untrusted).
pub(super) fn snippet(body: &[u8]) -> String {
    let s = inert(&String::from_utf8_lossy(&body[..body.len().min(200)]), 200);
    if s.is_empty() {
        "<empty body>".into()
    } else {
        s
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    detail: String,
}

#[derive(Deserialize)]
struct HistoryBody {
    candles: Vec<CandleBody>,
}

#[derive(Deserialize, Default)]
pub(super) struct CandleBody {
    date: String,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
    #[serde(default)]
    oi: Option<f64>,
    #[serde(default)]
    iv: Option<f64>,
    #[serde(default)]
    delta: Option<f64>,
    #[serde(default)]
    gamma: Option<f64>,
    #[serde(default)]
    theta: Option<f64>,
    #[serde(default)]
    vega: Option<f64>,
    #[serde(default)]
    underlying: Option<f64>,
}

/// Parses a timestamp with a `+05:30`, `+0530` or `Z` offset.
pub fn parse_instant(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Parses and checks a `/history` body for `[from, to)`; any broken candle fails the whole answer.
pub fn parse_history(
    body: &[u8],
    token: InstrumentToken,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Candle>, TickerError> {
    let bad = |why: String| TickerError::Permanent(format!("bad history response for token {token}: {why}"));
    let parsed: HistoryBody =
        serde_json::from_slice(body).map_err(|e| bad(format!("{e} (body starts {:?})", snippet(body))))?;
    check_candles(parsed.candles, token, from, to)
}

/// Checks candles for `[from, to)`; any broken one fails the whole answer.
pub(super) fn check_candles(
    candles: Vec<CandleBody>,
    token: InstrumentToken,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Candle>, TickerError> {
    let bad = |why: String| TickerError::Permanent(format!("bad history response for token {token}: {why}"));
    let mut out = Vec::with_capacity(candles.len());
    for c in candles {
        let time = parse_instant(&c.date).ok_or_else(|| bad(format!("unreadable date {:?}", c.date)))?;
        if time < from || time >= to {
            return Err(bad(format!("candle {time} outside the window [{from}, {to})")));
        }
        if time.second() != 0 || time.nanosecond() != 0 {
            return Err(bad(format!("candle {time} does not start on a minute")));
        }
        let prices = [c.open, c.high, c.low, c.close];
        if prices.iter().any(|p| !p.is_finite() || *p < 0.0) {
            return Err(bad(format!("candle {time} has a non-finite or negative price {prices:?}")));
        }
        if c.high < c.low || c.high < c.open.max(c.close) || c.low > c.open.min(c.close) {
            return Err(bad(format!("candle {time} has high/low inconsistent with open/close {prices:?}")));
        }
        let count = |what: &str, v: f64| -> Result<i64, TickerError> {
            if (0.0..=9.0e15).contains(&v) {
                Ok(v.round() as i64)
            } else {
                Err(bad(format!("candle {time} has {what} {v}")))
            }
        };
        let volume = count("volume", c.volume)?;
        let oi = c.oi.map(|v| count("oi", v)).transpose()?;
        let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
        if let Some(prev) = out.last().map(|p: &Candle| p.time) {
            if time <= prev {
                return Err(bad(format!("candles out of order or repeated at {time}")));
            }
        }
        out.push(Candle {
            time,
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume,
            oi,
            iv: finite(c.iv),
            delta: finite(c.delta),
            gamma: finite(c.gamma),
            theta: finite(c.theta),
            vega: finite(c.vega),
            underlying: finite(c.underlying),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w() -> (DateTime<Utc>, DateTime<Utc>) {
        (parse_instant("2025-11-04T03:45:00Z").unwrap(), parse_instant("2025-11-04T03:50:00Z").unwrap())
    }

    fn body(candles: &str) -> Vec<u8> {
        format!(r#"{{"instrument_token":1,"candles":[{candles}]}}"#).into_bytes()
    }

    #[test]
    fn ist_offsets_land_at_the_utc_instant() {
        let (f, t) = w();
        let c = parse_history(
            &body(r#"{"date":"2025-11-04T09:15:00+05:30","open":1,"high":2,"low":0.5,"close":1.5,"volume":10}"#),
            crate::domain::instrument::tok(1),
            f,
            t,
        )
        .unwrap();
        assert_eq!(c[0].time, f);
        assert_eq!(parse_instant("2025-11-04T09:15:00+0530"), Some(f));
    }

    #[test]
    fn broken_answers_are_refused_whole() {
        let (f, t) = w();
        let good = r#"{"date":"2025-11-04T09:15:00+05:30","open":1,"high":2,"low":0.5,"close":1.5,"volume":10}"#;
        for broken in [
            r#"{"date":"2025-11-04T09:25:00+05:30","open":1,"high":2,"low":0.5,"close":1.5,"volume":10}"#,
            r#"{"date":"2025-11-04T09:16:00+05:30","open":1,"high":2,"low":0.5,"close":null,"volume":10}"#,
            r#"{"date":"2025-11-04T09:16:00+05:30","open":-1,"high":2,"low":0.5,"close":1,"volume":10}"#,
            r#"{"date":"2025-11-04T09:16:00+05:30","open":1,"high":0.1,"low":0.5,"close":1,"volume":10}"#,
            r#"{"date":"2025-11-04T09:15:00+05:30","open":1,"high":2,"low":0.5,"close":1.5,"volume":10}"#,
            r#"{"date":"yesterday","open":1,"high":2,"low":0.5,"close":1.5,"volume":10}"#,
        ] {
            let err =
                parse_history(&body(&format!("{good},{broken}")), crate::domain::instrument::tok(1), f, t).unwrap_err();
            assert!(matches!(err, TickerError::Permanent(_)), "{broken}: {err}");
        }
        assert!(parse_history(b"<html>oops</html>", crate::domain::instrument::tok(1), f, t).is_err());
        assert!(parse_history(
            br#"{"candles":[{"date":"2025-11-04T09:15:00+05:30","open":NaN}]}"#,
            crate::domain::instrument::tok(1),
            f,
            t
        )
        .is_err());
    }
}
