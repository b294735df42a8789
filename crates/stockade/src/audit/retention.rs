//! Retention (SPEC §2.7): events older than the tenant's
//! `audit_retention_days` are deleted by a daily job of the server and by
//! `stockade audit purge`. The purge first records a checkpoint in the head
//! row (the last purged seq and its hash, covered by the head signature), so
//! verify starts from it and the remaining chain still verifies; then it
//! deletes through the owner-level path (`TenantTx::purge_audit_events`);
//! then it appends `audit.events.purged`, all in one transaction.
//!
//! How many days each chain keeps is `retention_policy`'s rule: never below
//! the deployment floor, and a shortening spares what was written before it.
//! A chain the purge cannot take (its head signature does not hold, or any
//! other error) is skipped — the rest are still purged — and raises an
//! alert: an error log line and `audit.purge.skipped` in the platform chain.

use chrono::Duration;
use serde_json::json;

use super::head::{self, Head};
use super::model::{Actor, AuditError, NewEvent, Outcome, Target};
use super::retention_policy::{self, Kept, RetentionPolicy};
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

/// A chain the purge skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub tenant_id: TenantId,
    /// `head_broken` or `error`.
    pub reason: &'static str,
    pub message: String,
}

/// What one run over every chain did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeRun {
    pub purged: Vec<PurgeReport>,
    pub skipped: Vec<Skipped>,
}

/// Purges one tenant's chain under the deployment's `policy` (which is
/// applied and audited first, see `retention_policy::apply_policy`).
pub async fn purge_one(
    db: &Db,
    clock: &dyn Clock,
    policy: RetentionPolicy,
    tenant: TenantId,
) -> Result<Option<PurgeReport>, AuditError> {
    let kept = retention_policy::apply_policy(db, clock, policy).await?;
    purge_tenant(db, clock, kept, tenant).await
}

/// Purges `tenant`'s events older than its retention: the most of its
/// setting, the run's floor and its holds (the platform chain: the run's
/// platform retention). `None` when nothing is old enough. Refuses (error)
/// a chain whose head signature does not hold: purging must not re-sign,
/// and so hide, a broken head.
pub async fn purge_tenant(
    db: &Db,
    clock: &dyn Clock,
    kept: Kept,
    tenant: TenantId,
) -> Result<Option<PurgeReport>, AuditError> {
    let mut tx = db.tenant_tx(tenant).await?;
    let key = tx.audit_head_key().ok_or(AuditError::HeadKeyMissing)?;
    let days = if tenant == TenantId::PLATFORM {
        kept.platform
    } else {
        let setting = crate::tenancy::settings::load(&mut tx)
            .await?
            .audit_retention_days;
        let holds = retention_policy::holds(&mut tx).await?;
        retention_policy::effective(setting.max(kept.floor), &holds, clock.now())
    };
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

/// Purges every tenant's chain and the platform's under `policy`. A chain
/// that fails is skipped with an alert (error log, `audit.purge.skipped` in
/// the platform chain); the others are purged all the same. Errors only
/// when the run cannot start (the policy cannot be applied, the tenants
/// cannot be listed).
pub async fn purge_all(
    db: &Db,
    clock: &dyn Clock,
    policy: RetentionPolicy,
) -> Result<PurgeRun, AuditError> {
    let kept = retention_policy::apply_policy(db, clock, policy).await?;
    let mut tx = db.global_read().await?;
    let tenants: Vec<(TenantId,)> = tx
        .fetch_all("SELECT id FROM tenants ORDER BY id", vec![])
        .await?;
    drop(tx);
    let mut run = PurgeRun::default();
    for tenant in std::iter::once(TenantId::PLATFORM).chain(tenants.into_iter().map(|t| t.0)) {
        match purge_tenant(db, clock, kept, tenant).await {
            Ok(Some(r)) => run.purged.push(r),
            Ok(None) => {}
            Err(e) => {
                let skipped = Skipped {
                    tenant_id: tenant,
                    reason: match e {
                        AuditError::HeadBroken(_) => "head_broken",
                        _ => "error",
                    },
                    message: e.to_string(),
                };
                alert(db, clock, &skipped).await;
                run.skipped.push(skipped);
            }
        }
    }
    Ok(run)
}

/// One run of the serving instance's daily purge (`app::spawn_jobs`):
/// [`purge_all`] with each purged chain logged; a failure to start is
/// logged and returned (retried the next day). Returns a summary for the
/// job's status.
pub async fn scheduled_purge(
    db: &Db,
    clock: &dyn Clock,
    policy: RetentionPolicy,
) -> Result<String, AuditError> {
    match purge_all(db, clock, policy).await {
        // Skipped chains were logged (and audited) as they were met.
        Ok(run) => {
            for r in &run.purged {
                tracing::info!(tenant = %r.tenant_id, count = r.count, up_to_seq = r.up_to_seq, "audit events purged");
            }
            let events: u64 = run.purged.iter().map(|r| r.count).sum();
            Ok(format!(
                "{events} events purged from {} chains; {} chains skipped",
                run.purged.len(),
                run.skipped.len()
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "audit retention purge failed");
            Err(e)
        }
    }
}

/// The alert for a skipped chain: an error line, and `audit.purge.skipped`
/// in the platform chain (never the message: it may hold database text).
async fn alert(db: &Db, clock: &dyn Clock, skipped: &Skipped) {
    tracing::error!(
        tenant = %skipped.tenant_id,
        reason = skipped.reason,
        error = %skipped.message,
        "audit retention purge skipped a chain: its events are kept until it is repaired"
    );
    let written = async {
        let mut tx = db.tenant_tx(TenantId::PLATFORM).await?;
        let event = NewEvent::new(Actor::System, "audit.purge.skipped")
            .target(Target::new("tenant", skipped.tenant_id))
            .outcome(Outcome::Failure)
            .details(json!({ "reason": skipped.reason }));
        append(&mut tx, clock, event).await?;
        tx.commit().await?;
        Ok::<(), AuditError>(())
    };
    if let Err(e) = written.await {
        tracing::error!(error = %e, "audit.purge.skipped could not be written");
    }
}
