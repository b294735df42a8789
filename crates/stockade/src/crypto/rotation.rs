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

mod data;
pub use data::*;
