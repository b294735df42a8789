//! The end of impersonations that expire instead of signing out (SPEC §2.7
//! "impersonation start/end"). An impersonation session lives 15 minutes
//! and has no refresh token; when it simply runs out, nothing presents it
//! again (its access token expires with it). A job of the serving instance
//! ([`SWEEP_INTERVAL`]) marks such sessions revoked (`impersonation_expired`)
//! and writes `platform.impersonation.ended` with `reason: expired` and the
//! real end (`expired_at`) in the tenant's chain and the platform's, in one
//! transaction per tenant. The `revoked_at IS NULL` guard makes it once only.

use serde_json::json;

use crate::audit::{self, Actor, AuditError, NewEvent, Target};
use crate::clock::Clock;
use crate::db::Db;
use crate::ids::{TenantId, UserId};

/// How often a serving instance looks for expired impersonations.
pub const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

/// Ends every impersonation session past its absolute expiry that was not
/// ended yet; returns how many it ended.
pub async fn end_expired_impersonations(db: &Db, clock: &dyn Clock) -> Result<u64, AuditError> {
    let now = clock.now();
    let mut tx = db.global_read().await?;
    let tenants: Vec<(TenantId,)> = tx
        .fetch_all("SELECT id FROM tenants ORDER BY id", vec![])
        .await?;
    drop(tx);
    let mut ended = 0;
    for (tenant,) in tenants {
        let mut tx = db.tenant_tx(tenant).await?;
        let rows: Vec<(
            uuid::Uuid,
            UserId,
            Option<UserId>,
            chrono::DateTime<chrono::Utc>,
        )> = tx
            .fetch_all(
                "UPDATE sessions SET revoked_at = $2, revoked_reason = 'impersonation_expired' \
                 WHERE tenant_id = $1 AND impersonator_id IS NOT NULL AND revoked_at IS NULL \
                 AND absolute_expires_at <= $2 \
                 RETURNING id, user_id, impersonator_id, absolute_expires_at",
                vec![now.into()],
            )
            .await?;
        if rows.is_empty() {
            continue;
        }
        let event = |session: uuid::Uuid, owner: UserId, details: serde_json::Value| {
            NewEvent::new(
                Actor::PlatformOwner { id: owner },
                "platform.impersonation.ended",
            )
            .target(Target::new("session", session))
            .details(details)
        };
        let mut local = Vec::new();
        let mut platform = Vec::new();
        for (session, user, owner, expired_at) in rows {
            let Some(owner) = owner else { continue };
            local.push(event(
                session,
                owner,
                json!({ "user_id": user, "reason": "expired", "expired_at": expired_at }),
            ));
            platform.push(event(
                session,
                owner,
                json!({ "user_id": user, "tenant_id": tenant, "reason": "expired",
                        "expired_at": expired_at }),
            ));
        }
        ended += local.len() as u64;
        audit::append_many(&mut tx, clock, local).await?;
        let mut tx = tx.rescope(TenantId::PLATFORM).await?;
        audit::append_many(&mut tx, clock, platform).await?;
        tx.commit().await?;
    }
    Ok(ended)
}

/// One run of the serving instance's sweep (`app::spawn_jobs`): ends the
/// expired impersonations and logs how many, or logs the failure (retried
/// at the next sweep). Returns a summary for the job's status.
pub async fn scheduled_sweep(db: &Db, clock: &dyn Clock) -> Result<String, AuditError> {
    match end_expired_impersonations(db, clock).await {
        Ok(n) => {
            if n > 0 {
                tracing::info!(ended = n, "expired impersonations ended");
            }
            Ok(format!("{n} impersonations ended"))
        }
        Err(e) => {
            tracing::error!(error = %e, "expired impersonations could not be ended");
            Err(e)
        }
    }
}
