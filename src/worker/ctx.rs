//! What a backfill is for: its instrument, where its bars go, why, and how it may be served.
//! Both the backfill and the rules that settle its days read it, so it stands apart from both.

use chrono::{DateTime, Utc};
use tickfill_jobs::InstrumentToken;
use tickfill_jobs::Reason;

use crate::{domain::market::BarTarget, store::rollups::Upkeep};

/// What a backfill is for.
pub struct BackfillCtx {
    pub(crate) token: InstrumentToken,
    pub(crate) target: BarTarget,
    pub(crate) reason: Reason,
    /// When the bridge received the event that asked for it, if an event did.
    pub(crate) requested_at: Option<DateTime<Utc>>,
    /// Fetch the whole window even where coverage says it is stored.
    pub(crate) force: bool,
    /// The instrument's segment: its trading calendar.
    pub(crate) segment: Option<String>,
    /// Whether the job keeps the plain rollup tables of what it writes.
    pub(crate) rollups: Upkeep,
    /// The account its requests go to first, when it can serve (its index in the budget):
    /// the subscription's; `None`: any.
    pub(crate) prefer: Option<usize>,
    /// A remark for its run row.
    pub(crate) note: Option<String>,
}
