//! Tail protection: every chain head (`audit_heads`: seq and hash of the
//! newest event) is signed with HMAC-SHA256 under the server key
//! `audit_head_hmac`, so someone with database access who deletes the newest
//! events and rewrites the head to match cannot produce a valid signature.
//!
//! Upgrade rule: heads written before migration 0017 have no signature. The
//! first [`install_head_key`] after the upgrade signs them once and marks
//! `audit_head_signing.done` in the same transaction; from then on a missing
//! or wrong signature fails verification. An append never launders a broken
//! head: it extends the chain but, when the head it found is not validly
//! signed, stores no signature, so the break stays visible.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::crypto::keys::MasterKey;
use crate::crypto::server_keys::{self, ServerKeyError};
use crate::db::Db;
use crate::ids::TenantId;

/// The `server_keys` purpose of the head key.
pub const HEAD_KEY_PURPOSE: &str = "audit_head_hmac";

fn mac(key: &[u8; 32], tenant: TenantId, seq: i64, hash: &str) -> Hmac<Sha256> {
    // A 32-byte key is always accepted; the fallback is unreachable.
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => <Hmac<Sha256> as Mac>::new(&Default::default()),
    };
    m.update(format!("stockade:audit_head:v1\n{tenant}\n{seq}\n{hash}").as_bytes());
    m
}

/// The signature of head (`tenant`, `seq`, `hash`), hex.
pub(crate) fn sign(key: &[u8; 32], tenant: TenantId, seq: i64, hash: &str) -> String {
    hex::encode(mac(key, tenant, seq, hash).finalize().into_bytes())
}

/// Whether `sig` signs (`tenant`, `seq`, `hash`); compared in constant time.
pub(crate) fn check(
    key: &[u8; 32],
    tenant: TenantId,
    seq: i64,
    hash: &str,
    sig: Option<&str>,
) -> bool {
    let Some(raw) = sig.and_then(|s| hex::decode(s).ok()) else {
        return false;
    };
    mac(key, tenant, seq, hash).verify_slice(&raw).is_ok()
}

/// Loads (creating on first use) the head key sealed under the master key,
/// installs it in `db`, and signs pre-0017 heads once. Every process that
/// appends or verifies calls it at startup (server, CLI, tests).
pub async fn install_head_key(
    db: &Db,
    master: &MasterKey,
    clock: &dyn Clock,
) -> Result<(), ServerKeyError> {
    let key = server_keys::get_or_create(db, master, clock, HEAD_KEY_PURPOSE).await?;
    db.set_audit_head_key(key.clone());
    sign_legacy_heads(db, &key).await?;
    Ok(())
}

/// Signs the heads that predate migration 0017, once.
async fn sign_legacy_heads(db: &Db, key: &Zeroizing<[u8; 32]>) -> Result<(), ServerKeyError> {
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
        let head: Option<(i64, String)> = tx
            .fetch_optional(
                "SELECT seq, hash FROM audit_heads WHERE tenant_id = $1 AND sig IS NULL",
                vec![],
            )
            .await?;
        if let Some((seq, hash)) = head {
            tx.execute(
                "UPDATE audit_heads SET sig = $2 WHERE tenant_id = $1",
                vec![sign(key, tenant, seq, &hash).into()],
            )
            .await?;
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
        let sig = sign(&key, t, 5, "ab");
        assert!(check(&key, t, 5, "ab", Some(&sig)));
        assert!(!check(&key, t, 4, "ab", Some(&sig)));
        assert!(!check(&key, t, 5, "ac", Some(&sig)));
        assert!(!check(&key, TenantId::new(), 5, "ab", Some(&sig)));
        assert!(!check(&[8u8; 32], t, 5, "ab", Some(&sig)));
        assert!(!check(&key, t, 5, "ab", None));
        assert!(!check(&key, t, 5, "ab", Some("zz")));
    }
}
