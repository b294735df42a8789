//! The admin listener (`STOCKADE_ADMIN_LISTEN`, `127.0.0.1:9464` by
//! default, `off` to disable): `GET /metrics` in the Prometheus text format,
//! and nothing else (404). It is never the public listener — the
//! configuration refuses the same address, and production refuses a
//! non-loopback one without `STOCKADE_ADMIN_ALLOW_REMOTE=true` — and the
//! public router has no `/metrics`. It is not part of the public API (not in
//! `/openapi.json`). See `docs/metrics.md`.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::db::Db;

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The admin routes: `/metrics` only.
pub fn router(db: Db) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(db)
}

/// The exposition: the database pools' use read now, then every series.
async fn metrics(State(db): State<Db>) -> Response {
    let Some(handle) = super::metrics::handle() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed\n",
        )
            .into_response();
    };
    for pool in db.pool_use() {
        super::metrics::db_pool(pool.name, pool.size, pool.idle, pool.max);
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], handle.render()).into_response()
}

/// The running admin listener; stops when dropped.
pub struct AdminListener {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AdminListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves [`router`] on it until the returned listener is
/// dropped. The error is one line naming the address.
pub async fn start(addr: SocketAddr, db: Db) -> Result<AdminListener, String> {
    super::metrics::install();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on STOCKADE_ADMIN_LISTEN {addr}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the admin listening address: {e}"))?;
    let app = router(db);
    // The connection loop of every listener, with its bounds (`http::listener`).
    let task = tokio::spawn(async move {
        let stopped = std::future::pending::<()>();
        let options = crate::http::listener::ServeOptions::default();
        if let Err(e) = crate::http::listener::serve(listener, app, stopped, options).await {
            tracing::error!(error = %e, "admin listener stopped");
        }
    });
    tracing::info!(%addr, "admin listener: GET /metrics");
    Ok(AdminListener { addr, task })
}

/// `stockade serve`'s admin listener, when configured.
pub async fn start_configured(
    config: &crate::config::Config,
    db: &Db,
) -> Result<Option<AdminListener>, String> {
    match config.admin_listen {
        Some(addr) => start(addr, db.clone()).await.map(Some),
        None => Ok(None),
    }
}
