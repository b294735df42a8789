//! Role queries.

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
