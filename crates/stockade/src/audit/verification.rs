//! The scheduled full verification of every audit chain (issue #20 items 6
//! and 8): once a day, on the leader, every chain (the platform's and each
//! tenant's) is walked from its start (or retention checkpoint) to its
//! signed head (`store::verify_all`, the same walk as `stockade audit
//! verify`). Each run's outcome is kept in `chain_verifications` (counts
//! only, no tenant named) for the trust page and the chain-failure alert;
//! a broken chain is logged as an error naming the tenant id and the first
//! bad sequence number. Rows older than [`KEEP`] are deleted.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::store;
use crate::clock::Clock;
use crate::db::{Db, DbError};

/// How often the chains are verified.
pub const INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a verification's outcome is kept.
pub const KEEP: chrono::Duration = chrono::Duration::days(90);

/// The outcome of one full verification.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChainVerification {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Chains walked: the platform's and one per tenant.
    pub chains: i64,
    pub events_checked: i64,
    /// Chains that do not hold.
    pub broken: i64,
    pub ok: bool,
}

/// Verifies every chain and records the outcome (see the module
/// documentation). Returns the run's summary; a broken chain is a finished
/// run (recorded, alerting), not an error.
pub async fn scheduled_verification(
    db: &Db,
    clock: &dyn Clock,
) -> Result<ChainVerification, DbError> {
    let started_at = clock.now();
    let reports = store::verify_all(db).await?;
    let mut outcome = ChainVerification {
        started_at,
        finished_at: clock.now(),
        chains: i64::try_from(reports.len()).unwrap_or(i64::MAX),
        events_checked: 0,
        broken: 0,
        ok: true,
    };
    for report in &reports {
        outcome.events_checked = outcome
            .events_checked
            .saturating_add(i64::try_from(report.events_checked).unwrap_or(i64::MAX));
        if !report.ok {
            outcome.broken += 1;
            outcome.ok = false;
            tracing::error!(
                tenant = %report.tenant_id.0,
                first_bad_seq = report.first_bad_seq,
                reason = report.reason.as_deref().unwrap_or(""),
                "audit chain verification failed"
            );
        }
    }
    record(db, &outcome).await?;
    Ok(outcome)
}

async fn record(db: &Db, v: &ChainVerification) -> Result<(), DbError> {
    let mut tx = db.global_tx().await?;
    tx.execute(
        "INSERT INTO chain_verifications \
         (id, started_at, finished_at, chains, events_checked, broken, ok) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vec![
            uuid::Uuid::now_v7().into(),
            v.started_at.into(),
            v.finished_at.into(),
            v.chains.into(),
            v.events_checked.into(),
            v.broken.into(),
            v.ok.into(),
        ],
    )
    .await?;
    tx.execute(
        "DELETE FROM chain_verifications WHERE finished_at < $1",
        vec![(v.finished_at - KEEP).into()],
    )
    .await?;
    tx.commit().await
}

/// The latest recorded verification, if any ran.
pub async fn latest(db: &Db) -> Result<Option<ChainVerification>, DbError> {
    let mut tx = db.global_read().await?;
    tx.fetch_optional(
        "SELECT started_at, finished_at, chains, events_checked, broken, ok \
         FROM chain_verifications ORDER BY finished_at DESC, id DESC LIMIT 1",
        vec![],
    )
    .await
}
