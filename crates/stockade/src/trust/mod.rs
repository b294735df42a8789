//! The live trust page (SPEC §2.16, issue #20 item 8): `GET /trust` (HTML,
//! no script, a CSP that forbids everything but the page itself) and `GET
//! /trust.json`, both generated from the running deployment
//! ([`posture::gather`]). Public (a reviewer reads it without an account),
//! so it says nothing about any tenant, user, secret or internal address,
//! and it is computed at most once per [`REFRESH`] (it reads every tenant's
//! settings) — by the injected clock, so tests see a change at once after
//! moving it.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use crate::config::Config;
use crate::http::{ApiError, AuthState};
use crate::jobs::JobBoard;

pub mod posture;
mod render;

pub use posture::Posture;

/// How long a computed posture is served before it is gathered again.
pub const REFRESH: chrono::Duration = chrono::Duration::seconds(30);

/// The page's own CSP: nothing may load or run, not even a style; no form,
/// no framing, no `<base>`.
pub const TRUST_CSP: &str = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; img-src 'none'";

/// What the trust routes take: the auth state (configuration, database,
/// clock, keys) and the last posture.
#[derive(Clone)]
pub struct TrustState {
    pub auth: AuthState,
    cache: Arc<Mutex<Option<Posture>>>,
}

impl TrustState {
    pub fn new(auth: AuthState) -> Self {
        Self {
            auth,
            cache: Arc::default(),
        }
    }

    /// The posture, gathered again when the cached one is older than
    /// [`REFRESH`] by the injected clock.
    async fn posture(&self, leader_election: &'static str) -> Result<Posture, ApiError> {
        let now = self.auth.clock.now();
        let mut cached = self.cache.lock().await;
        if let Some(p) = cached.as_ref()
            && fresh(p.generated_at, now)
        {
            return Ok(p.clone());
        }
        let master = self.auth.master();
        let posture = posture::gather(
            &self.auth.config,
            &self.auth.db,
            master.versions(),
            master.current_version(),
            leader_election,
            now,
        )
        .await?;
        *cached = Some(posture.clone());
        Ok(posture)
    }
}

fn fresh(generated_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    generated_at <= now && now - generated_at < REFRESH
}

pub fn routes() -> Router<TrustState> {
    Router::new()
        .route("/trust", get(trust_html))
        .route("/trust.json", get(trust_json))
}

/// How the leader is elected, from the job board `stockade serve` puts on
/// the router (none: this instance runs no jobs).
fn election(jobs: Option<&Extension<JobBoard>>) -> &'static str {
    jobs.map_or("no scheduled jobs on this instance", |Extension(b)| {
        b.leadership().method()
    })
}

/// The deployment's live security posture, as JSON.
#[utoipa::path(get, path = "/trust.json", tag = "ops",
    responses((status = 200, body = Posture)))]
async fn trust_json(
    State(state): State<TrustState>,
    jobs: Option<Extension<JobBoard>>,
) -> Result<Json<Posture>, ApiError> {
    Ok(Json(state.posture(election(jobs.as_ref())).await?))
}

/// The deployment's live security posture, as an HTML page (no script).
#[utoipa::path(get, path = "/trust", tag = "ops",
    responses((status = 200, content_type = "text/html", description = "The posture as a page")))]
async fn trust_html(
    State(state): State<TrustState>,
    jobs: Option<Extension<JobBoard>>,
) -> Result<Response, ApiError> {
    let posture = state.posture(election(jobs.as_ref())).await?;
    let page = render::Page::of(&posture);
    let html = page.render().map_err(ApiError::internal)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(TRUST_CSP),
            ),
            // Public and the same for everyone; short-lived.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=30"),
            ),
        ],
        html,
    )
        .into_response())
}

/// How HTTPS is provided, from the configuration (`http::tls`,
/// `http::scheme`, `http::redirector`): with a certificate this process
/// speaks only TLS 1.3/1.2 with forward-secret AEAD suites on its port;
/// behind a TLS proxy what the proxy says came over `http` is redirected.
pub fn transport(config: &Config) -> posture::Transport {
    let (https, tls_versions) = match (&config.tls, config.behind_tls_proxy) {
        (Some(_), _) => ("built-in", vec!["TLS 1.3", "TLS 1.2"]),
        (None, true) => ("proxy", Vec::new()),
        (None, false) => ("none", Vec::new()),
    };
    posture::Transport {
        https,
        https_enforced: https != "none",
        tls_versions,
        tls_forward_secrecy_only: config.tls.is_some(),
        http_redirector: config.http_redirect_listen.is_some(),
        hsts: crate::http::headers::HSTS,
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(trust_json, trust_html), components(schemas(Posture)))]
pub struct TrustApi;
