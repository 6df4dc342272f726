//! `tickfill backfill cancel`: dropping the pending backfills of one token.

use std::sync::LazyLock;
use tickfill_jobs::InstrumentToken;

use crate::queue::RedisConn;
use tickfill_jobs::Lane;

use super::{keys::LaneKeys, state::count};

/// Drops the pending (not yet running) backfills of `token` from both lanes; returns how many.
pub async fn cancel_backfills(conn: &mut RedisConn, ns: &str, token: InstrumentToken) -> anyhow::Result<u64> {
    static SCRIPT: LazyLock<redis::Script> =
        LazyLock::new(|| redis::Script::new(include_str!("lua/cancel_backfills.lua")));
    let mut total = 0;
    for lane in Lane::ALL {
        let k = LaneKeys::new(ns, lane);
        let n: u64 = SCRIPT
            .key(k.scheduled())
            .key(k.active())
            .key(k.data())
            .arg(token.get())
            .arg(k.meta_prefix())
            .invoke_async(conn)
            .await?;
        total += n;
    }
    if total > 0 {
        count(conn, ns, "backfills_cancelled").await;
    }
    Ok(total)
}
