//! Key rotation and retirement (SPEC §2.9): what `stockade keys rotate` and
//! `stockade keys retire` do. See `docs/keys.md` for the procedures.
//!
//! **Master key.** [`rotate_master`] adds a version to the key file, then
//! re-wraps every item sealed under the master key — tenant keys, signing
//! keys, server keys, queued email, audit webhook secrets — under that version, in short
//! transactions; no record is rewritten. It is resumable: when items are
//! still under an older version than the newest in the file, it finishes
//! moving them to the newest instead of adding yet another version.
//! [`retire_master`] removes a version from the file, refusing while any item
//! still names it.
//!
//! **Tenant data keys.** [`rotate_tenant_data`] makes a new data-key version
//! for a tenant and re-encrypts its records in batches
//! (`records::cipher::reencrypt_batch`), one short transaction each, so the
//! API keeps serving; re-run after a crash, it resumes with the current
//! version. [`retire_data_version`] marks a version retired (it no longer
//! decrypts), refusing while any record still uses it.

use std::collections::BTreeMap;

use serde_json::json;

use crate::audit::{self, Actor, NewEvent, Target};
use crate::clock::Clock;
use crate::crypto::envelope::{self, EnvelopeError};
use crate::crypto::keys::MasterKey;
use crate::crypto::{keyring, master, server_keys};
use crate::db::{Db, DbError, GlobalTx, TenantTx, Value};
use crate::ids::TenantId;
use crate::records::cipher;

/// Rows per transaction when re-wrapping or re-encrypting.
pub const BATCH: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The operation is not safe now; the message says what to do first.
    #[error("{0}")]
    Refused(String),
    #[error("{0} cannot be opened with the master key version it names")]
    Unseal(String),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
    #[error("cannot audit the key operation: {0}")]
    Audit(#[from] audit::AuditError),
}

/// Items sealed under one master-key version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wrapped {
    pub tenant_keys: u64,
    pub signing_keys: u64,
    pub server_keys: u64,
    pub outbox: u64,
    /// Tenants' audit webhook signing secrets (`audit::webhook`).
    pub webhook_secrets: u64,
    /// Users' TOTP secrets (`mfa::totp`).
    pub totp_secrets: u64,
}

impl Wrapped {
    pub fn total(&self) -> u64 {
        self.tenant_keys
            + self.signing_keys
            + self.server_keys
            + self.outbox
            + self.webhook_secrets
            + self.totp_secrets
    }
}

impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} tenant keys, {} signing keys, {} server keys, {} queued emails, {} webhook secrets, \
             {} TOTP secrets",
            self.tenant_keys,
            self.signing_keys,
            self.server_keys,
            self.outbox,
            self.webhook_secrets,
            self.totp_secrets
        )
    }
}

/// A table of items sealed under the master key, outside any tenant.
struct GlobalSealed {
    table: &'static str,
    key: &'static str,
    sealed: &'static str,
    /// Names one item in messages and gives its associated data.
    aad: fn(&str) -> Vec<u8>,
    field: fn(&mut Wrapped) -> &mut u64,
}

fn outbox_aad(id: &str) -> Vec<u8> {
    uuid::Uuid::parse_str(id).map_or_else(|_| Vec::new(), crate::email::outbox_aad)
}

fn totp_aad(user: &str) -> Vec<u8> {
    uuid::Uuid::parse_str(user).map_or_else(
        |_| Vec::new(),
        |u| crate::mfa::totp::aad(crate::ids::UserId(u)),
    )
}

const GLOBAL: [GlobalSealed; 4] = [
    GlobalSealed {
        table: "signing_keys",
        key: "kid",
        sealed: "sealed_secret",
        aad: keyring::secret_aad,
        field: |w| &mut w.signing_keys,
    },
    GlobalSealed {
        table: "server_keys",
        key: "purpose",
        sealed: "sealed",
        aad: server_keys::aad,
        field: |w| &mut w.server_keys,
    },
    GlobalSealed {
        table: "email_outbox",
        key: "id",
        sealed: "sealed_body",
        aad: outbox_aad,
        field: |w| &mut w.outbox,
    },
    GlobalSealed {
        table: "mfa_totp",
        key: "user_id",
        sealed: "sealed_secret",
        aad: totp_aad,
        field: |w| &mut w.totp_secrets,
    },
];

/// Every tenant id with its slug.
pub async fn tenants(db: &Db) -> Result<Vec<(TenantId, String)>, DbError> {
    let mut tx = db.global_read().await?;
    let rows = tx
        .fetch_all("SELECT id, slug FROM tenants ORDER BY slug", vec![])
        .await?;
    tx.commit().await?;
    Ok(rows)
}

/// How many items each master-key version wraps. Opens nothing.
pub async fn master_usage(db: &Db) -> Result<BTreeMap<u32, Wrapped>, RotationError> {
    let mut usage: BTreeMap<u32, Wrapped> = BTreeMap::new();
    let mut tx = db.global_read().await?;
    for t in &GLOBAL {
        let rows: Vec<(i64, i64)> = tx
            .fetch_all(
                &format!(
                    "SELECT master_version, COUNT(*) FROM {} GROUP BY master_version",
                    t.table
                ),
                vec![],
            )
            .await?;
        for (version, n) in rows {
            let entry = usage.entry(to_u32(version)).or_default();
            *(t.field)(entry) += to_u64(n);
        }
    }
    tx.commit().await?;
    for (tenant, _) in tenants(db).await? {
        let mut tx = db.tenant_read(tenant).await?;
        let rows: Vec<(i64, i64)> = tx
            .fetch_all(
                "SELECT master_version, COUNT(*) FROM tenant_keys \
                 WHERE tenant_id = $1 AND version > 0 GROUP BY master_version",
                vec![],
            )
            .await?;
        let webhooks = crate::audit::webhook::master_versions(&mut tx).await?;
        tx.commit().await?;
        for (version, n) in rows {
            usage.entry(to_u32(version)).or_default().tenant_keys += to_u64(n);
        }
        for (version, n) in webhooks {
            usage.entry(to_u32(version)).or_default().webhook_secrets += to_u64(n);
        }
    }
    Ok(usage)
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// What [`rotate_master`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterRotation {
    /// The master-key version everything is now wrapped by.
    pub version: u32,
    /// False when it finished an interrupted rotation instead of adding a
    /// version.
    pub added: bool,
    pub rewrapped: Wrapped,
}

/// `stockade keys rotate`: see the module documentation. `master` must come
/// from a file.
pub async fn rotate_master(
    db: &Db,
    master: &MasterKey,
    clock: &dyn Clock,
) -> Result<MasterRotation, RotationError> {
    let path = master
        .file()
        .map(std::path::Path::to_path_buf)
        .ok_or_else(|| {
            RotationError::Refused(
                "master-key rotation needs the key in a file: set STOCKADE_MASTER_KEY_FILE \
             (not STOCKADE_MASTER_KEY)"
                    .to_owned(),
            )
        })?;
    master.refresh_if_changed();
    let newest = master.current_version();
    let behind = master_usage(db).await?.keys().any(|&v| v < newest);
    let added = !behind;
    if added {
        master::append_version(&path)?;
        master.refresh_if_changed();
    }
    let version = master.current_version();
    let mut rewrapped = Wrapped::default();
    for t in &GLOBAL {
        *(t.field)(&mut rewrapped) += rewrap_global(db, master, t).await?;
    }
    for (tenant, _) in tenants(db).await? {
        let mut tx = db.tenant_tx(tenant).await?;
        rewrapped.tenant_keys += envelope::rewrap(&mut tx, master).await?;
        rewrapped.webhook_secrets += crate::audit::webhook::rewrap(&mut tx, master)
            .await
            .map_err(|e| match e {
                crate::audit::webhook::WebhookError::Db(d) => RotationError::Db(d),
                _ => RotationError::Unseal(format!("the audit webhook secret of tenant {tenant}")),
            })?;
        tx.commit().await?;
    }
    audit_platform(
        db,
        clock,
        NewEvent::new(Actor::System, "crypto.master_key.rotated").details(json!({
            "version": version,
            "added": added,
            "rewrapped": {
                "tenant_keys": rewrapped.tenant_keys,
                "signing_keys": rewrapped.signing_keys,
                "server_keys": rewrapped.server_keys,
                "outbox": rewrapped.outbox,
                "totp_secrets": rewrapped.totp_secrets,
            },
        })),
    )
    .await?;
    Ok(MasterRotation {
        version,
        added,
        rewrapped,
    })
}

/// Re-wraps one global table's items under the current master version, a
/// batch per transaction.
async fn rewrap_global(
    db: &Db,
    master: &MasterKey,
    t: &GlobalSealed,
) -> Result<u64, RotationError> {
    let target = i64::from(master.current_version());
    let select = format!(
        "SELECT {key}, {sealed}, master_version FROM {table} \
         WHERE master_version <> $1 ORDER BY {key} LIMIT $2",
        key = t.key,
        sealed = t.sealed,
        table = t.table
    );
    let update = format!(
        "UPDATE {table} SET {sealed} = $1, master_version = $2 \
         WHERE {key} = $3 AND master_version = $4",
        key = t.key,
        sealed = t.sealed,
        table = t.table
    );
    let mut done = 0;
    loop {
        let mut tx = db.global_tx().await?;
        let n = if matches!(t.table, "email_outbox" | "mfa_totp") {
            let rows: Vec<(uuid::Uuid, Vec<u8>, i64)> = tx
                .fetch_all(&select, vec![target.into(), BATCH.into()])
                .await?;
            let rows = rows
                .into_iter()
                .map(|(id, s, v)| (id.to_string(), id.into(), s, v));
            rewrap_rows(&mut tx, master, t, &update, rows).await?
        } else {
            let rows: Vec<(String, Vec<u8>, i64)> = tx
                .fetch_all(&select, vec![target.into(), BATCH.into()])
                .await?;
            let rows = rows
                .into_iter()
                .map(|(k, s, v)| (k.clone(), k.into(), s, v));
            rewrap_rows(&mut tx, master, t, &update, rows).await?
        };
        tx.commit().await?;
        done += n;
        if n == 0 {
            return Ok(done);
        }
    }
}

async fn rewrap_rows(
    tx: &mut GlobalTx,
    master: &MasterKey,
    t: &GlobalSealed,
    update: &str,
    rows: impl Iterator<Item = (String, Value, Vec<u8>, i64)>,
) -> Result<u64, RotationError> {
    let mut done = 0;
    for (name, key, sealed, old) in rows {
        let aad = (t.aad)(&name);
        let what = || RotationError::Unseal(format!("{} {name}", t.table));
        let version = u32::try_from(old).map_err(|_| what())?;
        let plain = master.open(version, &aad, &sealed).map_err(|_| what())?;
        let (resealed, used) = master
            .seal(&aad, &plain)
            .map_err(|e| RotationError::Other(anyhow::anyhow!("cannot seal: {e}")))?;
        done += tx
            .execute(
                update,
                vec![resealed.into(), i64::from(used).into(), key, old.into()],
            )
            .await?;
    }
    Ok(done)
}

/// `stockade keys retire --master VERSION`: removes the version from the
/// key file; refuses while any item is wrapped by it.
pub async fn retire_master(
    db: &Db,
    master: &MasterKey,
    clock: &dyn Clock,
    version: u32,
) -> Result<(), RotationError> {
    let path = master
        .file()
        .map(std::path::Path::to_path_buf)
        .ok_or_else(|| {
            RotationError::Refused(
                "retiring a master-key version needs the key in a file (STOCKADE_MASTER_KEY_FILE)"
                    .to_owned(),
            )
        })?;
    if master.current_version() == version {
        return Err(RotationError::Refused(format!(
            "master v{version} is the current version (it wraps new items): \
             run `stockade keys rotate` first"
        )));
    }
    let usage = master_usage(db).await?;
    if let Some(w) = usage.get(&version).filter(|w| w.total() > 0) {
        return Err(RotationError::Refused(format!(
            "master v{version} still wraps {w}: run `stockade keys rotate` first"
        )));
    }
    master::remove_version(&path, version)?;
    master.refresh_if_changed();
    audit_platform(
        db,
        clock,
        NewEvent::new(Actor::System, "crypto.master_key.retired")
            .details(json!({ "version": version })),
    )
    .await
}

/// Appends a key operation to the platform chain, in a transaction of its
/// own (the operation changed the key file or committed in batches).
async fn audit_platform(db: &Db, clock: &dyn Clock, event: NewEvent) -> Result<(), RotationError> {
    let mut tx = db.tenant_tx(TenantId::PLATFORM).await?;
    audit::append(&mut tx, clock, event).await?;
    tx.commit().await?;
    Ok(())
}

/// Appends `event` to the transaction's tenant chain, then, continuing the
/// same transaction, to the platform chain; the caller commits.
async fn audit_tenant_and_platform(
    mut tx: TenantTx,
    clock: &dyn Clock,
    event: NewEvent,
) -> Result<TenantTx, RotationError> {
    audit::append(&mut tx, clock, event.clone()).await?;
    let mut tx = tx.rescope(TenantId::PLATFORM).await?;
    audit::append(&mut tx, clock, event).await?;
    Ok(tx)
}

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
