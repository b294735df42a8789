//! Tenant data-key rotation and retirement (`stockade keys rotate --tenant`,
//! `keys retire --tenant`): moving a tenant's records to its newest data key,
//! what each version still protects, and refusing to retire one in use. The
//! master key's side is `rotation.rs`.

use super::*;

/// What [`rotate_tenant_data`] did for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRotation {
    /// The data-key version the tenant's records are (being) moved to.
    pub version: u32,
    /// False when it resumed an interrupted rotation.
    pub added: bool,
    /// Records re-encrypted by this run.
    pub reencrypted: u64,
    /// Records still under an older version (only when `max_batches` stopped it).
    pub remaining: u64,
}

/// Records of the transaction's tenant under a data-key version below `current`.
async fn stale_records(tx: &mut crate::db::TenantTx, current: u32) -> Result<u64, RotationError> {
    Ok(cipher::key_version_counts(tx)
        .await?
        .into_iter()
        .filter(|(v, _)| *v < current)
        .map(|(_, n)| n)
        .sum())
}

/// `stockade keys rotate --tenant-data` for one tenant: see the module
/// documentation. `progress(done, total)` follows the re-encryption;
/// `max_batches` stops early (tests simulate a crash with it).
pub async fn rotate_tenant_data(
    db: &Db,
    master: &MasterKey,
    clock: &dyn Clock,
    tenant: TenantId,
    max_batches: Option<u64>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<DataRotation, RotationError> {
    let mut tx = db.tenant_tx(tenant).await?;
    let keys = envelope::load(&mut tx, master, clock).await?;
    let mut version = keys.current_version();
    let mut total = stale_records(&mut tx, version).await?;
    let added = total == 0;
    if added {
        version = envelope::new_data_key_version(&mut tx, master, clock).await?;
        total = stale_records(&mut tx, version).await?;
    }
    tx.commit().await?;
    progress(0, total);
    let (mut done, mut batches, mut idle) = (0, 0, 0);
    loop {
        if max_batches.is_some_and(|max| batches >= max) {
            let mut tx = db.tenant_read(tenant).await?;
            let remaining = stale_records(&mut tx, version).await?;
            tx.commit().await?;
            return Ok(DataRotation {
                version,
                added,
                reencrypted: done,
                remaining,
            });
        }
        let mut tx = db.tenant_tx(tenant).await?;
        let keys = envelope::load(&mut tx, master, clock).await?;
        let n = cipher::reencrypt_batch(&mut tx, &keys, BATCH).await?;
        let remaining = stale_records(&mut tx, keys.current_version()).await?;
        // The last batch records the finished rotation, in the tenant's
        // chain and the platform's.
        let tx = if remaining == 0 {
            let event = NewEvent::new(Actor::System, "crypto.data_key.rotated")
                .target(Target::new("tenant", tenant))
                .details(json!({
                    "tenant_id": tenant,
                    "version": keys.current_version(),
                    "added": added,
                    "reencrypted": done + n,
                }));
            audit_tenant_and_platform(tx, clock, event).await?
        } else {
            tx
        };
        tx.commit().await?;
        batches += 1;
        done += n;
        progress(done, total.max(done));
        if remaining == 0 {
            return Ok(DataRotation {
                version: keys.current_version(),
                added,
                reencrypted: done,
                remaining: 0,
            });
        }
        // Rows changed concurrently are skipped by a batch and retried by the
        // next; a batch that can make no progress three times is a failure.
        idle = if n == 0 { idle + 1 } else { 0 };
        if idle >= 3 {
            return Err(RotationError::Refused(format!(
                "{remaining} records could not be re-encrypted (changed concurrently): run it again"
            )));
        }
    }
}

/// One tenant's data-key versions: (version, retired, records using it).
pub type DataKeyUsage = Vec<(u32, bool, u64)>;

/// The data-key versions of a tenant with how many records each protects;
/// `None` for a tenant whose keys were destroyed or never created.
pub async fn data_key_usage(
    db: &Db,
    tenant: TenantId,
) -> Result<Option<DataKeyUsage>, RotationError> {
    let mut tx = db.tenant_read(tenant).await?;
    let usage = usage_in(&mut tx).await?;
    tx.commit().await?;
    Ok((!usage.is_empty()).then_some(usage))
}

/// The transaction tenant's data-key versions with their record counts.
async fn usage_in(tx: &mut crate::db::TenantTx) -> Result<DataKeyUsage, RotationError> {
    let keys: Vec<(i64, bool)> = tx
        .fetch_all(
            "SELECT version, retired_at IS NOT NULL FROM tenant_keys \
             WHERE tenant_id = $1 AND purpose = 'data' AND version > 0 ORDER BY version",
            vec![],
        )
        .await?;
    let counts: BTreeMap<u32, u64> = cipher::key_version_counts(tx).await?.into_iter().collect();
    Ok(keys
        .into_iter()
        .map(|(v, retired)| {
            let v = to_u32(v);
            (v, retired, counts.get(&v).copied().unwrap_or(0))
        })
        .collect())
}

/// Why a data-key version of a tenant cannot be retired now, if it cannot.
pub fn retire_refusal(usage: &DataKeyUsage, version: u32) -> Option<String> {
    let current = usage
        .iter()
        .filter(|(_, retired, _)| !retired)
        .map(|(v, ..)| *v)
        .max();
    match usage.iter().find(|(v, ..)| *v == version) {
        None => Some(format!("has no data key v{version}")),
        Some((_, true, _)) => None,
        Some(_) if current == Some(version) => Some(format!(
            "uses data key v{version} as its current key: run `stockade keys rotate --tenant-data` first"
        )),
        Some((_, _, n)) if *n > 0 => Some(format!(
            "still has {n} records under data key v{version}: run `stockade keys rotate --tenant-data` first"
        )),
        Some(_) => None,
    }
}

/// `stockade keys retire VERSION` for one tenant: after re-checking, in the
/// same transaction, that no record uses the version and that it is not the
/// current one, sets its `retired_at` (it no longer decrypts). Returns false
/// when it was retired already.
pub async fn retire_data_version(
    db: &Db,
    clock: &dyn Clock,
    tenant: TenantId,
    version: u32,
) -> Result<bool, RotationError> {
    let mut tx = db.tenant_tx(tenant).await?;
    // The state row first: orders this against a new version or destruction.
    let live = tx
        .execute(
            "UPDATE tenant_keys SET retired_at = NULL \
             WHERE tenant_id = $1 AND purpose = 'data' AND version = 0 AND retired_at IS NULL",
            vec![],
        )
        .await?;
    if live == 0 {
        return Err(RotationError::Refused(
            "the tenant's keys were destroyed or never created".to_owned(),
        ));
    }
    let usage = usage_in(&mut tx).await?;
    if let Some(why) = retire_refusal(&usage, version) {
        return Err(RotationError::Refused(why));
    }
    let n = tx
        .execute(
            "UPDATE tenant_keys SET retired_at = $2 \
             WHERE tenant_id = $1 AND purpose = 'data' AND version = $3 AND retired_at IS NULL",
            vec![clock.now().into(), i64::from(version).into()],
        )
        .await?;
    let tx = if n == 1 {
        let tenant = tx.tenant();
        let event = NewEvent::new(Actor::System, "crypto.data_key.retired")
            .target(Target::new("tenant", tenant))
            .details(json!({ "tenant_id": tenant, "version": version }));
        audit_tenant_and_platform(tx, clock, event).await?
    } else {
        tx
    };
    tx.commit().await?;
    Ok(n == 1)
}
