//! API-key rows: insert, list, find, revoke, rotate, and the one-query read
//! that authentication needs.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::model::{KeyEnv, display_prefix};
use crate::db::{Db, DbError, TenantTx};
use crate::ids::{TenantId, UserId};

/// A key as listed: never its secret or hash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    #[schema(format = Uuid)]
    pub id: Uuid,
    pub name: String,
    /// `stk_<env>_<public id>`: enough to recognise the key, not to use it.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// After a rotation: the old key works until then.
    pub grace_until: Option<DateTime<Utc>>,
    #[schema(format = Uuid)]
    pub replaced_by: Option<Uuid>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub last_used_ip: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    public_id: String,
    name: String,
    scopes: String,
    created_by: UserId,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    grace_until: Option<DateTime<Utc>>,
    replaced_by: Option<Uuid>,
    last_used_at: Option<DateTime<Utc>>,
    last_used_ip: Option<String>,
}

const COLUMNS: &str = "id, public_id, name, scopes, created_by, created_at, expires_at, \
     revoked_at, grace_until, replaced_by, last_used_at, last_used_ip";

/// Stored scopes; unreadable JSON grants nothing (fail closed).
pub(crate) fn parse_scopes(stored: &str) -> Vec<String> {
    serde_json::from_str(stored).unwrap_or_default()
}

impl Row {
    fn view(self, env: KeyEnv) -> KeyView {
        KeyView {
            id: self.id,
            name: self.name,
            prefix: display_prefix(env, &self.public_id),
            scopes: parse_scopes(&self.scopes),
            created_by: self.created_by,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            grace_until: self.grace_until,
            replaced_by: self.replaced_by,
            last_used_at: self.last_used_at,
            last_used_ip: self.last_used_ip,
        }
    }
}

/// A key to store.
pub struct NewKey<'a> {
    pub id: Uuid,
    pub public_id: &'a str,
    pub name: &'a str,
    pub scopes: &'a [String],
    pub hash: [u8; 32],
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Stores a key and its public id → tenant entry.
pub async fn insert(tx: &mut TenantTx, key: &NewKey<'_>) -> Result<(), DbError> {
    let scopes = serde_json::to_string(key.scopes).unwrap_or_else(|_| "[]".to_owned());
    tx.execute(
        "INSERT INTO api_keys (tenant_id, id, public_id, name, scopes, hash, created_by, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        vec![
            key.id.into(),
            key.public_id.into(),
            key.name.into(),
            scopes.into(),
            key.hash.into(),
            key.created_by.into(),
            key.created_at.into(),
            key.expires_at.into(),
        ],
    )
    .await?;
    tx.execute(
        "INSERT INTO api_key_ids (public_id, owner_tenant) VALUES ($2, $1)",
        vec![key.public_id.into()],
    )
    .await?;
    Ok(())
}

pub(super) async fn list(tx: &mut TenantTx, env: KeyEnv) -> Result<Vec<KeyView>, DbError> {
    let rows: Vec<Row> = tx
        .fetch_all(
            &format!("SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id"),
            vec![],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.view(env)).collect())
}

/// One key of the transaction's tenant.
pub(super) async fn find(
    tx: &mut TenantTx,
    id: Uuid,
    env: KeyEnv,
) -> Result<Option<KeyView>, DbError> {
    let row: Option<Row> = tx
        .fetch_optional(
            &format!("SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2"),
            vec![id.into()],
        )
        .await?;
    Ok(row.map(|r| r.view(env)))
}

/// Revokes a key now; false when it was already revoked.
pub(super) async fn revoke(
    tx: &mut TenantTx,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    Ok(tx
        .execute(
            "UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2 \
             AND revoked_at IS NULL",
            vec![id.into(), now.into()],
        )
        .await?
        == 1)
}

/// Revokes every live key `creator` made in the transaction's tenant (a
/// member removed from it); the number revoked. Keys already revoked keep
/// their first `revoked_at`.
pub async fn revoke_created_by(
    tx: &mut TenantTx,
    creator: UserId,
    now: DateTime<Utc>,
) -> Result<u64, DbError> {
    tx.execute(
        "UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND created_by = $2 \
         AND revoked_at IS NULL",
        vec![creator.into(), now.into()],
    )
    .await
}

/// A key as a notice names it: never its secret or hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyName {
    pub id: Uuid,
    pub name: String,
    /// `stk_<env>_<public id>`.
    pub prefix: String,
}

/// Like [`revoke_created_by`], naming each key revoked (a password reset
/// lists them in its notice and audits each).
pub async fn revoke_created_by_named(
    tx: &mut TenantTx,
    creator: UserId,
    now: DateTime<Utc>,
    env: KeyEnv,
) -> Result<Vec<KeyName>, DbError> {
    let rows: Vec<(Uuid, String, String)> = tx
        .fetch_all(
            "UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND created_by = $2 \
             AND revoked_at IS NULL RETURNING id, public_id, name",
            vec![creator.into(), now.into()],
        )
        .await?;
    Ok(named(rows, env))
}

/// The keys `creator` made in the transaction's tenant that are not revoked.
pub async fn live_created_by(
    tx: &mut TenantTx,
    creator: UserId,
    env: KeyEnv,
) -> Result<Vec<KeyName>, DbError> {
    let rows: Vec<(Uuid, String, String)> = tx
        .fetch_all(
            "SELECT id, public_id, name FROM api_keys WHERE tenant_id = $1 AND created_by = $2 \
             AND revoked_at IS NULL ORDER BY created_at, id",
            vec![creator.into()],
        )
        .await?;
    Ok(named(rows, env))
}

fn named(mut rows: Vec<(Uuid, String, String)>, env: KeyEnv) -> Vec<KeyName> {
    rows.sort();
    rows.into_iter()
        .map(|(id, public_id, name)| KeyName {
            id,
            name,
            prefix: display_prefix(env, &public_id),
        })
        .collect()
}

/// Marks `old` as replaced by `new`, valid until `grace_until`; false when
/// another rotation or a revocation got there first.
pub(super) async fn mark_rotated(
    tx: &mut TenantTx,
    old: Uuid,
    new: Uuid,
    grace_until: DateTime<Utc>,
) -> Result<bool, DbError> {
    Ok(tx
        .execute(
            "UPDATE api_keys SET replaced_by = $3, grace_until = $4 WHERE tenant_id = $1 \
             AND id = $2 AND replaced_by IS NULL AND revoked_at IS NULL",
            vec![old.into(), new.into(), grace_until.into()],
        )
        .await?
        == 1)
}

/// What authentication needs about a key, its creator and its tenant, in
/// one query.
#[derive(sqlx::FromRow)]
pub struct AuthRow {
    pub id: Uuid,
    pub hash: Vec<u8>,
    pub scopes: String,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub grace_until: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub role: Option<String>,
    pub membership_status: Option<String>,
    pub member_since: Option<DateTime<Utc>>,
    pub user_status: Option<String>,
    pub ip_allowlist: Option<String>,
    pub rate_per_minute: Option<i64>,
    pub tenant_slug: String,
    pub tenant_status: String,
}

/// The tenant a public id belongs to (the global lookup).
pub async fn tenant_of(db: &Db, public_id: &str) -> Result<Option<TenantId>, DbError> {
    let row: Option<(TenantId,)> = db
        .global_read()
        .await?
        .fetch_optional(
            "SELECT owner_tenant FROM api_key_ids WHERE public_id = $1",
            vec![public_id.into()],
        )
        .await?;
    Ok(row.map(|r| r.0))
}

/// The key named `public_id` in the transaction's tenant, with its creator's membership and
/// the tenant's state.
pub async fn auth_row(tx: &mut TenantTx, public_id: &str) -> Result<Option<AuthRow>, DbError> {
    tx.fetch_optional(
        "SELECT k.id, k.hash, k.scopes, k.created_by, k.created_at, k.expires_at, \
         k.revoked_at, k.grace_until, k.last_used_at, m.role, \
         m.status AS membership_status, m.created_at AS member_since, \
         u.status AS user_status, ts.ip_allowlist, \
         CAST(ts.api_key_rate_per_minute AS BIGINT) AS rate_per_minute, \
         t.slug AS tenant_slug, t.status AS tenant_status \
         FROM api_keys k \
         JOIN tenants t ON t.id = k.tenant_id \
         LEFT JOIN memberships m ON m.tenant_id = k.tenant_id AND m.user_id = k.created_by \
         LEFT JOIN users u ON u.id = k.created_by \
         LEFT JOIN tenant_settings ts ON ts.tenant_id = k.tenant_id \
         WHERE k.tenant_id = $1 AND k.public_id = $2",
        vec![public_id.into()],
    )
    .await
}

/// Records a use (callers throttle it).
pub(super) async fn touch(
    db: &Db,
    tenant: TenantId,
    id: Uuid,
    now: DateTime<Utc>,
    ip: &str,
) -> Result<(), DbError> {
    let mut tx = db.tenant_tx(tenant).await?;
    // A stamp no cached check reads: it must not empty the caches.
    tx.execute_bookkeeping(
        "UPDATE api_keys SET last_used_at = $3, last_used_ip = $4 \
         WHERE tenant_id = $1 AND id = $2",
        vec![id.into(), now.into(), ip.into()],
    )
    .await?;
    tx.commit().await
}
