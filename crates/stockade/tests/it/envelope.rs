//! Envelope encryption per tenant (SPEC §2.9, issue #5 keys and
//! crypto-shredding), on SQLite and PostgreSQL.

use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use stockade::audit::{Actor, RequestContext};
use stockade::crypto::envelope::{
    self, Aad, EnvelopeError, KeyStatus, Purpose, TenantKeys, wrap_aad,
};
use stockade::crypto::keys::{self, MasterKey};
use stockade::crypto::seal;
use stockade::db::Db;
use stockade::ids::TenantId;
use stockade::tenancy::{self, NewTenant, Slug, TenantName};

use crate::testkit::{TestDb, fixed_clock, test_config};

const AAD: Aad<'static> = Aad {
    table: "records",
    column: "data",
    row: "0192f1a0-0000-7000-8000-000000000001",
};

/// A master key of `byte`s, loaded the way the server loads one.
fn master(byte: u8) -> std::sync::Arc<MasterKey> {
    let dir = tempfile::tempdir().unwrap();
    let encoded = B64.encode([byte; 32]);
    let cfg = test_config(dir.path(), &[("STOCKADE_MASTER_KEY", encoded.as_str())]);
    keys::load(&cfg).unwrap().master
}

fn new_tenant(slug: &str) -> NewTenant {
    NewTenant {
        slug: Slug::parse(slug).unwrap(),
        name: TenantName::parse(slug).unwrap(),
    }
}

/// A tenant without keys, as tenants created before envelope encryption
/// are (the tests provision or load them explicitly).
async fn tenant(db: &Db, slug: &str) -> TenantId {
    let mut tx = db.global_tx().await.unwrap();
    let t = tenancy::insert_tenant(&mut tx, fixed_clock().as_ref(), &new_tenant(slug))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    t.id
}

/// Provisions the tenant's keys in their own transaction.
async fn provisioned(db: &Db, tenant: TenantId, master: &MasterKey) -> TenantKeys {
    let mut tx = db.tenant_tx(tenant).await.unwrap();
    let keys = envelope::provision(&mut tx, master, fixed_clock().as_ref())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    keys
}

async fn load(db: &Db, tenant: TenantId, master: &MasterKey) -> Result<TenantKeys, EnvelopeError> {
    let mut tx = db.tenant_tx(tenant).await.unwrap();
    let keys = envelope::load(&mut tx, master, fixed_clock().as_ref()).await;
    if keys.is_ok() {
        tx.commit().await.unwrap();
    }
    keys
}

fn is_integrity<T>(r: &Result<T, EnvelopeError>) -> bool {
    matches!(r, Err(EnvelopeError::Integrity))
}

fn is_shredded<T>(r: &Result<T, EnvelopeError>) -> bool {
    matches!(r, Err(EnvelopeError::Shredded))
}

/// A stored row as someone with database access sees it.
type RawRow = (String, i64, Vec<u8>);

/// Every `tenant_keys` row of `tenant`, read directly (the SQLite file, or
/// the PostgreSQL owner, past row-level security).
async fn raw_rows(db: &Db, tenant: TenantId) -> Vec<RawRow> {
    const SQL: &str = "SELECT purpose, version, wrapped_key FROM tenant_keys \
                       WHERE tenant_id = $1 ORDER BY purpose, version";
    match db.sqlite_pool() {
        Some(pool) => sqlx::query_as(SQL)
            .bind(tenant.as_uuid())
            .fetch_all(pool)
            .await
            .unwrap(),
        None => sqlx::query_as(SQL)
            .bind(tenant.as_uuid())
            .fetch_all(&crate::testkit::owner_pool(db).await)
            .await
            .unwrap(),
    }
}

fn wrapped(rows: &[RawRow], purpose: &str, version: i64) -> Vec<u8> {
    rows.iter()
        .find(|(p, v, _)| p == purpose && *v == version)
        .unwrap()
        .2
        .clone()
}

/// Overwrites one wrapped key directly in the database, as an attacker with
/// write access to it would.
async fn raw_set_wrapped(db: &Db, tenant: TenantId, purpose: &str, version: i64, value: &[u8]) {
    const SQL: &str = "UPDATE tenant_keys SET wrapped_key = $4 \
                       WHERE tenant_id = $1 AND purpose = $2 AND version = $3";
    let n = match db.sqlite_pool() {
        Some(pool) => sqlx::query(SQL)
            .bind(tenant.as_uuid())
            .bind(purpose)
            .bind(version)
            .bind(value)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected(),
        None => sqlx::query(SQL)
            .bind(tenant.as_uuid())
            .bind(purpose)
            .bind(version)
            .bind(value)
            .execute(&crate::testkit::owner_pool(db).await)
            .await
            .unwrap()
            .rows_affected(),
    };
    assert_eq!(n, 1);
}

/// Unwraps a stored key with the master key, as the server does.
fn unwrap(
    master: &MasterKey,
    tenant: TenantId,
    purpose: Purpose,
    version: u32,
    w: &[u8],
) -> Vec<u8> {
    master
        .open(1, &wrap_aad(tenant, purpose, version), w)
        .unwrap()
        .to_vec()
}

async fn round_trip_with_fresh_nonces(t: &TestDb) {
    let m = master(1);
    let a = tenant(&t.db, "acme").await;
    let keys = provisioned(&t.db, a, &m).await;
    assert_eq!(keys.tenant(), a);
    assert_eq!(keys.current_version(), 1);
    let doc = br#"{"invoice":"INV-42","amount":"1200.00"}"#;
    let one = keys.encrypt(&AAD, doc).unwrap();
    let two = keys.encrypt(&AAD, doc).unwrap();
    assert_ne!(one, two, "a fresh nonce each time");
    assert_eq!(one.len(), doc.len() + envelope::OVERHEAD);
    assert!(!one.windows(7).any(|w| w == b"INV-42\""));
    assert_eq!(keys.decrypt(&AAD, &one).unwrap().as_slice(), doc);
    assert_eq!(keys.decrypt(&AAD, &two).unwrap().as_slice(), doc);
    // Stored and loaded again: the same keys.
    let again = load(&t.db, a, &m).await.unwrap();
    assert_eq!(again.decrypt(&AAD, &one).unwrap().as_slice(), doc);
    assert_eq!(again.current_version(), 1);
    assert!(!format!("{again:?}").contains("[1, 1, 1"));
}

async fn associated_data_binds_table_column_and_row(t: &TestDb) {
    let m = master(1);
    let a = tenant(&t.db, "acme").await;
    let keys = provisioned(&t.db, a, &m).await;
    let ct = keys.encrypt(&AAD, b"secret").unwrap();
    for other in [
        Aad {
            row: "0192f1a0-0000-7000-8000-000000000002",
            ..AAD
        },
        Aad {
            column: "notes",
            ..AAD
        },
        Aad {
            table: "invoices",
            ..AAD
        },
        // Parts that concatenate to the same string still differ.
        Aad {
            table: "recordsdata",
            column: "",
            ..AAD
        },
    ] {
        assert!(is_integrity(&keys.decrypt(&other, &ct)), "{other:?}");
    }
    assert!(keys.decrypt(&AAD, &ct).is_ok());
}

async fn tenants_have_different_keys(t: &TestDb) {
    let m = master(1);
    let a = tenant(&t.db, "acme").await;
    let b = tenant(&t.db, "globex").await;
    let ka = provisioned(&t.db, a, &m).await;
    let kb = provisioned(&t.db, b, &m).await;
    let ct = ka.encrypt(&AAD, b"acme's ledger").unwrap();
    assert!(is_integrity(&kb.decrypt(&AAD, &ct)));
    assert!(ka.decrypt(&AAD, &ct).is_ok());
    let (ra, rb) = (raw_rows(&t.db, a).await, raw_rows(&t.db, b).await);
    for purpose in [Purpose::Data, Purpose::Index] {
        let p = purpose.as_str();
        assert_ne!(
            unwrap(&m, a, purpose, 1, &wrapped(&ra, p, 1)),
            unwrap(&m, b, purpose, 1, &wrapped(&rb, p, 1)),
            "{p}"
        );
    }
    assert_ne!(
        unwrap(&m, a, Purpose::Data, 1, &wrapped(&ra, "data", 1)),
        unwrap(&m, a, Purpose::Index, 1, &wrapped(&ra, "index", 1)),
    );
}

async fn swapped_wrapped_keys_fail_to_load(t: &TestDb) {
    let m = master(1);
    let a = tenant(&t.db, "acme").await;
    let b = tenant(&t.db, "globex").await;
    provisioned(&t.db, a, &m).await;
    provisioned(&t.db, b, &m).await;
    let (ra, rb) = (raw_rows(&t.db, a).await, raw_rows(&t.db, b).await);
    // Between tenants: each now holds the other's wrapped data key.
    raw_set_wrapped(&t.db, a, "data", 1, &wrapped(&rb, "data", 1)).await;
    raw_set_wrapped(&t.db, b, "data", 1, &wrapped(&ra, "data", 1)).await;
    assert!(is_integrity(&load(&t.db, a, &m).await));
    assert!(is_integrity(&load(&t.db, b, &m).await));
    raw_set_wrapped(&t.db, b, "data", 1, &wrapped(&rb, "data", 1)).await;
    assert!(load(&t.db, b, &m).await.is_ok());
    // Between purposes of one tenant: the index key in the data key's place.
    raw_set_wrapped(&t.db, a, "data", 1, &wrapped(&ra, "index", 1)).await;
    assert!(is_integrity(&load(&t.db, a, &m).await));
    // Tampered bytes.
    let mut bad = wrapped(&ra, "index", 1);
    bad[20] ^= 1;
    raw_set_wrapped(&t.db, a, "data", 1, &wrapped(&ra, "data", 1)).await;
    raw_set_wrapped(&t.db, a, "index", 1, &bad).await;
    assert!(is_integrity(&load(&t.db, a, &m).await));
    // Restored: loads again. Another master key: refused, not used.
    raw_set_wrapped(&t.db, a, "index", 1, &wrapped(&ra, "index", 1)).await;
    assert!(load(&t.db, a, &m).await.is_ok());
    assert!(is_integrity(&load(&t.db, a, &master(2)).await));
}

async fn the_database_holds_only_wrapped_keys(t: &TestDb) {
    let m = master(1);
    let a = tenant(&t.db, "acme").await;
    let keys = provisioned(&t.db, a, &m).await;
    let ct = keys.encrypt(&AAD, b"payroll").unwrap();
    let rows = raw_rows(&t.db, a).await;
    assert_eq!(rows.len(), 3, "state row, data v1, index v1");
    let mut raw_keys = Vec::new();
    for (purpose, version, w) in rows.iter().filter(|(_, v, _)| *v > 0) {
        assert_eq!(
            w.len(),
            32 + seal::OVERHEAD,
            "{purpose} is wrapped, not raw"
        );
        let p = if purpose == "data" {
            Purpose::Data
        } else {
            Purpose::Index
        };
        let v = u32::try_from(*version).unwrap();
        assert!(master(2).open(1, &wrap_aad(a, p, v), w).is_err());
        let key = unwrap(&m, a, p, v, w);
        assert_eq!(key.len(), 32);
        assert!(!w.windows(32).any(|win| win == key.as_slice()));
        raw_keys.push(key);
    }
    // The unwrapped data key is the one that encrypted: the master key is the
    // only way from the database to the data.
    let data_key: [u8; 32] = raw_keys[0].as_slice().try_into().unwrap();
    assert_eq!(
        seal::open(&data_key, &AAD.bytes(a), &ct[envelope::VERSION_LEN..])
            .unwrap()
            .as_slice(),
        b"payroll"
    );
    // The SQLite files themselves (database and write-ahead log).
    if let Some(path) = t.db.sqlite_pool().map(|_| t.name.clone()) {
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
        for key in &raw_keys {
            assert!(!bytes.windows(32).any(|w| w == key.as_slice()));
        }
    }
}

async fn blind_indexes_are_per_tenant_and_per_field(t: &TestDb) {
    let m = master(1);
    let a = tenant(&t.db, "acme").await;
    let b = tenant(&t.db, "globex").await;
    let ka = provisioned(&t.db, a, &m).await;
    let kb = provisioned(&t.db, b, &m).await;
    let ix = ka.blind_index("orders", "status", "paid");
    assert_eq!(ix, ka.blind_index("orders", "status", "paid"));
    assert_eq!(
        ix,
        load(&t.db, a, &m)
            .await
            .unwrap()
            .blind_index("orders", "status", "paid")
    );
    assert_ne!(ix, kb.blind_index("orders", "status", "paid"));
    assert_ne!(ix, ka.blind_index("orders", "state", "paid"));
    assert_ne!(ix, ka.blind_index("invoices", "status", "paid"));
    assert_ne!(ix, ka.blind_index("orders", "status", "unpaid"));
    // The index key is not the data key: a new data key version keeps indexes.
    let mut tx = t.db.tenant_tx(a).await.unwrap();
    envelope::new_data_key_version(&mut tx, &m, fixed_clock().as_ref())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        ix,
        load(&t.db, a, &m)
            .await
            .unwrap()
            .blind_index("orders", "status", "paid")
    );
}

async fn a_new_data_key_version_keeps_old_ciphertexts_readable(t: &TestDb) {
    let m = master(1);
    let a = tenant(&t.db, "acme").await;
    let v1 = provisioned(&t.db, a, &m).await;
    let old = v1.encrypt(&AAD, b"old").unwrap();
    let mut tx = t.db.tenant_tx(a).await.unwrap();
    let version = envelope::new_data_key_version(&mut tx, &m, fixed_clock().as_ref())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(version, 2);
    let v2 = load(&t.db, a, &m).await.unwrap();
    assert_eq!(v2.current_version(), 2);
    let new = v2.encrypt(&AAD, b"new").unwrap();
    assert_eq!(new[..4], 2u32.to_be_bytes());
    assert_eq!(old[..4], 1u32.to_be_bytes());
    assert_eq!(v2.decrypt(&AAD, &old).unwrap().as_slice(), b"old");
    assert_eq!(v2.decrypt(&AAD, &new).unwrap().as_slice(), b"new");
    // Keys loaded before the new version do not know it: refused, not guessed.
    assert!(is_integrity(&v1.decrypt(&AAD, &new)));
    let mut tx = t.db.tenant_tx(a).await.unwrap();
    let v3 = envelope::new_data_key_version(&mut tx, &m, fixed_clock().as_ref())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(v3, 3);
    let rows = raw_rows(&t.db, a).await;
    let versions: Vec<i64> = rows.iter().filter(|r| r.0 == "data").map(|r| r.1).collect();
    assert_eq!(versions, [0, 1, 2, 3]);
    // The new wrapped key is bound to its version like the first one.
    raw_set_wrapped(&t.db, a, "data", 3, &wrapped(&rows, "data", 2)).await;
    assert!(is_integrity(&load(&t.db, a, &m).await));
}

async fn destroyed_keys_make_ciphertexts_unreadable_forever(t: &TestDb) {
    let m = master(1);
    let clock = fixed_clock();
    let a = tenant(&t.db, "acme").await;
    let b = tenant(&t.db, "globex").await;
    let keys = provisioned(&t.db, a, &m).await;
    let kb = provisioned(&t.db, b, &m).await;
    let ct = keys.encrypt(&AAD, b"customer list").unwrap();
    let ct_b = kb.encrypt(&AAD, b"globex data").unwrap();
    drop(keys);

    let mut tx = t.db.tenant_tx(a).await.unwrap();
    envelope::destroy(&mut tx, clock.as_ref()).await.unwrap();
    tx.commit().await.unwrap();
    // Only the shredded marker is left: no wrapped key to open.
    let rows = raw_rows(&t.db, a).await;
    assert_eq!(rows, vec![("data".to_owned(), 0, Vec::new())]);
    assert!(is_shredded(&load(&t.db, a, &m).await));
    let mut tx = t.db.tenant_tx(a).await.unwrap();
    assert!(is_shredded(
        &envelope::provision(&mut tx, &m, clock.as_ref()).await
    ));
    assert!(is_shredded(
        &envelope::new_data_key_version(&mut tx, &m, clock.as_ref()).await
    ));
    // Idempotent.
    envelope::destroy(&mut tx, clock.as_ref()).await.unwrap();
    tx.commit().await.unwrap();
    assert!(is_shredded(&load(&t.db, a, &m).await));
    assert_eq!(raw_rows(&t.db, a).await.len(), 1);
    // The other tenant is untouched.
    let kb = load(&t.db, b, &m).await.unwrap();
    assert_eq!(kb.decrypt(&AAD, &ct_b).unwrap().as_slice(), b"globex data");

    // Even someone who deletes the marker gets fresh keys, never the old one.
    crate::testkit::raw_execute(
        &t.db,
        "DELETE FROM tenant_keys WHERE tenant_id = $1",
        a.as_uuid(),
    )
    .await;
    let fresh = load(&t.db, a, &m).await.unwrap();
    assert!(is_integrity(&fresh.decrypt(&AAD, &ct)));
}

async fn tenants_without_keys_get_them_at_first_load(t: &TestDb) {
    let m = master(1);
    let a = tenant(&t.db, "acme").await;
    assert!(raw_rows(&t.db, a).await.is_empty());
    let first = load(&t.db, a, &m).await.unwrap();
    assert_eq!(first.current_version(), 1);
    assert_eq!(raw_rows(&t.db, a).await.len(), 3);
    let ct = first.encrypt(&AAD, b"x").unwrap();
    let second = load(&t.db, a, &m).await.unwrap();
    assert_eq!(second.decrypt(&AAD, &ct).unwrap().as_slice(), b"x");
    let mut tx = t.db.tenant_tx(a).await.unwrap();
    assert!(matches!(
        envelope::provision(&mut tx, &m, fixed_clock().as_ref()).await,
        Err(EnvelopeError::AlreadyProvisioned)
    ));
    drop(tx);
    // Rolled back with the caller's transaction: nothing half-made.
    let b = tenant(&t.db, "globex").await;
    let mut tx = t.db.tenant_tx(b).await.unwrap();
    envelope::load(&mut tx, &m, fixed_clock().as_ref())
        .await
        .unwrap();
    drop(tx);
    assert!(raw_rows(&t.db, b).await.is_empty());
}

async fn concurrent_first_loads_agree_on_one_set_of_keys(t: &TestDb) {
    let m = std::sync::Arc::new(master(1));
    let a = tenant(&t.db, "acme").await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let first = {
        let (db, m) = (t.db.clone(), m.clone());
        tokio::spawn(async move {
            let mut tx = db.tenant_tx(a).await.unwrap();
            let keys = envelope::load(&mut tx, &m, fixed_clock().as_ref())
                .await
                .unwrap();
            started_tx.send(()).unwrap();
            // Hold the uncommitted keys while the second load starts.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            tx.commit().await.unwrap();
            keys.blind_index("c", "f", "v")
        })
    };
    started_rx.await.unwrap();
    let second = load(&t.db, a, &m).await.unwrap().blind_index("c", "f", "v");
    assert_eq!(first.await.unwrap(), second);
    assert_eq!(raw_rows(&t.db, a).await.len(), 3);
}

async fn status_counts_tenants_per_version(t: &TestDb) {
    let m = master(1);
    let clock = fixed_clock();
    let a = tenant(&t.db, "acme").await;
    let b = tenant(&t.db, "globex").await;
    let _c = tenant(&t.db, "initech").await;
    let d = tenant(&t.db, "umbrella").await;
    provisioned(&t.db, a, &m).await;
    provisioned(&t.db, b, &m).await;
    provisioned(&t.db, d, &m).await;
    let mut tx = t.db.tenant_tx(a).await.unwrap();
    envelope::new_data_key_version(&mut tx, &m, clock.as_ref())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = t.db.tenant_tx(d).await.unwrap();
    envelope::destroy(&mut tx, clock.as_ref()).await.unwrap();
    tx.commit().await.unwrap();
    let status = envelope::status(&t.db).await.unwrap();
    assert_eq!(
        status,
        KeyStatus {
            keys: [
                ((Purpose::Data, 1, 1), 2),
                ((Purpose::Data, 2, 1), 1),
                ((Purpose::Index, 1, 1), 2),
            ]
            .into(),
            current_data: [(1, 1), (2, 1)].into(),
            shredded: 1,
            unprovisioned: 1,
        }
    );
}

/// PostgreSQL: the server role sees no tenant's keys without a tenant, and
/// only its own tenant's keys with one.
#[tokio::test]
async fn postgres_row_level_security_hides_other_tenants_keys() {
    let Some(t) = TestDb::postgres().await else {
        return;
    };
    let pool = t.db.postgres_app_pool().unwrap();
    let m = master(1);
    let a = tenant(&t.db, "acme").await;
    let b = tenant(&t.db, "globex").await;
    provisioned(&t.db, a, &m).await;
    provisioned(&t.db, b, &m).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tenant_keys")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('stockade.tenant_id', $1, true)")
        .bind(b.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let seen: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT DISTINCT tenant_id FROM tenant_keys")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, vec![b.as_uuid()]);
    let err = sqlx::query(
        "INSERT INTO tenant_keys (tenant_id, purpose, version, wrapped_key, created_at) \
         VALUES ($1, 'data', 9, '\\x01', now())",
    )
    .bind(a.as_uuid())
    .execute(&mut *tx)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
}

/// SPEC §2.9: one data key per tenant, created with the tenant, in the same
/// transaction, under the master key given.
async fn create_tenant_provisions_its_keys(t: &TestDb) {
    let m = master(3);
    let a = tenancy::create_tenant(
        &t.db,
        fixed_clock().as_ref(),
        &m,
        new_tenant("acme"),
        Actor::System,
        RequestContext::default(),
    )
    .await
    .unwrap()
    .id;
    let rows = raw_rows(&t.db, a).await;
    let kinds: Vec<(&str, i64)> = rows.iter().map(|(p, v, _)| (p.as_str(), *v)).collect();
    assert_eq!(kinds, [("data", 0), ("data", 1), ("index", 1)]);
    let keys = load(&t.db, a, &m).await.unwrap();
    assert_eq!(keys.current_version(), 1);
    assert!(is_integrity(&load(&t.db, a, &master(4)).await));
    // The slug is taken: refused; the first tenant keeps its one set of keys.
    let again = tenancy::create_tenant(
        &t.db,
        fixed_clock().as_ref(),
        &m,
        new_tenant("acme"),
        Actor::System,
        RequestContext::default(),
    )
    .await;
    assert!(matches!(again, Err(tenancy::TenancyError::SlugTaken(_))));
    let mut tx = t.db.tenant_tx(a).await.unwrap();
    assert!(matches!(
        envelope::provision(&mut tx, &m, fixed_clock().as_ref()).await,
        Err(EnvelopeError::AlreadyProvisioned)
    ));
}

crate::both_backends!(
    create_tenant_provisions_its_keys,
    round_trip_with_fresh_nonces,
    associated_data_binds_table_column_and_row,
    tenants_have_different_keys,
    swapped_wrapped_keys_fail_to_load,
    the_database_holds_only_wrapped_keys,
    blind_indexes_are_per_tenant_and_per_field,
    a_new_data_key_version_keeps_old_ciphertexts_readable,
    destroyed_keys_make_ciphertexts_unreadable_forever,
    tenants_without_keys_get_them_at_first_load,
    concurrent_first_loads_agree_on_one_set_of_keys,
    status_counts_tenants_per_version,
);

/// `stockade keys status` lists tenant key versions by count, never a key.
#[tokio::test]
async fn keys_status_lists_tenant_key_versions() {
    let dir = tempfile::tempdir().unwrap();
    let master_b64 = B64.encode([9u8; 32]);
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_stockade"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("STOCKADE_MASTER_KEY", &master_b64)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    cli(&["tenant", "create", "--slug", "acme", "--name", "Acme"]);
    cli(&["tenant", "create", "--slug", "globex", "--name", "Globex"]);
    cli(&["tenant", "create", "--slug", "initech", "--name", "Initech"]);
    // Each tenant got its keys when it was created.
    let before = cli(&["keys", "status"]);
    assert!(
        before
            .lines()
            .any(|l| l
                == "tenant data key v1 wrapped by master v1: 3 tenants, current for 3 tenants"),
        "{before}"
    );
    assert!(!before.contains("not created yet"), "{before}");
    assert!(
        before.contains("tenant acme data key v1 (current): 0 records"),
        "{before}"
    );

    let db = Db::open_sqlite_file(&dir.path().join("stockade-data/stockade.db"))
        .await
        .unwrap();
    let m = master(9);
    let clock = fixed_clock();
    let mut ids = Vec::new();
    for slug in ["acme", "globex", "initech"] {
        ids.push(tenancy::find_by_slug(&db, slug).await.unwrap().unwrap().id);
    }
    let mut raw = Vec::new();
    for id in &ids[..2] {
        let keys = load(&db, *id, &m).await.unwrap();
        raw.push(B64.encode(unwrap(
            &m,
            *id,
            Purpose::Data,
            1,
            &wrapped(&raw_rows(&db, *id).await, "data", 1),
        )));
        drop(keys);
    }
    let mut tx = db.tenant_tx(ids[0]).await.unwrap();
    envelope::new_data_key_version(&mut tx, &m, clock.as_ref())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = db.tenant_tx(ids[2]).await.unwrap();
    envelope::load(&mut tx, &m, clock.as_ref()).await.unwrap();
    envelope::destroy(&mut tx, clock.as_ref()).await.unwrap();
    tx.commit().await.unwrap();
    db.close().await;

    let after = cli(&["keys", "status"]);
    for line in [
        "tenant data key v1 wrapped by master v1: 2 tenants, current for 1 tenant",
        "tenant data key v2 wrapped by master v1: 1 tenant, current for 1 tenant",
        "tenant index key v1 wrapped by master v1: 2 tenants",
        "tenant keys destroyed (crypto-shredded): 1 tenant",
    ] {
        assert!(
            after.lines().any(|l| l == line),
            "{line:?} not in:\n{after}"
        );
    }
    assert!(!after.contains("not created yet"), "{after}");
    for key in &raw {
        assert!(!after.contains(key.as_str()));
    }
}
