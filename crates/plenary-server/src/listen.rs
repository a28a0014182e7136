//! The HTTP listener: accepts TCP connections, optionally wraps them in TLS
//! (rustls), and serves each with hyper's HTTP/1.1, WebSocket upgrades
//! included. It guards against clients that hold connections without using
//! them:
//!
//! - the request head (line and headers) must arrive within the header
//!   timeout, else the connection is closed (a "slowloris" client that
//!   sends headers byte by byte is cut off); the same timeout bounds the
//!   TLS handshake and how long an idle keep-alive connection stays open;
//! - one address may hold at most a set number of connections at once; the
//!   next one gets `429 Too Many Requests` (plain HTTP) or is closed (TLS:
//!   refused before the handshake, so it costs no cryptography).
//!
//! Every request carries the peer's [`ConnectInfo`] for per-address limits
//! further in (signaling sessions, see `http.rs`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::debug;

use crate::limits::{PerAddress, Slot};

/// Body of the answer to a connection over the per-address limit (plain HTTP only).
const TOO_MANY: &str = "Too many connections from your address.\n";

/// Refusals answered at the same time at most; more are closed at once.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;
/// How long a refused client may take to read the answer.
const REFUSAL_LINGER: Duration = Duration::from_secs(2);
/// How long open connections may take to finish after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Limits of the HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Longest time for a request head, the TLS handshake, or an idle
    /// keep-alive connection.
    pub header_timeout: Duration,
    /// Open connections per address.
    pub connections: Arc<PerAddress>,
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open
/// connections finish their requests for up to 5 s.
///
/// # Errors
/// None in practice: failed accepts (e.g. out of file descriptors) are
/// retried after a pause.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    debug!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
            // Reap finished connection tasks so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let slot = match limits.connections.acquire(remote.ip()) {
            Ok(slot) => slot,
            Err(_) => {
                if tls.is_none()
                    && let Ok(permit) = Arc::clone(&refusals).try_acquire_owned()
                {
                    tokio::spawn(async move {
                        refuse(stream).await;
                        drop(permit);
                    });
                }
                continue;
            }
        };
        let task = connection(stream, remote, tls.clone(), app.clone(), limits.header_timeout, slot, stop_rx.clone());
        connections.spawn(task);
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} }).await;
    Ok(())
}

/// Answers 429 and closes, reading what the client sent meanwhile so that
/// the close does not reset the connection before it reads the answer.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        let answer = format!(
            "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 10\r\n\
             Connection: close\r\nContent-Length: {}\r\n\r\n{TOO_MANY}",
            TOO_MANY.len()
        );
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
    header_timeout: Duration,
    slot: Slot,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => http(TokioIo::new(stream), remote, app, header_timeout, stop).await,
        Some(acceptor) => match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => http(TokioIo::new(tls), remote, app, header_timeout, stop).await,
            Ok(Err(e)) => debug!(error = %e, "TLS handshake failed"),
            Err(_) => debug!("TLS handshake timed out"),
        },
    }
    // The connection is closed or upgraded (a WebSocket session counts
    // against its own limit from here).
    drop(slot);
}

async fn http<I>(
    io: TokioIo<I>,
    remote: SocketAddr,
    app: Router,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.oneshot(req).await.unwrap_or_else(|e| match e {})) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = async { drop(stop.wait_for(|stop| *stop).await) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Includes header timeouts; the peer's address is not logged.
        debug!(error = %e, "HTTP connection ended with an error");
    }
}
