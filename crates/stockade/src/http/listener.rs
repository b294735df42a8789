//! The one connection loop every listener runs (the API, plain or TLS, and
//! the plain-HTTP redirector): accept, optionally a TLS handshake, then
//! hyper serving HTTP/1.1 or HTTP/2 on the connection, with the socket peer
//! given to axum as `ConnectInfo<SocketAddr>`.
//!
//! Bounds at the connection level (issue #20 item 9), before any handler:
//! - a client has [`ServeOptions::header_read_timeout`] to send a request's
//!   whole head (slowloris), counted from the first read of each request,
//!   so an idle keep-alive connection is closed after it too; the same
//!   bound applies to a TLS handshake (a half-open or silent connection);
//! - a request head larger than [`MAX_HEADER_BYTES`] is answered by hyper
//!   with `431 Request Header Fields Too Large` and the connection closed;
//!   more than [`MAX_HEADERS`] header fields likewise;
//! - HTTP/2: at most [`H2_MAX_CONCURRENT_STREAMS`] streams at once, a
//!   header list of at most [`MAX_HEADER_BYTES`], and GOAWAY
//!   (`ENHANCE_YOUR_CALM`) once a client resets more than
//!   [`H2_MAX_PENDING_ACCEPT_RESET_STREAMS`] streams before they were
//!   served (the "rapid reset" attack, CVE-2023-44487) or provokes more
//!   than [`H2_MAX_LOCAL_ERROR_RESET_STREAMS`] stream errors; idle h2
//!   connections are pinged every [`H2_KEEP_ALIVE`] and dropped when the
//!   peer stops answering;
//! - a failed handshake or a broken connection is logged at debug and ends
//!   that connection only.
//!
//! Stopping: once `shutdown` resolves no connection is accepted, each open
//! one finishes its in-flight requests and closes (hyper's graceful
//! shutdown), and the loop waits for them at most
//! [`ServeOptions::shutdown_grace`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::config::{Config, DEFAULT_HEADER_READ_TIMEOUT};

/// The largest request head (request line and headers) of HTTP/1.1, and
/// header list of HTTP/2, in bytes.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The most header fields in one HTTP/1.1 request (hyper's default).
pub const MAX_HEADERS: usize = 100;
/// HTTP/2 streams open at once on one connection.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// HTTP/2 streams a client may reset before they are served, before the
/// connection is sent GOAWAY (rapid reset). Half hyper's default: a browser
/// cancels streams already being served, which do not count.
pub const H2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 10;
/// HTTP/2 stream errors a client may provoke before GOAWAY.
pub const H2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 256;
/// HTTP/2 keep-alive ping interval, and how long an answer may take.
pub const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// How one listener serves its connections.
#[derive(Clone)]
pub struct ServeOptions {
    /// Time to send a request head, or to finish the TLS handshake.
    pub header_read_timeout: Duration,
    /// TLS on this listener; `None` is plain HTTP.
    pub tls: Option<TlsAcceptor>,
    /// How long a stop waits for open connections to finish.
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            tls: None,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl ServeOptions {
    /// Plain HTTP with the configured timeouts: a stop waits for a request
    /// as long as the request timeout lets it run, and a little more.
    pub fn from_config(config: &Config) -> Self {
        Self {
            header_read_timeout: config.header_read_timeout,
            tls: None,
            shutdown_grace: config.request_timeout + Duration::from_secs(5),
        }
    }

    pub fn with_tls(self, acceptor: TlsAcceptor) -> Self {
        Self {
            tls: Some(acceptor),
            ..self
        }
    }
}

/// hyper's connection builder with the bounds of the module documentation.
pub fn connection_builder(header_read_timeout: Duration) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESET_STREAMS)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(H2_KEEP_ALIVE);
    builder
}

/// Serves `router` on `listener` until `shutdown` resolves (see the module
/// documentation); in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    let builder = Arc::new(connection_builder(options.header_read_timeout));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tracing::trace!(peer = %peer, "connection accepted");
        let connection = Connection {
            builder: builder.clone(),
            router: router.clone(),
            watcher: graceful.watcher(),
            peer,
        };
        let tls = options.tls.clone();
        let handshake_timeout = options.header_read_timeout;
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match tls {
                None => connection.serve(stream).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => connection.serve(tls).await,
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(options.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = options.shutdown_grace.as_secs(),
            "connections still open after the shutdown grace; stopping without them"
        );
    }
    Ok(())
}

/// One accepted connection, to be served once its transport is ready.
struct Connection {
    builder: Arc<Builder<TokioExecutor>>,
    router: Router,
    watcher: Watcher,
    peer: SocketAddr,
}

impl Connection {
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            builder,
            router,
            watcher,
            peer,
        } = self;
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(req)
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        match watcher.watch(conn).await {
            Ok(()) => tracing::trace!(peer = %peer, "connection closed"),
            Err(e) => tracing::debug!(peer = %peer, error = %e, "connection ended with an error"),
        }
    }
}

/// An accept that failed: a connection reset before it was accepted is the
/// client's business; anything else (out of file descriptors, ...) is
/// logged, and accepting resumes after a pause instead of spinning.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
