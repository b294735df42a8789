//! `/v1/api-keys`: create, list, revoke, rotate.
//!
//! Status codes: 201/200/204 on success; 400 bad input (`api_keys.invalid_name`,
//! `api_keys.invalid_scope`, `api_keys.invalid_expiry`, `api_keys.invalid_grace`,
//! unknown fields); 422 a scope no route checks yet (`rbac.permission_planned`);
//! 401 no or dead credentials; 403 missing `api_keys:manage`
//! (`rbac.forbidden`), a scope the caller does not hold (`rbac.escalation`),
//! an API key calling (`api_keys.user_required`), an impersonation session
//! calling (`platform.impersonation_forbidden`, audited with the impersonator);
//! 404 a key not in the caller's tenant (`api_keys.not_found`); 409 rotating
//! a key that is revoked, expired or already rotated (`api_keys.not_rotatable`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Duration;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ApiKeysState;
use super::model::{ApiKey, KeyEnv};
use super::store::{self, KeyView, NewKey};
use crate::audit::{self, NewEvent, Target};
use crate::db::TenantTx;
use crate::http::{ApiError, ApiJson, AuthState, Principal};
use crate::platform::operation;
use crate::rbac::PermissionSet;

/// Longest expiry: ten years. Longest rotation grace: seven days.
pub const MAX_EXPIRY_DAYS: i64 = 3650;
pub const MAX_GRACE_SECONDS: i64 = 7 * 86_400;
const MAX_SCOPES: usize = 64;
const MAX_NAME: usize = 100;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1–100 characters, for people.
    pub name: String,
    /// Permissions (`records:read`, `records:write:orders`, …), each held by
    /// the caller; `api_keys:manage` cannot be given to a key.
    pub scopes: Vec<String>,
    /// 1–3650; absent: the key does not expire.
    #[serde(default)]
    pub expires_in_days: Option<i64>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old key keeps working: 0 (default) to 604800 seconds.
    #[serde(default)]
    pub grace_seconds: Option<i64>,
}

/// A new key: `key` is shown here once and never again.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// The whole key, `stk_<env>_<public id>_<secret>`.
    pub key: String,
    #[serde(flatten)]
    pub api_key: KeyView,
}

/// 403 `api_keys.user_required` when an API key is calling. (An
/// impersonation session was refused before, by
/// `Principal::forbid_impersonation`: keys would outlive it and act for the
/// user with no impersonator on record.)
fn require_user(p: &Principal) -> Result<(), ApiError> {
    if p.api_key.is_some() {
        return Err(
            ApiError::new(StatusCode::FORBIDDEN, "api_keys.user_required")
                .with_detail("API keys are managed by a signed-in user, not by an API key"),
        );
    }
    Ok(())
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "api_keys.not_found")
        .with_detail("no such API key in this tenant")
}

fn env(state: &AuthState) -> KeyEnv {
    KeyEnv::for_config(&state.config)
}

/// Validated scopes, each held by the caller.
fn check_scopes(p: &Principal, scopes: &[String]) -> Result<Vec<String>, ApiError> {
    if scopes.is_empty() || scopes.len() > MAX_SCOPES {
        return Err(ApiError::bad_request(
            "api_keys.invalid_scope",
            format!("name 1 to {MAX_SCOPES} scopes"),
        ));
    }
    let planned = crate::rbac::planned_among(scopes);
    if !planned.is_empty() {
        return Err(crate::rbac::planned_refused(planned));
    }
    let mut out = Vec::new();
    for s in scopes {
        let parsed = crate::rbac::parse_permission(s)
            .map_err(|e| ApiError::bad_request("api_keys.invalid_scope", e.to_string()))?;
        if parsed.starts_with("api_keys:") {
            return Err(ApiError::bad_request(
                "api_keys.invalid_scope",
                "`api_keys:manage` cannot be given to an API key",
            ));
        }
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    let wanted = PermissionSet::new(out.clone(), Vec::new());
    let missing = crate::rbac::escalation(&p.permissions, &wanted).permissions;
    if !missing.is_empty() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "rbac.escalation")
            .with_detail(format!(
                "you cannot give a key permissions you do not hold: {}",
                missing.join(", ")
            ))
            .with_errors(serde_json::json!({ "permissions": missing })));
    }
    Ok(out)
}

/// Creates, stores and audits a key; returns it with its secret.
async fn issue(
    state: &AuthState,
    hmac: &[u8; 32],
    tx: &mut TenantTx,
    p: &Principal,
    name: &str,
    scopes: &[String],
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(ApiKey, Uuid), ApiError> {
    let key = ApiKey::generate(env(state)).map_err(ApiError::internal)?;
    let id = Uuid::now_v7();
    store::insert(
        tx,
        &NewKey {
            id,
            public_id: &key.public_id,
            name,
            scopes,
            hash: key.hash(hmac),
            created_by: p.user_id,
            created_at: state.clock.now(),
            expires_at,
        },
    )
    .await?;
    Ok((key, id))
}

/// Creates a key. The response is the only time the whole key is shown.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api_keys", security(("bearer" = [])),
    request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 400, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem,
            description = "`rbac.forbidden`, `rbac.escalation`, `api_keys.user_required`, `platform.impersonation_forbidden`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)"),
        (status = 422, body = crate::http::Problem,
            description = "`rbac.permission_planned`: a scope no route checks yet")))]
pub(crate) async fn create(
    State(state): State<ApiKeysState>,
    p: Principal,
    ApiJson(req): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    p.forbid_impersonation(&state, operation::API_KEY_CREATE)
        .await?;
    p.require("api_keys:manage")?;
    require_user(&p)?;
    p.require_step_up(state.clock.now())?;
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "api_keys.invalid_name",
            format!("name: 1 to {MAX_NAME} printable characters"),
        ));
    }
    let scopes = check_scopes(&p, &req.scopes)?;
    let expires_at = match req.expires_in_days {
        None => None,
        Some(d) if (1..=MAX_EXPIRY_DAYS).contains(&d) => {
            Some(state.clock.now() + Duration::days(d))
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "api_keys.invalid_expiry",
                format!("expires_in_days must be from 1 to {MAX_EXPIRY_DAYS}"),
            ));
        }
    };
    // Before the transaction: loading it may write `server_keys`, and SQLite
    // has one writer.
    let hmac = super::auth::hmac_key(&state).await?;
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    let (key, id) = issue(&state, hmac, &mut tx, &p, name, &scopes, expires_at).await?;
    audit::append(
        &mut tx,
        state.clock.as_ref(),
        NewEvent::new(p.actor(), "api_keys.key.created")
            .target(Target::new("api_key", id))
            .details(serde_json::json!({
                "name": name, "prefix": key.prefix(), "scopes": scopes, "expires_at": expires_at,
            }))
            .context(p.context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    created(&state, tx, id, &key).await
}

/// The tenant's keys (never their secrets or hashes).
#[utoipa::path(get, path = "/v1/api-keys", tag = "api_keys", security(("bearer" = [])),
    responses((status = 200, body = Vec<KeyView>), (status = 403, body = crate::http::Problem)))]
pub(crate) async fn list(
    State(state): State<ApiKeysState>,
    p: Principal,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    p.forbid_impersonation(&state, operation::API_KEY_LIST)
        .await?;
    p.require("api_keys:manage")?;
    require_user(&p)?;
    let mut tx = state.db.tenant_read(p.tenant_id).await?;
    Ok(Json(store::list(&mut tx, env(&state)).await?))
}

/// A malformed id cannot name a key: 404, like an unknown one.
fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse::<Uuid>().map_err(|_| not_found())
}

/// Revokes a key: it fails from the next request on. Revoking a revoked
/// key changes nothing.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api_keys", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 403, body = crate::http::Problem),
        (status = 404, body = crate::http::Problem)))]
pub(crate) async fn revoke(
    State(state): State<ApiKeysState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.forbid_impersonation(&state, operation::API_KEY_REVOKE)
        .await?;
    p.require("api_keys:manage")?;
    require_user(&p)?;
    let id = parse_id(&id)?;
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    let key = store::find(&mut tx, id, env(&state))
        .await?
        .ok_or_else(not_found)?;
    if store::revoke(&mut tx, id, state.clock.now()).await? {
        audit::append(
            &mut tx,
            state.clock.as_ref(),
            NewEvent::new(p.actor(), "api_keys.key.revoked")
                .target(Target::new("api_key", id))
                .details(serde_json::json!({ "name": key.name, "prefix": key.prefix }))
                .context(p.context.clone()),
        )
        .await
        .map_err(ApiError::internal)?;
        tx.commit().await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a key with a new one (same name, scopes and expiry; created by
/// the caller, who must hold its scopes). The old key keeps working for
/// `grace_seconds` (default 0: it stops at once). The body may be empty.
#[utoipa::path(post, path = "/v1/api-keys/{id}/rotate", tag = "api_keys", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)), request_body = Option<RotateKey>,
    responses((status = 201, body = CreatedKey), (status = 400, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem,
            description = "`rbac.forbidden`, `rbac.escalation`, `api_keys.user_required`, `platform.impersonation_forbidden`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)"),
        (status = 404, body = crate::http::Problem),
        (status = 409, body = crate::http::Problem)))]
pub(crate) async fn rotate(
    State(state): State<ApiKeysState>,
    p: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    p.forbid_impersonation(&state, operation::API_KEY_ROTATE)
        .await?;
    p.require("api_keys:manage")?;
    require_user(&p)?;
    p.require_step_up(state.clock.now())?;
    let id = parse_id(&id)?;
    let req: RotateKey = match body.iter().all(u8::is_ascii_whitespace) {
        true => RotateKey::default(),
        false => serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("request.invalid_body", e.to_string()))?,
    };
    let grace = req.grace_seconds.unwrap_or(0);
    if !(0..=MAX_GRACE_SECONDS).contains(&grace) {
        return Err(ApiError::bad_request(
            "api_keys.invalid_grace",
            format!("grace_seconds must be from 0 to {MAX_GRACE_SECONDS}"),
        ));
    }
    let now = state.clock.now();
    let hmac = super::auth::hmac_key(&state).await?;
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    let old = store::find(&mut tx, id, env(&state))
        .await?
        .ok_or_else(not_found)?;
    let rotatable = old.revoked_at.is_none()
        && old.replaced_by.is_none()
        && old.expires_at.is_none_or(|at| now < at);
    if !rotatable {
        return Err(
            ApiError::new(StatusCode::CONFLICT, "api_keys.not_rotatable")
                .with_detail("this key is revoked, expired or already rotated"),
        );
    }
    // A scope stored before it became planned granted nothing: the new key
    // goes without it rather than the rotation failing.
    let live: Vec<String> = old
        .scopes
        .iter()
        .filter(|s| !crate::rbac::is_planned(s))
        .cloned()
        .collect();
    let scopes = check_scopes(&p, &live)?;
    let (key, new_id) = issue(
        &state,
        hmac,
        &mut tx,
        &p,
        &old.name,
        &scopes,
        old.expires_at,
    )
    .await?;
    let grace_until = now + Duration::seconds(grace);
    if !store::mark_rotated(&mut tx, id, new_id, grace_until).await? {
        return Err(
            ApiError::new(StatusCode::CONFLICT, "api_keys.not_rotatable")
                .with_detail("this key was rotated or revoked meanwhile"),
        );
    }
    audit::append(
        &mut tx,
        state.clock.as_ref(),
        NewEvent::new(p.actor(), "api_keys.key.rotated")
            .target(Target::new("api_key", id))
            .details(serde_json::json!({
                "name": old.name, "old_prefix": old.prefix, "new_id": new_id,
                "new_prefix": key.prefix(), "grace_seconds": grace, "grace_until": grace_until,
            }))
            .context(p.context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    created(&state, tx, new_id, &key).await
}

/// Commits the transaction that made key `id` and answers 201 with the key,
/// shown this once, and its listing.
async fn created(
    state: &AuthState,
    mut tx: TenantTx,
    id: Uuid,
    key: &ApiKey,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let view = store::find(&mut tx, id, env(state))
        .await?
        .ok_or_else(|| ApiError::internal("a key just inserted is missing"))?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: key.encode().expose_secret().to_owned(),
            api_key: view,
        }),
    ))
}
