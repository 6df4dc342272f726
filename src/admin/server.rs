//! Serving the admin API so that no client can starve the process: at most
//! [`MAX_CONNECTIONS`] at once (beyond that, new ones wait in the kernel's backlog and hold none
//! of our file descriptors), a request's headers within [`HEADER_READ_TIMEOUT`] (a half-open or
//! slow client is dropped, and an idle keep-alive connection is closed after as long), and no
//! connection kept beyond [`MAX_CONNECTION_AGE`].

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::Router;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};

use crate::shutdown::Shutdown;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a client has to send a request's headers, on a new connection or between requests.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a connection is kept, however busy.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(120);

/// Accepts and serves connections on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, app: Router, shutdown: Shutdown) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // A slot first, then the connection: at the cap, nothing more is accepted.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
            _ = shutdown.wait() => return,
        };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted: wait a
                    // little rather than spin.
                    tracing::warn!(error = %e, "admin API: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => return,
        };
        let service = TowerToHyperService::new(app.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => log_end(peer, r),
                _ = tokio::time::sleep(MAX_CONNECTION_AGE) => {
                    conn.as_mut().graceful_shutdown();
                    log_end(peer, conn.await);
                }
                _ = stop.wait() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                }
            }
        });
    }
}

fn log_end(peer: SocketAddr, r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        tracing::debug!(%peer, error = %e, "admin API: connection ended");
    }
}
