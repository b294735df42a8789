//! Platform queries: tenant status changes, tenant-wide session
//! revocation, one-time sign-in links.

use chrono::{DateTime, Utc};

use crate::db::{DbError, GlobalTx, TenantTx};
use crate::ids::{TenantId, UserId};
use crate::tenancy::Tenant;

/// One page of tenants, oldest first (ids are UUIDv7, so id order is
/// creation order), after `after` when given.
pub(super) async fn list_tenants(
    tx: &mut GlobalTx,
    after: Option<TenantId>,
    limit: i64,
) -> Result<Vec<Tenant>, DbError> {
    match after {
        Some(after) => {
            tx.fetch_all(
                "SELECT * FROM tenants WHERE id > $1 ORDER BY id LIMIT $2",
                vec![after.into(), limit.into()],
            )
            .await
        }
        None => {
            tx.fetch_all(
                "SELECT * FROM tenants ORDER BY id LIMIT $1",
                vec![limit.into()],
            )
            .await
        }
    }
}

pub(super) async fn find_tenant(
    tx: &mut GlobalTx,
    id: TenantId,
) -> Result<Option<Tenant>, DbError> {
    tx.fetch_optional("SELECT * FROM tenants WHERE id = $1", vec![id.into()])
        .await
}

/// Moves a tenant from status `from` to `to`; `None` when it is not in
/// `from` (or does not exist). Conditional, so of two concurrent changes
/// one wins.
pub(super) async fn transition(
    tx: &mut GlobalTx,
    id: TenantId,
    from: &str,
    to: &str,
    now: DateTime<Utc>,
) -> Result<Option<Tenant>, DbError> {
    tx.fetch_optional(
        "UPDATE tenants SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2 \
         RETURNING *",
        vec![id.into(), from.into(), to.into(), now.into()],
    )
    .await
}

/// Revokes every live session of the transaction's tenant and deletes its
/// refresh tokens. Returns how many sessions were revoked.
pub(super) async fn revoke_tenant_sessions(
    tx: &mut TenantTx,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<u64, DbError> {
    let n = tx
        .execute(
            "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 \
             WHERE tenant_id = $1 AND revoked_at IS NULL",
            vec![now.into(), reason.into()],
        )
        .await?;
    tx.execute("DELETE FROM refresh_tokens WHERE tenant_id = $1", vec![])
        .await?;
    Ok(n)
}

/// Ends every unused sign-in link into `tenant` now (suspension).
pub(super) async fn expire_sign_in_links(
    tx: &mut GlobalTx,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> Result<u64, DbError> {
    tx.execute(
        "UPDATE sign_in_links SET expires_at = $2 WHERE target_tenant_id = $1 AND used_at IS NULL",
        vec![tenant.into(), now.into()],
    )
    .await
}

/// Ends every unused sign-in link of `user`, into any tenant, now (a new
/// link replaces them); how many were still alive.
pub(super) async fn void_sign_in_links_of(
    tx: &mut GlobalTx,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<u64, DbError> {
    tx.execute(
        "UPDATE sign_in_links SET expires_at = $2 \
         WHERE user_id = $1 AND used_at IS NULL AND expires_at > $2",
        vec![user.into(), now.into()],
    )
    .await
}

pub(super) struct NewLink {
    pub hash: [u8; 32],
    pub user: UserId,
    pub tenant: TenantId,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub(super) async fn insert_sign_in_link(tx: &mut GlobalTx, link: &NewLink) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO sign_in_links (token_hash, user_id, target_tenant_id, created_by, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        vec![
            link.hash.into(),
            link.user.into(),
            link.tenant.into(),
            link.created_by.into(),
            link.created_at.into(),
            link.expires_at.into(),
        ],
    )
    .await?;
    Ok(())
}

/// A stored sign-in link (the hash is what was looked up).
#[derive(sqlx::FromRow)]
pub(super) struct LinkRow {
    pub user_id: UserId,
    pub tenant_id: TenantId,
    pub created_by: UserId,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

pub(super) async fn find_sign_in_link(
    tx: &mut GlobalTx,
    hash: [u8; 32],
) -> Result<Option<LinkRow>, DbError> {
    tx.fetch_optional(
        "SELECT user_id, target_tenant_id AS tenant_id, created_by, expires_at, used_at \
         FROM sign_in_links WHERE token_hash = $1",
        vec![hash.into()],
    )
    .await
}

/// Claims a link: true for exactly one of several concurrent redemptions,
/// and never for a link expired (or voided, or killed by a suspension)
/// since it was read.
pub(super) async fn claim_sign_in_link(
    tx: &mut GlobalTx,
    hash: [u8; 32],
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let n = tx
        .execute(
            "UPDATE sign_in_links SET used_at = $2 \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
            vec![hash.into(), now.into()],
        )
        .await?;
    Ok(n == 1)
}

/// A user's standing in a tenant: may they sign in there?
#[derive(sqlx::FromRow)]
pub(super) struct Standing {
    pub user_status: String,
    pub membership_status: String,
    pub tenant_status: String,
}

/// `user`'s standing in the transaction's tenant; `None` when not a member.
pub(super) async fn standing(tx: &mut TenantTx, user: UserId) -> Result<Option<Standing>, DbError> {
    tx.fetch_optional(
        "SELECT u.status AS user_status, m.status AS membership_status, \
         t.status AS tenant_status \
         FROM memberships m JOIN users u ON u.id = m.user_id JOIN tenants t ON t.id = m.tenant_id \
         WHERE m.tenant_id = $1 AND m.user_id = $2",
        vec![user.into()],
    )
    .await
}
