//! One shutdown trigger shared by every part of a process: fired by SIGTERM or SIGINT, or by a
//! test, and awaited by every loop at its safe points.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// A trigger that fires with this one, and can also fire alone (to stop one part).
    pub fn child(&self) -> Self {
        Shutdown(self.0.child_token())
    }

    /// Asks every holder to stop.
    pub fn trigger(&self) {
        self.0.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once shutdown has been asked for.
    pub async fn wait(&self) {
        self.0.cancelled().await
    }

    /// Fires this trigger on SIGTERM (what containers and process managers send) or SIGINT.
    pub fn on_signals(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            let term = async {
                #[cfg(unix)]
                {
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                        Ok(mut s) => {
                            s.recv().await;
                        }
                        Err(_) => std::future::pending::<()>().await,
                    }
                }
                #[cfg(not(unix))]
                std::future::pending::<()>().await
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
                _ = term => tracing::info!("SIGTERM received; shutting down"),
            }
            me.trigger();
        });
    }
}

/// What a reconnect loop waits once its delays run out (they never do: `without_max_times`).
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(10);

/// Delays for a reconnect loop: `min`, doubling to `max`, for ever (backon's exponential backoff).
pub fn reconnect_delays(min: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new().with_min_delay(min).with_max_delay(max).without_max_times().build()
}

/// Retries `attempt` with backoff (up to 5 s) until it succeeds, logging what is awaited; gives
/// up only when `shutdown` fires. A process started while its dependencies are down waits for
/// them instead of exiting.
pub async fn patiently<T, F, Fut>(what: &str, shutdown: &Shutdown, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut delays = reconnect_delays(Duration::from_millis(200), Duration::from_secs(5));
    let mut failures = 0u32;
    loop {
        match attempt().await {
            Ok(v) => {
                if failures > 0 {
                    tracing::info!(dependency = what, "reachable again; going on");
                }
                return Ok(v);
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(12) {
                    tracing::warn!(dependency = what, error = format!("{e:#}"), "unreachable; waiting for it");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delays.next().unwrap_or(MAX_RECONNECT_DELAY)) => {}
            _ = shutdown.wait() => anyhow::bail!("stopped while waiting for {what}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_double_up_to_the_cap_for_ever() {
        let ms: Vec<u128> = reconnect_delays(Duration::from_millis(100), Duration::from_secs(1))
            .take(8)
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
        assert_eq!(
            reconnect_delays(Duration::from_millis(1), Duration::from_millis(2)).nth(10_000),
            Some(Duration::from_millis(2))
        );
    }
}
