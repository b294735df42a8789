//! The SQL of records, collections and their blind indexes. Every query runs
//! in a [`TenantTx`] (tenant bound as `$1`); bodies arrive here already
//! sealed by [`super::cipher`].

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::model::index_text;
use crate::crypto::envelope::TenantKeys;
use crate::db::{DbError, TenantTx};

/// A collection and its declared indexed fields.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Collection {
    pub name: String,
    /// Top-level fields that `filter[field]=value` may use.
    pub indexed_fields: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A stored record, body still sealed.
#[derive(Debug, sqlx::FromRow)]
pub struct Row {
    pub id: Uuid,
    pub collection: String,
    pub body: Vec<u8>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const ROW_COLUMNS: &str = "id, collection, body, version, created_at, updated_at";

pub async fn collection(tx: &mut TenantTx, name: &str) -> Result<Option<Collection>, DbError> {
    let row: Option<(String, String, DateTime<Utc>, DateTime<Utc>)> = tx
        .fetch_optional(
            "SELECT name, indexed_fields, created_at, updated_at FROM collections \
             WHERE tenant_id = $1 AND name = $2",
            vec![name.into()],
        )
        .await?;
    Ok(
        row.map(|(name, fields, created_at, updated_at)| Collection {
            name,
            // Written only by `set_indexed_fields`; anything else reads as none.
            indexed_fields: serde_json::from_str(&fields).unwrap_or_default(),
            created_at,
            updated_at,
        }),
    )
}

/// The collection, created (with no indexed field) if it does not exist.
pub async fn ensure_collection(
    tx: &mut TenantTx,
    name: &str,
    now: DateTime<Utc>,
) -> Result<Collection, DbError> {
    tx.execute(
        "INSERT INTO collections (tenant_id, name, indexed_fields, created_at, updated_at) \
         VALUES ($1, $2, '[]', $3, $3) ON CONFLICT (tenant_id, name) DO NOTHING",
        vec![name.into(), now.into()],
    )
    .await?;
    collection(tx, name)
        .await?
        .ok_or(DbError::Sqlx(sqlx::Error::RowNotFound))
}

pub async fn set_indexed_fields(
    tx: &mut TenantTx,
    name: &str,
    fields: &[String],
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let json = serde_json::to_string(fields).unwrap_or_else(|_| "[]".to_owned());
    tx.execute(
        "UPDATE collections SET indexed_fields = $3, updated_at = $4 \
         WHERE tenant_id = $1 AND name = $2",
        vec![name.into(), json.into(), now.into()],
    )
    .await?;
    Ok(())
}

/// A new record's row.
pub struct NewRow<'a> {
    pub id: Uuid,
    pub collection: &'a str,
    pub key_index: Option<[u8; 32]>,
    pub body: Vec<u8>,
    pub key_version: u32,
    pub created_by: Uuid,
    pub now: DateTime<Utc>,
}

/// Inserts a record; a taken key is [`DbError::Unique`].
pub async fn insert(tx: &mut TenantTx, row: NewRow<'_>) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO records (tenant_id, id, collection, key_index, body, key_version, version, \
         created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $8)",
        vec![
            row.id.into(),
            row.collection.into(),
            row.key_index.map(|k| k.to_vec()).into(),
            row.body.into(),
            i64::from(row.key_version).into(),
            row.created_by.into(),
            row.now.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Whether a record of `collection` already has this key.
pub async fn key_taken(
    tx: &mut TenantTx,
    collection: &str,
    key_index: [u8; 32],
) -> Result<bool, DbError> {
    let row: Option<(Uuid,)> = tx
        .fetch_optional(
            "SELECT id FROM records WHERE tenant_id = $1 AND collection = $2 AND key_index = $3",
            vec![collection.into(), key_index.into()],
        )
        .await?;
    Ok(row.is_some())
}

pub async fn fetch(tx: &mut TenantTx, collection: &str, id: Uuid) -> Result<Option<Row>, DbError> {
    tx.fetch_optional(
        &format!(
            "SELECT {ROW_COLUMNS} FROM records WHERE tenant_id = $1 AND id = $2 AND collection = $3"
        ),
        vec![id.into(), collection.into()],
    )
    .await
}

/// Up to `limit` records of `collection` with ids after `after`, in id
/// order, that carry every `(field, blind index)` of `filters`.
pub async fn page(
    tx: &mut TenantTx,
    collection: &str,
    after: Uuid,
    filters: &[(String, [u8; 32])],
    limit: i64,
) -> Result<Vec<Row>, DbError> {
    let mut sql = format!(
        "SELECT {ROW_COLUMNS} FROM records WHERE tenant_id = $1 AND collection = $2 AND id > $3"
    );
    let mut args: Vec<crate::db::Value> = vec![collection.into(), after.into()];
    for (field, value) in filters {
        let n = args.len() + 2;
        sql.push_str(&format!(
            " AND id IN (SELECT record_id FROM record_index WHERE tenant_id = $1 \
             AND collection = $2 AND field = ${n} AND value = ${})",
            n + 1
        ));
        args.push(field.into());
        args.push((*value).into());
    }
    sql.push_str(&format!(" ORDER BY id LIMIT ${}", args.len() + 2));
    args.push(limit.into());
    tx.fetch_all(&sql, args).await
}

/// Every record of `collection` (re-indexing), in id order.
pub async fn all(tx: &mut TenantTx, collection: &str) -> Result<Vec<Row>, DbError> {
    tx.fetch_all(
        &format!(
            "SELECT {ROW_COLUMNS} FROM records WHERE tenant_id = $1 AND collection = $2 ORDER BY id"
        ),
        vec![collection.into()],
    )
    .await
}

/// Replaces the body if the record is still at `version`; returns whether it was.
pub async fn update(
    tx: &mut TenantTx,
    id: Uuid,
    version: i64,
    body: Vec<u8>,
    key_version: u32,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let n = tx
        .execute(
            "UPDATE records SET body = $2, key_version = $3, version = version + 1, \
             updated_at = $4 WHERE tenant_id = $1 AND id = $5 AND version = $6",
            vec![
                body.into(),
                i64::from(key_version).into(),
                now.into(),
                id.into(),
                version.into(),
            ],
        )
        .await?;
    Ok(n == 1)
}

pub async fn delete(tx: &mut TenantTx, id: Uuid) -> Result<bool, DbError> {
    tx.execute(
        "DELETE FROM record_index WHERE tenant_id = $1 AND record_id = $2",
        vec![id.into()],
    )
    .await?;
    let n = tx
        .execute(
            "DELETE FROM records WHERE tenant_id = $1 AND id = $2",
            vec![id.into()],
        )
        .await?;
    Ok(n == 1)
}

/// Rewrites the blind indexes of one record: one row per declared field
/// holding a scalar.
pub async fn write_index(
    tx: &mut TenantTx,
    keys: &TenantKeys,
    collection: &str,
    id: Uuid,
    fields: &[String],
    data: &Value,
) -> Result<(), DbError> {
    tx.execute(
        "DELETE FROM record_index WHERE tenant_id = $1 AND record_id = $2",
        vec![id.into()],
    )
    .await?;
    for field in fields {
        let Some(text) = data.get(field).and_then(index_text) else {
            continue;
        };
        let value = keys.blind_index(collection, field, &text);
        tx.execute(
            "INSERT INTO record_index (tenant_id, collection, field, value, record_id) \
             VALUES ($1, $2, $3, $4, $5)",
            vec![collection.into(), field.into(), value.into(), id.into()],
        )
        .await?;
    }
    Ok(())
}

/// Drops every blind index of `collection` (before a rebuild).
pub async fn clear_index(tx: &mut TenantTx, collection: &str) -> Result<(), DbError> {
    tx.execute(
        "DELETE FROM record_index WHERE tenant_id = $1 AND collection = $2",
        vec![collection.into()],
    )
    .await?;
    Ok(())
}
