//! `stockade keys …`: status, rotation and retirement of the signing key,
//! the master key and the tenants' data keys (SPEC §2.9, `docs/keys.md`).

use std::collections::BTreeMap;

use super::{Failure, Progress, open_migrated, timestamp};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::crypto::jwt::RETIRED_KEY_GRACE;
use crate::crypto::keys::{self, MasterKey};
use crate::crypto::rotation::{self, RotationError, Wrapped};
use crate::crypto::{envelope, keyring};
use crate::db::Db;
use crate::ids::TenantId;

fn keys_of(config: &Config) -> Result<keys::Keys, Failure> {
    keys::load(config).map_err(|lines| Failure { lines, code: 2 })
}

fn failure(e: RotationError) -> Failure {
    Failure::one(e)
}

/// `keys status`: the signing keys, the master-key versions with the items
/// each wraps, and each tenant's data-key versions with the records each
/// protects. Reads only: no key is opened or generated.
pub(super) async fn status(config: &Config) -> Result<(), Failure> {
    let db = super::open_migrated_without_keys(config).await?;
    let result = async {
        let stored = keyring::list(&db).await.map_err(Failure::one)?;
        let tenant_keys = envelope::status(&db).await.map_err(Failure::one)?;
        let usage = rotation::master_usage(&db).await.map_err(failure)?;
        let mut data = Vec::new();
        for (id, slug) in rotation::tenants(&db).await.map_err(Failure::one)? {
            if let Some(usage) = rotation::data_key_usage(&db, id).await.map_err(failure)? {
                data.push((slug, usage));
            }
        }
        Ok::<_, Failure>((stored, tenant_keys, usage, data))
    }
    .await;
    db.close().await;
    let (stored, tenant_keys, usage, data) = result?;
    let now = SystemClock.now();
    if stored.is_empty() {
        println!(
            "no signing key stored yet: `stockade serve` or `stockade keys rotate --signing` \
             stores the first one"
        );
    }
    for key in &stored {
        let state = match key.retired_at {
            None => "current".to_owned(),
            Some(at) if now < at + RETIRED_KEY_GRACE => {
                format!("verifies until {}", timestamp(at + RETIRED_KEY_GRACE))
            }
            Some(_) => "no longer verifies".to_owned(),
        };
        println!(
            "signing key {} alg={} created={} retired={} {state}",
            key.kid,
            key.alg,
            timestamp(key.created_at),
            key.retired_at.map_or_else(|| "-".to_owned(), timestamp)
        );
    }
    println!("master key: {}", master_key_status(config));
    print_master_versions(configured_master(config).as_ref(), &usage);
    print_tenant_keys(&tenant_keys);
    for (slug, versions) in &data {
        let current = versions
            .iter()
            .filter(|(_, r, _)| !r)
            .map(|(v, ..)| *v)
            .max();
        for (version, retired, records) in versions {
            let state = if *retired {
                " (retired)"
            } else if Some(*version) == current {
                " (current)"
            } else {
                ""
            };
            println!("tenant {slug} data key v{version}{state}: {records} records");
        }
    }
    Ok(())
}

/// The master key as configured (or the development key file if it was
/// generated), for its versions; never generates one.
fn configured_master(config: &Config) -> Option<MasterKey> {
    use secrecy::ExposeSecret;
    match &config.master_key {
        Some(secret) => MasterKey::parse(secret.value.expose_secret(), secret.file.clone()),
        None => {
            let path = config.data_dir.join("keys").join("master.key");
            let text = zeroize::Zeroizing::new(std::fs::read_to_string(&path).ok()?);
            MasterKey::parse(&text, Some(path))
        }
    }
}

/// One line per master-key version: the items it wraps.
fn print_master_versions(master: Option<&MasterKey>, usage: &BTreeMap<u32, Wrapped>) {
    let listed = master.map(MasterKey::versions).unwrap_or_default();
    let current = listed.last().copied();
    let mut versions: Vec<u32> = listed.clone();
    versions.extend(usage.keys().filter(|v| !listed.contains(v)));
    versions.sort_unstable();
    for v in versions {
        let w = usage.get(&v).copied().unwrap_or_default();
        let state = if Some(v) == current {
            " (current)"
        } else if !listed.contains(&v) {
            " (NOT in the key file: these items cannot be opened)"
        } else {
            ""
        };
        println!("master key v{v}{state}: wraps {w}");
    }
}

/// The tenant-key summary of `keys status`: how many tenants hold each key
/// version, under which master-key version (counts only, never a key).
fn print_tenant_keys(status: &envelope::KeyStatus) {
    let tenants = |n: usize| {
        if n == 1 {
            "1 tenant".to_owned()
        } else {
            format!("{n} tenants")
        }
    };
    if status.keys.is_empty() {
        println!("tenant keys: none stored yet (created with each tenant)");
    }
    for ((purpose, version, master), n) in &status.keys {
        let current = match purpose {
            envelope::Purpose::Data => format!(
                ", current for {}",
                tenants(status.current_data.get(version).copied().unwrap_or(0))
            ),
            envelope::Purpose::Index => String::new(),
        };
        println!(
            "tenant {} key v{version} wrapped by master v{master}: {}{current}",
            purpose.as_str(),
            tenants(*n)
        );
    }
    if status.unprovisioned > 0 {
        println!(
            "tenant keys not created yet: {} (created at first use)",
            tenants(status.unprovisioned)
        );
    }
    if status.shredded > 0 {
        println!(
            "tenant keys destroyed (crypto-shredded): {}",
            tenants(status.shredded)
        );
    }
}

/// Where the master key comes from, and whether it is a development key.
fn master_key_status(config: &Config) -> String {
    use secrecy::ExposeSecret;
    match &config.master_key {
        Some(secret) if secret.value.expose_secret().contains(keys::DEV_MARKER) => format!(
            "development key, configured ({}): never use it in production",
            secret.origin
        ),
        Some(secret) => format!("configured ({})", secret.origin),
        None if config.is_production() => {
            "missing: set STOCKADE_MASTER_KEY or STOCKADE_MASTER_KEY_FILE".to_owned()
        }
        None => {
            let path = config.data_dir.join("keys").join("master.key");
            if path.exists() {
                format!(
                    "development key, generated ({}): never use it in production",
                    path.display()
                )
            } else {
                "development key, generated at the first start (none yet)".to_owned()
            }
        }
    }
}

/// `keys rotate --signing`.
pub(super) async fn rotate_signing(config: &Config) -> Result<(), Failure> {
    let keys = keys_of(config)?;
    let db = open_migrated(config).await?;
    let rotated = keyring::rotate(&db, &keys, &SystemClock).await;
    let listed = match &rotated {
        Ok(_) => keyring::list(&db).await.ok(),
        Err(_) => None,
    };
    db.close().await;
    let kid = rotated.map_err(Failure::one)?;
    println!("new signing key {kid} is current");
    // The previous key is the one retired last.
    let previous = listed
        .unwrap_or_default()
        .into_iter()
        .filter(|k| k.kid != kid)
        .filter_map(|k| k.retired_at.map(|at| (at, k.created_at, k.kid)))
        .max();
    let minutes = RETIRED_KEY_GRACE.num_minutes();
    match previous {
        Some((at, _, old)) => println!(
            "tokens signed by the previous key {old} verify for {minutes} more minutes \
             (until {})",
            timestamp(at + RETIRED_KEY_GRACE)
        ),
        None => println!("tokens signed by the previous key verify for {minutes} more minutes"),
    }
    println!(
        "running servers switch to {kid} within {} s (they re-read the keys periodically)",
        crate::http::auth_state::KEYRING_RELOAD.as_secs()
    );
    Ok(())
}

/// `keys rotate` (the master key).
pub(super) async fn rotate_master(config: &Config) -> Result<(), Failure> {
    let keys = keys_of(config)?;
    let db = open_migrated(config).await?;
    let rotated = rotation::rotate_master(&db, &keys.master, &SystemClock).await;
    db.close().await;
    let done = rotated.map_err(failure)?;
    let how = if done.added {
        "is new and current"
    } else {
        "is current (finished the interrupted rotation to it)"
    };
    println!(
        "master key v{} {how}: re-wrapped {} (no record rewritten)",
        done.version, done.rewrapped
    );
    println!(
        "running servers use v{} from their next use of the key file; older versions keep \
         unwrapping until `stockade keys retire --master VERSION`",
        done.version
    );
    Ok(())
}

/// The tenants a command applies to: the one named, or all.
async fn selected(db: &Db, slug: Option<&str>) -> Result<Vec<(TenantId, String)>, Failure> {
    match slug {
        Some(slug) => {
            let tenant = crate::tenancy::find_by_slug(db, slug)
                .await
                .map_err(Failure::one)?
                .ok_or_else(|| Failure::one(format!("no tenant with slug `{slug}`")))?;
            Ok(vec![(tenant.id, tenant.slug)])
        }
        None => rotation::tenants(db).await.map_err(Failure::one),
    }
}

/// `keys rotate --tenant-data [--tenant SLUG]`.
pub(super) async fn rotate_tenant_data(config: &Config, slug: Option<&str>) -> Result<(), Failure> {
    let keys = keys_of(config)?;
    let db = open_migrated(config).await?;
    let result = async {
        for (id, slug) in selected(&db, slug).await? {
            let mut progress: Option<Progress> = None;
            let mut report = |done: u64, total: u64| {
                progress
                    .get_or_insert_with(|| Progress::new(total, "records", "re-encrypted"))
                    .set(done);
            };
            let rotated = rotation::rotate_tenant_data(
                &db,
                &keys.master,
                &SystemClock,
                id,
                None,
                &mut report,
            )
            .await;
            if let Some(p) = &progress {
                p.finish();
            }
            match rotated {
                Ok(done) => {
                    let how = if done.added { "new" } else { "resumed" };
                    println!(
                        "tenant {slug}: data key v{} ({how}) is current; re-encrypted {} records",
                        done.version, done.reencrypted
                    );
                }
                Err(RotationError::Envelope(envelope::EnvelopeError::Shredded)) => {
                    println!("tenant {slug}: keys destroyed (crypto-shredded), skipped");
                }
                Err(e) => return Err(Failure::one(format!("tenant {slug}: {e}"))),
            }
        }
        Ok(())
    }
    .await;
    db.close().await;
    result
}

/// `keys retire VERSION [--tenant SLUG]`: every selected tenant that has
/// the version must be able to retire it, or nothing is retired.
pub(super) async fn retire_data(
    config: &Config,
    version: u32,
    slug: Option<&str>,
) -> Result<(), Failure> {
    let db = open_migrated(config).await?;
    let result = async {
        let mut holders = Vec::new();
        let mut refusals = Vec::new();
        for (id, name) in selected(&db, slug).await? {
            let usage = rotation::data_key_usage(&db, id)
                .await
                .map_err(failure)?
                .unwrap_or_default();
            if slug.is_none() && !usage.iter().any(|(v, ..)| *v == version) {
                continue;
            }
            match rotation::retire_refusal(&usage, version) {
                Some(why) => refusals.push(format!("tenant {name} {why}")),
                None => holders.push((id, name)),
            }
        }
        if !refusals.is_empty() {
            return Err(Failure::one(format!(
                "cannot retire data key v{version}: {}",
                refusals.join("; ")
            )));
        }
        if holders.is_empty() {
            return Err(Failure::one(format!("no tenant has data key v{version}")));
        }
        for (id, name) in holders {
            let retired = rotation::retire_data_version(&db, &SystemClock, id, version)
                .await
                .map_err(|e| Failure::one(format!("tenant {name}: {e}")))?;
            if retired {
                println!("tenant {name}: data key v{version} retired (it no longer decrypts)");
            } else {
                println!("tenant {name}: data key v{version} was retired already");
            }
        }
        Ok(())
    }
    .await;
    db.close().await;
    result
}

/// `keys retire --master VERSION`.
pub(super) async fn retire_master(config: &Config, version: u32) -> Result<(), Failure> {
    let keys = keys_of(config)?;
    let db = open_migrated(config).await?;
    let result = rotation::retire_master(&db, &keys.master, &SystemClock, version).await;
    db.close().await;
    result.map_err(failure)?;
    println!("master key v{version} retired: removed from the key file");
    Ok(())
}
