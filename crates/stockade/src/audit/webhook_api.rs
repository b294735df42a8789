//! `PUT/GET/DELETE /v1/audit/webhook`: a tenant's push of its audit log to a
//! SIEM (see `webhook`). Every route needs `settings:manage`; changing or
//! removing the endpoint also needs a recent password proof (step-up), which
//! an API key never has.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::put;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AuditState;
use super::model::{NewEvent, Target};
use super::webhook::{self, WebhookStatus};
use super::webhook_url::{self, UrlError};
use crate::http::{ApiError, ApiJson, Principal};

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(put_webhook, get_webhook, delete_webhook),
    components(schemas(WebhookRequest, WebhookCreated, WebhookStatus))
)]
pub struct WebhookApi;

pub fn routes() -> Router<AuditState> {
    Router::new().route(
        "/v1/audit/webhook",
        put(put_webhook).get(get_webhook).delete(delete_webhook),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// `https://` URL of the receiver; no user name or password.
    pub url: String,
}

/// The endpoint and its signing secret: the only time the secret is shown.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookCreated {
    pub url: String,
    /// `whsec_<base64>`: the Standard Webhooks signing secret.
    pub secret: String,
    pub enabled: bool,
}

fn url_error(e: UrlError) -> ApiError {
    match e {
        UrlError::Invalid(m) => ApiError::bad_request("audit.webhook_invalid_url", m)
            .with_errors(serde_json::json!({ "url": "invalid" })),
        UrlError::Private(m) => ApiError::bad_request("audit.webhook_private_address", m)
            .with_errors(serde_json::json!({ "url": "not a public address" })),
    }
}

fn not_configured() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "audit.webhook_not_configured")
        .with_detail("this tenant has no audit webhook")
}

/// Sets the tenant's audit webhook, or replaces it: a new secret each time
/// (so a PUT rotates the secret), enabled, failures cleared. Delivery of a
/// new endpoint starts at the oldest retained event; a replaced one resumes
/// where it was.
#[utoipa::path(put, path = "/v1/audit/webhook", tag = "audit", security(("bearer" = [])),
    request_body = WebhookRequest,
    responses((status = 201, body = WebhookCreated, description = "configured; the secret is shown only now"),
        (status = 200, body = WebhookCreated, description = "replaced; the new secret is shown only now"),
        (status = 400, body = crate::http::Problem), (status = 403, body = crate::http::Problem,
            description = "`rbac.forbidden`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)")))]
async fn put_webhook(
    State(state): State<AuditState>,
    p: Principal,
    ApiJson(req): ApiJson<WebhookRequest>,
) -> Result<(StatusCode, Json<WebhookCreated>), ApiError> {
    p.require("settings:manage")?;
    p.require_step_up(state.clock.now())?;
    let url = webhook_url::parse(req.url.trim()).map_err(url_error)?;
    webhook_url::resolve(&url, state.config.webhook_allow_private)
        .await
        .map_err(url_error)?;
    let url = url.to_string();
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    let done = webhook::configure(&mut tx, state.clock.as_ref(), &state.master(), &url)
        .await
        .map_err(|e| match e {
            webhook::WebhookError::Db(e) => e.into(),
            other => ApiError::internal(other),
        })?;
    let details = match &done.previous_url {
        Some(prev) => {
            serde_json::json!({ "url": url, "secret_rotated": true, "previous_url": prev })
        }
        None => serde_json::json!({ "url": url, "secret_rotated": false }),
    };
    super::append(
        &mut tx,
        state.clock.as_ref(),
        NewEvent::new(p.actor(), "audit.webhook.configured")
            .target(Target::new("tenant", p.tenant_id))
            .details(details)
            .context(p.context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    let status = match done.previous_url {
        Some(_) => StatusCode::OK,
        None => StatusCode::CREATED,
    };
    Ok((
        status,
        Json(WebhookCreated {
            url,
            secret: done.secret.to_string(),
            enabled: true,
        }),
    ))
}

/// The tenant's audit webhook and its delivery state (never the secret).
#[utoipa::path(get, path = "/v1/audit/webhook", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = WebhookStatus), (status = 403, body = crate::http::Problem),
        (status = 404, body = crate::http::Problem)))]
async fn get_webhook(
    State(state): State<AuditState>,
    p: Principal,
) -> Result<Json<WebhookStatus>, ApiError> {
    p.require("settings:manage")?;
    let mut tx = state.db.tenant_read(p.tenant_id).await?;
    let status = webhook::status(&mut tx).await?;
    status.map(Json).ok_or_else(not_configured)
}

/// Removes the tenant's audit webhook; nothing more is sent.
#[utoipa::path(delete, path = "/v1/audit/webhook", tag = "audit", security(("bearer" = [])),
    responses((status = 204), (status = 403, body = crate::http::Problem,
            description = "`rbac.forbidden`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)"),
        (status = 404, body = crate::http::Problem)))]
async fn delete_webhook(
    State(state): State<AuditState>,
    p: Principal,
) -> Result<StatusCode, ApiError> {
    p.require("settings:manage")?;
    p.require_step_up(state.clock.now())?;
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    let Some(url) = webhook::remove(&mut tx).await? else {
        return Err(not_configured());
    };
    super::append(
        &mut tx,
        state.clock.as_ref(),
        NewEvent::new(p.actor(), "audit.webhook.removed")
            .target(Target::new("tenant", p.tenant_id))
            .details(serde_json::json!({ "url": url }))
            .context(p.context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
