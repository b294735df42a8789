//! Application state, router assembly and serving. `app(state)` builds the
//! whole router apart from `serve()`, so tests can run it on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::crypto::keys::Keys;
use crate::db::Db;
use crate::http::ApiError;
use crate::http::layers::{self, Limits};
use crate::ops;

/// Everything a request may need, shared by all handlers.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub db: Db,
    pub clock: SharedClock,
    pub keys: Keys,
}

impl AppState {
    pub fn new(config: Config, db: Db, clock: SharedClock, keys: Keys) -> Self {
        Self(Arc::new(Inner {
            config,
            db,
            clock,
            keys,
        }))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The whole HTTP application: every capability's routes behind the standard
/// layer stack.
pub fn app(state: AppState) -> Router {
    let limits = Limits {
        body_limit: state.config.body_limit,
        request_timeout: state.config.request_timeout,
    };
    let router = Router::new()
        .merge(ops::routes())
        .fallback(|| async { ApiError::not_found() })
        .with_state(state);
    layers::apply(router, limits)
}

/// Serves `router` until `shutdown` resolves; in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received: finishing in-flight requests");
}
