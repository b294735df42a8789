//! The one place that knows every room: [`AppState`] builds each component
//! of a serving instance once (the [`AuthState`] every slice carries, the
//! password hasher, the sign-in limiter, the refresh rotation queue, ...),
//! `app(state)` gives each capability's routes their own state slice and
//! stacks the layers (apart from `serve()`, so tests can run it on port 0),
//! and `spawn_jobs` starts the background jobs. No capability imports this
//! module: what a room needs reaches it through its slice.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use tokio::net::TcpListener;

use crate::apikeys::{ApiKeyAuth, ApiKeysState};
use crate::audit::{AuditState, sampler};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::crypto::jwt::Keyring;
use crate::crypto::keys::Keys;
use crate::db::Db;
use crate::http::auth_state::KEYRING_RELOAD;
use crate::http::layers::{self, Limits};
use crate::http::proxy_watch::{ForwardedWatch, Watching};
use crate::http::{ApiError, AuthState};
use crate::identity::password::Hasher;
use crate::identity::{IdentityState, LOGIN_QUOTA, LoginLimiter};
use crate::ops::OpsState;
use crate::platform::PlatformState;
use crate::ratelimit::RateLimiter;
use crate::rbac::RbacState;
use crate::records::RecordsState;
use crate::sessions::{RotationBatcher, SessionCache, SessionPolicy, SessionsState};
use crate::tenancy::TenancyState;
use crate::{identity, ops, sessions};

/// Every component of a serving instance, each built once. The handlers
/// never see it: each capability's routes get their own state slice, built
/// here from these components (see [`app`]).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The components beyond the [`AuthState`]; it derefs to the auth state,
/// so `state.db`, `state.clock`, `state.keyring()` read through.
pub struct Inner {
    auth: AuthState,
    pub keys: Keys,
    pub hasher: Hasher,
    pub session_policy: SessionPolicy,
    /// Refresh rotations, group-committed on SQLite.
    pub refresh_rotations: Arc<RotationBatcher>,
    /// Sign-in and other password-hashing endpoints, per client address.
    pub login_limiter: Arc<LoginLimiter>,
    /// `X-Forwarded-For` from untrusted peers: warned about, shown in
    /// `/readyz` (`http::proxy_watch`).
    pub forwarded_watch: Arc<ForwardedWatch>,
    /// The audit slice, kept whole: the webhook delivery job takes it too.
    audit: AuditState,
}

impl AppState {
    pub fn new(
        config: Config,
        db: Db,
        clock: SharedClock,
        keys: Keys,
        keyring: Keyring,
    ) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let session_policy = SessionPolicy {
            reuse_grace: chrono::Duration::from_std(config.refresh_reuse_grace)?,
            ..SessionPolicy::default()
        };
        // One per process: both caches share its Redis connection, and its
        // hook is installed on `db` once.
        let generations = crate::cache::Generations::new(&config, &db);
        let refresh_rotations = RotationBatcher::new(db.clone(), clock.clone(), session_policy);
        let auth = AuthState::new(
            db,
            clock,
            config,
            keys.master.clone(),
            keyring,
            SessionCache::with_generations(generations.clone()),
            ApiKeyAuth::new(generations),
        );
        Ok(Self(Arc::new(Inner {
            audit: AuditState::new(auth.clone())?,
            hasher: Hasher::new()?,
            session_policy,
            refresh_rotations: Arc::new(refresh_rotations),
            login_limiter: Arc::new(RateLimiter::new(LOGIN_QUOTA)),
            forwarded_watch: Arc::default(),
            auth,
            keys,
        })))
    }

    /// The auth state every slice carries.
    pub fn auth(&self) -> &AuthState {
        &self.0.auth
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Deref for Inner {
    type Target = AuthState;
    fn deref(&self) -> &AuthState {
        &self.auth
    }
}

/// What `audit::webhook::deliver_due` takes from the application's state.
impl FromRef<AppState> for AuditState {
    fn from_ref(state: &AppState) -> Self {
        state.audit.clone()
    }
}

/// The whole HTTP application: every capability's routes behind the standard
/// layer stack.
pub fn app(state: AppState) -> Router {
    // The outer limit admits the largest body any route takes (a CSV
    // import); every other route keeps `body_limit` through the
    // DefaultBodyLimit below, which bounds all body extractors.
    let limits = Limits {
        body_limit: state.config.body_limit.max(state.config.import_max_bytes),
        request_timeout: state.config.request_timeout,
        drain_limit: state.config.body_limit,
    };
    let auth = state.auth();
    let records = RecordsState { auth: auth.clone() };
    let tenancy = TenancyState {
        auth: auth.clone(),
        hasher: state.hasher.clone(),
        login_limiter: state.login_limiter.clone(),
    };
    let router = Router::new()
        .merge(ops::routes().with_state(OpsState {
            auth: auth.clone(),
            forwarded_watch: state.forwarded_watch.clone(),
        }))
        .merge(identity::routes().with_state(IdentityState {
            auth: auth.clone(),
            hasher: state.hasher.clone(),
            login_limiter: state.login_limiter.clone(),
            session_policy: state.session_policy,
        }))
        .merge(sessions::routes().with_state(SessionsState {
            auth: auth.clone(),
            session_policy: state.session_policy,
            refresh_rotations: state.refresh_rotations.clone(),
        }))
        .merge(crate::rbac::routes().with_state(RbacState { auth: auth.clone() }))
        .merge(crate::tenancy::routes().with_state(tenancy.clone()))
        .merge(crate::tenancy::settings_api::routes().with_state(tenancy))
        .merge(crate::platform::routes().with_state(PlatformState {
            auth: auth.clone(),
            login_limiter: state.login_limiter.clone(),
            session_policy: state.session_policy,
        }))
        .merge(crate::records::routes().with_state(records.clone()))
        .merge(crate::apikeys::routes().with_state(ApiKeysState { auth: auth.clone() }))
        .merge(crate::audit::api::routes().with_state(state.audit.clone()))
        .merge(crate::audit::webhook_api::routes().with_state(state.audit.clone()));
    #[cfg(feature = "bench")]
    let router = router.merge(crate::bench::routes().with_state(crate::bench::BenchState {
        auth: auth.clone(),
        hasher: state.hasher.clone(),
        session_policy: state.session_policy,
    }));
    let router = router
        .fallback(|| async { ApiError::not_found() })
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.body_limit,
        ))
        .merge(crate::records::import_routes().with_state(records))
        .layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            crate::http::refusals::audit_refusals,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(Watching {
                auth: auth.clone(),
                watch: state.forwarded_watch.clone(),
            }),
            crate::http::proxy_watch::watch_forwarded,
        ));
    layers::apply(router, limits)
}

/// Starts the background jobs of a serving instance: the keyring reload
/// every [`KEYRING_RELOAD`], the audit retention purge every day (the
/// first one at startup), the audit webhook delivery every
/// [`crate::audit::webhook::INTERVAL`], the expired-impersonation sweep
/// every `platform::SWEEP_INTERVAL` and the refusal flush every
/// [`sampler::FLUSH_EVERY`].
pub fn spawn_jobs(state: &AppState) -> tokio::task::JoinHandle<()> {
    let webhook_state = state.clone();
    let webhooks = tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::audit::webhook::INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            deliver_webhooks(&webhook_state).await;
        }
    });
    let purge_state = state.clone();
    let purge = tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::audit::retention::PURGE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            purge_audit(&purge_state).await;
        }
    });
    let sweep_state = state.clone();
    let sweep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::platform::SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            end_impersonations(&sweep_state).await;
        }
    });
    // Outside production only: bodies are written to files (`email::dev_sender`).
    let mail_state = state.clone();
    let mail = (!state.config.is_production()).then(|| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::email::dev_sender::INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                deliver_mail(&mail_state).await;
            }
        })
    });
    let flush_state = state.clone();
    let flush = tokio::spawn(async move {
        let mut tick = tokio::time::interval(sampler::FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            flush_refusals(&flush_state).await;
        }
    });
    let state = state.clone();
    tokio::spawn(async move {
        // Aborting this task (shutdown) ends the other jobs too.
        let _purge = AbortOnDrop(purge);
        let _webhooks = AbortOnDrop(webhooks);
        let _sweep = AbortOnDrop(sweep);
        let _mail = mail.map(AbortOnDrop);
        let _flush = AbortOnDrop(flush);
        let mut tick = tokio::time::interval(KEYRING_RELOAD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; keys were just loaded
        loop {
            tick.tick().await;
            reload_keyring(&state).await;
        }
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One run of the development sender (never in production): queued
/// messages into `<data_dir>/outbox`.
pub async fn deliver_mail(state: &AppState) {
    if state.config.is_production() {
        return;
    }
    let master = state.master();
    let run = crate::email::dev_sender::deliver_queued(
        &state.db,
        state.clock.as_ref(),
        &master,
        &state.config.data_dir,
    );
    if let Err(e) = run.await {
        tracing::error!(error = %e, "development sender failed");
    }
}

/// One run of the audit retention purge (see `audit::retention`), on the
/// injected clock; failures are logged and retried the next day.
pub async fn purge_audit(state: &AppState) {
    let policy = crate::audit::retention_policy::RetentionPolicy::from_config(&state.config);
    match crate::audit::retention::purge_all(&state.db, state.clock.as_ref(), policy).await {
        // Skipped chains were logged (and audited) as they were met.
        Ok(run) => {
            for r in run.purged {
                tracing::info!(tenant = %r.tenant_id, count = r.count, up_to_seq = r.up_to_seq, "audit events purged");
            }
        }
        Err(e) => tracing::error!(error = %e, "audit retention purge failed"),
    }
}

/// One run of the audit webhook delivery (see `audit::webhook`); failures
/// are recorded per endpoint and retried with backoff.
pub async fn deliver_webhooks(state: &AppState) {
    match crate::audit::webhook::deliver_due(state).await {
        Ok(r) if r.tenants > 0 => {
            tracing::debug!(
                tenants = r.tenants,
                delivered = r.delivered,
                failed = r.failed,
                disabled = r.disabled,
                "audit webhooks delivered"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "audit webhook delivery failed"),
    }
}

/// One run of the refusal flush: every sampler's closed windows that hold
/// refusals are written with their counts (see `audit::sampler`). Returns
/// the number of events written.
pub async fn flush_refusals(state: &AppState) -> usize {
    let r = &state.refusals;
    sampler::flush(state, &r.rate_limited).await
        + sampler::flush(state, &r.allowlist).await
        + sampler::flush(state, &r.platform).await
        + sampler::flush(state, &r.impersonation).await
        + sampler::flush(state, &r.access).await
        + sampler::flush(state, &state.api_keys.denials).await
}

/// One run of the expired-impersonation sweep (`platform::expiry`).
pub async fn end_impersonations(state: &AppState) {
    match crate::platform::end_expired_impersonations(&state.db, state.clock.as_ref()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(ended = n, "expired impersonations ended"),
        Err(e) => tracing::error!(error = %e, "expired impersonations could not be ended"),
    }
}

/// Re-reads the signing keys; keeps the current ones if that fails.
pub async fn reload_keyring(state: &AppState) {
    match crate::crypto::keyring::load(&state.db, &state.keys, state.clock.as_ref()).await {
        Ok(keyring) if keyring.same_keys(&state.keyring()) => {
            // Nothing changed: keep the verified-token cache, minus expired tokens.
            state.keyring().sweep_verified(state.clock.now());
        }
        Ok(keyring) => state.set_keyring(keyring),
        Err(e) => {
            tracing::warn!(error = %e, "signing keys could not be reloaded; keeping the current ones")
        }
    }
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
