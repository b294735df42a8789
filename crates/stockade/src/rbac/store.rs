//! Role queries.

use chrono::{DateTime, Utc};

use super::model::{PermissionSet, RecordRule};
use crate::db::{DbError, TenantTx};

#[derive(sqlx::FromRow)]
struct RoleRow {
    permissions: String,
    record_rules: String,
}

/// The permissions of role `name` in the transaction's tenant: a built-in
/// role, or a custom one; `None` when no such role exists.
pub async fn role_permissions(
    tx: &mut TenantTx,
    name: &str,
) -> Result<Option<PermissionSet>, DbError> {
    if let Some(builtin) = PermissionSet::builtin(name) {
        return Ok(Some(builtin));
    }
    let row: Option<RoleRow> = tx
        .fetch_optional(
            "SELECT permissions, record_rules FROM roles WHERE tenant_id = $1 AND name = $2",
            vec![name.into()],
        )
        .await?;
    Ok(row.map(|r| {
        let grants: Vec<String> = serde_json::from_str(&r.permissions).unwrap_or_default();
        let rules: Vec<RecordRule> = serde_json::from_str(&r.record_rules).unwrap_or_default();
        PermissionSet::new(grants, rules)
    }))
}

/// A tenant's custom role as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomRole {
    pub name: String,
    pub description: String,
    /// Its grants and record rules.
    pub set: PermissionSet,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct CustomRoleRow {
    name: String,
    description: String,
    permissions: String,
    record_rules: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<CustomRoleRow> for CustomRole {
    /// Unreadable JSON grants nothing (fail closed, like `role_permissions`).
    fn from(r: CustomRoleRow) -> Self {
        let grants: Vec<String> = serde_json::from_str(&r.permissions).unwrap_or_default();
        let rules: Vec<RecordRule> = serde_json::from_str(&r.record_rules).unwrap_or_default();
        Self {
            name: r.name,
            description: r.description,
            set: PermissionSet::new(grants, rules),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

const ROLE_COLUMNS: &str = "name, description, permissions, record_rules, created_at, updated_at";

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, DbError> {
    serde_json::to_string(value).map_err(|e| DbError::Sqlx(sqlx::Error::Encode(Box::new(e))))
}

/// The tenant's custom roles, by name.
pub async fn list_custom_roles(tx: &mut TenantTx) -> Result<Vec<CustomRole>, DbError> {
    let rows: Vec<CustomRoleRow> = tx
        .fetch_all(
            &format!("SELECT {ROLE_COLUMNS} FROM roles WHERE tenant_id = $1 ORDER BY name"),
            vec![],
        )
        .await?;
    Ok(rows.into_iter().map(CustomRole::from).collect())
}

/// One custom role of the tenant.
pub async fn find_custom_role(
    tx: &mut TenantTx,
    name: &str,
) -> Result<Option<CustomRole>, DbError> {
    let row: Option<CustomRoleRow> = tx
        .fetch_optional(
            &format!("SELECT {ROLE_COLUMNS} FROM roles WHERE tenant_id = $1 AND name = $2"),
            vec![name.into()],
        )
        .await?;
    Ok(row.map(CustomRole::from))
}

/// Reads a custom role for a change, locking its row until the transaction
/// ends (a no-op UPDATE: portable, where `SELECT … FOR UPDATE` is not), so
/// two concurrent edits cannot both pass checks made on the old state.
pub(super) async fn lock_custom_role(
    tx: &mut TenantTx,
    name: &str,
) -> Result<Option<CustomRole>, DbError> {
    let row: Option<CustomRoleRow> = tx
        .fetch_optional(
            &format!(
                "UPDATE roles SET updated_at = updated_at WHERE tenant_id = $1 AND name = $2 \
                 RETURNING {ROLE_COLUMNS}"
            ),
            vec![name.into()],
        )
        .await?;
    Ok(row.map(CustomRole::from))
}

/// Creates a custom role; `None` when the tenant already has one so named.
pub(super) async fn insert_custom_role(
    tx: &mut TenantTx,
    name: &str,
    description: &str,
    set: &PermissionSet,
    now: DateTime<Utc>,
) -> Result<Option<CustomRole>, DbError> {
    let row: Option<CustomRoleRow> = tx
        .fetch_optional(
            &format!(
                "INSERT INTO roles (tenant_id, name, description, permissions, record_rules, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) \
                 ON CONFLICT (tenant_id, name) DO NOTHING RETURNING {ROLE_COLUMNS}"
            ),
            vec![
                name.into(),
                description.into(),
                to_json(&set.grants())?.into(),
                to_json(&set.record_rules())?.into(),
                now.into(),
            ],
        )
        .await?;
    Ok(row.map(CustomRole::from))
}

/// Replaces a custom role's description, grants and record rules. Its
/// holders' sessions see the change on their next request (an UPDATE on
/// `roles` bumps the liveness generation).
pub(super) async fn update_custom_role(
    tx: &mut TenantTx,
    name: &str,
    description: &str,
    set: &PermissionSet,
    now: DateTime<Utc>,
) -> Result<Option<CustomRole>, DbError> {
    let row: Option<CustomRoleRow> = tx
        .fetch_optional(
            &format!(
                "UPDATE roles SET description = $3, permissions = $4, record_rules = $5, \
                 updated_at = $6 WHERE tenant_id = $1 AND name = $2 RETURNING {ROLE_COLUMNS}"
            ),
            vec![
                name.into(),
                description.into(),
                to_json(&set.grants())?.into(),
                to_json(&set.record_rules())?.into(),
                now.into(),
            ],
        )
        .await?;
    Ok(row.map(CustomRole::from))
}

/// How many memberships of the tenant (any status) hold role `name`.
pub async fn role_holders(tx: &mut TenantTx, name: &str) -> Result<i64, DbError> {
    let (n,): (i64,) = tx
        .fetch_one(
            "SELECT COUNT(*) FROM memberships WHERE tenant_id = $1 AND role = $2",
            vec![name.into()],
        )
        .await?;
    Ok(n)
}

/// Deletes a custom role unless a membership holds it (checked in the same
/// statement); `false` when nothing was deleted.
pub(super) async fn delete_unused_custom_role(
    tx: &mut TenantTx,
    name: &str,
) -> Result<bool, DbError> {
    let n = tx
        .execute(
            "DELETE FROM roles WHERE tenant_id = $1 AND name = $2 AND NOT EXISTS \
             (SELECT 1 FROM memberships m WHERE m.tenant_id = $1 AND m.role = $2)",
            vec![name.into()],
        )
        .await?;
    Ok(n > 0)
}
