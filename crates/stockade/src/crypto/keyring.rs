//! Signing keys at rest, and rotation with overlap.
//!
//! Every signing key lives in the global table `signing_keys`, its secret half
//! (Ed25519 PKCS#8 DER, or the HS256 secret) sealed under the master key with
//! the kid as associated data, so a row cannot be moved to another kid and the
//! database alone never reveals a private key. The current key is the one row
//! with `retired_at IS NULL` (a partial unique index allows only one).
//!
//! With no rotation the behaviour is simply "use the configured key": [`load`]
//! imports it the first time. An operator who replaces the configured key
//! (a kid never stored before), or switches between EdDSA and HS256, makes it
//! current again and retires the others. After [`rotate`] the generated key
//! stays current across restarts even though the configured file still holds
//! the old one, because that kid is already stored.
//!
//! Retired keys keep verifying for [`RETIRED_KEY_GRACE`] (15 minutes, the
//! access-token lifetime) and then are no longer loaded at all.

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use zeroize::Zeroizing;

use crate::audit::{Actor, NewEvent, Target};
use crate::clock::Clock;
use crate::crypto::jwt::{KeyEntry, KeySecret, Keyring, RETIRED_KEY_GRACE, SigningAlg, TokenError};
use crate::crypto::keys::MasterKey;
use crate::crypto::keys::{Keys, SigningMaterial, kid_for};
use crate::crypto::random;
use crate::crypto::seal::SealError;
use crate::db::{Db, DbError, GlobalTx};

/// Prefix of the associated data a key's secret is sealed with (then the kid).
pub const AAD_PREFIX: &[u8] = b"stockade:signing_key:";

/// Attempts when another instance changes the table at the same moment.
const ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("signing key {kid} cannot be opened with the configured master key")]
    Unseal { kid: String },
    #[error("stored signing key {kid} is invalid: {reason}")]
    Corrupt { kid: String, reason: &'static str },
    #[error("no current signing key is stored")]
    NoCurrentKey,
    #[error("the OS random number generator failed")]
    Random,
    #[error("cannot seal the signing key: {0}")]
    Seal(SealError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("cannot audit the rotation: {0}")]
    Audit(#[from] crate::audit::AuditError),
}

/// What an operator may see about a stored key (no secret material).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: String,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
}

impl KeyInfo {
    pub fn is_current(&self) -> bool {
        self.retired_at.is_none()
    }
}

/// The associated data sealing the secret of key `kid`.
pub fn secret_aad(kid: &str) -> Vec<u8> {
    [AAD_PREFIX, kid.as_bytes()].concat()
}

/// Builds the keyring from the table: the current key signs, keys retired
/// less than [`RETIRED_KEY_GRACE`] ago still verify. Imports the configured
/// key first if it has never been stored (see the module documentation).
pub async fn load(db: &Db, keys: &Keys, clock: &dyn Clock) -> Result<Keyring, KeyringError> {
    let rows = retry(|| async {
        let now = clock.now();
        let mut tx = db.global_tx().await?;
        reconcile(&mut tx, keys, now).await?;
        let rows = select_rows(&mut tx).await?;
        tx.commit().await?;
        Ok(rows)
    })
    .await?;
    build(&rows, &keys.master, clock.now())
}

/// Generates a key of the configured algorithm, stores it sealed as the
/// current key and retires the previous one, in one transaction. Returns the
/// new kid. Running instances pick it up on their next [`load`].
pub async fn rotate(db: &Db, keys: &Keys, clock: &dyn Clock) -> Result<String, KeyringError> {
    let alg = configured_alg(&keys.signing);
    retry(|| async {
        let now = clock.now();
        let mut tx = db.global_tx().await?;
        // Import the configured key first, so that a rotation before the
        // first start is not undone by that start.
        reconcile(&mut tx, keys, now).await?;
        let new = generate(alg)?;
        let retired: Vec<(String,)> = tx
            .fetch_all(
                "SELECT kid FROM signing_keys WHERE retired_at IS NULL ORDER BY kid",
                vec![],
            )
            .await?;
        retire_current(&mut tx, now).await?;
        insert(&mut tx, &keys.master, &new, now).await?;
        // Recorded in the platform chain in the same transaction: key ids
        // and algorithm only, never key material.
        let mut tx = tx.scoped(crate::ids::TenantId::PLATFORM).await?;
        let event = NewEvent::new(Actor::System, "crypto.signing_key.rotated")
            .target(Target::new("signing_key", &new.kid))
            .details(serde_json::json!({
                "kid": new.kid,
                "alg": new.alg.as_str(),
                "retired_kids": retired.into_iter().map(|(k,)| k).collect::<Vec<_>>(),
            }));
        crate::audit::append(&mut tx, clock, event).await?;
        tx.commit().await?;
        Ok(new.kid)
    })
    .await
}

/// Every stored key, newest first.
pub async fn list(db: &Db) -> Result<Vec<KeyInfo>, KeyringError> {
    let mut tx = db.global_read().await?;
    let keys = tx
        .fetch_all(
            "SELECT kid, alg, created_at, retired_at FROM signing_keys \
             ORDER BY created_at DESC, kid",
            vec![],
        )
        .await?;
    tx.commit().await?;
    Ok(keys)
}

/// Runs `op` again when it lost a race with another instance (a unique
/// constraint on the kid or on the single current key).
async fn retry<T, F, Fut>(mut op: F) -> Result<T, KeyringError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, KeyringError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(KeyringError::Db(DbError::Unique(_))) if attempt < ATTEMPTS => attempt += 1,
            other => return other,
        }
    }
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    kid: String,
    alg: String,
    sealed_secret: Vec<u8>,
    master_version: i64,
    public_key: Option<Vec<u8>>,
    retired_at: Option<DateTime<Utc>>,
}

/// A key about to be stored. The secret is wiped on drop.
struct NewKey {
    kid: String,
    alg: SigningAlg,
    /// Ed25519: the PKCS#8 DER document; HS256: the secret.
    secret: Zeroizing<Vec<u8>>,
    /// Ed25519: the raw 32-byte public key.
    public_key: Option<Vec<u8>>,
}

fn configured_alg(material: &SigningMaterial) -> SigningAlg {
    match material {
        SigningMaterial::Ed25519 { .. } => SigningAlg::EdDsa,
        SigningMaterial::Hs256 { .. } => SigningAlg::Hs256,
    }
}

fn ed25519_new_key(key: &SigningKey, kid: String) -> Result<NewKey, KeyringError> {
    let der = key.to_pkcs8_der().map_err(|_| KeyringError::Corrupt {
        kid: kid.clone(),
        reason: "the Ed25519 key cannot be encoded as PKCS#8",
    })?;
    Ok(NewKey {
        kid,
        alg: SigningAlg::EdDsa,
        secret: Zeroizing::new(der.as_bytes().to_vec()),
        public_key: Some(key.verifying_key().to_bytes().to_vec()),
    })
}

fn configured_new_key(material: &SigningMaterial) -> Result<NewKey, KeyringError> {
    match material {
        SigningMaterial::Ed25519 { key, kid } => ed25519_new_key(key, kid.clone()),
        SigningMaterial::Hs256 { secret, kid } => Ok(NewKey {
            kid: kid.clone(),
            alg: SigningAlg::Hs256,
            secret: Zeroizing::new(secret.to_vec()),
            public_key: None,
        }),
    }
}

/// A fresh key from the OS CSPRNG: an Ed25519 seed of 32 bytes, or a 512-bit
/// HS256 secret.
fn generate(alg: SigningAlg) -> Result<NewKey, KeyringError> {
    match alg {
        SigningAlg::EdDsa => {
            let seed = random::secret_bytes::<32>().map_err(|_| KeyringError::Random)?;
            let key = SigningKey::from_bytes(&seed);
            ed25519_new_key(&key, kid_for(key.verifying_key().as_bytes()))
        }
        SigningAlg::Hs256 => {
            let secret = random::secret_bytes::<64>().map_err(|_| KeyringError::Random)?;
            Ok(NewKey {
                kid: kid_for(secret.as_slice()),
                alg: SigningAlg::Hs256,
                secret: Zeroizing::new(secret.to_vec()),
                public_key: None,
            })
        }
    }
}

/// Makes the configured key current when it has never been stored, or when
/// the stored current key has another algorithm than the configured one (the
/// operator switched EdDSA ⇄ HS256); otherwise leaves the table alone.
async fn reconcile(tx: &mut GlobalTx, keys: &Keys, now: DateTime<Utc>) -> Result<(), KeyringError> {
    let configured_kid = keys.signing.kid();
    let alg = configured_alg(&keys.signing);
    let stored: Vec<(String, String, Option<DateTime<Utc>>)> = tx
        .fetch_all("SELECT kid, alg, retired_at FROM signing_keys", vec![])
        .await?;
    let known = stored.iter().any(|(kid, ..)| kid == configured_kid);
    let current_alg = stored
        .iter()
        .find(|(.., retired_at)| retired_at.is_none())
        .map(|(_, alg, _)| alg.as_str());
    if !known {
        let new = configured_new_key(&keys.signing)?;
        retire_current(tx, now).await?;
        insert(tx, &keys.master, &new, now).await?;
    } else if current_alg != Some(alg.as_str()) {
        retire_current(tx, now).await?;
        tx.execute(
            "UPDATE signing_keys SET retired_at = NULL WHERE kid = $1",
            vec![configured_kid.into()],
        )
        .await?;
    }
    Ok(())
}

async fn retire_current(tx: &mut GlobalTx, now: DateTime<Utc>) -> Result<(), KeyringError> {
    tx.execute(
        "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL",
        vec![now.into()],
    )
    .await?;
    Ok(())
}

async fn insert(
    tx: &mut GlobalTx,
    master: &MasterKey,
    key: &NewKey,
    now: DateTime<Utc>,
) -> Result<(), KeyringError> {
    let (sealed, master_version) = master
        .seal(&secret_aad(&key.kid), &key.secret)
        .map_err(KeyringError::Seal)?;
    tx.execute(
        "INSERT INTO signing_keys \
         (kid, alg, sealed_secret, master_version, public_key, created_at, retired_at) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        vec![
            key.kid.as_str().into(),
            key.alg.as_str().into(),
            sealed.into(),
            i64::from(master_version).into(),
            key.public_key.clone().into(),
            now.into(),
        ],
    )
    .await?;
    Ok(())
}

async fn select_rows(tx: &mut GlobalTx) -> Result<Vec<KeyRow>, KeyringError> {
    Ok(tx
        .fetch_all(
            "SELECT kid, alg, sealed_secret, master_version, public_key, retired_at \
             FROM signing_keys \
             ORDER BY created_at DESC, kid",
            vec![],
        )
        .await?)
}

/// Opens every key that still verifies at `now`. Time is filtered here, not
/// in SQL, so both backends compare timestamps the same way.
fn build(rows: &[KeyRow], master: &MasterKey, now: DateTime<Utc>) -> Result<Keyring, KeyringError> {
    let mut current = None;
    let mut previous = Vec::new();
    for row in rows {
        match row.retired_at {
            None => current = Some(open_row(row, master, None)?),
            Some(at) if now < at + RETIRED_KEY_GRACE => match open_row(row, master, Some(at)) {
                Ok(entry) => previous.push(entry),
                // A retired key only serves tokens that are about to expire:
                // if it cannot be opened (say the master key was replaced),
                // its tokens fail closed rather than the server failing.
                Err(e) => {
                    tracing::warn!(kid = %row.kid, error = %e, "skipping retired signing key")
                }
            },
            Some(_) => {}
        }
    }
    let current = current.ok_or(KeyringError::NoCurrentKey)?;
    Ok(Keyring::new(current, previous)?)
}

/// Unseals a row and checks that its kid, algorithm and public key agree
/// with the secret (a row is trusted only through the master key's seal).
fn open_row(
    row: &KeyRow,
    master: &MasterKey,
    retired_at: Option<DateTime<Utc>>,
) -> Result<KeyEntry, KeyringError> {
    let corrupt = |reason| KeyringError::Corrupt {
        kid: row.kid.clone(),
        reason,
    };
    let alg = SigningAlg::parse(&row.alg).ok_or_else(|| corrupt("unknown algorithm"))?;
    let unseal = || KeyringError::Unseal {
        kid: row.kid.clone(),
    };
    let version = u32::try_from(row.master_version).map_err(|_| unseal())?;
    let secret = master
        .open(version, &secret_aad(&row.kid), &row.sealed_secret)
        .map_err(|_| unseal())?;
    let entry = |secret: KeySecret<'_>| match retired_at {
        None => KeyEntry::signing(row.kid.as_str(), secret),
        Some(at) => KeyEntry::verifying(row.kid.as_str(), secret, at),
    };
    match alg {
        SigningAlg::EdDsa => {
            let key = SigningKey::from_pkcs8_der(&secret)
                .map_err(|_| corrupt("not an Ed25519 PKCS#8 key"))?;
            let public = key.verifying_key().to_bytes();
            if kid_for(&public) != row.kid {
                return Err(corrupt("the kid does not match the key"));
            }
            if row.public_key.as_deref() != Some(public.as_slice()) {
                return Err(corrupt("the public key does not match the private key"));
            }
            Ok(entry(KeySecret::Ed25519(&key))?)
        }
        SigningAlg::Hs256 => {
            if kid_for(&secret) != row.kid {
                return Err(corrupt("the kid does not match the secret"));
            }
            Ok(entry(KeySecret::Hs256(&secret))?)
        }
    }
}
