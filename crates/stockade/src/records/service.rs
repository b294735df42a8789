//! What every records handler shares: the tenant's keys, opening a stored
//! row into an API record (integrity errors included), the error mapping and
//! the audit events.

use axum::http::StatusCode;
use uuid::Uuid;

use super::cipher::{self, StoredDocument};
use super::model::KEY_FIELD;
use super::model::Record;
use super::store::{self, Collection, NewRow, Row};
use crate::audit::{self, NewEvent, Target};
use crate::crypto::envelope::{self, EnvelopeError, TenantKeys};
use crate::db::{DbError, TenantTx};
use crate::http::{ApiError, AuthState, Principal};

/// The transaction tenant's keys.
pub(crate) async fn keys(tx: &mut TenantTx, state: &AuthState) -> Result<TenantKeys, ApiError> {
    envelope::load(tx, &state.master(), state.clock.as_ref())
        .await
        .map_err(envelope_error)
}

/// A stored record whose ciphertext does not open (tampered, swapped with
/// another row or tenant, moved to another collection) is 500
/// `records.integrity`: the server's data is damaged, and nothing of it (nor
/// of any other row) is returned.
pub(crate) fn envelope_error(e: EnvelopeError) -> ApiError {
    match e {
        EnvelopeError::Integrity => {
            tracing::error!("a stored record failed its integrity check");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "records.integrity")
                .with_detail("a stored record failed its integrity check; no data was returned")
        }
        EnvelopeError::Shredded => ApiError::new(StatusCode::GONE, "records.keys_destroyed")
            .with_detail("this tenant's keys were destroyed; its records are unreadable"),
        other => ApiError::internal(other),
    }
}

/// Reads and decrypts one record of `tenant` (404 when absent), with no
/// permission check: the caller applies its principal's access.
pub(crate) async fn read(
    state: &AuthState,
    tenant: crate::ids::TenantId,
    collection: &str,
    id: Uuid,
) -> Result<Record, ApiError> {
    let mut tx = state.db.tenant_read(tenant).await?;
    let row = store::fetch(&mut tx, collection, id)
        .await?
        .ok_or_else(not_found)?;
    let keys = keys(&mut tx, state).await?;
    open(&keys, row)
}

/// Decrypts a row (checking its associated data) into the API shape.
pub(crate) fn open(keys: &TenantKeys, row: Row) -> Result<Record, ApiError> {
    let doc: StoredDocument =
        cipher::open_document(keys, &row.collection, row.id, &row.body).map_err(envelope_error)?;
    Ok(Record {
        id: row.id,
        collection: row.collection,
        key: doc.key,
        data: doc.data,
        version: row.version,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Seals a document for record `id`.
pub(crate) fn seal(
    keys: &TenantKeys,
    collection: &str,
    id: Uuid,
    doc: &StoredDocument,
) -> Result<(Vec<u8>, u32), ApiError> {
    cipher::seal_document(keys, collection, id, doc).map_err(envelope_error)
}

/// Stores a new record of `coll` (version 1): the sealed document, the key's
/// blind index and the declared fields' blind indexes. Returns its id; a
/// key another record of the collection has is 409 `records.key_conflict`.
pub(crate) async fn insert(
    tx: &mut TenantTx,
    keys: &TenantKeys,
    coll: &Collection,
    doc: &StoredDocument,
    created_by: Uuid,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Uuid, ApiError> {
    let id = Uuid::now_v7();
    let (sealed, key_version) = seal(keys, &coll.name, id, doc)?;
    let key_index = doc
        .key
        .as_deref()
        .map(|k| keys.blind_index(&coll.name, KEY_FIELD, k));
    store::insert(
        tx,
        NewRow {
            id,
            collection: &coll.name,
            key_index,
            body: sealed,
            key_version,
            created_by,
            now,
        },
    )
    .await
    .map_err(key_conflict)?;
    store::write_index(tx, keys, &coll.name, id, &coll.indexed_fields, &doc.data).await?;
    Ok(id)
}

/// 409 `records.key_conflict` for a key another record of the collection has.
pub(crate) fn key_conflict(e: DbError) -> ApiError {
    match e {
        DbError::Unique(_) => ApiError::new(StatusCode::CONFLICT, "records.key_conflict")
            .with_detail("another record of this collection has this key"),
        other => other.into(),
    }
}

/// 413 `records.too_large` when `data` serialises to more than the limit.
pub(crate) fn check_size(state: &AuthState, data: &serde_json::Value) -> Result<(), ApiError> {
    let len = serde_json::to_vec(data)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if len <= state.config.record_max_bytes {
        return Ok(());
    }
    Err(
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "records.too_large").with_detail(format!(
            "a record's data may be at most {} bytes of JSON",
            state.config.record_max_bytes
        )),
    )
}

/// 400 `records.invalid_data` unless `data` is a JSON object.
pub(crate) fn check_object(data: &serde_json::Value) -> Result<(), ApiError> {
    if data.is_object() {
        return Ok(());
    }
    Err(ApiError::bad_request(
        "records.invalid_data",
        "`data` must be a JSON object",
    ))
}

/// Appends a records audit event in the caller's transaction. Details name
/// the collection and version, never the document.
pub(crate) async fn audit(
    tx: &mut TenantTx,
    state: &AuthState,
    p: &Principal,
    action: &str,
    target: Target,
    details: serde_json::Value,
) -> Result<(), ApiError> {
    audit::append(
        tx,
        state.clock.as_ref(),
        NewEvent::new(p.actor(), action)
            .target(target)
            .details(details)
            .context(p.context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    Ok(())
}

/// 404 `records.not_found`: absent, in another tenant or collection, hidden
/// by a record rule, or not a UUID — all look the same.
pub(crate) fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "records.not_found").with_detail("no such record")
}
