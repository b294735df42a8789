//! `/v1/permissions` and `/v1/roles`: the permission catalogue, built-in and
//! custom roles.
//!
//! Who may do what:
//! - `GET /v1/permissions`: any member (it is the public vocabulary).
//! - `GET /v1/roles`, `GET /v1/roles/{name}`: `roles:manage` or
//!   `members:manage` (whoever assigns roles must see them); a 403 names
//!   `roles:manage`.
//! - `POST`, `PATCH`, `DELETE`: `roles:manage`, checked before the body is
//!   read, and only within the caller's own rights (see [`escalation`]).
//!
//! What a role's input may be, and the no-escalation rule, are judged in
//! `role_rules.rs`; this file reads, stores and audits.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::RbacState;
use super::model::{
    BUILTIN_ROLES, PERMISSIONS, PLANNED_PERMISSIONS, PermissionSet, RecordRule, builtin_role,
};
use super::planned::PermissionStatus;
use super::role_rules::{
    Escalation, escalation, is_per_collection, parse_description, parse_grants, parse_record_rules,
    parse_role_name, parse_role_set,
};
use super::store::{self, CustomRole};
use crate::audit::{self, NewEvent, Outcome, Target};
use crate::http::{ApiError, ApiJson, AuthState, Principal};

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_permissions,
        list_roles,
        get_role,
        create_role,
        update_role,
        delete_role
    ),
    components(schemas(
        PermissionList,
        PermissionInfo,
        PermissionStatus,
        RoleList,
        RoleView,
        RecordRule,
        CreateRoleRequest,
        UpdateRoleRequest
    ))
)]
pub struct RbacApi;

pub fn routes() -> Router<RbacState> {
    Router::new()
        .route("/v1/permissions", get(list_permissions))
        .route("/v1/roles", get(list_roles).post(create_role))
        .route(
            "/v1/roles/{name}",
            get(get_role).patch(update_role).delete(delete_role),
        )
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PermissionList {
    pub permissions: Vec<PermissionInfo>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PermissionInfo {
    /// `area:verb`.
    pub name: &'static str,
    /// Whether it may be narrowed to one collection (`records:read:orders`).
    pub per_collection: bool,
    pub status: PermissionStatus,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoleList {
    /// Built-in roles first (fixed order), then the tenant's own by name.
    pub roles: Vec<RoleView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoleView {
    pub name: String,
    pub description: String,
    /// Built-in roles are defined in code and cannot be changed.
    pub builtin: bool,
    pub permissions: Vec<String>,
    /// "Only records whose `field` equals my user id", per collection.
    pub record_rules: Vec<RecordRule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

impl RoleView {
    fn builtin(name: &str) -> Option<Self> {
        let set = PermissionSet::builtin(name)?;
        let description = match name {
            "owner" => "Everything, making and removing owners included",
            "admin" => "Everything except making, changing or removing owners",
            "editor" => "Read and write records",
            _ => "Read records",
        };
        Some(Self {
            name: name.to_owned(),
            description: description.to_owned(),
            builtin: true,
            permissions: set.grants().to_vec(),
            record_rules: Vec::new(),
            created_at: None,
            updated_at: None,
        })
    }

    fn custom(role: CustomRole) -> Self {
        Self {
            permissions: role.set.grants().to_vec(),
            record_rules: role.set.record_rules().to_vec(),
            name: role.name,
            description: role.description,
            builtin: false,
            created_at: Some(role.created_at),
            updated_at: Some(role.updated_at),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleRequest {
    /// `[a-z0-9_-]{1,40}`, not a built-in role's name.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// At most 64; each `area:verb` or `records:read|write:<collection>`.
    pub permissions: Vec<String>,
    /// At most one per collection.
    #[serde(default)]
    pub record_rules: Option<Vec<RecordRule>>,
}

/// A partial update: absent fields keep their value.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoleRequest {
    #[serde(default)]
    pub description: Option<String>,
    /// Replaces the whole list.
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    /// Replaces the whole list (`[]` removes every rule).
    #[serde(default)]
    pub record_rules: Option<Vec<RecordRule>>,
}

/// The permission catalogue: the live permissions, then the planned ones
/// (listed so the vocabulary is known, grantable once their capability
/// exists).
#[utoipa::path(get, path = "/v1/permissions", tag = "rbac", security(("bearer" = [])),
    responses((status = 200, body = PermissionList), (status = 401, body = crate::http::Problem)))]
async fn list_permissions(_p: Principal) -> Json<PermissionList> {
    let live = PERMISSIONS.iter().map(|name| PermissionInfo {
        name,
        per_collection: is_per_collection(name),
        status: PermissionStatus::Live,
    });
    let planned = PLANNED_PERMISSIONS.iter().map(|name| PermissionInfo {
        name,
        per_collection: false,
        status: PermissionStatus::Planned,
    });
    Json(PermissionList {
        permissions: live.chain(planned).collect(),
    })
}

/// Built-in and custom roles (needs `roles:manage` or `members:manage`).
#[utoipa::path(get, path = "/v1/roles", tag = "rbac", security(("bearer" = [])),
    responses((status = 200, body = RoleList), (status = 401, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem)))]
async fn list_roles(
    State(state): State<RbacState>,
    p: Principal,
) -> Result<Json<RoleList>, ApiError> {
    require_read(&p)?;
    let mut tx = state.db.tenant_read(p.tenant_id).await?;
    let custom = store::list_custom_roles(&mut tx).await?;
    let roles = BUILTIN_ROLES
        .iter()
        .filter_map(|name| RoleView::builtin(name))
        .chain(custom.into_iter().map(RoleView::custom))
        .collect();
    Ok(Json(RoleList { roles }))
}

/// One role, built-in or custom (needs `roles:manage` or `members:manage`).
#[utoipa::path(get, path = "/v1/roles/{name}", tag = "rbac", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = RoleView), (status = 403, body = crate::http::Problem),
        (status = 404, body = crate::http::Problem)))]
async fn get_role(
    State(state): State<RbacState>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<Json<RoleView>, ApiError> {
    require_read(&p)?;
    if let Some(view) = RoleView::builtin(&name) {
        return Ok(Json(view));
    }
    let name = role_in_path(&name)?;
    let mut tx = state.db.tenant_read(p.tenant_id).await?;
    let role = store::find_custom_role(&mut tx, name)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(RoleView::custom(role)))
}

/// Creates a custom role (needs `roles:manage`, and every permission it
/// carries).
#[utoipa::path(post, path = "/v1/roles", tag = "rbac", security(("bearer" = [])),
    request_body = CreateRoleRequest,
    responses((status = 201, body = RoleView), (status = 400, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem,
            description = "`rbac.forbidden`, `rbac.escalation`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)"),
        (status = 409, body = crate::http::Problem),
        (status = 422, body = crate::http::Problem,
            description = "`rbac.permission_planned`: a permission no route checks yet")))]
async fn create_role(
    State(state): State<RbacState>,
    p: Principal,
    body: Result<ApiJson<CreateRoleRequest>, ApiError>,
) -> Result<Response, ApiError> {
    p.require("roles:manage")?;
    p.require_step_up(state.clock.now())?;
    let ApiJson(req) = body?;
    let name = parse_role_name(&req.name)?;
    if builtin_role(name).is_some() {
        return Err(role_exists(name).with_detail(format!("`{name}` is a built-in role")));
    }
    let description = parse_description(req.description.as_deref().unwrap_or(""))?;
    let set = parse_role_set(&req.permissions, req.record_rules.unwrap_or_default())?;
    let lacking = escalation(&p.permissions, &set);
    if !lacking.is_empty() {
        return Err(deny_escalation(&state, &p, "create", name, lacking).await);
    }
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    let role = store::insert_custom_role(&mut tx, name, &description, &set, state.clock.now())
        .await?
        .ok_or_else(|| role_exists(name))?;
    audit::append(
        &mut tx,
        state.clock.as_ref(),
        NewEvent::new(p.actor(), "rbac.role.created")
            .target(Target::new("role", name))
            .details(serde_json::json!({
                "name": name,
                "description": role.description,
                "permissions": role.set.grants(),
                "record_rules": role.set.record_rules(),
            }))
            .context(p.context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    let mut res = (StatusCode::CREATED, Json(RoleView::custom(role))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/roles/{name}")) {
        res.headers_mut().insert(header::LOCATION, location);
    }
    Ok(res)
}

/// Changes a custom role; its holders' rights change on their next request.
#[utoipa::path(patch, path = "/v1/roles/{name}", tag = "rbac", security(("bearer" = [])),
    params(("name" = String, Path)), request_body = UpdateRoleRequest,
    responses((status = 200, body = RoleView), (status = 400, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem,
            description = "`rbac.forbidden`, `rbac.escalation`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)"),
        (status = 404, body = crate::http::Problem),
        (status = 422, body = crate::http::Problem,
            description = "`rbac.permission_planned`: a permission no route checks yet")))]
async fn update_role(
    State(state): State<RbacState>,
    p: Principal,
    Path(name): Path<String>,
    body: Result<ApiJson<UpdateRoleRequest>, ApiError>,
) -> Result<Json<RoleView>, ApiError> {
    p.require("roles:manage")?;
    p.require_step_up(state.clock.now())?;
    refuse_builtin(&name)?;
    let name = role_in_path(&name)?;
    let ApiJson(req) = body?;
    if req.description.is_none() && req.permissions.is_none() && req.record_rules.is_none() {
        return Err(ApiError::bad_request(
            "request.invalid_body",
            "nothing to change: give description, permissions or record_rules",
        ));
    }
    let description = req
        .description
        .as_deref()
        .map(parse_description)
        .transpose()?;
    let grants = req.permissions.as_deref().map(parse_grants).transpose()?;
    let rules = req.record_rules.map(parse_record_rules).transpose()?;

    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    let old = store::lock_custom_role(&mut tx, name)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let set = PermissionSet::new(
        grants.unwrap_or_else(|| old.set.grants().to_vec()),
        rules.unwrap_or_else(|| old.set.record_rules().to_vec()),
    );
    // Nobody edits a role beyond their own rights, before or after.
    let mut lacking = escalation(&p.permissions, &old.set);
    lacking.merge(escalation(&p.permissions, &set));
    if !lacking.is_empty() {
        drop(tx);
        return Err(deny_escalation(&state, &p, "update", name, lacking).await);
    }
    let description = description.unwrap_or_else(|| old.description.clone());
    let role = store::update_custom_role(&mut tx, name, &description, &set, state.clock.now())
        .await?
        .ok_or_else(ApiError::not_found)?;
    audit::append(
        &mut tx,
        state.clock.as_ref(),
        NewEvent::new(p.actor(), "rbac.role.updated")
            .target(Target::new("role", name))
            .details(serde_json::json!({
                "name": name,
                "old": {
                    "description": old.description,
                    "permissions": old.set.grants(),
                    "record_rules": old.set.record_rules(),
                },
                "new": {
                    "description": role.description,
                    "permissions": role.set.grants(),
                    "record_rules": role.set.record_rules(),
                },
            }))
            .context(p.context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(Json(RoleView::custom(role)))
}

/// Deletes a custom role that no membership holds.
#[utoipa::path(delete, path = "/v1/roles/{name}", tag = "rbac", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = crate::http::Problem,
            description = "`rbac.forbidden`, `rbac.escalation`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)"),
        (status = 404, body = crate::http::Problem), (status = 409, body = crate::http::Problem)))]
async fn delete_role(
    State(state): State<RbacState>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require("roles:manage")?;
    p.require_step_up(state.clock.now())?;
    refuse_builtin(&name)?;
    let name = role_in_path(&name)?;
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    let old = store::lock_custom_role(&mut tx, name)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let lacking = escalation(&p.permissions, &old.set);
    if !lacking.is_empty() {
        drop(tx);
        return Err(deny_escalation(&state, &p, "delete", name, lacking).await);
    }
    let holders = store::role_holders(&mut tx, name).await?;
    if holders > 0 || !store::delete_unused_custom_role(&mut tx, name).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, "rbac.role_in_use")
            .with_detail(format!(
                "role `{name}` is held by {holders} member(s): assign them another role first"
            ))
            .with_errors(serde_json::json!({ "members": holders })));
    }
    audit::append(
        &mut tx,
        state.clock.as_ref(),
        NewEvent::new(p.actor(), "rbac.role.deleted")
            .target(Target::new("role", name))
            .details(serde_json::json!({
                "name": name,
                "description": old.description,
                "permissions": old.set.grants(),
                "record_rules": old.set.record_rules(),
            }))
            .context(p.context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reading roles: `roles:manage`, or `members:manage` (to assign them).
fn require_read(p: &Principal) -> Result<(), ApiError> {
    if p.permissions.allows("members:manage", None) {
        return Ok(());
    }
    p.require("roles:manage")
}

fn refuse_builtin(name: &str) -> Result<(), ApiError> {
    if builtin_role(name).is_none() {
        return Ok(());
    }
    Err(
        ApiError::new(StatusCode::FORBIDDEN, "rbac.builtin_immutable")
            .with_detail(format!("`{name}` is a built-in role and cannot be changed")),
    )
}

/// A role name from the path: one that cannot exist is simply not found.
fn role_in_path(name: &str) -> Result<&str, ApiError> {
    parse_role_name(name).map_err(|_| ApiError::not_found())
}

fn role_exists(name: &str) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "rbac.role_exists")
        .with_detail(format!("a role named `{name}` exists"))
}

/// Audits a refused escalation (its own transaction: the change is not
/// made) and returns the 403 naming what the caller lacks.
async fn deny_escalation(
    state: &AuthState,
    p: &Principal,
    operation: &str,
    role: &str,
    lacking: Escalation,
) -> ApiError {
    let event = NewEvent::new(p.actor(), "rbac.escalation.denied")
        .outcome(Outcome::Denied)
        .target(Target::new("role", role))
        .details(serde_json::json!({
            "operation": operation,
            "permissions": lacking.permissions,
            "record_rules": lacking.record_rules,
        }))
        .context(p.context.clone());
    let audited = async {
        let mut tx = state.db.tenant_tx(p.tenant_id).await?;
        audit::append(&mut tx, state.clock.as_ref(), event)
            .await
            .map_err(ApiError::internal)?;
        tx.commit().await?;
        Ok::<(), ApiError>(())
    };
    if let Err(e) = audited.await {
        return e;
    }
    lacking.into_error()
}
