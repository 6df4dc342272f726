//! One shutdown trigger shared by every part of a process: fired by SIGTERM or SIGINT, or by a
//! test, and awaited by every loop at its safe points.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
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

/// The delays of a reconnect loop: `min`, doubling to `max`, for ever (backon's exponential
/// backoff, without a limit on the number of tries).
pub struct ReconnectDelays {
    backoff: ExponentialBackoff,
    max: Duration,
}

impl ReconnectDelays {
    pub fn new(min: Duration, max: Duration) -> Self {
        let backoff = ExponentialBuilder::new().with_min_delay(min).with_max_delay(max).without_max_times().build();
        ReconnectDelays { backoff, max }
    }

    /// How long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        // Without a limit on tries the backoff never runs out; `max` only keeps this total.
        self.backoff.next().unwrap_or(self.max)
    }
}

/// Retries `attempt` with backoff (up to 5 s) until it succeeds, logging what is awaited; gives
/// up only when `shutdown` fires. A process started while its dependencies are down waits for
/// them instead of exiting.
pub async fn patiently<T, F, Fut>(what: &str, shutdown: &Shutdown, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut delays = ReconnectDelays::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut failures = 0u32;
    loop {
        // A first attempt that hangs (a pool retrying until its timeout) is announced after 2 s,
        // and a stop request never waits for an attempt to end.
        let mut pending = std::pin::pin!(attempt());
        let mut slow = std::pin::pin!(tokio::time::sleep(Duration::from_secs(2)));
        let mut announced = failures > 0;
        let result = loop {
            tokio::select! {
                r = &mut pending => break r,
                _ = shutdown.wait() => anyhow::bail!("stopped while waiting for {what}"),
                _ = &mut slow, if !announced => {
                    announced = true;
                    tracing::warn!(dependency = what, "no answer yet; waiting for it");
                }
            }
        };
        match result {
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
            _ = tokio::time::sleep(delays.next_delay()) => {}
            _ = shutdown.wait() => anyhow::bail!("stopped while waiting for {what}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_double_up_to_the_cap_for_ever() {
        let mut delays = ReconnectDelays::new(Duration::from_millis(100), Duration::from_secs(1));
        let ms: Vec<u128> = (0..8).map(|_| delays.next_delay().as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
        let mut tiny = ReconnectDelays::new(Duration::from_millis(1), Duration::from_millis(2));
        assert_eq!((0..10_000).map(|_| tiny.next_delay()).last(), Some(Duration::from_millis(2)));
    }
}
