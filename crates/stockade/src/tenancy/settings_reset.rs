//! Settings a migration changed, audited by the server.
//!
//! SQL migrations cannot append to the audit hash chain (the chain's hash
//! and signed head are computed here). A migration that must change a
//! tenant's setting — `0024` resets `mfa_required` to `off`, since nothing
//! enforces a multi-factor requirement until multi-factor sign-in exists —
//! therefore records each change in `migrated_settings`, and the server,
//! once migrated and holding the audit head key, turns every row into a
//! `tenancy.settings.updated` event (actor `system`) in that tenant's chain
//! and deletes it, in one transaction. Claiming the rows with
//! `DELETE … RETURNING` keeps two instances starting at once from writing
//! an event twice.

use std::collections::BTreeMap;

use crate::audit::{self, Actor, AuditError, NewEvent, Target};
use crate::clock::Clock;
use crate::db::Db;
use crate::ids::TenantId;

/// Why the migration changed the settings (`details.reason`).
pub const REASON: &str = "setting_unavailable";

/// Audits every setting change a migration left in `migrated_settings`;
/// the number of tenants audited.
pub async fn audit_migrated_settings(db: &Db, clock: &dyn Clock) -> Result<usize, AuditError> {
    let tenants: Vec<(TenantId,)> = db
        .global_read()
        .await?
        .fetch_all(
            "SELECT DISTINCT owner_tenant FROM migrated_settings ORDER BY owner_tenant",
            vec![],
        )
        .await?;
    let mut audited = 0;
    for (tenant,) in tenants {
        let mut tx = db.global_tx().await?;
        let rows: Vec<(String, String, String)> = tx
            .fetch_all(
                "DELETE FROM migrated_settings WHERE owner_tenant = $1 \
                 RETURNING setting, old_value, new_value",
                vec![tenant.into()],
            )
            .await?;
        if rows.is_empty() {
            continue;
        }
        let changes: BTreeMap<String, serde_json::Value> = rows
            .into_iter()
            .map(|(setting, old, new)| (setting, serde_json::json!({ "old": old, "new": new })))
            .collect();
        let mut tx = tx.scoped(tenant).await?;
        audit::append(
            &mut tx,
            clock,
            NewEvent::new(Actor::System, "tenancy.settings.updated")
                .target(Target::new("tenant", tenant))
                .details(serde_json::json!({
                    "changes": changes,
                    "reason": REASON,
                    "migration": "0024_resets_and_honest_settings",
                })),
        )
        .await?;
        tx.commit().await?;
        audited += 1;
    }
    Ok(audited)
}
