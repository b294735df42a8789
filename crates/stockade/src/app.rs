//! Application state, router assembly and serving. `app(state)` builds the
//! whole router apart from `serve()`, so tests can run it on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, RwLock};

use axum::Router;
use tokio::net::TcpListener;

use crate::audit::sampler::{self, Sampler};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::crypto::jwt::Keyring;
use crate::crypto::keys::Keys;
use crate::db::Db;
use crate::http::ApiError;
use crate::http::client_ip::LimitKey;
use crate::http::layers::{self, Limits};
use crate::identity::password::Hasher;
use crate::jobs::{FirstRun, Job, Scheduler};
use crate::ratelimit::{Quota, RateLimiter};
use crate::sessions::SessionPolicy;
use crate::{identity, ops, sessions};

/// The `aud` of every access token.
pub const AUDIENCE: &str = "stockade";

/// Sign-in attempts per client IP: 10 per 15 minutes (SPEC §2.3).
pub const LOGIN_QUOTA: Quota = Quota {
    burst: 10,
    period: chrono::Duration::minutes(15),
};

/// The samplers of refused attempts (see `audit::sampler`): each refusal is
/// counted, at most one event per key and window is written at once, and the
/// rest is written with its count when the window closes.
pub struct Refusals {
    /// `auth.ip.rate_limited` (platform chain): per client, one a minute.
    pub rate_limited: Sampler<LimitKey>,
    /// `tenancy.ip.denied`: per tenant and client, one per five minutes.
    pub allowlist: Sampler<(crate::ids::TenantId, LimitKey)>,
    /// `platform.access.denied` (platform chain): per user and reason, one a
    /// minute.
    pub platform: Sampler<(uuid::Uuid, &'static str)>,
    /// `platform.impersonation.denied` (the tenant's chain and the
    /// platform's): per impersonation session and operation, one a minute
    /// (`platform::forbidden`).
    pub impersonation: Sampler<(uuid::Uuid, &'static str)>,
    /// `<area>.access.denied`: per tenant, principal, route and reason, one
    /// a minute (`http::refusals`).
    pub access: Sampler<crate::http::refusals::AccessKey>,
}

impl Default for Refusals {
    fn default() -> Self {
        let minute = chrono::Duration::minutes(1);
        Self {
            rate_limited: Sampler::new(minute),
            allowlist: Sampler::new(chrono::Duration::minutes(5)),
            platform: Sampler::new(minute),
            impersonation: Sampler::new(minute),
            access: Sampler::new(minute),
        }
    }
}

/// Everything a request may need, shared by all handlers.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub db: Db,
    pub clock: SharedClock,
    pub keys: Keys,
    /// `iss` of every access token: the public URL.
    pub issuer: String,
    pub hasher: Hasher,
    pub session_policy: SessionPolicy,
    /// The per-request session check, cached (embedded mode; cluster mode
    /// with Redis).
    pub session_cache: sessions::SessionCache,
    /// Refresh rotations, group-committed on SQLite.
    pub refresh_rotations: sessions::RotationBatcher,
    /// Sign-in and other password-hashing endpoints, per client address
    /// (IPv6 per /64; every unknown client under one key).
    pub login_limiter: RateLimiter<LimitKey>,
    /// API keys: HMAC key (loaded once), the cached check (same modes as
    /// `session_cache`), rate limits, denial sampling.
    pub api_keys: crate::apikeys::ApiKeyState,
    /// The sampled audit of refusals (`audit::sampler`).
    pub refusals: Refusals,
    /// `X-Forwarded-For` from untrusted peers: warned about, shown in
    /// `/readyz` (`http::proxy_watch`).
    pub forwarded_watch: crate::http::proxy_watch::ForwardedWatch,
    keyring: RwLock<Arc<Keyring>>,
    /// Extra trust roots for audit webhook endpoints (`webhook_ca_file`).
    webhook_roots: Vec<reqwest::Certificate>,
}

impl AppState {
    pub fn new(
        config: Config,
        db: Db,
        clock: SharedClock,
        keys: Keys,
        keyring: Keyring,
    ) -> anyhow::Result<Self> {
        let session_policy = SessionPolicy {
            reuse_grace: chrono::Duration::from_std(config.refresh_reuse_grace)?,
            ..SessionPolicy::default()
        };
        let webhook_roots = match &config.webhook_ca_file {
            None => Vec::new(),
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!("STOCKADE_WEBHOOK_CA_FILE {}: {e}", path.display())
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    anyhow::anyhow!("STOCKADE_WEBHOOK_CA_FILE {}: {e}", path.display())
                })?;
                anyhow::ensure!(
                    !certs.is_empty(),
                    "STOCKADE_WEBHOOK_CA_FILE {} holds no PEM certificate",
                    path.display()
                );
                certs
            }
        };
        // One per process: both caches share its Redis connection, and its
        // hook is installed on `db` once.
        let generations = crate::cache::Generations::new(&config, &db);
        Ok(Self(Arc::new(Inner {
            webhook_roots,
            issuer: config.base_url(),
            hasher: Hasher::new()?,
            session_policy,
            session_cache: sessions::SessionCache::with_generations(generations.clone()),
            refresh_rotations: sessions::RotationBatcher::new(
                db.clone(),
                clock.clone(),
                session_policy,
            ),
            login_limiter: RateLimiter::new(LOGIN_QUOTA),
            api_keys: crate::apikeys::ApiKeyState::new(generations),
            refusals: Refusals::default(),
            forwarded_watch: crate::http::proxy_watch::ForwardedWatch::default(),
            keyring: RwLock::new(Arc::new(keyring)),
            config,
            db,
            clock,
            keys,
        })))
    }

    /// The signing keys in force (cheap: an `Arc` clone).
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The master key (wraps tenant keys and every stored secret). Call it
    /// as `&state.master()`: the one accessor. It is reloadable: it re-reads
    /// its key file when the file changed (before each seal, and when an item
    /// names a version it does not hold), so a server keeps serving through
    /// `stockade keys rotate` and `keys retire --master` without a restart
    /// (see `crypto::master`).
    pub fn master(&self) -> Arc<crate::crypto::keys::MasterKey> {
        self.keys.master.clone()
    }

    /// The extra trust roots of audit webhook endpoints.
    pub fn webhook_roots(&self) -> &[reqwest::Certificate] {
        &self.webhook_roots
    }

    /// Swaps in a reloaded keyring (after `stockade keys rotate`).
    pub fn set_keyring(&self, keyring: Keyring) {
        *self.keyring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keyring);
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
    // The outer limit admits the largest body any route takes (a CSV
    // import); every other route keeps `body_limit` through the
    // DefaultBodyLimit below, which bounds all body extractors.
    let limits = Limits {
        body_limit: state.config.body_limit.max(state.config.import_max_bytes),
        request_timeout: state.config.request_timeout,
        drain_limit: state.config.body_limit,
    };
    let router = Router::new()
        .merge(ops::routes())
        .merge(identity::routes())
        .merge(sessions::routes())
        .merge(crate::rbac::routes())
        .merge(crate::tenancy::routes())
        .merge(crate::tenancy::settings_api::routes())
        .merge(crate::platform::routes())
        .merge(crate::records::routes())
        .merge(crate::apikeys::routes())
        .merge(crate::audit::api::routes())
        .merge(crate::audit::webhook_api::routes());
    #[cfg(feature = "bench")]
    let router = router.merge(crate::bench::routes());
    let router = router
        .fallback(|| async { ApiError::not_found() })
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.body_limit,
        ))
        .merge(crate::records::import_routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http::refusals::audit_refusals,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http::proxy_watch::watch_forwarded,
        ))
        .with_state(state);
    layers::apply(router, limits)
}

/// How often a running server re-reads the signing keys, so a rotation made
/// with `stockade keys rotate --signing` (or by another instance) is picked
/// up without a restart. Tokens of the previous key keep verifying for 15
/// minutes after a rotation, so this delay never rejects a valid token.
pub const KEYRING_RELOAD: std::time::Duration = std::time::Duration::from_secs(30);

/// Starts the scheduled jobs of a serving instance (see `jobs`): the
/// keyring reload every [`KEYRING_RELOAD`] (first after one period: the keys
/// were just loaded), and, each first at start, the audit retention purge
/// every day, the audit webhook delivery every
/// [`crate::audit::webhook::INTERVAL`], the expired-impersonation sweep
/// every `platform::SWEEP_INTERVAL`, the refusal flush every
/// [`sampler::FLUSH_EVERY`] and, outside production, the development mail
/// sender every [`crate::email::dev_sender::INTERVAL`]. Dropping (or
/// shutting down) the returned scheduler stops them all.
///
/// The jobs marked `leader_only` are cluster-wide work; there is no leader
/// election yet (issue #20), so every instance runs them today
/// (`docs/controls.md` §1 says how each stays correct).
pub fn spawn_jobs(state: &AppState) -> Scheduler {
    let mut jobs = Scheduler::new(state.clock.clone());
    let s = state.clone();
    jobs.register(
        Job::new(
            "audit.webhook_delivery",
            crate::audit::webhook::INTERVAL,
            move || {
                let s = s.clone();
                async move { Ok(deliver_webhooks(&s).await?) }
            },
        )
        .leader_only(),
    );
    let (db, clock) = (state.db.clone(), state.clock.clone());
    let policy = crate::audit::retention_policy::RetentionPolicy::from_config(&state.config);
    jobs.register(
        Job::new(
            "audit.retention_purge",
            crate::audit::retention::PURGE_INTERVAL,
            move || {
                let (db, clock) = (db.clone(), clock.clone());
                async move {
                    Ok(
                        crate::audit::retention::scheduled_purge(&db, clock.as_ref(), policy)
                            .await?,
                    )
                }
            },
        )
        .leader_only(),
    );
    let (db, clock) = (state.db.clone(), state.clock.clone());
    jobs.register(
        Job::new(
            "platform.impersonation_sweep",
            crate::platform::SWEEP_INTERVAL,
            move || {
                let (db, clock) = (db.clone(), clock.clone());
                async move { Ok(crate::platform::scheduled_sweep(&db, clock.as_ref()).await?) }
            },
        )
        .leader_only(),
    );
    // Outside production only: bodies are written to files (`email::dev_sender`).
    if !state.config.is_production() {
        let (db, clock, master) = (state.db.clone(), state.clock.clone(), state.master());
        let data_dir = state.config.data_dir.clone();
        jobs.register(
            Job::new(
                "email.dev_sender",
                crate::email::dev_sender::INTERVAL,
                move || {
                    let (db, clock, master, data_dir) =
                        (db.clone(), clock.clone(), master.clone(), data_dir.clone());
                    async move {
                        let run = crate::email::dev_sender::scheduled_delivery(
                            &db,
                            clock.as_ref(),
                            &master,
                            &data_dir,
                        );
                        Ok(run.await?)
                    }
                },
            )
            .leader_only(),
        );
    }
    // Each instance flushes its own samplers.
    let s = state.clone();
    jobs.register(Job::new(
        "audit.refusal_flush",
        sampler::FLUSH_EVERY,
        move || {
            let s = s.clone();
            async move { Ok(format!("{} events written", flush_refusals(&s).await)) }
        },
    ));
    // Each instance holds its own keyring.
    let s = state.clone();
    jobs.register(
        Job::new("crypto.keyring_reload", KEYRING_RELOAD, move || {
            let s = s.clone();
            async move { refresh_keyring(&s).await }
        })
        .first_run(FirstRun::AfterOnePeriod),
    );
    jobs
}

/// One run of the development sender (never in production): queued
/// messages into `<data_dir>/outbox` (`email::dev_sender`); a failure is
/// logged and retried at the next run.
pub async fn deliver_mail(state: &AppState) {
    if state.config.is_production() {
        return;
    }
    let master = state.master();
    let run = crate::email::dev_sender::scheduled_delivery(
        &state.db,
        state.clock.as_ref(),
        &master,
        &state.config.data_dir,
    );
    // Logged by the run itself.
    let _ = run.await;
}

/// One run of the audit webhook delivery (see `audit::webhook`); failures
/// are recorded per endpoint and retried with backoff. A run that cannot
/// start is logged and returned.
pub async fn deliver_webhooks(state: &AppState) -> Result<String, crate::db::DbError> {
    match crate::audit::webhook::deliver_due(state).await {
        Ok(r) => {
            if r.tenants > 0 {
                tracing::debug!(
                    tenants = r.tenants,
                    delivered = r.delivered,
                    failed = r.failed,
                    disabled = r.disabled,
                    "audit webhooks delivered"
                );
            }
            Ok(format!(
                "{} tenants: {} delivered, {} failed, {} disabled",
                r.tenants, r.delivered, r.failed, r.disabled
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "audit webhook delivery failed");
            Err(e)
        }
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

/// Re-reads the signing keys; keeps the current ones if that fails.
pub async fn reload_keyring(state: &AppState) {
    // Logged by the run itself.
    let _ = refresh_keyring(state).await;
}

/// [`reload_keyring`], saying what it did (the job's status).
async fn refresh_keyring(state: &AppState) -> crate::jobs::RunResult {
    match crate::crypto::keyring::load(&state.db, &state.keys, state.clock.as_ref()).await {
        Ok(keyring) if keyring.same_keys(&state.keyring()) => {
            // Nothing changed: keep the verified-token cache, minus expired tokens.
            state.keyring().sweep_verified(state.clock.now());
            Ok("unchanged".to_owned())
        }
        Ok(keyring) => {
            state.set_keyring(keyring);
            Ok("reloaded".to_owned())
        }
        Err(e) => {
            tracing::warn!(error = %e, "signing keys could not be reloaded; keeping the current ones");
            Err(anyhow::anyhow!(e))
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
