//! The pending window of an expiry's chain rebuild: widened by each fill that touches the chain,
//! taken whole by the rebuild that runs (a debounced job per expiry).

use chrono::{DateTime, NaiveDate, Utc};

use super::{keys, RedisConn};
use crate::domain::window::Window;

/// Widens the pending rebuild window of `underlying`'s `expiry` to hold `window`.
pub async fn widen_pending(
    conn: &mut RedisConn,
    ns: &str,
    underlying: &str,
    expiry: NaiveDate,
    window: Window,
) -> redis::RedisResult<()> {
    let pending = keys::chain_pending(ns, underlying, expiry);
    redis::pipe()
        .cmd("ZADD")
        .arg(&pending)
        .arg("LT")
        .arg(window.from.timestamp())
        .arg("from")
        .ignore()
        .cmd("ZADD")
        .arg(&pending)
        .arg("GT")
        .arg(window.to.timestamp())
        .arg("to")
        .ignore()
        .expire(&pending, 86_400)
        .ignore()
        .query_async(conn)
        .await
}

/// Takes the pending window (and forgets it): `window` widened by what fills asked for since.
pub async fn take_pending(
    conn: &mut RedisConn,
    ns: &str,
    underlying: &str,
    expiry: NaiveDate,
    window: Window,
) -> redis::RedisResult<Window> {
    let pending = keys::chain_pending(ns, underlying, expiry);
    let (bounds, _): (Vec<(String, i64)>, ()) =
        redis::pipe().atomic().zrange_withscores(&pending, 0, -1).del(&pending).query_async(conn).await?;
    let mut window = window;
    for (member, ts) in bounds {
        let Some(t) = DateTime::<Utc>::from_timestamp(ts, 0) else { continue };
        match member.as_str() {
            "from" => window.from = window.from.min(t),
            "to" => window.to = window.to.max(t),
            _ => {}
        }
    }
    Ok(window)
}
