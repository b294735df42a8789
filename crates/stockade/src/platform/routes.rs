//! `/v1/platform/*` and the public redemption of one-time sign-in links
//! (`POST /v1/auth/sign-in-link`; their handlers are in `sign_in_links.rs`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{any, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::PlatformState;
use super::store;
use super::{PlatformOwner, owners, sign_in_links};
use crate::audit::{self, NewEvent, Target};
use crate::db::TenantTx;
use crate::http::AuthState;
use crate::http::{ApiError, ApiJson};
use crate::identity::{self, User, UserMembership};
use crate::ids::{TenantId, UserId};
use crate::sessions::{self, TokenResponse};
use crate::tenancy::Tenant;

/// Tenants per page of `GET /v1/platform/tenants`, by default and at most.
const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 500;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_tenants,
        suspend,
        reinstate,
        impersonate,
        sign_in_links::create_sign_in_link,
        sign_in_links::redeem_sign_in_link
    ),
    components(schemas(
        TenantView,
        TenantPage,
        ConfirmedAction,
        ImpersonateRequest,
        ImpersonationResponse,
        Impersonated,
        sign_in_links::SignInLinkRequest,
        sign_in_links::SignInLinkResponse,
        sign_in_links::RedeemSignInLink
    ))
)]
pub struct PlatformApi;

pub fn routes() -> Router<PlatformState> {
    Router::new()
        .route("/v1/platform/tenants", get(list_tenants))
        .route("/v1/platform/tenants/{id}/suspend", post(suspend))
        .route("/v1/platform/tenants/{id}/reinstate", post(reinstate))
        .route("/v1/platform/impersonate", post(impersonate))
        .route(
            "/v1/platform/sign-in-links",
            post(sign_in_links::create_sign_in_link),
        )
        // Anything else under /v1/platform: 403 before 404, so the
        // platform API cannot be mapped by anyone but its owners.
        .route("/v1/platform/{*rest}", any(unknown))
        .route(
            "/v1/auth/sign-in-link",
            post(sign_in_links::redeem_sign_in_link),
        )
}

async fn unknown(_owner: PlatformOwner) -> ApiError {
    ApiError::not_found()
}

/// A tenant as the platform console shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantView {
    #[schema(value_type = String, format = Uuid)]
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    /// `active`, `suspended` or `pending_deletion`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        Self {
            id: t.id,
            slug: t.slug,
            name: t.name,
            status: t.status,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantPage {
    pub tenants: Vec<TenantView>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub next_after: Option<TenantId>,
}

#[derive(Debug, Deserialize)]
struct ListParams {
    limit: Option<String>,
    after: Option<String>,
}

/// Every tenant, oldest first, in pages (`limit` 1–500, default 100;
/// `after` = the last id of the previous page).
#[utoipa::path(get, path = "/v1/platform/tenants", tag = "platform", security(("bearer" = [])),
    params(("limit" = Option<i64>, Query), ("after" = Option<String>, Query, format = Uuid)),
    responses((status = 200, body = TenantPage), (status = 400, body = crate::http::Problem),
        (status = 401, body = crate::http::Problem), (status = 403, body = crate::http::Problem,
            description = "`platform.forbidden`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)")))]
async fn list_tenants(
    State(state): State<PlatformState>,
    owner: PlatformOwner,
    Query(params): Query<ListParams>,
) -> Result<Json<TenantPage>, ApiError> {
    // Every tenant of the deployment is no read for a stolen token alone.
    owner.require_step_up(state.clock.now())?;
    let limit = match params.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request("platform.invalid_query", "`limit` must be 1 to 500")
            })?,
    };
    let after = match params.after.as_deref() {
        None => None,
        Some(s) => Some(s.parse::<TenantId>().map_err(|_| {
            ApiError::bad_request("platform.invalid_query", "`after` must be a tenant id")
        })?),
    };
    let mut tx = state.db.global_read().await?;
    let tenants = store::list_tenants(&mut tx, after, limit).await?;
    let full = i64::try_from(tenants.len()).is_ok_and(|n| n == limit);
    let next_after = tenants.last().filter(|_| full).map(|t| t.id);
    Ok(Json(TenantPage {
        tenants: tenants.into_iter().map(TenantView::from).collect(),
        next_after,
    }))
}

/// The body of a sensitive action on a tenant.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmedAction {
    /// Must be `true`.
    #[serde(default)]
    pub confirm: bool,
    /// Why (1–500 characters); kept in both audit logs.
    #[serde(default)]
    pub reason: String,
}

/// Suspends a tenant: every session of it is revoked at once, its users get
/// 403 `tenancy.suspended` at sign-in, its unused sign-in links die.
#[utoipa::path(post, path = "/v1/platform/tenants/{id}/suspend", tag = "platform",
    security(("bearer" = [])), params(("id" = String, Path, format = Uuid)),
    request_body = ConfirmedAction,
    responses((status = 200, body = TenantView), (status = 400, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem,
            description = "`platform.forbidden`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)"),
        (status = 404, body = crate::http::Problem),
        (status = 409, body = crate::http::Problem)))]
async fn suspend(
    State(state): State<PlatformState>,
    owner: PlatformOwner,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ConfirmedAction>,
) -> Result<Json<TenantView>, ApiError> {
    let now = state.clock.now();
    let reason = sensitive(&owner, now, req.confirm, &req.reason)?;
    let tenant_id = tenant_id(&id)?;
    if tenant_id == owner.tenant_id {
        return Err(ApiError::new(StatusCode::CONFLICT, "platform.own_tenant")
            .with_detail("you cannot suspend the tenant you are signed into"));
    }
    let mut tx = state.db.global_tx().await?;
    let Some(tenant) = store::transition(&mut tx, tenant_id, "active", "suspended", now).await?
    else {
        return Err(not_in_state(&mut tx, tenant_id, "active").await);
    };
    let links = store::expire_sign_in_links(&mut tx, tenant_id, now).await?;
    let mut tx = tx.scoped(tenant_id).await?;
    let sessions = store::revoke_tenant_sessions(&mut tx, "tenant_suspended", now).await?;
    let event = NewEvent::new(owner.actor(), "platform.tenant.suspended")
        .target(Target::new("tenant", tenant_id))
        .details(serde_json::json!({
            "tenant_id": tenant_id,
            "slug": tenant.slug,
            "reason": reason,
            "sessions_revoked": sessions,
            "sign_in_links_expired": links,
        }))
        .context(owner.context.clone());
    audit_both(&state, tx, event).await?;
    Ok(Json(tenant.into()))
}

/// Reinstates a suspended tenant; its users sign in again.
#[utoipa::path(post, path = "/v1/platform/tenants/{id}/reinstate", tag = "platform",
    security(("bearer" = [])), params(("id" = String, Path, format = Uuid)),
    request_body = ConfirmedAction,
    responses((status = 200, body = TenantView), (status = 400, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem,
            description = "`platform.forbidden`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)"),
        (status = 404, body = crate::http::Problem),
        (status = 409, body = crate::http::Problem)))]
async fn reinstate(
    State(state): State<PlatformState>,
    owner: PlatformOwner,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ConfirmedAction>,
) -> Result<Json<TenantView>, ApiError> {
    let now = state.clock.now();
    let reason = sensitive(&owner, now, req.confirm, &req.reason)?;
    let tenant_id = tenant_id(&id)?;
    let mut tx = state.db.global_tx().await?;
    let Some(tenant) = store::transition(&mut tx, tenant_id, "suspended", "active", now).await?
    else {
        return Err(not_in_state(&mut tx, tenant_id, "suspended").await);
    };
    let tx = tx.scoped(tenant_id).await?;
    let event = NewEvent::new(owner.actor(), "platform.tenant.reinstated")
        .target(Target::new("tenant", tenant_id))
        .details(serde_json::json!({
            "tenant_id": tenant_id,
            "slug": tenant.slug,
            "reason": reason,
        }))
        .context(owner.context.clone());
    audit_both(&state, tx, event).await?;
    Ok(Json(tenant.into()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImpersonateRequest {
    #[schema(value_type = String, format = Uuid)]
    pub user_id: UserId,
    /// Tenant slug; needed when the user is an active member of several.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Why (1–500 characters); kept in both audit logs.
    #[serde(default)]
    pub reason: String,
    /// Must be `true`.
    #[serde(default)]
    pub confirm: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Impersonated {
    #[schema(value_type = String, format = Uuid)]
    pub user_id: UserId,
    pub email: String,
    #[schema(value_type = String, format = Uuid)]
    pub tenant_id: TenantId,
    /// The tenant's slug.
    pub tenant: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImpersonationResponse {
    #[serde(flatten)]
    pub token: TokenResponse,
    /// When the impersonation session ends (15 minutes; it cannot be
    /// refreshed).
    pub expires_at: DateTime<Utc>,
    pub impersonating: Impersonated,
}

/// Acts as a user: a 15-minute access token with the `act` claim and no
/// refresh token. Everything done with it is audited with the owner as
/// impersonator; `GET /v1/me` shows `impersonated_by`.
#[utoipa::path(post, path = "/v1/platform/impersonate", tag = "platform",
    security(("bearer" = [])), request_body = ImpersonateRequest,
    responses((status = 200, body = ImpersonationResponse),
        (status = 400, body = crate::http::Problem), (status = 403, body = crate::http::Problem,
            description = "`platform.forbidden`, `platform.owner_protected`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)"),
        (status = 404, body = crate::http::Problem), (status = 409, body = crate::http::Problem)))]
async fn impersonate(
    State(state): State<PlatformState>,
    owner: PlatformOwner,
    ApiJson(req): ApiJson<ImpersonateRequest>,
) -> Result<Json<ImpersonationResponse>, ApiError> {
    let now = state.clock.now();
    let reason = sensitive(&owner, now, req.confirm, &req.reason)?;
    let (user, membership) = resolve_target(&state, req.user_id, req.tenant.as_deref()).await?;
    let clock = state.clock.as_ref();
    let mut tx = state.db.tenant_tx(membership.tenant_id).await?;
    let session =
        sessions::create_impersonation(&mut tx, clock, user.id, owner.user_id, &owner.context)
            .await
            .map_err(ApiError::internal)?;
    let event = NewEvent::new(owner.actor(), "platform.impersonation.started")
        .target(Target::new("user", user.id))
        .details(serde_json::json!({
            "tenant_id": membership.tenant_id,
            "slug": membership.slug,
            "reason": reason,
            "session_id": session.id,
            "expires_at": session.absolute_expires_at,
        }))
        .context(owner.context.clone());
    audit_both(&state, tx, event).await?;
    let token = sessions::access_token(&state, &session)?;
    Ok(Json(ImpersonationResponse {
        token,
        expires_at: session.absolute_expires_at,
        impersonating: Impersonated {
            user_id: user.id,
            email: user.email,
            tenant_id: membership.tenant_id,
            tenant: membership.slug,
        },
    }))
}

/// The gate of every sensitive platform action: a password proved within
/// the step-up window, `"confirm": true`, and a reason. Returns the reason,
/// trimmed.
pub(super) fn sensitive(
    owner: &PlatformOwner,
    now: DateTime<Utc>,
    confirm: bool,
    reason: &str,
) -> Result<String, ApiError> {
    owner.require_step_up(now)?;
    if !confirm {
        return Err(ApiError::bad_request(
            "platform.confirm_required",
            "this action needs \"confirm\": true",
        ));
    }
    let reason = reason.trim();
    let ok = (1..=500).contains(&reason.chars().count())
        && !reason.chars().any(|c| c.is_control() && c != '\n');
    if !ok {
        return Err(ApiError::bad_request(
            "platform.invalid_reason",
            "`reason` must be 1 to 500 characters without control characters",
        ));
    }
    Ok(reason.to_owned())
}

fn tenant_id(id: &str) -> Result<TenantId, ApiError> {
    id.parse::<TenantId>().map_err(|_| ApiError::not_found())
}

/// Why a conditional status change matched nothing: 404 or 409.
async fn not_in_state(tx: &mut crate::db::GlobalTx, id: TenantId, expected: &str) -> ApiError {
    match store::find_tenant(tx, id).await {
        Ok(Some(t)) => ApiError::new(StatusCode::CONFLICT, "platform.tenant_state")
            .with_detail(format!("the tenant is {}, not {expected}", t.status)),
        Ok(None) => ApiError::not_found(),
        Err(e) => e.into(),
    }
}

/// The user a platform action is about, and the membership it acts in.
/// Unknown user, or not a member of the named tenant: 404. Several active
/// memberships and no tenant named: 400. Another platform owner: 403.
pub(super) async fn resolve_target(
    state: &AuthState,
    user_id: UserId,
    tenant: Option<&str>,
) -> Result<(User, UserMembership), ApiError> {
    let user = identity::find_user(&state.db, user_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let mut active: Vec<UserMembership> = identity::memberships_of(&state.db, user_id)
        .await?
        .into_iter()
        .filter(|m| m.status == "active")
        .collect();
    let membership = match tenant {
        Some(slug) => active.into_iter().find(|m| m.slug == slug),
        None if active.len() > 1 => {
            return Err(ApiError::bad_request(
                "platform.tenant_required",
                "this user belongs to several tenants: name one in `tenant`",
            )
            .with_errors(serde_json::json!(
                active.iter().map(|m| m.slug.clone()).collect::<Vec<_>>()
            )));
        }
        None => active.pop(),
    }
    .ok_or_else(ApiError::not_found)?;
    if owners::is_owner(&state.db, &state.config.platform_owners, &user).await? {
        return Err(
            ApiError::new(StatusCode::FORBIDDEN, "platform.owner_protected")
                .with_detail("platform owners cannot be impersonated or sent sign-in links"),
        );
    }
    if user.status != "active" {
        return Err(
            ApiError::new(StatusCode::CONFLICT, "platform.user_inactive")
                .with_detail("the user is deactivated"),
        );
    }
    if membership.tenant_status != "active" {
        return Err(ApiError::new(StatusCode::CONFLICT, "platform.tenant_state")
            .with_detail(format!("the tenant is {}", membership.tenant_status)));
    }
    Ok((user, membership))
}

/// Appends `event` to the transaction's tenant log, then, continuing the
/// same transaction, to the platform log, and commits: both entries exist
/// if and only if the change does.
pub(super) async fn audit_both(
    state: &AuthState,
    mut tx: TenantTx,
    event: NewEvent,
) -> Result<(), ApiError> {
    let clock = state.clock.as_ref();
    audit::append(&mut tx, clock, event.clone())
        .await
        .map_err(ApiError::internal)?;
    let mut tx = tx.rescope(TenantId::PLATFORM).await?;
    audit::append(&mut tx, clock, event)
        .await
        .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(())
}
