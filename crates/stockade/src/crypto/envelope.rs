//! Envelope encryption per tenant (SPEC §2.9): the master key wraps each
//! tenant's keys; the tenant's keys encrypt its data. This file owns the
//! keys' life in the `tenant_keys` table — provisioning, loading, new
//! versions, shredding, re-wrapping, status — and binds a tenant's keys to
//! its id ([`TenantKeys`]). The format (ciphertext framing, associated data,
//! blind index) is a pure rule of `stockade_core::crypto::envelope`,
//! re-exported here; this file must not change it, and must never store or
//! log an unwrapped key.
//!
//! A tenant has
//! - one 256-bit **data key** per version: AES-256-GCM for documents. The highest live version encrypts; every live version
//!   decrypts, so a new version ([`new_data_key_version`]) never makes old
//!   ciphertexts unreadable;
//! - one 256-bit **index key**: HMAC-SHA256 blind indexes, so equality
//!   filters work without storing the plaintext.
//!
//! Keys come from the OS CSPRNG and are stored only wrapped: sealed under the
//! master key with associated data `stockade:tenant_key:<tenant>:<purpose>:<version>`
//! ([`wrap_aad`]), so a wrapped key copied to another tenant, purpose or
//! version fails to open and [`load`] reports [`EnvelopeError::Integrity`]
//! instead of using a wrong key.
//!
//! **Shredding marker.** Version 0 of purpose `data` is the tenant's key
//! *state row*, never a key: empty `wrapped_key`, `retired_at` NULL while the
//! keys live. [`destroy`] deletes every wrapped key and sets that row's
//! `retired_at`; from then on [`load`], [`provision`] and
//! [`new_data_key_version`] answer [`EnvelopeError::Shredded`] and never make
//! new keys. Every writer touches the state row first, so on PostgreSQL its
//! row lock orders a concurrent provisioning, new version and destruction (no
//! key can be inserted "behind" a destruction); SQLite has one writer.
//!
//! Tenants created before this table existed get their keys lazily, at the
//! first [`load`], in the caller's (read-write) transaction.
//!
//! For key rows, `retired_at` set means "no longer decrypts" (`stockade keys
//! retire`); such versions are not loaded. Each key row records the
//! master-key version that wrapped it; [`rewrap`] moves keys to the current
//! one (`stockade keys rotate`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::crypto::keys::MasterKey;
use crate::crypto::random;
use crate::crypto::seal::SealError;
use crate::db::{Db, DbError, TenantTx};
use crate::ids::TenantId;

pub use stockade_core::crypto::envelope::{
    Aad, DataKeys, Key, OVERHEAD, Purpose, VERSION_LEN, WRAP_AAD_PREFIX, wrap_aad,
};

/// The version of the state row (see the module documentation).
const STATE_VERSION: i64 = 0;

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// A ciphertext or a stored key does not authenticate: tampered, moved to
    /// another row or tenant, an unknown or retired key version, or a master
    /// key other than the one that wrapped the keys. Deliberately one error.
    #[error("integrity check failed")]
    Integrity,
    /// The tenant's keys were destroyed (crypto-shredding): its ciphertexts
    /// are permanently unreadable and no new keys are made.
    #[error("the tenant's keys were destroyed")]
    Shredded,
    /// [`provision`] on a tenant that already has keys.
    #[error("the tenant already has keys")]
    AlreadyProvisioned,
    #[error("the OS random number generator failed")]
    Random,
    #[error("encryption failed")]
    Encrypt,
}

/// One tenant's unwrapped keys, bound to the tenant: every ciphertext's
/// associated data names it. Wiped from memory on drop; `Debug` shows the
/// tenant and versions only.
pub struct TenantKeys {
    tenant: TenantId,
    keys: DataKeys,
}

impl std::fmt::Debug for TenantKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantKeys")
            .field("tenant", &self.tenant)
            .field("data_versions", &self.keys.data_versions())
            .field("current", &self.keys.current_version())
            .finish_non_exhaustive()
    }
}

impl TenantKeys {
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The data-key version new ciphertexts use.
    pub fn current_version(&self) -> u32 {
        self.keys.current_version()
    }

    /// Encrypts `plaintext` under the current data key, bound to this tenant
    /// and `aad`. A fresh random nonce each time: the same plaintext twice
    /// gives different ciphertexts.
    pub fn encrypt(&self, aad: &Aad<'_>, plaintext: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        self.keys
            .encrypt(&aad.bytes(self.tenant), plaintext)
            .map_err(seal_error)
    }

    /// Decrypts a value made by [`TenantKeys::encrypt`] for the same tenant
    /// and `aad`, with the key version its prefix names. Any failure is
    /// [`EnvelopeError::Integrity`] and returns no data.
    pub fn decrypt(
        &self,
        aad: &Aad<'_>,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        self.keys
            .decrypt(&aad.bytes(self.tenant), ciphertext)
            .ok_or(EnvelopeError::Integrity)
    }

    /// A keyed blind index of `value` in `field` of `collection`: equal
    /// inputs give equal outputs within this tenant; other tenants, fields
    /// or collections give unrelated ones.
    pub fn blind_index(&self, collection: &str, field: &str, value: &str) -> [u8; 32] {
        self.keys.blind_index(collection, field, value)
    }
}

/// Creates data key v1 and index key v1 for the transaction's tenant, with
/// its state row. Refuses a tenant that already has keys, or whose keys were
/// destroyed.
pub async fn provision(
    tx: &mut TenantTx,
    master: &MasterKey,
    clock: &dyn Clock,
) -> Result<TenantKeys, EnvelopeError> {
    match state(tx).await? {
        Some(State::Shredded) => return Err(EnvelopeError::Shredded),
        Some(State::Live) => return Err(EnvelopeError::AlreadyProvisioned),
        None => {}
    }
    let now = clock.now();
    let inserted = insert_state(tx, now, false).await.map_err(|e| match e {
        EnvelopeError::Db(DbError::Unique(_)) => EnvelopeError::AlreadyProvisioned,
        other => other,
    })?;
    if !inserted {
        return Err(EnvelopeError::AlreadyProvisioned);
    }
    insert_first_keys(tx, master, now).await
}

/// Loads the tenant's live keys. A tenant with no keys at all (created
/// before envelope encryption) gets them now, in this transaction, which
/// must then be read-write. Destroyed keys: [`EnvelopeError::Shredded`].
/// A stored key that does not open with `master`, or inconsistent rows:
/// [`EnvelopeError::Integrity`].
pub async fn load(
    tx: &mut TenantTx,
    master: &MasterKey,
    clock: &dyn Clock,
) -> Result<TenantKeys, EnvelopeError> {
    let mut rows = select_rows(tx).await?;
    if rows.is_empty() {
        let now = clock.now();
        // ON CONFLICT DO NOTHING: a concurrent first load (or destruction)
        // that got there first wins; this one waits for it, then reads.
        if insert_state(tx, now, true).await? {
            return insert_first_keys(tx, master, now).await;
        }
        rows = select_rows(tx).await?;
    }
    build(tx.tenant(), &rows, master)
}

/// Makes data key version n+1 the current one; older versions keep
/// decrypting. Returns the new version.
pub async fn new_data_key_version(
    tx: &mut TenantTx,
    master: &MasterKey,
    clock: &dyn Clock,
) -> Result<u32, EnvelopeError> {
    // Provisions a tenant without keys, refuses a shredded one, and checks
    // that the stored keys open with this master key before adding to them.
    load(tx, master, clock).await?;
    // Lock the state row: orders this against a concurrent new version or
    // destruction (which then waits, and deletes this key too).
    let locked = tx
        .execute(
            "UPDATE tenant_keys SET retired_at = NULL \
             WHERE tenant_id = $1 AND purpose = 'data' AND version = 0 AND retired_at IS NULL",
            vec![],
        )
        .await?;
    if locked == 0 {
        return Err(EnvelopeError::Shredded);
    }
    let (max,): (i64,) = tx
        .fetch_one(
            "SELECT MAX(version) FROM tenant_keys WHERE tenant_id = $1 AND purpose = 'data'",
            vec![],
        )
        .await?;
    let version = u32::try_from(max)
        .ok()
        .and_then(|v| v.checked_add(1))
        .ok_or(EnvelopeError::Integrity)?;
    let key = new_key()?;
    insert_key(tx, master, Purpose::Data, version, &key, clock.now()).await?;
    Ok(version)
}

/// Crypto-shredding: deletes every wrapped key of the tenant and marks it
/// shredded, in the caller's transaction. Idempotent (the first destruction
/// time is kept). After commit no copy of the database, old backups
/// included, holds a key that opens the tenant's ciphertexts, as long as
/// backups older than the destruction are encrypted or expire.
pub async fn destroy(tx: &mut TenantTx, clock: &dyn Clock) -> Result<(), EnvelopeError> {
    let now = clock.now();
    // The state row first: waits for a concurrent writer holding it, so the
    // DELETE below (a later statement) sees every key it committed.
    tx.execute(
        "INSERT INTO tenant_keys \
         (tenant_id, purpose, version, wrapped_key, master_version, created_at, retired_at) \
         VALUES ($1, 'data', 0, $2, 0, $3, $3) \
         ON CONFLICT (tenant_id, purpose, version) \
         DO UPDATE SET retired_at = COALESCE(tenant_keys.retired_at, excluded.retired_at)",
        vec![Vec::<u8>::new().into(), now.into()],
    )
    .await?;
    tx.execute(
        "DELETE FROM tenant_keys WHERE tenant_id = $1 AND version > 0",
        vec![],
    )
    .await?;
    Ok(())
}

/// Re-wraps every key of the transaction's tenant that is not wrapped by
/// the master key's current version (master-key rotation): unwraps it with
/// the version it names, wraps it again with the current one. The keys
/// themselves, and so every ciphertext, stay the same. Returns how many keys
/// it re-wrapped (0: all were current already).
pub async fn rewrap(tx: &mut TenantTx, master: &MasterKey) -> Result<u64, EnvelopeError> {
    let target = i64::from(master.current_version());
    let rows: Vec<Row> = tx
        .fetch_all(
            "SELECT purpose, version, wrapped_key, master_version, retired_at \
             FROM tenant_keys WHERE tenant_id = $1 AND version > 0 AND master_version <> $2 \
             ORDER BY purpose, version",
            vec![target.into()],
        )
        .await?;
    let mut done = 0;
    for row in rows {
        let purpose = Purpose::parse(&row.purpose).ok_or(EnvelopeError::Integrity)?;
        let version = u32::try_from(row.version).map_err(|_| EnvelopeError::Integrity)?;
        let old = u32::try_from(row.master_version).map_err(|_| EnvelopeError::Integrity)?;
        let key = unwrap_key(tx.tenant(), purpose, version, &row.wrapped_key, master, old)?;
        let aad = wrap_aad(tx.tenant(), purpose, version);
        let (wrapped, used) = master.seal(&aad, key.as_slice()).map_err(seal_error)?;
        done += tx
            .execute(
                "UPDATE tenant_keys SET wrapped_key = $2, master_version = $3 \
                 WHERE tenant_id = $1 AND purpose = $4 AND version = $5 AND master_version = $6",
                vec![
                    wrapped.into(),
                    i64::from(used).into(),
                    purpose.as_str().into(),
                    row.version.into(),
                    row.master_version.into(),
                ],
            )
            .await?;
    }
    Ok(done)
}

/// What `stockade keys status` shows about tenant keys: counts, never keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyStatus {
    /// (purpose, key version, master version) → number of tenants with that
    /// live key.
    pub keys: BTreeMap<(Purpose, u32, u32), usize>,
    /// Data-key version → number of tenants for which it is current.
    pub current_data: BTreeMap<u32, usize>,
    /// Tenants whose keys were destroyed.
    pub shredded: usize,
    /// Tenants with no keys yet (made at their first use).
    pub unprovisioned: usize,
}

/// Counts tenant keys by version, one tenant-scoped read each (row-level
/// security shows no transaction every tenant's keys). Opens no key.
pub async fn status(db: &Db) -> Result<KeyStatus, EnvelopeError> {
    let mut tx = db.global_read().await?;
    let tenants: Vec<(TenantId,)> = tx
        .fetch_all("SELECT id FROM tenants ORDER BY id", vec![])
        .await?;
    tx.commit().await?;
    let mut status = KeyStatus::default();
    for (tenant,) in tenants {
        let mut tx = db.tenant_read(tenant).await?;
        let rows = select_rows(&mut tx).await?;
        tx.commit().await?;
        if rows.is_empty() {
            status.unprovisioned += 1;
            continue;
        }
        if rows.iter().any(Row::is_shredded_state) {
            status.shredded += 1;
            continue;
        }
        let mut current = None;
        for row in rows
            .iter()
            .filter(|r| r.version > 0 && r.retired_at.is_none())
        {
            let (Some(purpose), Ok(version), Ok(master)) = (
                Purpose::parse(&row.purpose),
                u32::try_from(row.version),
                u32::try_from(row.master_version),
            ) else {
                continue;
            };
            *status.keys.entry((purpose, version, master)).or_default() += 1;
            if purpose == Purpose::Data {
                current = current.max(Some(version));
            }
        }
        if let Some(v) = current {
            *status.current_data.entry(v).or_default() += 1;
        }
    }
    Ok(status)
}

enum State {
    Live,
    Shredded,
}

#[derive(sqlx::FromRow)]
struct Row {
    purpose: String,
    version: i64,
    wrapped_key: Vec<u8>,
    master_version: i64,
    retired_at: Option<DateTime<Utc>>,
}

impl Row {
    fn is_state(&self) -> bool {
        self.purpose == Purpose::Data.as_str() && self.version == STATE_VERSION
    }

    fn is_shredded_state(&self) -> bool {
        self.is_state() && self.retired_at.is_some()
    }
}

async fn select_rows(tx: &mut TenantTx) -> Result<Vec<Row>, EnvelopeError> {
    Ok(tx
        .fetch_all(
            "SELECT purpose, version, wrapped_key, master_version, retired_at \
             FROM tenant_keys WHERE tenant_id = $1 ORDER BY purpose, version",
            vec![],
        )
        .await?)
}

async fn state(tx: &mut TenantTx) -> Result<Option<State>, EnvelopeError> {
    let row: Option<(Option<DateTime<Utc>>,)> = tx
        .fetch_optional(
            "SELECT retired_at FROM tenant_keys \
             WHERE tenant_id = $1 AND purpose = 'data' AND version = 0",
            vec![],
        )
        .await?;
    Ok(row.map(|(retired_at,)| match retired_at {
        None => State::Live,
        Some(_) => State::Shredded,
    }))
}

/// Inserts the live state row; false when one already exists and
/// `if_absent` asked not to fail on that.
async fn insert_state(
    tx: &mut TenantTx,
    now: DateTime<Utc>,
    if_absent: bool,
) -> Result<bool, EnvelopeError> {
    let sql = if if_absent {
        "INSERT INTO tenant_keys \
         (tenant_id, purpose, version, wrapped_key, master_version, created_at, retired_at) \
         VALUES ($1, 'data', 0, $2, 0, $3, NULL) \
         ON CONFLICT (tenant_id, purpose, version) DO NOTHING"
    } else {
        "INSERT INTO tenant_keys \
         (tenant_id, purpose, version, wrapped_key, master_version, created_at, retired_at) \
         VALUES ($1, 'data', 0, $2, 0, $3, NULL)"
    };
    let n = tx
        .execute(sql, vec![Vec::<u8>::new().into(), now.into()])
        .await?;
    Ok(n == 1)
}

async fn insert_first_keys(
    tx: &mut TenantTx,
    master: &MasterKey,
    now: DateTime<Utc>,
) -> Result<TenantKeys, EnvelopeError> {
    let data = new_key()?;
    let index = new_key()?;
    insert_key(tx, master, Purpose::Data, 1, &data, now).await?;
    insert_key(tx, master, Purpose::Index, 1, &index, now).await?;
    let keys = DataKeys::new(BTreeMap::from([(1, data)]), index).ok_or(EnvelopeError::Integrity)?;
    Ok(TenantKeys {
        tenant: tx.tenant(),
        keys,
    })
}

fn seal_error(e: SealError) -> EnvelopeError {
    match e {
        SealError::Random => EnvelopeError::Random,
        _ => EnvelopeError::Encrypt,
    }
}

fn new_key() -> Result<Key, EnvelopeError> {
    random::secret_bytes::<32>().map_err(|_| EnvelopeError::Random)
}

async fn insert_key(
    tx: &mut TenantTx,
    master: &MasterKey,
    purpose: Purpose,
    version: u32,
    key: &Key,
    now: DateTime<Utc>,
) -> Result<(), EnvelopeError> {
    let aad = wrap_aad(tx.tenant(), purpose, version);
    let (wrapped, master_version) = master.seal(&aad, key.as_slice()).map_err(seal_error)?;
    tx.execute(
        "INSERT INTO tenant_keys \
         (tenant_id, purpose, version, wrapped_key, master_version, created_at, retired_at) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        vec![
            purpose.as_str().into(),
            i64::from(version).into(),
            wrapped.into(),
            i64::from(master_version).into(),
            now.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Unwraps the live keys. Fails closed: a shredded tenant, a missing state
/// row, no data or index key, or any key that does not open.
fn build(tenant: TenantId, rows: &[Row], master: &MasterKey) -> Result<TenantKeys, EnvelopeError> {
    let state = rows
        .iter()
        .find(|r| r.is_state())
        .ok_or(EnvelopeError::Integrity)?;
    if state.retired_at.is_some() {
        return Err(EnvelopeError::Shredded);
    }
    let mut data = BTreeMap::new();
    let mut index: Option<(u32, Key)> = None;
    for row in rows
        .iter()
        .filter(|r| !r.is_state() && r.retired_at.is_none())
    {
        let purpose = Purpose::parse(&row.purpose).ok_or(EnvelopeError::Integrity)?;
        let version = u32::try_from(row.version).map_err(|_| EnvelopeError::Integrity)?;
        let master_version =
            u32::try_from(row.master_version).map_err(|_| EnvelopeError::Integrity)?;
        let key = unwrap_key(
            tenant,
            purpose,
            version,
            &row.wrapped_key,
            master,
            master_version,
        )?;
        match purpose {
            Purpose::Data => {
                data.insert(version, key);
            }
            Purpose::Index => {
                if index.as_ref().is_none_or(|(v, _)| *v < version) {
                    index = Some((version, key));
                }
            }
        }
    }
    let (_, index) = index.ok_or(EnvelopeError::Integrity)?;
    let keys = DataKeys::new(data, index).ok_or(EnvelopeError::Integrity)?;
    Ok(TenantKeys { tenant, keys })
}

fn unwrap_key(
    tenant: TenantId,
    purpose: Purpose,
    version: u32,
    wrapped: &[u8],
    master: &MasterKey,
    master_version: u32,
) -> Result<Key, EnvelopeError> {
    let opened = master
        .open(master_version, &wrap_aad(tenant, purpose, version), wrapped)
        .map_err(|_| EnvelopeError::Integrity)?;
    let key: [u8; 32] = opened
        .as_slice()
        .try_into()
        .map_err(|_| EnvelopeError::Integrity)?;
    Ok(Zeroizing::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(tenant: TenantId, data: &[(u32, u8)], index: u8) -> TenantKeys {
        let data: BTreeMap<u32, Key> = data
            .iter()
            .map(|&(v, b)| (v, Zeroizing::new([b; 32])))
            .collect();
        TenantKeys {
            tenant,
            keys: DataKeys::new(data, Zeroizing::new([index; 32])).unwrap(),
        }
    }

    const AAD: Aad<'static> = Aad {
        table: "records",
        column: "data",
        row: "row-1",
    };

    #[test]
    fn every_tampered_or_truncated_ciphertext_is_an_integrity_error() {
        let k = keys(TenantId::new(), &[(1, 1), (2, 2)], 9);
        let ct = k.encrypt(&AAD, b"secret").unwrap();
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 1;
            assert!(matches!(
                k.decrypt(&AAD, &bad),
                Err(EnvelopeError::Integrity)
            ));
        }
        for len in 0..ct.len() {
            assert!(matches!(
                k.decrypt(&AAD, &ct[..len]),
                Err(EnvelopeError::Integrity)
            ));
        }
        // The prefix naming the other (existing) version: wrong key.
        let mut other = ct.clone();
        other[..4].copy_from_slice(&1u32.to_be_bytes());
        assert!(matches!(
            k.decrypt(&AAD, &other),
            Err(EnvelopeError::Integrity)
        ));
        // Another tenant's keys of the same bytes: bound to the tenant.
        let elsewhere = keys(TenantId::new(), &[(1, 1), (2, 2)], 9);
        assert!(matches!(
            elsewhere.decrypt(&AAD, &ct),
            Err(EnvelopeError::Integrity)
        ));
    }

    #[test]
    fn debug_shows_no_key_bytes() {
        let k = keys(TenantId::PLATFORM, &[(1, 0xAB)], 0xCD);
        let s = format!("{k:?}");
        assert!(s.contains("current: 1"), "{s}");
        for secret in ["171", "205", "ab", "AB", "cd", "CD"] {
            assert!(!s.contains(secret), "{s}");
        }
    }
}
