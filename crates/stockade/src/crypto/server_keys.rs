//! Server-wide 256-bit keys that belong to no tenant (the HMAC key of API-key
//! hashes, say): generated once from the OS CSPRNG, stored only sealed under
//! the master key in `server_keys`, with associated data naming the purpose,
//! so a sealed key copied to another purpose does not open.

use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::crypto::keys::MasterKey;
use crate::crypto::random;
use crate::db::{Db, DbError};

/// Prefix of the associated data a server key is sealed with.
pub const AAD_PREFIX: &str = "stockade:server_key:";

/// The associated data sealing the key of `purpose`.
pub fn aad(purpose: &str) -> Vec<u8> {
    format!("{AAD_PREFIX}{purpose}").into_bytes()
}

#[derive(Debug, thiserror::Error)]
pub enum ServerKeyError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("server key `{0}` cannot be opened with the configured master key")]
    Integrity(String),
    #[error("the OS random number generator failed")]
    Random,
}

/// The key of `purpose`, created (and stored sealed) on first use. Two
/// instances creating it at once agree on one key: the first insert wins and
/// both read it back.
pub async fn get_or_create(
    db: &Db,
    master: &MasterKey,
    clock: &dyn Clock,
    purpose: &str,
) -> Result<Zeroizing<[u8; 32]>, ServerKeyError> {
    let aad = aad(purpose);
    let mut tx = db.global_tx().await?;
    let existing: Option<(Vec<u8>, i64)> = tx
        .fetch_optional(
            "SELECT sealed, master_version FROM server_keys WHERE purpose = $1",
            vec![purpose.into()],
        )
        .await?;
    let sealed = match existing {
        Some(row) => row,
        None => {
            let key = random::secret_bytes::<32>().map_err(|_| ServerKeyError::Random)?;
            let (sealed, version) = master
                .seal(&aad, key.as_slice())
                .map_err(|_| ServerKeyError::Random)?;
            tx.execute(
                "INSERT INTO server_keys (purpose, sealed, master_version, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (purpose) DO NOTHING",
                vec![
                    purpose.into(),
                    sealed.into(),
                    i64::from(version).into(),
                    clock.now().into(),
                ],
            )
            .await?;
            let row: Option<(Vec<u8>, i64)> = tx
                .fetch_optional(
                    "SELECT sealed, master_version FROM server_keys WHERE purpose = $1",
                    vec![purpose.into()],
                )
                .await?;
            row.ok_or_else(|| ServerKeyError::Integrity(purpose.to_owned()))?
        }
    };
    tx.commit().await?;
    let version =
        u32::try_from(sealed.1).map_err(|_| ServerKeyError::Integrity(purpose.to_owned()))?;
    let opened = master
        .open(version, &aad, &sealed.0)
        .map_err(|_| ServerKeyError::Integrity(purpose.to_owned()))?;
    let key: [u8; 32] = opened
        .as_slice()
        .try_into()
        .map_err(|_| ServerKeyError::Integrity(purpose.to_owned()))?;
    Ok(Zeroizing::new(key))
}
