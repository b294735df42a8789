//! `/v1/members`: list the tenant's members, change a member's role or
//! deactivate them, remove them (SPEC §2.5–2.6).
//!
//! Rules, all checked server-side:
//! - Every endpoint needs `members:manage`, listing included: member names and
//!   emails are not every member's business (a partner invited into a
//!   vendor's portal must not read the vendor's staff list).
//! - No escalation: the caller's permissions must cover the role they assign
//!   *and* the member's current role (an admin can neither make someone an
//!   owner nor demote, deactivate or remove an owner). 403 `rbac.escalation`.
//! - The tenant always keeps an active owner: demoting, deactivating or
//!   removing the last one is refused (409 `tenancy.last_owner`). Member
//!   changes of one tenant are serialised, so two owners cannot demote each
//!   other at the same time.
//! - Deactivating or removing a member revokes their sessions in this tenant
//!   in the same transaction: their next request answers 401. Removing them
//!   also marks every API key they created here revoked (`revoked_at`, shown
//!   by `GET /v1/api-keys`), in that transaction; a deactivated member's keys
//!   only stop (the per-request creator check) and work again on
//!   reactivation.
//! - A user id that is not a member of the caller's tenant (another tenant's
//!   user, say) is 404, like any other tenant's object.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::TenancyState;
use super::model::validate_role;
use crate::audit::{self, NewEvent, Target};
use crate::db::{DbError, TenantTx};
use crate::http::{ApiError, ApiJson, Principal};
use crate::ids::UserId;
use crate::rbac;

/// A member of the tenant.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Member {
    pub user_id: UserId,
    pub email: String,
    pub name: String,
    pub role: String,
    /// `active` or `deactivated` (in this tenant).
    pub status: String,
    /// When the user joined the tenant.
    pub created_at: DateTime<Utc>,
}

impl Member {
    fn is_active(&self) -> bool {
        self.status == "active"
    }
}

/// A change to one member; at least one field.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    /// A built-in or custom role of the tenant.
    #[serde(default)]
    pub role: Option<String>,
    /// `false` deactivates the member (their sessions here end at once);
    /// `true` reactivates them.
    #[serde(default)]
    pub active: Option<bool>,
}

/// The tenant's members.
#[utoipa::path(get, path = "/v1/members", tag = "tenancy", security(("bearer" = [])),
    responses((status = 200, body = [Member]), (status = 401, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem)))]
pub(crate) async fn list(
    State(state): State<TenancyState>,
    p: Principal,
) -> Result<Json<Vec<Member>>, ApiError> {
    p.require("members:manage")?;
    let mut tx = state.db.tenant_read(p.tenant_id).await?;
    Ok(Json(list_members(&mut tx).await?))
}

/// Changes a member's role and/or deactivates or reactivates them.
#[utoipa::path(patch, path = "/v1/members/{user_id}", tag = "tenancy", security(("bearer" = [])),
    params(("user_id" = String, Path, format = Uuid)), request_body = UpdateMember,
    responses((status = 200, body = Member), (status = 400, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem,
            description = "`rbac.forbidden`, `rbac.escalation`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)"),
        (status = 404, body = crate::http::Problem),
        (status = 409, body = crate::http::Problem)))]
pub(crate) async fn update(
    State(state): State<TenancyState>,
    p: Principal,
    Path(user_id): Path<String>,
    ApiJson(req): ApiJson<UpdateMember>,
) -> Result<Json<Member>, ApiError> {
    p.require("members:manage")?;
    p.require_step_up(state.clock.now())?;
    let user = parse_user_id(&user_id)?;
    if req.role.is_none() && req.active.is_none() {
        return Err(ApiError::bad_request(
            "tenancy.empty_update",
            "name a `role`, `active`, or both",
        ));
    }
    let now = state.clock.now();
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    lock_members(&mut tx).await?;
    let current = find_member(&mut tx, user)
        .await?
        .ok_or_else(member_not_found)?;
    check_may_manage(&mut tx, &p, &current).await?;
    let new_role = match req.role {
        Some(role) => {
            grantable_role(&mut tx, &p, &role).await?;
            role
        }
        None => current.role.clone(),
    };
    let was_active = current.is_active();
    let active = req.active.unwrap_or(was_active);
    if new_role == current.role && active == was_active {
        return Ok(Json(current));
    }
    refuse_last_owner(&mut tx, &current, active && new_role == "owner").await?;
    tx.execute(
        "UPDATE memberships SET role = $3, status = $4 WHERE tenant_id = $1 AND user_id = $2",
        vec![
            user.into(),
            new_role.as_str().into(),
            (if active { "active" } else { "deactivated" }).into(),
        ],
    )
    .await?;
    let sessions_revoked = if was_active && !active {
        revoke_member_access(&mut tx, user, "member_deactivated", now).await?
    } else {
        0
    };
    audit::append(
        &mut tx,
        state.clock.as_ref(),
        NewEvent::new(p.actor(), "tenancy.member.updated")
            .target(Target::new("user", user))
            .details(serde_json::json!({
                "old_role": current.role,
                "new_role": new_role,
                "old_active": was_active,
                "new_active": active,
                "sessions_revoked": sessions_revoked,
            }))
            .context(p.context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    let updated = find_member(&mut tx, user)
        .await?
        .ok_or_else(member_not_found)?;
    tx.commit().await?;
    Ok(Json(updated))
}

/// Removes a member from the tenant (the user keeps their account and their
/// other tenants); their sessions here end at once.
#[utoipa::path(delete, path = "/v1/members/{user_id}", tag = "tenancy", security(("bearer" = [])),
    params(("user_id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 403, body = crate::http::Problem,
            description = "`rbac.forbidden`, `rbac.escalation`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)"),
        (status = 404, body = crate::http::Problem), (status = 409, body = crate::http::Problem)))]
pub(crate) async fn remove(
    State(state): State<TenancyState>,
    p: Principal,
    Path(user_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require("members:manage")?;
    p.require_step_up(state.clock.now())?;
    let user = parse_user_id(&user_id)?;
    let now = state.clock.now();
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    lock_members(&mut tx).await?;
    let current = find_member(&mut tx, user)
        .await?
        .ok_or_else(member_not_found)?;
    check_may_manage(&mut tx, &p, &current).await?;
    refuse_last_owner(&mut tx, &current, false).await?;
    let sessions_revoked = revoke_member_access(&mut tx, user, "member_removed", now).await?;
    let api_keys_revoked = crate::apikeys::revoke_created_by(&mut tx, user, now).await?;
    tx.execute(
        "DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2",
        vec![user.into()],
    )
    .await?;
    audit::append(
        &mut tx,
        state.clock.as_ref(),
        NewEvent::new(p.actor(), "tenancy.member.removed")
            .target(Target::new("user", user))
            .details(serde_json::json!({
                "role": current.role,
                "was_active": current.is_active(),
                "sessions_revoked": sessions_revoked,
                "api_keys_revoked": api_keys_revoked,
            }))
            .context(p.context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// 400 `tenancy.unknown_role` unless `role` is a built-in or custom role of
/// the transaction's tenant; 403 `rbac.escalation` unless the caller holds
/// every permission it grants.
pub(crate) async fn grantable_role(
    tx: &mut TenantTx,
    p: &Principal,
    role: &str,
) -> Result<(), ApiError> {
    let unknown = || {
        ApiError::bad_request(
            "tenancy.unknown_role",
            format!("no role named `{}` in this tenant", role.escape_debug()),
        )
    };
    if validate_role(role).is_err() {
        return Err(unknown());
    }
    let granted = rbac::role_permissions(tx, role)
        .await?
        .ok_or_else(unknown)?;
    // Grants and record rules alike (a partner bound to its own deals cannot
    // hand out a role that sees every deal).
    if !rbac::escalation(&p.permissions, &granted).is_empty() {
        return Err(escalation(
            "you cannot grant a role with permissions you do not hold",
        ));
    }
    Ok(())
}

fn escalation(detail: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "rbac.escalation").with_detail(detail)
}

fn member_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "tenancy.member_not_found")
        .with_detail("no such member in this tenant")
}

/// A malformed id cannot name a member: 404, like an unknown one.
fn parse_user_id(raw: &str) -> Result<UserId, ApiError> {
    raw.parse::<UserId>().map_err(|_| member_not_found())
}

/// The caller may only manage a member whose current role they could grant
/// themselves (an admin cannot demote, deactivate or remove an owner). A
/// custom role that no longer exists grants nothing, so anyone covers it.
async fn check_may_manage(
    tx: &mut TenantTx,
    p: &Principal,
    member: &Member,
) -> Result<(), ApiError> {
    let held = rbac::role_permissions(tx, &member.role)
        .await?
        .unwrap_or_default();
    if rbac::escalation(&p.permissions, &held).is_empty() {
        Ok(())
    } else {
        Err(escalation(
            "this member's role has permissions you do not hold",
        ))
    }
}

/// 409 `tenancy.last_owner` when the change would leave no active owner.
async fn refuse_last_owner(
    tx: &mut TenantTx,
    member: &Member,
    stays_active_owner: bool,
) -> Result<(), ApiError> {
    let was_active_owner = member.is_active() && member.role == "owner";
    if !was_active_owner || stays_active_owner {
        return Ok(());
    }
    let others = other_active_owners(tx, member.user_id).await?;
    if leaves_no_owner(was_active_owner, stays_active_owner, others) {
        return Err(ApiError::new(StatusCode::CONFLICT, "tenancy.last_owner")
            .with_detail("the tenant must keep an active owner: make another member owner first"));
    }
    Ok(())
}

/// Whether a change leaves the tenant without an active owner.
fn leaves_no_owner(was_active_owner: bool, stays_active_owner: bool, other_owners: i64) -> bool {
    was_active_owner && !stays_active_owner && other_owners <= 0
}

pub(crate) async fn list_members(tx: &mut TenantTx) -> Result<Vec<Member>, DbError> {
    tx.fetch_all(
        "SELECT m.user_id, u.email, u.name, m.role, m.status, m.created_at \
         FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.tenant_id = $1 ORDER BY m.created_at, m.user_id",
        vec![],
    )
    .await
}

async fn find_member(tx: &mut TenantTx, user: UserId) -> Result<Option<Member>, DbError> {
    tx.fetch_optional(
        "SELECT m.user_id, u.email, u.name, m.role, m.status, m.created_at \
         FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.tenant_id = $1 AND m.user_id = $2",
        vec![user.into()],
    )
    .await
}

/// Active owners other than `user` (whose account is active too).
pub(crate) async fn other_active_owners(tx: &mut TenantTx, user: UserId) -> Result<i64, DbError> {
    let row: Option<(i64,)> = tx
        .fetch_optional(
            "SELECT COUNT(*) FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.tenant_id = $1 AND m.user_id <> $2 AND m.role = 'owner' \
             AND m.status = 'active' AND u.status = 'active'",
            vec![user.into()],
        )
        .await?;
    Ok(row.map_or(0, |r| r.0))
}

/// Serialises member changes within one tenant by locking its tenant row
/// (a no-op write): without it, on PostgreSQL two owners demoting each
/// other concurrently could each still see the other as owner. (SQLite has
/// a single writer already.)
pub(crate) async fn lock_members(tx: &mut TenantTx) -> Result<(), DbError> {
    tx.execute(
        "UPDATE tenants SET updated_at = updated_at WHERE id = $1",
        vec![],
    )
    .await?;
    Ok(())
}

/// Ends `user`'s access to the transaction's tenant: every session they hold
/// here is revoked and its refresh tokens deleted (their sessions in other
/// tenants are untouched). The UPDATE bumps the liveness generation on
/// commit, so cached session checks see it on the next request.
///
/// Their API keys stop too: every key request checks that its creator is
/// an active member (`apikeys::auth`). Removal also marks the keys revoked
/// (`apikeys::revoke_created_by`, in `remove`); deactivation does not, so
/// reactivating the member restores their keys.
async fn revoke_member_access(
    tx: &mut TenantTx,
    user: UserId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<u64, DbError> {
    tx.execute(
        "DELETE FROM refresh_tokens WHERE tenant_id = $1 AND session_id IN \
         (SELECT id FROM sessions WHERE tenant_id = $1 AND user_id = $2)",
        vec![user.into()],
    )
    .await?;
    tx.execute(
        "UPDATE sessions SET revoked_at = $3, revoked_reason = $4 \
         WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL",
        vec![user.into(), now.into(), reason.into()],
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_active_owner_stays() {
        // Demoting, deactivating or removing the only active owner.
        assert!(leaves_no_owner(true, false, 0));
        // Another owner remains.
        assert!(!leaves_no_owner(true, false, 1));
        // Still an active owner after the change (e.g. a no-op).
        assert!(!leaves_no_owner(true, true, 0));
        // Not an active owner before: nothing is lost.
        assert!(!leaves_no_owner(false, false, 0));
    }
}
