//! The events section: where the bridge hears subscription events, and whether it does.

use super::values::{parse_namespace, ConfigError, Reader};

/// `REDIS_CHANNEL_PREFIX` when unset: events arrive on `ticker:nifty:events`.
pub const DEFAULT_CHANNEL_PREFIX: &str = "ticker:nifty";

/// Subscription events.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// `SUBSCRIPTION_EVENTS_ENABLED`: `false`, the bridge idles and queues no events.
    pub enabled: bool,
    /// `REDIS_CHANNEL_PREFIX`: events arrive on `{prefix}:events`.
    pub channel_prefix: String,
}

pub(super) fn read(r: &Reader<'_>) -> Result<EventSettings, ConfigError> {
    Ok(EventSettings {
        enabled: r.boolean("SUBSCRIPTION_EVENTS_ENABLED", true)?,
        channel_prefix: r.get("REDIS_CHANNEL_PREFIX", DEFAULT_CHANNEL_PREFIX.into(), parse_namespace)?,
    })
}
