//! The `stockade audit` commands: `verify` (every chain, the first broken
//! sequence number), `export` (a tenant's events as NDJSON on stdout) and
//! `purge` (the retention purge the server also runs daily). Each opens the
//! database, calls the audit room and turns its answer into lines and an
//! exit code; none of the audit rules live here.

use super::{Failure, open_migrated};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::db::Db;
use crate::tenancy;

/// `audit verify`.
pub(super) async fn verify(config: &Config) -> Result<(), Failure> {
    let db = open_migrated(config).await?;
    let reports = crate::audit::verify_all(&db).await.map_err(Failure::one)?;
    db.close().await;
    let broken: Vec<String> = reports
        .iter()
        .filter(|r| !r.ok)
        .map(|r| {
            format!(
                "audit chain of tenant {} is broken at seq {}: {}",
                r.tenant_id,
                r.first_bad_seq.unwrap_or(0),
                r.reason.as_deref().unwrap_or("")
            )
        })
        .collect();
    for r in reports.iter().filter(|r| r.ok) {
        println!(
            "ok {} events={} head_seq={} head_hash={}",
            r.tenant_id, r.events_checked, r.head_seq, r.head_hash
        );
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(Failure {
            lines: broken,
            code: 1,
        })
    }
}

/// `audit export --tenant SLUG [--after N]`.
pub(super) async fn export(config: &Config, tenant: &str, after: i64) -> Result<(), Failure> {
    let db = open_migrated(config).await?;
    let found = tenancy::find_by_slug(&db, tenant)
        .await
        .map_err(Failure::one)?
        .ok_or_else(|| Failure::one(format!("no tenant with slug `{tenant}`")))?;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let r: anyhow::Result<u64> = async {
        crate::audit::api::audit_export(
            &db,
            &SystemClock,
            found.id,
            crate::audit::NewEvent::new(crate::audit::Actor::System, crate::audit::api::EXPORTED),
            after,
        )
        .await?;
        crate::audit::api::export_to(&db, found.id, after, &mut out).await
    }
    .await;
    db.close().await;
    r.map(|_| ()).map_err(Failure::one)
}

/// `audit purge [--tenant SLUG]`.
pub(super) async fn purge(config: &Config, tenant: Option<&str>) -> Result<(), Failure> {
    let db = open_migrated(config).await?;
    let r = purge_in(&db, config, tenant).await;
    db.close().await;
    r
}

async fn purge_in(db: &Db, config: &Config, tenant: Option<&str>) -> Result<(), Failure> {
    use crate::audit::{retention, retention_policy::RetentionPolicy};
    let policy = RetentionPolicy::from_config(config);
    let run = match tenant {
        None => retention::purge_all(db, &SystemClock, policy)
            .await
            .map_err(Failure::one)?,
        Some(slug) => {
            let found = tenancy::find_by_slug(db, slug)
                .await
                .map_err(Failure::one)?
                .ok_or_else(|| Failure::one(format!("no tenant with slug `{slug}`")))?;
            let purged = retention::purge_one(db, &SystemClock, policy, found.id)
                .await
                .map_err(Failure::one)?;
            retention::PurgeRun {
                purged: purged.into_iter().collect(),
                skipped: Vec::new(),
            }
        }
    };
    for r in &run.purged {
        println!(
            "purged {} events of tenant {} (seq {} to {})",
            r.count, r.tenant_id, r.from_seq, r.up_to_seq
        );
    }
    if run.purged.is_empty() {
        println!("nothing older than the retention");
    }
    if run.skipped.is_empty() {
        return Ok(());
    }
    Err(Failure {
        lines: run
            .skipped
            .iter()
            .map(|k| {
                format!(
                    "tenant {} skipped, its events kept: {} (the other chains were purged)",
                    k.tenant_id, k.message
                )
            })
            .collect(),
        code: 1,
    })
}
