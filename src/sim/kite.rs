//! Kite Connect's historical route, `GET /instruments/historical/{token}/{interval}`, served from
//! the same candles as `/history`, with Kite's headers, array candles and error envelope.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use chrono::{NaiveDate, TimeZone, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    candles::{candle, in_calendar, ist_date},
    fault, note_arrival, note_status,
    universe::ist,
    Fault, Shared, Sim, MAX_WINDOW_DAYS,
};

#[derive(Deserialize)]
pub(super) struct KiteQuery {
    from: Option<String>,
    to: Option<String>,
    oi: Option<String>,
}

pub(super) fn kite_error(status: StatusCode, error_type: &str, message: impl Into<String>) -> Response {
    let body = json!({"status": "error", "message": message.into(), "data": null, "error_type": error_type});
    (status, Json(body)).into_response()
}

/// Kite's `GET /instruments/historical/{token}/{interval}`: IST wall-clock `from`/`to`, both
/// inclusive; candles as arrays `[time(+0530), open, high, low, close, volume(, oi with oi=1)]`.
pub(super) async fn kite_history(
    State(sim): State<Shared>,
    Path((token, interval)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    Query(q): Query<KiteQuery>,
) -> Response {
    let (mut in_last_second, request) = note_arrival(&sim);
    // With accounts, the session names the account, and each is held to --max-rps on its own.
    let account = match sim.accounts.configured() {
        false => None,
        true => {
            let session = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("token "))
                .and_then(|c| c.split_once(':'));
            match session.and_then(|(key, access)| sim.accounts.of_kite_session(key, access)) {
                Some(a) => Some(a),
                None => {
                    let resp =
                        kite_error(StatusCode::FORBIDDEN, "TokenException", "Incorrect `api_key` or `access_token`.");
                    note_status(&sim, resp.status());
                    return resp;
                }
            }
        }
    };
    if let Some(a) = &account {
        in_last_second = sim.accounts.note_request(a);
    }
    let resp =
        kite_history_response(&sim, &token, &interval, &headers, q, (in_last_second, request), account.is_some()).await;
    if let Some(a) = &account {
        if resp.status() == StatusCode::TOO_MANY_REQUESTS || resp.headers().contains_key("x-sim-throttle") {
            sim.accounts.note_throttled(a);
        }
    }
    note_status(&sim, resp.status());
    resp
}

pub(super) async fn kite_history_response(
    sim: &Sim,
    token: &str,
    interval: &str,
    headers: &axum::http::HeaderMap,
    q: KiteQuery,
    (in_last_second, request): (usize, u64),
    session_checked: bool,
) -> Response {
    let o = &sim.opts;
    match fault(o, in_last_second).await {
        // Kite also throttles with a 200 carrying its error envelope (marked for the figures).
        Some(Fault::Throttle) if o.kite_throttle_200 => {
            let resp = kite_error(StatusCode::OK, "NetworkException", "Too many requests");
            return ([("x-sim-throttle", "1")], resp).into_response();
        }
        // Kite's 429 carries no Retry-After.
        Some(Fault::Throttle) => {
            return kite_error(StatusCode::TOO_MANY_REQUESTS, "NetworkException", "Too many requests")
        }
        Some(Fault::Oversize(mib)) => return super::oversize_answer(mib),
        Some(Fault::Fail) => {
            return kite_error(StatusCode::BAD_GATEWAY, "NetworkException", "upstream failure (simulated)")
        }
        None => {}
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    if header("x-kite-version") != "3" {
        return kite_error(StatusCode::BAD_REQUEST, "InputException", "X-Kite-Version: 3 is required");
    }
    let session = header("authorization").strip_prefix("token ").and_then(|c| c.split_once(':'));
    let valid = match (session, &o.kite_access_token) {
        (Some((key, access)), wanted) => {
            !key.is_empty() && !access.is_empty() && wanted.as_deref().is_none_or(|w| w == access)
        }
        (None, _) => false,
    };
    if !valid && !session_checked {
        return kite_error(StatusCode::FORBIDDEN, "TokenException", "Incorrect `api_key` or `access_token`.");
    }
    if interval != "minute" {
        return kite_error(StatusCode::BAD_REQUEST, "InputException", "only the minute interval is served");
    }
    let Some(inst) = token.parse::<u32>().ok().and_then(|t| sim.universe.get(&t)) else {
        return kite_error(StatusCode::BAD_REQUEST, "InputException", format!("invalid token {token}"));
    };
    let parse = |v: &Option<String>| {
        let v = v.as_deref()?;
        let naive = chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S")
            .ok()
            .or_else(|| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))?;
        ist().from_local_datetime(&naive).single().map(|t| t.timestamp())
    };
    let (Some(from), Some(to)) = (parse(&q.from), parse(&q.to)) else {
        return kite_error(StatusCode::BAD_REQUEST, "InputException", "invalid from or to date");
    };
    if to < from {
        return kite_error(StatusCode::BAD_REQUEST, "InputException", "from date is after to date");
    }
    if to - from > MAX_WINDOW_DAYS * 86_400 {
        return kite_error(StatusCode::BAD_REQUEST, "InputException", "interval exceeds max limit: 60 days");
    }
    let with_oi = matches!(q.oi.as_deref(), Some("1" | "true"));
    let now_minute = Utc::now().timestamp().div_euclid(60) * 60;
    let first = (from + 59).div_euclid(60) * 60;
    let last = to.div_euclid(60) * 60; // inclusive
    let minutes = (first..=last).step_by(60).filter(|t| *t < now_minute && in_calendar(o.calendar, *t)).collect();
    let candles: Vec<Value> = o
        .lies
        .serve(inst, minutes, request, now_minute, &sim.told)
        .into_iter()
        .map(|t| {
            let c = o.lies.adjust(inst, t, candle(inst, t, true), &sim.told);
            let mut row = vec![json!(ist_date(t, "+0530")), json!(c.open), json!(c.high), json!(c.low)];
            row.extend([json!(c.close), json!(c.volume)]);
            if with_oi {
                row.push(json!(c.oi.unwrap_or(0)));
            }
            Value::Array(row)
        })
        .collect();
    Json(json!({"status": "success", "data": {"candles": candles}})).into_response()
}
