//! Signing a user out everywhere (`POST /v1/auth/logout-all`): every live
//! session in every tenant, counted per tenant so each tenant's log records
//! its own share.

use chrono::{DateTime, Utc};

use crate::db::{DbError, UserTx};
use crate::ids::TenantId;

/// Revokes every live session of the transaction's user in every tenant;
/// returns how many were revoked in each tenant (only tenants with one).
pub(super) async fn revoke_all_by_tenant(
    tx: &mut UserTx,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Vec<(TenantId, u64)>, DbError> {
    let revoked: Vec<(TenantId,)> = tx
        .fetch_all(
            "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 \
             WHERE user_id = $1 AND revoked_at IS NULL RETURNING tenant_id",
            vec![now.into(), reason.into()],
        )
        .await?;
    let mut by_tenant: Vec<(TenantId, u64)> = Vec::new();
    for (tenant,) in revoked {
        match by_tenant.iter_mut().find(|(t, _)| *t == tenant) {
            Some((_, n)) => *n += 1,
            None => by_tenant.push((tenant, 1)),
        }
    }
    Ok(by_tenant)
}
