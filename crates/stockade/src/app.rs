//! The one place that knows every room: [`AppState`] builds each component
//! of a serving instance once (the [`AuthState`] every slice carries, the
//! password hasher, the sign-in limiter, the refresh rotation queue, ...),
//! `app(state)` gives each capability's routes their own state slice and
//! stacks the layers (apart from `serve()`, so tests can run it on port 0),
//! and `spawn_jobs` starts the background jobs. No capability imports this
//! module: what a room needs reaches it through its slice.

use std::future::Future;
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
use crate::jobs::{FirstRun, Job, Leadership, Scheduler};
use crate::ops::OpsState;
use crate::ops::alerts::Monitor;
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
    /// This instance's alerts (`ops::alerts`): fed by the request layer,
    /// the rate limits, the deliveries; judged by the `ops.alerts` job.
    pub monitor: Arc<Monitor>,
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
        if config.admin_listen.is_some() {
            // Once per process; nothing is recorded when nothing serves it.
            crate::ops::metrics::install();
        }
        let monitor = Arc::new(Monitor::new(config.alerts, clock.clone()));
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
            monitor,
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
        .merge(crate::mfa::routes().with_state(crate::mfa::MfaState {
            auth: auth.clone(),
            login_limiter: state.login_limiter.clone(),
            ceremony_limiter: Arc::new(RateLimiter::new(crate::mfa::webauthn::CEREMONY_QUOTA)),
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
        .merge(crate::audit::webhook_api::routes().with_state(state.audit.clone()))
        .merge(crate::trust::routes().with_state(crate::trust::TrustState::new(auth.clone())));
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
    // CORS answers (allowed origins only) sit inside the security headers,
    // so a preflight answer carries them too; the guard around them refuses
    // other origins' preflights and strips CORS headers from answers to them.
    let router = match crate::http::cors::layer(&state.config.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    let router = router.layer(axum::middleware::from_fn_with_state(
        Arc::new(state.config.cors_origins.clone()),
        crate::http::cors::guard,
    ));
    // Behind a TLS proxy: what it says came over `http` gets a 308.
    let router = crate::http::scheme::behind_proxy(router, &state.config);
    // Outermost, so it sees every answer's final status (`ops::http_metrics`).
    layers::apply(router, limits).layer(axum::middleware::from_fn_with_state(
        state.monitor.clone(),
        crate::ops::http_metrics::track,
    ))
}

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
/// The jobs marked `leader_only` are cluster-wide work: on PostgreSQL only
/// the instance holding the advisory lock runs them (`jobs::leader`; the
/// election runs beside the jobs and stops with them).
pub fn spawn_jobs(state: &AppState) -> Scheduler {
    // Cluster mode elects the instance that runs the leader-only jobs
    // (`jobs::leader`); embedded mode is the only instance.
    let mut jobs = match state.db.postgres_app_pool() {
        Some(pool) => {
            let leadership = Leadership::elect();
            let mut jobs = Scheduler::with_leadership(state.clock.clone(), leadership.clone());
            jobs.spawn(leadership.election_loop(pool.clone()));
            jobs
        }
        None => Scheduler::new(state.clock.clone()),
    };
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
            "audit.chain_verification",
            crate::audit::verification::INTERVAL,
            move || {
                let (db, clock) = (db.clone(), clock.clone());
                async move {
                    let v = crate::audit::verification::scheduled_verification(&db, clock.as_ref())
                        .await?;
                    Ok(format!(
                        "{} chains, {} events, {} broken",
                        v.chains, v.events_checked, v.broken
                    ))
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
        let s = state.clone();
        jobs.register(
            Job::new(
                "email.dev_sender",
                crate::email::dev_sender::INTERVAL,
                move || {
                    let s = s.clone();
                    async move { Ok(deliver_dev_mail(&s).await?.to_string()) }
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
    // Each instance judges its own alerts (`ops::alerts`).
    let s = state.clone();
    jobs.register(Job::new(
        "ops.alerts",
        crate::ops::alerts::EVALUATE_EVERY,
        move || {
            let s = s.clone();
            async move { evaluate_alerts(&s).await }
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
    // Logged by the run itself.
    let _ = deliver_dev_mail(state).await;
}

/// [`deliver_mail`], its outcome reported to the alerts.
async fn deliver_dev_mail(
    state: &AppState,
) -> Result<crate::email::dev_sender::Delivered, crate::email::EmailError> {
    let master = state.master();
    let run = crate::email::dev_sender::scheduled_delivery(
        &state.db,
        state.clock.as_ref(),
        &master,
        &state.config.data_dir,
    )
    .await?;
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    state
        .monitor
        .email_deliveries(count(run.sent), count(run.failed));
    Ok(run)
}

/// One run of the `ops.alerts` job: this instance's alerts judged; each
/// one raised or cleared is a gauge, a platform audit event and a log line
/// (`ops::alerts`). The latest full audit chain verification is read from
/// the database first (the leader runs it, `audit::verification`; every
/// instance, and a restarted one, sees its outcome); a read that fails is
/// logged and leaves the last one seen.
pub async fn evaluate_alerts(state: &AppState) -> crate::jobs::RunResult {
    match crate::audit::verification::latest(&state.db).await {
        Ok(Some(v)) => state
            .monitor
            .observe_chain_verification(v.ok, v.finished_at),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "the latest audit chain verification could not be read")
        }
    }
    state.monitor.run(&state.db).await
}

/// One run of the audit webhook delivery (see `audit::webhook`); failures
/// are recorded per endpoint and retried with backoff. A run that cannot
/// start is logged and returned.
pub async fn deliver_webhooks(state: &AppState) -> Result<String, crate::db::DbError> {
    match crate::audit::webhook::deliver_due(state).await {
        Ok(r) => {
            state.monitor.webhook_deliveries(r.delivered, r.failed);
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

/// Serves `router` in plain HTTP with the default connection bounds until
/// `shutdown` resolves; in-flight requests finish. `http::listener::serve`
/// takes the options (TLS, timeouts).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::http::listener::serve(listener, router, shutdown, Default::default()).await
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
