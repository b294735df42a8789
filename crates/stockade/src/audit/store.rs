//! Audit storage: append inside the caller's transaction; verify a chain.

use super::head::{self, Head};
use super::model::{AuditError, GENESIS_HASH, NewEvent, StoredEvent, VerifyReport};
use super::pii;
use crate::clock::Clock;
use crate::db::{Db, DbError, TenantTx};
use crate::ids::{EventId, TenantId};

/// Events read per round trip while verifying (keeps memory constant).
const VERIFY_PAGE: i64 = 1000;

/// Appends `event` to the tenant's chain inside `tx`. The event commits or
/// rolls back with the change it describes. The head row is updated first, so
/// on PostgreSQL its row lock serialises appends of one tenant and the
/// sequence stays gapless; SQLite has a single writer anyway.
pub async fn append(
    tx: &mut TenantTx,
    clock: &dyn Clock,
    event: NewEvent,
) -> Result<StoredEvent, AuditError> {
    let key = tx.audit_head_key().ok_or(AuditError::HeadKeyMissing)?;
    let tenant = tx.tenant();
    let now = clock.now();
    let genesis = Head {
        base_seq: 0,
        base_hash: GENESIS_HASH.to_owned(),
        seq: 0,
        hash: GENESIS_HASH.to_owned(),
    };
    tx.execute(
        "INSERT INTO audit_heads (tenant_id, seq, hash, updated_at, sig) \
         VALUES ($1, 0, $2, $3, $4) ON CONFLICT (tenant_id) DO NOTHING",
        vec![
            GENESIS_HASH.into(),
            now.into(),
            head::sign(&key, tenant, &genesis).into(),
        ],
    )
    .await?;
    let (seq, prev_hash, base_seq, base_hash, prev_sig): (
        i64,
        String,
        i64,
        String,
        Option<String>,
    ) = tx
        .fetch_one(
            "UPDATE audit_heads SET seq = seq + 1, updated_at = $2 WHERE tenant_id = $1 \
             RETURNING seq, hash, base_seq, base_hash, sig",
            vec![now.into()],
        )
        .await?;
    let mut h = Head {
        base_seq,
        base_hash,
        seq: seq - 1,
        hash: prev_hash,
    };
    // A head that was not validly signed stays unsigned (see `head`).
    let intact = head::check(&key, tenant, &h, prev_sig.as_deref());
    let subject = match event.subject() {
        Some(user) => Some(pii::for_append(tx, user, now).await?),
        None => None,
    };
    let e = event.seal(
        tenant,
        seq,
        EventId::new(),
        now,
        h.hash.clone(),
        subject.as_ref(),
    )?;
    h.seq = seq;
    h.hash = e.hash.clone();
    let sig = intact.then(|| head::sign(&key, tenant, &h));
    if !intact {
        tracing::error!(%tenant, seq, "audit chain head signature invalid: not re-signing");
    }
    tx.execute(
        "UPDATE audit_heads SET hash = $2, sig = $3 WHERE tenant_id = $1",
        vec![e.hash.clone().into(), sig.into()],
    )
    .await?;
    tx.execute(
        "INSERT INTO audit_events (tenant_id, seq, id, occurred_at, actor_type, actor_id, \
         impersonator_id, ip, user_agent, request_id, action, target_type, target_id, outcome, \
         details, prev_hash, hash, subject_id, pii, pii_digest) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20)",
        vec![
            e.seq.into(),
            e.id.into(),
            e.occurred_at.into(),
            e.actor_type.clone().into(),
            e.actor_id.clone().into(),
            e.impersonator_id.clone().into(),
            e.ip.clone().into(),
            e.user_agent.clone().into(),
            e.request_id.clone().into(),
            e.action.clone().into(),
            e.target_type.clone().into(),
            e.target_id.clone().into(),
            e.outcome.clone().into(),
            e.details.clone().into(),
            e.prev_hash.clone().into(),
            e.hash.clone().into(),
            e.subject_id.clone().into(),
            e.pii.clone().into(),
            e.pii_digest.clone().into(),
        ],
    )
    .await?;
    Ok(e)
}

/// Walks one tenant's chain from the start and compares its end with the head.
pub async fn verify_tenant(db: &Db, tenant: TenantId) -> Result<VerifyReport, DbError> {
    let key = db
        .audit_head_key()
        .ok_or_else(|| DbError::Guard("the audit head key is not installed".to_owned()))?;
    let mut tx = db.tenant_read(tenant).await?;
    let head = head::read(&mut tx).await?;
    // After a retention purge the chain starts at the checkpoint.
    let (mut expected, mut prev) = match &head {
        Some((h, _)) => (h.base_seq + 1, h.base_hash.clone()),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let mut checked = 0u64;
    let bad = |seq: i64, reason: String, checked: u64, prev: &str| VerifyReport {
        tenant_id: tenant,
        ok: false,
        events_checked: checked,
        head_seq: seq - 1,
        head_hash: prev.to_owned(),
        first_bad_seq: Some(seq),
        reason: Some(reason),
    };
    loop {
        let page: Vec<StoredEvent> = tx
            .fetch_all(
                "SELECT * FROM audit_events WHERE tenant_id = $1 AND seq >= $2 \
                 ORDER BY seq LIMIT $3",
                vec![expected.into(), VERIFY_PAGE.into()],
            )
            .await?;
        let full = page.len() as i64 == VERIFY_PAGE;
        for e in page {
            if e.seq != expected {
                return Ok(bad(
                    expected,
                    format!("event {expected} is missing"),
                    checked,
                    &prev,
                ));
            }
            if e.prev_hash != prev {
                return Ok(bad(
                    e.seq,
                    "its previous hash does not match the event before it".into(),
                    checked,
                    &prev,
                ));
            }
            if e.clear_fields_in_v2() {
                return Ok(bad(
                    e.seq,
                    "it holds ip or user agent in clear beside its sealed personal data".into(),
                    checked,
                    &prev,
                ));
            }
            if e.compute_hash() != e.hash {
                return Ok(bad(
                    e.seq,
                    "its content does not match its hash".into(),
                    checked,
                    &prev,
                ));
            }
            prev = e.hash;
            expected += 1;
            checked += 1;
        }
        if !full {
            break;
        }
    }
    let last = expected - 1;
    let problem = match &head {
        None if last == 0 => None,
        None => Some((1, "the chain head record is missing".to_owned())),
        Some((h, _)) if h.seq > last => Some((
            last + 1,
            format!("events {} to {} are missing from the end", last + 1, h.seq),
        )),
        Some((h, _)) if h.seq < last => Some((
            h.seq + 1,
            format!("events after {} are not covered by the chain head", h.seq),
        )),
        Some((h, _)) if h.hash != prev => {
            Some((last, "the chain head hash does not match".to_owned()))
        }
        Some((h, sig)) if !head::check(&key, tenant, h, sig.as_deref()) => Some((
            last + 1,
            match sig {
                None => "the chain head signature is missing".to_owned(),
                Some(_) => "the chain head signature does not match \
                            (head or retention checkpoint rewritten)"
                    .to_owned(),
            },
        )),
        Some(_) => None,
    };
    Ok(match problem {
        Some((seq, reason)) => VerifyReport {
            first_bad_seq: Some(seq),
            reason: Some(reason),
            ok: false,
            tenant_id: tenant,
            events_checked: checked,
            head_seq: last,
            head_hash: prev,
        },
        None => VerifyReport {
            tenant_id: tenant,
            ok: true,
            events_checked: checked,
            head_seq: last,
            head_hash: prev,
            first_bad_seq: None,
            reason: None,
        },
    })
}

/// Verifies every tenant's chain and the platform's own.
pub async fn verify_all(db: &Db) -> Result<Vec<VerifyReport>, DbError> {
    let mut tx = db.global_read().await?;
    let tenants: Vec<(TenantId,)> = tx
        .fetch_all("SELECT id FROM tenants ORDER BY id", vec![])
        .await?;
    drop(tx);
    let mut reports = Vec::with_capacity(tenants.len() + 1);
    reports.push(verify_tenant(db, TenantId::PLATFORM).await?);
    for (tenant,) in tenants {
        reports.push(verify_tenant(db, tenant).await?);
    }
    Ok(reports)
}
