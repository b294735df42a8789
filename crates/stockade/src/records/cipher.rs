//! How a record is stored encrypted (SPEC §2.9): the one definition of the
//! stored plaintext, its associated data and the re-encryption batch that
//! `keys rotate --tenant-data` runs. Everything that reads or writes
//! `records.body` goes through here.

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::envelope::{Aad, EnvelopeError, TenantKeys};
use crate::db::TenantTx;

/// The table and column a record's ciphertext lives in.
pub const TABLE: &str = "records";
pub const COLUMN: &str = "body";

/// What is encrypted for one record: the caller's optional key and the
/// document. Both live only inside the ciphertext.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub data: serde_json::Value,
}

/// The row part of a record's associated data: `<collection>/<id>`, so a
/// ciphertext moved to another row, or the row moved to another collection
/// by editing its `collection` column, fails to decrypt.
pub fn row_label(collection: &str, id: Uuid) -> String {
    format!("{collection}/{id}")
}

/// Encrypts `doc` for the record `id` in `collection`; returns the ciphertext
/// and the data-key version it used (for `records.key_version`).
pub fn seal_document(
    keys: &TenantKeys,
    collection: &str,
    id: Uuid,
    doc: &StoredDocument,
) -> Result<(Vec<u8>, u32), EnvelopeError> {
    let plain = Zeroizing::new(serde_json::to_vec(doc).map_err(|_| EnvelopeError::Encrypt)?);
    let row = row_label(collection, id);
    let aad = Aad {
        table: TABLE,
        column: COLUMN,
        row: &row,
    };
    Ok((keys.encrypt(&aad, &plain)?, keys.current_version()))
}

/// Decrypts a record's body. A tampered, swapped (another row, collection or
/// tenant) or unreadable ciphertext is [`EnvelopeError::Integrity`], never
/// another row's data.
pub fn open_document(
    keys: &TenantKeys,
    collection: &str,
    id: Uuid,
    body: &[u8],
) -> Result<StoredDocument, EnvelopeError> {
    let row = row_label(collection, id);
    let aad = Aad {
        table: TABLE,
        column: COLUMN,
        row: &row,
    };
    let plain = keys.decrypt(&aad, body)?;
    serde_json::from_slice(&plain).map_err(|_| EnvelopeError::Integrity)
}

/// Re-encrypts up to `limit` of the transaction tenant's records whose body
/// is under a data-key version older than `keys`' current one, with the
/// current key. Returns how many rows it rewrote (0: nothing left). The
/// record's `version` and `updated_at` do not change (the document did not),
/// and a row changed concurrently is simply re-read by the next batch.
pub async fn reencrypt_batch(
    tx: &mut TenantTx,
    keys: &TenantKeys,
    limit: i64,
) -> Result<u64, EnvelopeError> {
    let current = i64::from(keys.current_version());
    let rows: Vec<(Uuid, String, Vec<u8>, i64)> = tx
        .fetch_all(
            "SELECT id, collection, body, version FROM records \
             WHERE tenant_id = $1 AND key_version < $2 ORDER BY id LIMIT $3",
            vec![current.into(), limit.into()],
        )
        .await?;
    let mut done = 0;
    for (id, collection, body, version) in rows {
        let doc = open_document(keys, &collection, id, &body)?;
        let (sealed, used) = seal_document(keys, &collection, id, &doc)?;
        done += tx
            .execute(
                "UPDATE records SET body = $2, key_version = $3 \
                 WHERE tenant_id = $1 AND id = $4 AND version = $5",
                vec![
                    sealed.into(),
                    i64::from(used).into(),
                    id.into(),
                    version.into(),
                ],
            )
            .await?;
    }
    Ok(done)
}

/// How many of the transaction tenant's records use each data-key version.
pub async fn key_version_counts(tx: &mut TenantTx) -> Result<Vec<(u32, u64)>, EnvelopeError> {
    let rows: Vec<(i64, i64)> = tx
        .fetch_all(
            "SELECT key_version, COUNT(*) FROM records WHERE tenant_id = $1 \
             GROUP BY key_version ORDER BY key_version",
            vec![],
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(v, n)| Some((u32::try_from(v).ok()?, u64::try_from(n).ok()?)))
        .collect())
}
