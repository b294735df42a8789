//! The storage suite: every case runs on SQLite and on PostgreSQL.

use stockade::audit::{self, Actor, NewEvent, RequestContext, Target};
use stockade::db::{DbError, MigrateOptions, MigrationStatus};
use stockade::identity::{self, Email, IdentityError};
use stockade::ids::TenantId;
use stockade::tenancy::{self, NewTenant, Slug, TenancyError, Tenant, TenantName};

use crate::testkit::{TestDb, fixed_clock, raw_execute};

async fn tenant(t: &TestDb, slug: &str) -> Tenant {
    let clock = fixed_clock();
    tenancy::create_tenant(
        &t.db,
        clock.as_ref(),
        &stockade::crypto::keys::MasterKey::single(1, [7u8; 32]),
        NewTenant {
            slug: Slug::parse(slug).unwrap(),
            name: TenantName::parse(&format!("{slug} Ltd")).unwrap(),
        },
        Actor::System,
        RequestContext::default(),
    )
    .await
    .unwrap()
}

/// Appends `n` events to the tenant's chain, one transaction each.
async fn append_events(t: &TestDb, tenant: TenantId, n: usize) {
    let clock = fixed_clock();
    for i in 0..n {
        let mut tx = t.db.tenant_tx(tenant).await.unwrap();
        audit::append(
            &mut tx,
            clock.as_ref(),
            NewEvent::new(Actor::System, "records.record.created")
                .target(Target::new("record", i))
                .details(serde_json::json!({ "n": i })),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
}

async fn tenant_slugs_unique_and_first_event_written(t: &TestDb) {
    let acme = tenant(t, "acme").await;
    assert_eq!(acme.status, "active");
    assert_eq!(acme.id.as_uuid().get_version_num(), 7);
    let clock = fixed_clock();
    let err = tenancy::create_tenant(
        &t.db,
        clock.as_ref(),
        &stockade::crypto::keys::MasterKey::single(1, [7u8; 32]),
        NewTenant {
            slug: Slug::parse("acme").unwrap(),
            name: TenantName::parse("Other").unwrap(),
        },
        Actor::System,
        RequestContext::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TenancyError::SlugTaken(_)), "{err:?}");
    // The failed create left nothing behind.
    assert_eq!(tenancy::list_tenants(&t.db).await.unwrap().len(), 1);
    let report = audit::verify_tenant(&t.db, acme.id).await.unwrap();
    assert!(report.ok);
    assert_eq!(report.events_checked, 1);
    let found = tenancy::find_by_slug(&t.db, "acme").await.unwrap().unwrap();
    assert_eq!(found, acme);
}

async fn emails_are_unique_case_insensitively(t: &TestDb) {
    let clock = fixed_clock();
    let mut tx = t.db.global_tx().await.unwrap();
    let alice = identity::create_user(
        &mut tx,
        clock.as_ref(),
        &Email::parse("Alice@Example.com").unwrap(),
        "Alice",
    )
    .await
    .unwrap();
    let err = identity::create_user(
        &mut tx,
        clock.as_ref(),
        &Email::parse("alice@EXAMPLE.COM").unwrap(),
        "Other",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, IdentityError::EmailTaken), "{err:?}");
    drop(tx); // rolled back: neither user exists
    assert!(
        identity::find_user_by_email(&t.db, &Email::parse("alice@example.com").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let mut tx = t.db.global_tx().await.unwrap();
    let again = identity::create_user(
        &mut tx,
        clock.as_ref(),
        &Email::parse("Alice@Example.com").unwrap(),
        "Alice",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_ne!(again.id, alice.id);
    let found = identity::find_user_by_email(&t.db, &Email::parse("ALICE@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, again.id);
}

async fn memberships_are_tenant_scoped(t: &TestDb) {
    let clock = fixed_clock();
    let a = tenant(t, "tenant-a").await;
    let b = tenant(t, "tenant-b").await;
    let mut tx = t.db.global_tx().await.unwrap();
    let u1 = identity::create_user(
        &mut tx,
        clock.as_ref(),
        &Email::parse("u1@x.io").unwrap(),
        "U1",
    )
    .await
    .unwrap();
    let u2 = identity::create_user(
        &mut tx,
        clock.as_ref(),
        &Email::parse("u2@x.io").unwrap(),
        "U2",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // u1 belongs to both tenants (a partner invited into a vendor's portal).
    for (tenant, users) in [(a.id, vec![u1.id, u2.id]), (b.id, vec![u1.id])] {
        let mut tx = t.db.tenant_tx(tenant).await.unwrap();
        for u in users {
            tenancy::add_member(&mut tx, clock.as_ref(), u, "editor")
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let mut tx = t.db.tenant_tx(b.id).await.unwrap();
    let err = tenancy::add_member(&mut tx, clock.as_ref(), u1.id, "viewer")
        .await
        .unwrap_err();
    assert!(matches!(err, TenancyError::AlreadyMember), "{err:?}");
    drop(tx);

    let mut tx = t.db.tenant_read(a.id).await.unwrap();
    let in_a = tenancy::list_members(&mut tx).await.unwrap();
    assert_eq!(in_a.len(), 2);
    assert!(in_a.iter().all(|m| m.tenant_id == a.id));
    let mut tx = t.db.tenant_read(b.id).await.unwrap();
    let in_b = tenancy::list_members(&mut tx).await.unwrap();
    assert_eq!(in_b.len(), 1);
    assert_eq!(in_b[0].user_id, u1.id);
}

async fn tenant_queries_must_use_their_tenant(t: &TestDb) {
    let a = tenant(t, "guarded").await;
    let mut tx = t.db.tenant_read(a.id).await.unwrap();
    let err = tx
        .fetch_all::<(i64,)>("SELECT seq FROM audit_events", vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::Guard(_)), "{err:?}");
    let mut g = t.db.global_read().await.unwrap();
    let err = g
        .fetch_all::<(i64,)>(
            "SELECT seq FROM audit_events WHERE tenant_id = $1",
            vec![a.id.into()],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::Guard(_)), "{err:?}");
}

async fn audit_sequence_is_gapless_and_rollback_leaves_no_event(t: &TestDb) {
    let a = tenant(t, "chain").await;
    append_events(t, a.id, 5).await;
    // A change that rolls back takes its event with it.
    let clock = fixed_clock();
    let mut tx = t.db.tenant_tx(a.id).await.unwrap();
    audit::append(
        &mut tx,
        clock.as_ref(),
        NewEvent::new(Actor::System, "records.record.deleted"),
    )
    .await
    .unwrap();
    drop(tx);
    append_events(t, a.id, 1).await;
    let report = audit::verify_tenant(&t.db, a.id).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events_checked, 7);
    assert_eq!(report.head_seq, 7);
    let mut tx = t.db.tenant_read(a.id).await.unwrap();
    let actions: Vec<(i64, String)> = tx
        .fetch_all(
            "SELECT seq, action FROM audit_events WHERE tenant_id = $1 ORDER BY seq",
            vec![],
        )
        .await
        .unwrap();
    let seqs: Vec<i64> = actions.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
    assert!(actions.iter().all(|(_, a)| a != "records.record.deleted"));
    // Another tenant's chain is independent.
    let b = tenant(t, "other-chain").await;
    let rb = audit::verify_tenant(&t.db, b.id).await.unwrap();
    assert_eq!((rb.ok, rb.head_seq), (true, 1));
}

async fn concurrent_appends_stay_gapless(t: &TestDb) {
    let a = tenant(t, "busy").await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let db = t.db.clone();
        tasks.push(tokio::spawn(async move {
            let clock = fixed_clock();
            for j in 0..5 {
                let mut tx = db.tenant_tx(a.id).await.unwrap();
                audit::append(
                    &mut tx,
                    clock.as_ref(),
                    NewEvent::new(Actor::System, "records.record.updated")
                        .details(serde_json::json!({ "task": i, "n": j })),
                )
                .await
                .unwrap();
                tx.commit().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let report = audit::verify_tenant(&t.db, a.id).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.head_seq, 41);
}

async fn verify_detects_an_edited_event(t: &TestDb) {
    let a = tenant(t, "edited").await;
    append_events(t, a.id, 4).await;
    let n = raw_execute(
        &t.db,
        "UPDATE audit_events SET details = '{\"n\":99}' WHERE tenant_id = $1 AND seq = 3",
        a.id.as_uuid(),
    )
    .await;
    assert_eq!(n, 1);
    let r = audit::verify_tenant(&t.db, a.id).await.unwrap();
    assert!(!r.ok);
    assert_eq!(r.first_bad_seq, Some(3));
}

async fn verify_detects_an_edit_with_a_recomputed_hash(t: &TestDb) {
    // An attacker who edits an event and recomputes its hash correctly makes
    // that event look sound, but breaks the link to the next one.
    let a = tenant(t, "rehashed").await;
    append_events(t, a.id, 4).await;
    let mut tx = t.db.tenant_read(a.id).await.unwrap();
    let mut forged: stockade::audit::StoredEvent = tx
        .fetch_one(
            "SELECT * FROM audit_events WHERE tenant_id = $1 AND seq = 2",
            vec![],
        )
        .await
        .unwrap();
    drop(tx);
    forged.details = r#"{"n":99}"#.to_owned();
    forged.hash = forged.compute_hash();
    let n = raw_execute(
        &t.db,
        &format!(
            "UPDATE audit_events SET details = '{}', hash = '{}' WHERE tenant_id = $1 AND seq = 2",
            forged.details, forged.hash
        ),
        a.id.as_uuid(),
    )
    .await;
    assert_eq!(n, 1);
    let r = audit::verify_tenant(&t.db, a.id).await.unwrap();
    assert_eq!((r.ok, r.first_bad_seq), (false, Some(3)), "{r:?}");
}

async fn verify_detects_a_deleted_event(t: &TestDb) {
    let a = tenant(t, "deleted").await;
    append_events(t, a.id, 4).await;
    raw_execute(
        &t.db,
        "DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 2",
        a.id.as_uuid(),
    )
    .await;
    let r = audit::verify_tenant(&t.db, a.id).await.unwrap();
    assert_eq!((r.ok, r.first_bad_seq), (false, Some(2)));
}

async fn verify_detects_reordered_events(t: &TestDb) {
    let a = tenant(t, "reordered").await;
    append_events(t, a.id, 4).await;
    // Swap events 2 and 3 (via a free sequence number).
    for sql in [
        "UPDATE audit_events SET seq = 1000 WHERE tenant_id = $1 AND seq = 2",
        "UPDATE audit_events SET seq = 2 WHERE tenant_id = $1 AND seq = 3",
        "UPDATE audit_events SET seq = 3 WHERE tenant_id = $1 AND seq = 1000",
    ] {
        raw_execute(&t.db, sql, a.id.as_uuid()).await;
    }
    let r = audit::verify_tenant(&t.db, a.id).await.unwrap();
    assert_eq!((r.ok, r.first_bad_seq), (false, Some(2)));
}

async fn verify_detects_a_truncated_tail(t: &TestDb) {
    let a = tenant(t, "truncated").await;
    append_events(t, a.id, 5).await;
    raw_execute(
        &t.db,
        "DELETE FROM audit_events WHERE tenant_id = $1 AND seq > 3",
        a.id.as_uuid(),
    )
    .await;
    let r = audit::verify_tenant(&t.db, a.id).await.unwrap();
    assert_eq!((r.ok, r.first_bad_seq), (false, Some(4)), "{r:?}");
    // verify_all names the broken tenant and passes the others.
    let reports = audit::verify_all(&t.db).await.unwrap();
    assert_eq!(reports.iter().filter(|r| !r.ok).count(), 1);
    assert!(
        reports
            .iter()
            .any(|r| r.tenant_id == TenantId::PLATFORM && r.ok)
    );
}

/// Migrating again applies nothing; a destructive migration (SPEC §2.16)
/// is refused without the flag, naming it, with nothing applied — not even
/// the harmless migration before it — whether it carries the marker or only
/// its SQL gives it away; with the flag it runs. A fresh database, which
/// holds nothing to destroy, needs no flag.
async fn migrations_are_idempotent_and_current(t: &TestDb) {
    let again = t.migrate(MigrateOptions::default()).await.unwrap();
    assert_eq!(again.applied, Vec::<String>::new());
    let current = t.db.readiness().await;
    assert!(matches!(current, MigrationStatus::Current { .. }));

    let exists = |table: &'static str| async move {
        let sql = match t.owner_url {
            Some(_) => "SELECT COUNT(*) FROM pg_class WHERE relname = $1",
            None => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
        };
        let mut g = t.db.global_read().await.unwrap();
        let n: Option<(i64,)> = g.fetch_optional(sql, vec![table.into()]).await.unwrap();
        n == Some((1,))
    };
    let probe_exists = || exists("migration_probe");
    let throttle_exists = || exists("login_throttle");
    let harmless = "CREATE TABLE migration_probe (id INTEGER PRIMARY KEY);";
    for (destructive, why) in [
        (
            "-- stockade:destructive the throttle is rebuilt elsewhere\nDROP TABLE login_throttle;",
            "marked",
        ),
        // No marker: the backstop reads the SQL.
        (
            "ALTER TABLE sessions DROP COLUMN user_agent;",
            "DROP COLUMN",
        ),
        ("DELETE FROM login_throttle;", "DELETE without WHERE"),
    ] {
        let (_dir, source) = migration_source(t, &[harmless, destructive]).await;
        let err = t
            .migrate_from(&source, MigrateOptions::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("9999_attack") && err.contains(why), "{err}");
        assert!(err.contains("--allow-destructive"), "{err}");
        assert!(!probe_exists().await, "the harmless migration was applied");
        assert!(throttle_exists().await);
        assert_eq!(t.db.readiness().await, current);
    }
    let (_dir, source) = migration_source(
        t,
        &[
            harmless,
            "-- stockade:destructive\nDROP TABLE login_throttle;",
        ],
    )
    .await;
    let applied = t
        .migrate_from(
            &source,
            MigrateOptions {
                allow_destructive: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(applied.applied, ["9998_probe", "9999_attack"]);
    if t.owner_url.is_some() {
        // A table pg_roles lists no grants for is named, and left alone.
        assert_eq!(applied.ungranted_tables, ["migration_probe"]);
    }
    assert!(probe_exists().await);
    assert!(!throttle_exists().await);

    // A fresh database holds nothing to destroy: the same source applies
    // there without the flag.
    let fresh = match t.owner_url {
        Some(_) => TestDb::postgres_empty().await.unwrap(),
        None => TestDb::sqlite_empty().await,
    };
    let applied = fresh
        .migrate_from(&source, MigrateOptions::default())
        .await
        .unwrap();
    assert_eq!(
        applied.applied.last().map(String::as_str),
        Some("9999_attack")
    );
}

/// This binary's migrations for `t`'s backend plus `extra` as
/// `9998_probe.sql`, `9999_attack.sql`, …: a test-only migration source.
async fn migration_source(
    t: &TestDb,
    extra: &[&str],
) -> (tempfile::TempDir, sqlx::migrate::Migrator) {
    let dialect = match t.owner_url {
        Some(_) => "postgres",
        None => "sqlite",
    };
    let dir = tempfile::tempdir().unwrap();
    let embedded = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect);
    for entry in std::fs::read_dir(embedded).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    for (sql, name) in extra.iter().zip(["9998_probe.sql", "9999_attack.sql"]) {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    let migrator = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    (dir, migrator)
}

crate::both_backends!(
    tenant_slugs_unique_and_first_event_written,
    emails_are_unique_case_insensitively,
    memberships_are_tenant_scoped,
    tenant_queries_must_use_their_tenant,
    audit_sequence_is_gapless_and_rollback_leaves_no_event,
    concurrent_appends_stay_gapless,
    verify_detects_an_edited_event,
    verify_detects_an_edit_with_a_recomputed_hash,
    verify_detects_a_deleted_event,
    verify_detects_reordered_events,
    verify_detects_a_truncated_tail,
    migrations_are_idempotent_and_current,
);
