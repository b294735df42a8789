//! Key rotation, retirement and crypto-shredding (SPEC §2.9, issue #5), on
//! SQLite and PostgreSQL: master-key rotation re-wraps every sealed item
//! while a running server keeps serving; tenant data rotation re-encrypts
//! records in resumable batches; retirement refuses while a version is in
//! use; destroyed keys make a tenant's stored records unreadable for good.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use stockade::clock::Clock;
use stockade::crypto::envelope::{self, EnvelopeError, TenantKeys};
use stockade::crypto::keys::MasterKey;
use stockade::crypto::rotation::{self, RotationError, Wrapped};
use stockade::crypto::{keyring, master, server_keys};
use stockade::db::Db;
use stockade::ids::TenantId;
use stockade::records::cipher::{self, StoredDocument};
use stockade::tenancy;
use uuid::Uuid;

use crate::audit::events_of;
use crate::auth::{login_ok, server, signup};
use crate::testkit::{Backend, TestDb, fixed_clock};

const COLLECTION: &str = "notes";

/// A key file in the format before rotation existed: one base64 key.
fn old_format_key_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("master.key");
    master_file_write(&path, &format!("{}\n", B64.encode([5u8; 32])));
    path
}

fn master_file_write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The key file as another process (the CLI) reads it.
fn from_file(path: &Path) -> MasterKey {
    MasterKey::parse(
        &std::fs::read_to_string(path).unwrap(),
        Some(path.to_path_buf()),
    )
    .unwrap()
}

async fn keys_of(db: &Db, tenant: TenantId, m: &MasterKey) -> Result<TenantKeys, EnvelopeError> {
    let mut tx = db.tenant_tx(tenant).await.unwrap();
    let keys = envelope::load(&mut tx, m, fixed_clock().as_ref()).await;
    if keys.is_ok() {
        tx.commit().await.unwrap();
    }
    keys
}

async fn new_tenant(db: &Db, m: &MasterKey, slug: &str) -> TenantId {
    tenancy::create_tenant(
        db,
        fixed_clock().as_ref(),
        m,
        tenancy::NewTenant {
            slug: tenancy::Slug::parse(slug).unwrap(),
            name: tenancy::TenantName::parse(slug).unwrap(),
        },
        stockade::audit::Actor::System,
        stockade::audit::RequestContext::default(),
    )
    .await
    .unwrap()
    .id
}

fn doc(i: usize) -> StoredDocument {
    StoredDocument {
        key: Some(format!("note-{i}")),
        data: serde_json::json!({ "n": i, "text": format!("note number {i}") }),
    }
}

/// Stores `n` records encrypted the way the records API stores them.
async fn insert_records(db: &Db, tenant: TenantId, m: &MasterKey, n: usize) -> Vec<Uuid> {
    let now = fixed_clock().now();
    let mut tx = db.tenant_tx(tenant).await.unwrap();
    let keys = envelope::load(&mut tx, m, fixed_clock().as_ref())
        .await
        .unwrap();
    tx.execute(
        "INSERT INTO collections (tenant_id, name, created_at, updated_at) \
         VALUES ($1, $2, $3, $3) ON CONFLICT DO NOTHING",
        vec![COLLECTION.into(), now.into()],
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let id = Uuid::now_v7();
        let (body, version) = cipher::seal_document(&keys, COLLECTION, id, &doc(i)).unwrap();
        tx.execute(
            "INSERT INTO records (tenant_id, id, collection, body, key_version, version, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
            vec![
                id.into(),
                COLLECTION.into(),
                body.into(),
                i64::from(version).into(),
                now.into(),
            ],
        )
        .await
        .unwrap();
        ids.push(id);
    }
    tx.commit().await.unwrap();
    ids
}

/// Every record of the tenant, decrypted (in id order), or the first error.
async fn read_records(
    db: &Db,
    tenant: TenantId,
    m: &MasterKey,
) -> Result<Vec<StoredDocument>, EnvelopeError> {
    let keys = keys_of(db, tenant, m).await?;
    let mut tx = db.tenant_read(tenant).await.unwrap();
    let rows: Vec<(Uuid, String, Vec<u8>)> = tx
        .fetch_all(
            "SELECT id, collection, body FROM records WHERE tenant_id = $1 ORDER BY id",
            vec![],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    rows.iter()
        .map(|(id, c, body)| cipher::open_document(&keys, c, *id, body))
        .collect()
}

async fn counts(db: &Db, tenant: TenantId) -> Vec<(u32, u64)> {
    let mut tx = db.tenant_read(tenant).await.unwrap();
    let c = cipher::key_version_counts(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    c
}

fn only(usage: &std::collections::BTreeMap<u32, Wrapped>) -> Vec<u32> {
    usage
        .iter()
        .filter(|(_, w)| w.total() > 0)
        .map(|(v, _)| *v)
        .collect()
}

/// Master rotation while a server runs: every sealed item moves to the new
/// version, no record is rewritten, and the server (started before, holding
/// only v1) still reads and writes tenant data, signs in and creates tenants.
async fn master_rotation_rewraps_everything_while_the_server_serves(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = old_format_key_file(dir.path());
    let file = path.display().to_string();
    let Some(s) = server(backend, &[("STOCKADE_MASTER_KEY_FILE", file.as_str())]).await else {
        return;
    };
    let clock = fixed_clock();
    signup(&s, "acme", "owner@acme.example").await;
    let acme = tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap()
        .id;
    let ids = insert_records(&s.db, acme, &s.state.master(), 3).await;
    server_keys::get_or_create(&s.db, &s.state.master(), clock.as_ref(), "test")
        .await
        .unwrap();
    let mut tx = s.db.global_tx().await.unwrap();
    stockade::email::enqueue(
        &mut tx,
        clock.as_ref(),
        &s.state.master(),
        &stockade::email::Message {
            to: "x@acme.example",
            kind: "verification",
            subject: "s",
            body: "a secret link",
        },
        false,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let bodies_before = raw_bodies(&s.db, acme).await;
    let before = rotation::master_usage(&s.db).await.unwrap();
    assert_eq!(only(&before), [1]);
    let v1 = before[&1];
    // server keys: "test" and the audit head key; outbox: the sign-up's
    // verification email and the message above.
    assert_eq!((v1.tenant_keys, v1.server_keys, v1.outbox), (2, 2, 2));
    assert!(v1.signing_keys >= 1);

    // `stockade keys rotate`, as another process.
    let cli = from_file(&path);
    let done = rotation::rotate_master(&s.db, &cli, clock.as_ref())
        .await
        .unwrap();
    assert_eq!((done.version, done.added), (2, true));
    assert_eq!(done.rewrapped, v1);
    let rotated = details_of(&s.db, TenantId::PLATFORM, "crypto.master_key.rotated").await;
    assert_eq!(rotated.len(), 1);
    assert_eq!(
        rotated[0],
        serde_json::json!({"version": 2, "added": true, "rewrapped": {
            "tenant_keys": v1.tenant_keys, "signing_keys": v1.signing_keys,
            "server_keys": v1.server_keys, "outbox": v1.outbox,
            "totp_secrets": v1.totp_secrets}})
    );
    let after = rotation::master_usage(&s.db).await.unwrap();
    assert_eq!(only(&after), [2]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("v1:") && text.contains("\nv2:"),
        "two versioned lines"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        raw_bodies(&s.db, acme).await,
        bodies_before,
        "no record rewritten"
    );

    // The running server: reads, writes, signs in, creates tenants (under v2).
    let served = s.state.master();
    assert_eq!(read_records(&s.db, acme, &served).await.unwrap().len(), 3);
    insert_records(&s.db, acme, &served, 1).await;
    assert_eq!(read_records(&s.db, acme, &served).await.unwrap()[0], doc(0));
    login_ok(&s, "owner@acme.example").await;
    signup(&s, "globex", "owner@globex.example").await;
    keyring::load(&s.db, &s.state.keys, clock.as_ref())
        .await
        .unwrap();
    server_keys::get_or_create(&s.db, &served, clock.as_ref(), "test")
        .await
        .unwrap();
    assert_eq!(only(&rotation::master_usage(&s.db).await.unwrap()), [2]);
    assert_eq!(ids.len(), 3);

    // Retiring v1 is now allowed; the current version never is.
    let err = rotation::retire_master(&s.db, &cli, clock.as_ref(), 2)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("current"), "{err}");
    rotation::retire_master(&s.db, &cli, clock.as_ref(), 1)
        .await
        .unwrap();
    assert!(!std::fs::read_to_string(&path).unwrap().contains("v1:"));

    // A crash after the file got v3 but before any re-wrap: v2 is still in
    // use, so retiring it is refused; re-running finishes the rotation to v3
    // without adding a v4.
    assert_eq!(master::append_version(&path).unwrap(), 3);
    let err = rotation::retire_master(&s.db, &cli, clock.as_ref(), 2)
        .await
        .unwrap_err();
    assert!(matches!(err, RotationError::Refused(_)), "{err}");
    assert!(err.to_string().contains("still wraps"), "{err}");
    let resumed = rotation::rotate_master(&s.db, &cli, clock.as_ref())
        .await
        .unwrap();
    assert_eq!((resumed.version, resumed.added), (3, false));
    assert_eq!(only(&rotation::master_usage(&s.db).await.unwrap()), [3]);
    rotation::retire_master(&s.db, &cli, clock.as_ref(), 2)
        .await
        .unwrap();
    let rotated = details_of(&s.db, TenantId::PLATFORM, "crypto.master_key.rotated").await;
    assert_eq!(
        rotated
            .iter()
            .map(|d| (d["version"].as_u64(), d["added"].as_bool()))
            .collect::<Vec<_>>(),
        [(Some(2), Some(true)), (Some(3), Some(false))]
    );
    // Refused retirements write nothing; each retirement writes one event.
    assert_eq!(
        details_of(&s.db, TenantId::PLATFORM, "crypto.master_key.retired").await,
        [
            serde_json::json!({"version": 1}),
            serde_json::json!({"version": 2})
        ]
    );
    assert!(
        stockade::audit::verify_all(&s.db)
            .await
            .unwrap()
            .iter()
            .all(|r| r.ok)
    );
    // The server has only ever been told about v1 at start: it still serves.
    assert_eq!(read_records(&s.db, acme, &served).await.unwrap().len(), 4);
    login_ok(&s, "owner@globex.example").await;
    assert!(
        read_records(&s.db, acme, &MasterKey::single(1, [5u8; 32]))
            .await
            .is_err()
    );
    s.stop().await;
}

/// The `details` of `tenant`'s events with `action`, oldest first.
async fn details_of(db: &Db, tenant: TenantId, action: &str) -> Vec<serde_json::Value> {
    events_of(db, tenant, action)
        .await
        .into_iter()
        .map(|e| {
            assert_eq!(e.actor_type, "system");
            serde_json::from_str(&e.details).unwrap()
        })
        .collect()
}

/// The stored ciphertexts of a tenant's records.
async fn raw_bodies(db: &Db, tenant: TenantId) -> Vec<Vec<u8>> {
    let mut tx = db.tenant_read(tenant).await.unwrap();
    let rows: Vec<(Vec<u8>,)> = tx
        .fetch_all(
            "SELECT body FROM records WHERE tenant_id = $1 ORDER BY id",
            vec![],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    rows.into_iter().map(|(b,)| b).collect()
}

/// A master key that is not in a file cannot be rotated: refused, nothing changed.
#[tokio::test]
async fn master_rotation_needs_a_key_file() {
    let t = TestDb::sqlite().await;
    let m = MasterKey::single(1, [1u8; 32]);
    let err = rotation::rotate_master(&t.db, &m, fixed_clock().as_ref())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("STOCKADE_MASTER_KEY_FILE"),
        "{err}"
    );
}

/// `keys rotate --tenant-data`: a new data-key version, records re-encrypted
/// in batches; stopped after one batch (a crash) and re-run, it resumes with
/// the same version; every record decrypts; other tenants are untouched.
async fn tenant_data_rotation_resumes_and_reencrypts_every_record(t: &TestDb) {
    let m = MasterKey::single(1, [1u8; 32]);
    let clock = fixed_clock();
    let a = new_tenant(&t.db, &m, "acme").await;
    let b = new_tenant(&t.db, &m, "globex").await;
    let n = usize::try_from(rotation::BATCH).unwrap() + 203;
    insert_records(&t.db, a, &m, n).await;
    insert_records(&t.db, b, &m, 2).await;
    let total = u64::try_from(n).unwrap();
    assert_eq!(counts(&t.db, a).await, [(1, total)]);

    let mut seen = Vec::new();
    let first = rotation::rotate_tenant_data(&t.db, &m, clock.as_ref(), a, Some(1), &mut |d, t| {
        seen.push((d, t))
    })
    .await
    .unwrap();
    assert_eq!((first.version, first.added), (2, true));
    assert_eq!(first.reencrypted, 500);
    assert_eq!(first.remaining, total - 500);
    assert!(
        events_of(&t.db, a, "crypto.data_key.rotated")
            .await
            .is_empty(),
        "an unfinished rotation is not recorded yet"
    );
    assert_eq!(seen, [(0, total), (500, total)]);
    assert_eq!(counts(&t.db, a).await, [(1, total - 500), (2, 500)]);
    // Mid-rotation the API keeps reading every record (both versions live).
    assert_eq!(read_records(&t.db, a, &m).await.unwrap().len(), n);

    let rest = rotation::rotate_tenant_data(&t.db, &m, clock.as_ref(), a, None, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!((rest.version, rest.added), (2, false), "resumed, no v3");
    assert_eq!((rest.reencrypted, rest.remaining), (total - 500, 0));
    assert_eq!(counts(&t.db, a).await, [(2, total)]);
    let docs = read_records(&t.db, a, &m).await.unwrap();
    let mut numbers: Vec<u64> = docs.iter().map(|d| d.data["n"].as_u64().unwrap()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..total).collect::<Vec<_>>());
    assert_eq!(counts(&t.db, b).await, [(1, 2)], "other tenant untouched");
    let done = serde_json::json!({"tenant_id": a, "version": 2, "added": false,
        "reencrypted": total - 500});
    for chain in [a, TenantId::PLATFORM] {
        assert_eq!(
            details_of(&t.db, chain, "crypto.data_key.rotated")
                .await
                .as_slice(),
            std::slice::from_ref(&done)
        );
    }
    assert!(
        events_of(&t.db, b, "crypto.data_key.rotated")
            .await
            .is_empty()
    );

    // Run again when finished: a new version (a fresh rotation).
    let again = rotation::rotate_tenant_data(&t.db, &m, clock.as_ref(), a, None, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(
        (again.version, again.added, again.reencrypted),
        (3, true, total)
    );
    assert_eq!(counts(&t.db, a).await, [(3, total)]);
    let events = details_of(&t.db, a, "crypto.data_key.rotated").await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1],
        serde_json::json!({"tenant_id": a, "version": 3, "added": true, "reencrypted": total})
    );
}

/// `keys retire VERSION`: refused while records use the version or while it
/// is current; then retired, it no longer decrypts (a stray old ciphertext is
/// an integrity error, not data).
async fn retiring_a_data_key_version_refuses_while_in_use(t: &TestDb) {
    let m = MasterKey::single(1, [1u8; 32]);
    let clock = fixed_clock();
    let a = new_tenant(&t.db, &m, "acme").await;
    insert_records(&t.db, a, &m, 3).await;
    let old_keys = keys_of(&t.db, a, &m).await.unwrap();
    let refused = |r: Result<bool, RotationError>, want: &str| match r {
        Err(RotationError::Refused(why)) => assert!(why.contains(want), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    };
    refused(
        rotation::retire_data_version(&t.db, clock.as_ref(), a, 1).await,
        "current",
    );
    rotation::rotate_tenant_data(&t.db, &m, clock.as_ref(), a, Some(0), &mut |_, _| {})
        .await
        .unwrap();
    refused(
        rotation::retire_data_version(&t.db, clock.as_ref(), a, 1).await,
        "still has 3 records",
    );
    refused(
        rotation::retire_data_version(&t.db, clock.as_ref(), a, 9).await,
        "no data key v9",
    );
    assert_eq!(counts(&t.db, a).await, [(1, 3)], "nothing changed");
    rotation::rotate_tenant_data(&t.db, &m, clock.as_ref(), a, None, &mut |_, _| {})
        .await
        .unwrap();
    assert!(
        rotation::retire_data_version(&t.db, clock.as_ref(), a, 1)
            .await
            .unwrap()
    );
    assert!(
        !rotation::retire_data_version(&t.db, clock.as_ref(), a, 1)
            .await
            .unwrap()
    );
    refused(
        rotation::retire_data_version(&t.db, clock.as_ref(), a, 2).await,
        "current",
    );
    // One event for the retirement (none for refusals or a repeat), in the
    // tenant's chain and the platform's.
    for chain in [a, TenantId::PLATFORM] {
        assert_eq!(
            details_of(&t.db, chain, "crypto.data_key.retired").await,
            [serde_json::json!({"tenant_id": a, "version": 1})]
        );
    }
    let usage = rotation::data_key_usage(&t.db, a).await.unwrap().unwrap();
    assert_eq!(usage, [(1, true, 0), (2, false, 3)]);
    assert_eq!(read_records(&t.db, a, &m).await.unwrap().len(), 3);
    // A v1 ciphertext (say, from a backup) no longer decrypts.
    let fresh = keys_of(&t.db, a, &m).await.unwrap();
    let id = Uuid::now_v7();
    let (ct, v) = cipher::seal_document(&old_keys, COLLECTION, id, &doc(0)).unwrap();
    assert_eq!(v, 1);
    assert!(cipher::open_document(&old_keys, COLLECTION, id, &ct).is_ok());
    assert!(matches!(
        cipher::open_document(&fresh, COLLECTION, id, &ct),
        Err(EnvelopeError::Integrity)
    ));
}

/// Crypto-shredding: after `envelope::destroy`, a tenant's stored records are
/// permanently unreadable (even if someone deletes the marker and new keys
/// are made); another tenant's records still read.
async fn destroyed_keys_make_stored_records_unreadable(t: &TestDb) {
    let m = MasterKey::single(1, [1u8; 32]);
    let clock = fixed_clock();
    let a = new_tenant(&t.db, &m, "acme").await;
    let b = new_tenant(&t.db, &m, "globex").await;
    insert_records(&t.db, a, &m, 3).await;
    insert_records(&t.db, b, &m, 2).await;
    assert_eq!(read_records(&t.db, a, &m).await.unwrap().len(), 3);

    let mut tx = t.db.tenant_tx(a).await.unwrap();
    envelope::destroy(&mut tx, clock.as_ref()).await.unwrap();
    tx.commit().await.unwrap();
    assert!(matches!(
        read_records(&t.db, a, &m).await,
        Err(EnvelopeError::Shredded)
    ));
    assert_eq!(
        raw_bodies(&t.db, a).await.len(),
        3,
        "ciphertexts remain, unreadable"
    );
    let err = rotation::rotate_tenant_data(&t.db, &m, clock.as_ref(), a, None, &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        RotationError::Envelope(EnvelopeError::Shredded)
    ));
    assert_eq!(read_records(&t.db, b, &m).await.unwrap().len(), 2);

    // Deleting the marker only yields fresh keys: the old records stay unreadable.
    crate::testkit::raw_execute(
        &t.db,
        "DELETE FROM tenant_keys WHERE tenant_id = $1",
        a.as_uuid(),
    )
    .await;
    assert!(matches!(
        read_records(&t.db, a, &m).await,
        Err(EnvelopeError::Integrity)
    ));
    assert_eq!(read_records(&t.db, b, &m).await.unwrap(), [doc(0), doc(1)]);
}

crate::both_backends!(
    tenant_data_rotation_resumes_and_reencrypts_every_record,
    retiring_a_data_key_version_refuses_while_in_use,
    destroyed_keys_make_stored_records_unreadable,
);

mod servers {
    use super::*;

    crate::both_servers!(master_rotation_rewraps_everything_while_the_server_serves);
}
