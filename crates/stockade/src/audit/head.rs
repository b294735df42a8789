//! Tail protection: every chain head (`audit_heads`: seq and hash of the
//! newest event) is signed with HMAC-SHA256 under the server key
//! `audit_head_hmac`, so someone with database access who deletes the newest
//! events and rewrites the head to match cannot produce a valid signature.
//!
//! Upgrade rule: heads written before migration 0017 have no signature. The
//! first [`install_head_key`] after the upgrade signs them once and marks
//! `audit_head_signing.done` in the same transaction; from then on a missing
//! or wrong signature fails verification. Each chain it signs also gets an
//! `audit.heads.signed` event, so a re-run of that signing (by someone with
//! database write access who nulled the signatures and reset the marker, to
//! hide a cut tail) shows in the chain itself, to the tenant and to a SIEM. An append never launders a broken
//! head: it extends the chain but, when the head it found is not validly
//! signed, stores no signature, so the break stays visible.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::model::{Actor, AuditError, NewEvent, Target};
use crate::clock::Clock;
use crate::crypto::keys::MasterKey;
use crate::crypto::server_keys;
use crate::db::Db;
use crate::ids::TenantId;

/// The `server_keys` purpose of the head key.
pub const HEAD_KEY_PURPOSE: &str = "audit_head_hmac";

/// What a head signature covers: the checkpoint the chain starts from (0 and
/// the genesis hash until a retention purge) and the newest event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub base_seq: i64,
    pub base_hash: String,
    pub seq: i64,
    pub hash: String,
}

fn mac(key: &[u8; 32], tenant: TenantId, h: &Head) -> Hmac<Sha256> {
    // A 32-byte key is always accepted; the fallback is unreachable.
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => <Hmac<Sha256> as Mac>::new(&Default::default()),
    };
    m.update(
        format!(
            "stockade:audit_head:v1\n{tenant}\n{}\n{}\n{}\n{}",
            h.base_seq, h.base_hash, h.seq, h.hash
        )
        .as_bytes(),
    );
    m
}

/// The signature of `tenant`'s head, hex.
pub(crate) fn sign(key: &[u8; 32], tenant: TenantId, head: &Head) -> String {
    hex::encode(mac(key, tenant, head).finalize().into_bytes())
}

/// Whether `sig` signs `tenant`'s `head`; compared in constant time.
pub(crate) fn check(key: &[u8; 32], tenant: TenantId, head: &Head, sig: Option<&str>) -> bool {
    let Some(raw) = sig.and_then(|s| hex::decode(s).ok()) else {
        return false;
    };
    mac(key, tenant, head).verify_slice(&raw).is_ok()
}

/// Reads the tenant's head row with its signature.
pub(crate) async fn read(
    tx: &mut crate::db::TenantTx,
) -> Result<Option<(Head, Option<String>)>, crate::db::DbError> {
    fetch(
        tx,
        "SELECT base_seq, base_hash, seq, hash, sig FROM audit_heads WHERE tenant_id = $1",
    )
    .await
}

/// Reads the tenant's head row and locks it until the transaction ends (a
/// no-op UPDATE: PostgreSQL row lock; SQLite has one writer), so no append
/// moves the head between this read and the caller's write.
pub(crate) async fn read_locked(
    tx: &mut crate::db::TenantTx,
) -> Result<Option<(Head, Option<String>)>, crate::db::DbError> {
    fetch(
        tx,
        "UPDATE audit_heads SET updated_at = updated_at WHERE tenant_id = $1 \
         RETURNING base_seq, base_hash, seq, hash, sig",
    )
    .await
}

async fn fetch(
    tx: &mut crate::db::TenantTx,
    sql: &str,
) -> Result<Option<(Head, Option<String>)>, crate::db::DbError> {
    let row: Option<(i64, String, i64, String, Option<String>)> =
        tx.fetch_optional(sql, vec![]).await?;
    Ok(row.map(|(base_seq, base_hash, seq, hash, sig)| {
        (
            Head {
                base_seq,
                base_hash,
                seq,
                hash,
            },
            sig,
        )
    }))
}

/// Loads (creating on first use) the head key sealed under the master key,
/// installs it in `db`, and signs pre-0017 heads once. Every process that
/// appends or verifies calls it at startup (server, CLI, tests).
pub async fn install_head_key(
    db: &Db,
    master: &MasterKey,
    clock: &dyn Clock,
) -> Result<(), AuditError> {
    let key = server_keys::get_or_create(db, master, clock, HEAD_KEY_PURPOSE).await?;
    db.set_audit_head_key(key.clone());
    sign_legacy_heads(db, &key, clock).await?;
    Ok(())
}

/// The action appended to every chain whose unsigned head gets signed.
pub(crate) const HEADS_SIGNED: &str = "audit.heads.signed";

/// Signs the heads that predate migration 0017, once, and appends
/// [`HEADS_SIGNED`] to each chain it signed (after signing, so the append
/// finds a valid head and signs the new one).
async fn sign_legacy_heads(
    db: &Db,
    key: &Zeroizing<[u8; 32]>,
    clock: &dyn Clock,
) -> Result<(), AuditError> {
    let mut tx = db.global_tx().await?;
    let won = tx
        .execute(
            "UPDATE audit_head_signing SET done = 1 WHERE id = 1 AND done = 0",
            vec![],
        )
        .await?;
    if won == 0 {
        return Ok(());
    }
    let tenants: Vec<(TenantId,)> = tx.fetch_all("SELECT id FROM tenants", vec![]).await?;
    let mut tx = tx.scoped(TenantId::PLATFORM).await?;
    for tenant in std::iter::once(TenantId::PLATFORM).chain(tenants.into_iter().map(|t| t.0)) {
        tx = tx.rescope(tenant).await?;
        if let Some((head, None)) = read(&mut tx).await? {
            tx.execute(
                "UPDATE audit_heads SET sig = $2 WHERE tenant_id = $1",
                vec![sign(key, tenant, &head).into()],
            )
            .await?;
            let event = NewEvent::new(Actor::System, HEADS_SIGNED)
                .target(Target::new("tenant", tenant))
                .details(serde_json::json!({
                    "reason": "unsigned_head",
                    "head_seq": head.seq,
                    "head_hash": head.hash,
                }));
            super::store::append(&mut tx, clock, event).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_binds_tenant_seq_and_hash() {
        let key = [7u8; 32];
        let t = TenantId(uuid::Uuid::nil());
        let h = Head {
            base_seq: 2,
            base_hash: "cd".into(),
            seq: 5,
            hash: "ab".into(),
        };
        let sig = sign(&key, t, &h);
        assert!(check(&key, t, &h, Some(&sig)));
        for other in [
            Head {
                seq: 4,
                ..h.clone()
            },
            Head {
                hash: "ac".into(),
                ..h.clone()
            },
            Head {
                base_seq: 1,
                ..h.clone()
            },
            Head {
                base_hash: "ce".into(),
                ..h.clone()
            },
        ] {
            assert!(!check(&key, t, &other, Some(&sig)), "{other:?}");
        }
        assert!(!check(&key, TenantId::new(), &h, Some(&sig)));
        assert!(!check(&[8u8; 32], t, &h, Some(&sig)));
        assert!(!check(&key, t, &h, None));
        assert!(!check(&key, t, &h, Some("zz")));
    }
}
