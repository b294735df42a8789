//! Operations endpoints: liveness, readiness, the OpenAPI document; and
//! the operations signals: Prometheus metrics (`metrics`, the request layer
//! `http_metrics`, served only on the admin listener `admin`) and the
//! alerts (`alerts`).
//!
//! `/readyz` shows the instance's scheduled jobs when whoever serves put
//! their `jobs::JobBoard` on the router as an `Extension` (`stockade
//! serve` does; a router without one lists none).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Serialize;
use utoipa::OpenApi;

use crate::db::MigrationStatus;
use crate::http::{ApiError, Problem};
use crate::jobs::{JobBoard, Outcome};

pub mod admin;
pub mod alerts;
pub mod http_metrics;
pub mod metrics;
mod state;

pub use state::OpsState;

pub fn routes() -> Router<OpsState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_json))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Stockade",
        description = "The secure core of a multi-tenant B2B SaaS. Errors are application/problem+json (RFC 9457) with a stable `code`."
    ),
    paths(healthz, readyz, openapi_json),
    components(schemas(Problem, Health, Ready, ProxyReadiness, LeadershipReadiness, JobReadiness, crate::http::proxy_watch::ForwardedReport)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The whole API: every capability's description merged.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::identity::routes::IdentityApi::openapi());
    doc.merge(crate::mfa::MfaApi::openapi());
    doc.merge(crate::sessions::SessionsApi::openapi());
    doc.merge(crate::rbac::RbacApi::openapi());
    doc.merge(crate::tenancy::TenancyApi::openapi());
    doc.merge(crate::tenancy::settings_api::SettingsApi::openapi());
    doc.merge(crate::platform::PlatformApi::openapi());
    doc.merge(crate::records::RecordsApi::openapi());
    doc.merge(crate::apikeys::ApiKeysApi::openapi());
    doc.merge(crate::audit::api::AuditApi::openapi());
    doc.merge(crate::audit::webhook_api::WebhookApi::openapi());
    doc.merge(crate::trust::TrustApi::openapi());
    doc
}

/// Declares the bearer scheme the secured operations name.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    pub status: &'static str,
    pub backend: &'static str,
    pub migration: i64,
    pub proxy: ProxyReadiness,
    /// Who runs the cluster-wide jobs; absent when the instance runs no
    /// jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leadership: Option<LeadershipReadiness>,
    /// The scheduled jobs of this instance (`jobs`) and their last runs;
    /// empty when it runs none.
    pub jobs: Vec<JobReadiness>,
}

/// How the instance that runs the leader-only jobs is chosen, and whether
/// it is this one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LeadershipReadiness {
    /// `single-instance` (embedded mode) or `postgres-advisory-lock`.
    pub method: &'static str,
    /// Whether this instance runs the leader-only jobs now.
    pub leader: bool,
}

impl LeadershipReadiness {
    fn of(board: Option<&JobBoard>) -> Option<Self> {
        let leadership = board?.leadership();
        Some(Self {
            method: leadership.method(),
            leader: leadership.is_leader(),
        })
    }
}

/// How the client address is found, and whether a proxy seems to be missed.
/// No address is shown: this endpoint answers anyone.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProxyReadiness {
    /// `STOCKADE_TRUSTED_PROXIES`: `unset`, `none` (no proxy) or
    /// `configured` (the ranges are not shown).
    pub trusted_proxies: &'static str,
    /// Requests that carried `X-Forwarded-For` from a peer not in
    /// `STOCKADE_TRUSTED_PROXIES` since start (each peer is also named in a
    /// log warning, once an hour); absent when there were none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_for_from_untrusted_peers: Option<crate::http::proxy_watch::ForwardedReport>,
}

impl ProxyReadiness {
    fn of(state: &OpsState) -> Self {
        let config = &state.config;
        Self {
            trusted_proxies: match (
                config.trusted_proxies_set,
                config.trusted_proxies.is_empty(),
            ) {
                (false, _) => "unset",
                (true, true) => "none",
                (true, false) => "configured",
            },
            forwarded_for_from_untrusted_peers: state.forwarded_watch.report(),
        }
    }
}

/// One scheduled job as `/readyz` shows it. Only whether the last run
/// failed is shown, never its error or summary text: this endpoint answers
/// anyone, and the log has the details.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobReadiness {
    /// The job's stable name, e.g. `audit.retention_purge`.
    pub name: &'static str,
    /// Seconds between runs.
    pub period_secs: u64,
    /// Cluster-wide work, run only by the leader (see `leadership`).
    pub leader_only: bool,
    /// Runs finished since the instance started.
    pub runs: u64,
    /// Ticks of a leader-only job passed because another instance leads.
    pub standby_ticks: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_started_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_finished_at: Option<chrono::DateTime<chrono::Utc>>,
    /// How long the last finished run took, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_duration_ms: Option<u64>,
    /// `ok` or `error`; absent before the first run finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_outcome: Option<&'static str>,
}

impl JobReadiness {
    fn all(board: Option<&JobBoard>) -> Vec<Self> {
        let Some(board) = board else {
            return Vec::new();
        };
        board
            .status()
            .into_iter()
            .map(|job| Self {
                name: job.name,
                period_secs: job.period.as_secs(),
                leader_only: job.leader_only,
                runs: job.runs,
                standby_ticks: job.standby_ticks,
                last_started_at: job.last_started_at,
                last_finished_at: job.last_finished_at,
                last_duration_ms: job
                    .last_duration
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                last_outcome: job.last_outcome.map(|o| match o {
                    Outcome::Ok(_) => "ok",
                    Outcome::Failed(_) => "error",
                }),
            })
            .collect()
    }
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers and every migration is applied. Also
/// says how the client address is found (`proxy`), counts requests whose
/// `X-Forwarded-For` came from an untrusted peer (a proxy missing from
/// `STOCKADE_TRUSTED_PROXIES`, or a forger), and lists the instance's
/// scheduled jobs with their last runs (`jobs`).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses(
        (status = 200, body = Ready),
        (status = 503, body = Problem, content_type = "application/problem+json")
    )
)]
async fn readyz(
    State(state): State<OpsState>,
    jobs: Option<Extension<JobBoard>>,
) -> Result<Json<Ready>, ApiError> {
    let backend = match state.db.kind() {
        crate::db::BackendKind::Sqlite => "sqlite",
        crate::db::BackendKind::Postgres => "postgres",
    };
    match state.db.readiness().await {
        MigrationStatus::Current { version } => Ok(Json(Ready {
            status: "ready",
            backend,
            migration: version,
            proxy: ProxyReadiness::of(&state),
            leadership: LeadershipReadiness::of(jobs.as_ref().map(|Extension(board)| board)),
            jobs: JobReadiness::all(jobs.as_ref().map(|Extension(board)| board)),
        })),
        MigrationStatus::Behind { applied, expected } => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ops.migrations_pending",
        )
        .with_detail(format!(
            "database schema is at {}, this binary needs {expected}",
            applied.map_or("none".to_owned(), |v| v.to_string())
        ))),
        MigrationStatus::Unreachable(cause) => {
            tracing::warn!(error = %cause, "readiness: database unreachable");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ops.database_unreachable",
            ))
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3.1 document")))]
async fn openapi_json() -> impl IntoResponse {
    let body = document().to_json().unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::jobs::{Job, Scheduler};

    /// `/readyz` answers anyone: a failed run is shown as `error`, never
    /// with its text (which may name a host, a user or a URL with a
    /// password), and a successful run's summary is not shown either.
    #[tokio::test(start_paused = true)]
    async fn readyz_shows_that_a_job_failed_never_what_it_said() {
        let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut jobs = Scheduler::new(Arc::new(ManualClock::new(t0)));
        jobs.register(Job::new("leaky", Duration::from_secs(10), || async {
            Err(anyhow::anyhow!(
                "connect postgres://owner:hunter2@db.internal failed"
            ))
        }));
        jobs.register(Job::new("chatty", Duration::from_secs(10), || async {
            Ok("purged tenant acme-secret-corp".to_owned())
        }));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let shown = JobReadiness::all(Some(&jobs.board()));
        let json = serde_json::to_string(&shown).unwrap();
        assert_eq!(shown.len(), 2, "{json}");
        assert_eq!(shown[0].last_outcome, Some("error"), "{json}");
        assert_eq!(shown[1].last_outcome, Some("ok"), "{json}");
        for secret in ["hunter2", "db.internal", "postgres://", "acme-secret-corp"] {
            assert!(!json.contains(secret), "{secret} in {json}");
        }
        assert!(JobReadiness::all(None).is_empty());
    }
}
