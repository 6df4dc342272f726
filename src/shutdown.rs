//! One shutdown trigger shared by every part of a process: fired by SIGTERM or SIGINT, or by a
//! test, and awaited by every loop at its safe points.

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
