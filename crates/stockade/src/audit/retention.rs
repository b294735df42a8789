//! Retention (SPEC §2.7): events older than the tenant's
//! `audit_retention_days` are deleted by a daily job of the server and by
//! `stockade audit purge`. The purge first records a checkpoint in the head
//! row (the last purged seq and its hash, covered by the head signature), so
//! verify starts from it and the remaining chain still verifies; then it
//! deletes through the owner-level path (`TenantTx::purge_audit_events`);
//! then it appends `audit.events.purged`, all in one transaction.

use chrono::Duration;
use serde_json::json;

use super::head::{self, Head};
use super::model::{Actor, AuditError, NewEvent, Target};
use super::store::append;
use crate::clock::Clock;
use crate::db::Db;
use crate::ids::TenantId;

/// How often a serving instance purges.
pub const PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What one purge removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeReport {
    pub tenant_id: TenantId,
    pub count: u64,
    pub from_seq: i64,
    pub up_to_seq: i64,
}

/// Purges `tenant`'s events older than its retention. `None` when nothing
/// is old enough. Refuses (error) a chain whose head signature does not
/// hold: purging must not re-sign, and so hide, a broken head.
pub async fn purge_tenant(
    db: &Db,
    clock: &dyn Clock,
    tenant: TenantId,
) -> Result<Option<PurgeReport>, AuditError> {
    let mut tx = db.tenant_tx(tenant).await?;
    let key = tx.audit_head_key().ok_or(AuditError::HeadKeyMissing)?;
    let days = crate::tenancy::settings::load(&mut tx)
        .await?
        .audit_retention_days;
    let cutoff = clock.now() - Duration::days(days);
    let Some((old, sig)) = head::read_locked(&mut tx).await? else {
        return Ok(None);
    };
    if !head::check(&key, tenant, &old, sig.as_deref()) {
        return Err(AuditError::HeadBroken(tenant));
    }
    let last: Option<(i64, String)> = tx
        .fetch_optional(
            "SELECT seq, hash FROM audit_events WHERE tenant_id = $1 AND occurred_at < $2 \
             ORDER BY seq DESC LIMIT 1",
            vec![cutoff.into()],
        )
        .await?;
    let Some((up_to, hash)) = last else {
        return Ok(None);
    };
    let new = Head {
        base_seq: up_to,
        base_hash: hash.clone(),
        ..old.clone()
    };
    tx.execute(
        "UPDATE audit_heads SET base_seq = $2, base_hash = $3, sig = $4 WHERE tenant_id = $1",
        vec![
            up_to.into(),
            hash.clone().into(),
            head::sign(&key, tenant, &new).into(),
        ],
    )
    .await?;
    let count = tx.purge_audit_events(up_to).await?;
    let report = PurgeReport {
        tenant_id: tenant,
        count,
        from_seq: old.base_seq + 1,
        up_to_seq: up_to,
    };
    let event = NewEvent::new(Actor::System, "audit.events.purged")
        .target(Target::new("tenant", tenant))
        .details(json!({
            "count": count,
            "from_seq": report.from_seq,
            "up_to_seq": up_to,
            "checkpoint_hash": hash,
            "retention_days": days,
        }));
    append(&mut tx, clock, event).await?;
    tx.commit().await?;
    Ok(Some(report))
}

/// Purges every tenant's chain and the platform's (default retention).
/// Stops at the first error.
pub async fn purge_all(db: &Db, clock: &dyn Clock) -> Result<Vec<PurgeReport>, AuditError> {
    let mut tx = db.global_read().await?;
    let tenants: Vec<(TenantId,)> = tx
        .fetch_all("SELECT id FROM tenants ORDER BY id", vec![])
        .await?;
    drop(tx);
    let mut out = Vec::new();
    for tenant in std::iter::once(TenantId::PLATFORM).chain(tenants.into_iter().map(|t| t.0)) {
        if let Some(r) = purge_tenant(db, clock, tenant).await? {
            out.push(r);
        }
    }
    Ok(out)
}
