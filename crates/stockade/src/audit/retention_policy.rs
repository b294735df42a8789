//! How long each audit chain is kept (SPEC §2.7; issue #17 item 10), so that
//! retention can never be used to erase evidence. This file owns the
//! deployment's policy and the holds stored in `audit_retention`; the holds
//! arithmetic ([`change`], [`effective`]) is a pure rule of
//! `stockade_core::audit::retention_policy`, re-exported here, and this file
//! must not purge (that is `audit::retention`):
//!
//! - **Floor.** No tenant keeps its events for less than the deployment's
//!   floor (`STOCKADE_AUDIT_RETENTION_MIN_DAYS`, default 90): the settings API
//!   refuses a lower value, and the purge uses at least the floor whatever
//!   is stored. The platform's own chain is kept
//!   `STOCKADE_AUDIT_PLATFORM_RETENTION_DAYS` (default 365, never below the
//!   floor).
//! - **Shortening applies only to events written after the change.** When a
//!   chain's retention goes from N days down to M, a [`Hold`] records that
//!   the events already written keep N days: until the change plus N days the
//!   purge keeps at least N days. So an admin who shortens retention cannot
//!   purge yesterday's events (nor anything already written) any sooner than
//!   the retention they were written under; lengthening applies at once.
//! - **Every change is audited**: a tenant's in its `tenancy.settings.updated`
//!   event (with the hold), the deployment's (floor and platform retention,
//!   read from the configuration at each purge run) as
//!   `audit.retention.changed` in the platform chain.
//!
//! Holds live in `audit_retention` (migration 0025), one row per chain.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::model::{Actor, AuditError, NewEvent, Target};
use super::store::append;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::{Db, DbError, TenantTx};
use crate::ids::TenantId;

pub use stockade_core::audit::retention_policy::{Hold, change, effective};

/// The deployment's retention rules, from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// No tenant's chain is kept for fewer days.
    pub min_days: i64,
    /// The platform chain's retention.
    pub platform_days: i64,
}

impl RetentionPolicy {
    pub fn from_config(config: &Config) -> Self {
        Self {
            min_days: config.audit_retention_min_days,
            platform_days: config.audit_platform_retention_days,
        }
    }
}

/// One chain's row.
#[derive(sqlx::FromRow)]
struct Row {
    holds: String,
    days: Option<i64>,
    floor_days: Option<i64>,
    floor_holds: String,
}

fn parse_holds(text: &str) -> Vec<Hold> {
    serde_json::from_str(text).unwrap_or_else(|e| {
        // Unreadable holds: keep everything for the longest retention there is.
        tracing::error!(error = %e, "stored audit retention holds unreadable");
        vec![Hold {
            days: crate::tenancy::settings::RETENTION_RANGE.end().to_owned(),
            until: DateTime::<Utc>::MAX_UTC,
        }]
    })
}

async fn read(tx: &mut TenantTx) -> Result<Option<Row>, DbError> {
    tx.fetch_optional(
        "SELECT holds, CAST(days AS BIGINT) AS days, CAST(floor_days AS BIGINT) AS floor_days, \
         floor_holds FROM audit_retention WHERE tenant_id = $1",
        vec![],
    )
    .await
}

/// The holds of the transaction's chain.
pub(crate) async fn holds(tx: &mut TenantTx) -> Result<Vec<Hold>, DbError> {
    Ok(read(tx)
        .await?
        .map(|r| parse_holds(&r.holds))
        .unwrap_or_default())
}

/// Records a change of the transaction's tenant's retention from `old` to
/// `new` days (in the caller's transaction); the hold it leaves, if any.
pub(crate) async fn record_change(
    tx: &mut TenantTx,
    now: DateTime<Utc>,
    old: i64,
    new: i64,
) -> Result<Option<Hold>, DbError> {
    let mut list = holds(tx).await?;
    let added = change(&mut list, old, new, now);
    tx.execute(
        "INSERT INTO audit_retention (tenant_id, holds, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id) DO UPDATE SET holds = $2, updated_at = $3",
        vec![holds_text(&list).into(), now.into()],
    )
    .await?;
    Ok(added)
}

fn holds_text(list: &[Hold]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

/// What a purge run keeps, in days, at its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    /// The least any tenant's chain keeps (the floor, or more while a
    /// lowering of the floor holds).
    pub floor: i64,
    /// The platform chain's retention (or more while a hold lasts).
    pub platform: i64,
}

/// Compares the deployment's configuration with what the last run applied
/// (the platform chain's `audit_retention` row): a first sight or a change
/// is appended to the platform chain as `audit.retention.changed`, and a
/// lowering of either leaves its hold. Returns what this run keeps.
pub async fn apply_policy(
    db: &Db,
    clock: &dyn Clock,
    policy: RetentionPolicy,
) -> Result<Kept, AuditError> {
    let now = clock.now();
    let mut tx = db.tenant_tx(TenantId::PLATFORM).await?;
    let row = read(&mut tx).await?;
    let (mut holds, mut floor_holds) = match &row {
        Some(r) => (parse_holds(&r.holds), parse_holds(&r.floor_holds)),
        None => (Vec::new(), Vec::new()),
    };
    let before = row.as_ref().map(|r| (r.days, r.floor_days));
    let was = |v: Option<i64>, default: i64| v.unwrap_or(default);
    let (old_platform, old_floor) = match before {
        Some((days, floor)) => (was(days, policy.platform_days), was(floor, policy.min_days)),
        None => (policy.platform_days, policy.min_days),
    };
    let platform_hold = change(&mut holds, old_platform, policy.platform_days, now);
    let floor_hold = change(&mut floor_holds, old_floor, policy.min_days, now);
    let changed = before != Some((Some(policy.platform_days), Some(policy.min_days)));
    if changed {
        tx.execute(
            "INSERT INTO audit_retention (tenant_id, holds, days, floor_days, floor_holds, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id) DO UPDATE SET \
             holds = $2, days = $3, floor_days = $4, floor_holds = $5, updated_at = $6",
            vec![
                holds_text(&holds).into(),
                policy.platform_days.into(),
                policy.min_days.into(),
                holds_text(&floor_holds).into(),
                now.into(),
            ],
        )
        .await?;
        let event = NewEvent::new(Actor::System, "audit.retention.changed")
            .target(Target::new("tenant", TenantId::PLATFORM))
            .details(json!({
                "min_days": { "old": before.map(|_| old_floor), "new": policy.min_days },
                "platform_days": { "old": before.map(|_| old_platform), "new": policy.platform_days },
                "floor_hold": floor_hold,
                "platform_hold": platform_hold,
            }));
        append(&mut tx, clock, event).await?;
        tx.commit().await?;
    }
    let floor = effective(policy.min_days, &floor_holds, now);
    Ok(Kept {
        floor,
        platform: effective(policy.platform_days, &holds, now).max(floor),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap() + chrono::Duration::days(day)
    }

    #[test]
    fn unreadable_holds_keep_everything() {
        let holds = parse_holds("not json");
        assert_eq!(effective(90, &holds, at(0)), 3650);
        assert!(parse_holds("[]").is_empty());
    }
}
