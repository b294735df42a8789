//! A setting that does nothing must not exist (issue #17 item 7): a
//! multi-factor requirement stored before multi-factor sign-in existed was
//! reset by migration 0024, audited in the tenant's chain. Now that it is
//! enforced (issue #19), a requirement that would shut out its own
//! unenrolled author is refused and changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stockade::clock::Clock;

use crate::auth::{server, signup};
use crate::roles::call;
use crate::testkit::{
    Backend, PG_SETUP, create_pg_database, drop_pg_database, fixed_clock, pg_login_url,
    pg_owner_url,
};

/// The details of every `action` event of `tenant`, with its actor type.
async fn events(db: &stockade::db::Db, tenant: uuid::Uuid, action: &str) -> Vec<(String, Value)> {
    let tenant = stockade::ids::TenantId(tenant);
    let mut tx = db.tenant_read(tenant).await.unwrap();
    let rows: Vec<(String, String)> = tx
        .fetch_all(
            "SELECT actor_type, details FROM audit_events \
             WHERE tenant_id = $1 AND action = $2 ORDER BY seq",
            vec![action.into()],
        )
        .await
        .unwrap();
    rows.into_iter()
        .map(|(actor, d)| (actor, serde_json::from_str(&d).unwrap()))
        .collect()
}

async fn a_requirement_that_would_shut_out_its_unenrolled_author_is_refused(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let before = events(&s.db, tenant.id.0, "tenancy.settings.updated").await;
    for body in [
        json!({"mfa_required": "admins"}),
        json!({"mfa_required": "all"}),
        // With a valid change beside it: nothing of the request is applied.
        json!({"mfa_required": "all", "session_idle_secs": 3600}),
    ] {
        let (status, problem) = call(
            &s,
            Method::PATCH,
            "/v1/tenant/settings",
            &owner.access,
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(problem["code"], "tenancy.mfa_self_lockout", "{body}");
    }
    let (_, got) = call(&s, Method::GET, "/v1/tenant/settings", &owner.access, None).await;
    assert_eq!(got["mfa_required"], "off");
    assert_eq!(got["session_idle_secs"], 28800);
    assert_eq!(
        events(&s.db, tenant.id.0, "tenancy.settings.updated").await,
        before,
        "a refused change was audited as made"
    );
    // `off` covers nobody (a no-op here).
    let (status, got) = call(
        &s,
        Method::PATCH,
        "/v1/tenant/settings",
        &owner.access,
        Some(json!({"mfa_required": "off"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    // Described.
    let doc = s.openapi().await;
    assert!(
        doc["paths"]["/v1/tenant/settings"]["patch"]["responses"]["409"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("tenancy.mfa_self_lockout")),
        "409 mfa_self_lockout missing from OpenAPI"
    );
}

/// A copy of `dialect`'s migrations before 0024, for a database as an
/// earlier release left it.
fn migrations_before_0024(dialect: &str) -> tempfile::TempDir {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect);
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let version: u32 = name.split('_').next().unwrap().parse().unwrap();
        if version < 24 {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    dir
}

/// Three tenants as an earlier release stored them: `admins`, `all`, `off`.
fn old_tenants() -> [(uuid::Uuid, &'static str, &'static str); 3] {
    [
        (uuid::Uuid::now_v7(), "acme", "admins"),
        (uuid::Uuid::now_v7(), "beta", "all"),
        (uuid::Uuid::now_v7(), "gamma", "off"),
    ]
}

const INSERT_TENANT: &str = "INSERT INTO tenants (id, slug, name, status, created_at, updated_at) \
     VALUES ($1, $2, $2, 'active', $3, $3)";
const INSERT_SETTINGS: &str =
    "INSERT INTO tenant_settings (tenant_id, mfa_required, updated_at) VALUES ($1, $2, $3)";

/// A database at 0023 holding `old_tenants`; the server's `Db` on it, and
/// what keeps it alive.
async fn old_database(
    backend: Backend,
) -> Option<(
    stockade::db::Db,
    [(uuid::Uuid, &'static str, &'static str); 3],
    Keep,
)> {
    let tenants = old_tenants();
    let now = fixed_clock().now();
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("stockade.db");
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            let old = migrations_before_0024("sqlite");
            sqlx::migrate::Migrator::new(old.path())
                .await
                .unwrap()
                .run(&pool)
                .await
                .unwrap();
            for (id, slug, mfa) in tenants {
                sqlx::query(INSERT_TENANT)
                    .bind(id)
                    .bind(slug)
                    .bind(now)
                    .execute(&pool)
                    .await
                    .unwrap();
                sqlx::query(INSERT_SETTINGS)
                    .bind(id)
                    .bind(mfa)
                    .bind(now)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
            let db = stockade::db::Db::open_sqlite_file(&path).await.unwrap();
            Some((
                db,
                tenants,
                Keep {
                    _dir: Some(dir),
                    pg: None,
                },
            ))
        }
        Backend::Postgres => {
            let (name, url) = create_pg_database().await?;
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let old = migrations_before_0024("postgres");
            {
                let _guard = PG_SETUP.lock().await;
                sqlx::migrate::Migrator::new(old.path())
                    .await
                    .unwrap()
                    .run(&pool)
                    .await
                    .unwrap();
            }
            for (id, slug, mfa) in tenants {
                sqlx::query(INSERT_TENANT)
                    .bind(id)
                    .bind(slug)
                    .bind(now)
                    .execute(&pool)
                    .await
                    .unwrap();
                sqlx::query(INSERT_SETTINGS)
                    .bind(id)
                    .bind(mfa)
                    .bind(now)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
            let db = stockade::db::Db::open_postgres(&pg_login_url(&name))
                .await
                .unwrap();
            Some((
                db,
                tenants,
                Keep {
                    _dir: None,
                    pg: Some(name),
                },
            ))
        }
    }
}

/// The old database's file, or its PostgreSQL name (dropped on drop).
struct Keep {
    _dir: Option<tempfile::TempDir>,
    pg: Option<String>,
}

impl Drop for Keep {
    fn drop(&mut self) {
        if let Some(name) = &self.pg {
            drop_pg_database(name);
        }
    }
}

async fn a_stored_requirement_is_reset_by_the_migration_and_audited(backend: Backend) {
    let Some((db, tenants, _keep)) = old_database(backend).await else {
        return;
    };
    // 0024 drops the unread plan and trial columns: a destructive migration
    // on a database with data needs the flag, as `stockade migrate` would.
    let destructive = stockade::db::MigrateOptions {
        allow_destructive: true,
    };
    match &_keep.pg {
        None => {
            db.migrate_with(destructive).await.unwrap();
        }
        Some(name) => {
            let _guard = PG_SETUP.lock().await;
            stockade::db::migrate_postgres(&pg_owner_url(name), destructive)
                .await
                .unwrap();
        }
    }
    db.set_audit_head_key(zeroize::Zeroizing::new([7; 32]));
    let clock = fixed_clock();
    // What the server does at start, once migrated.
    let audited = stockade::tenancy::settings_reset::audit_migrated_settings(&db, clock.as_ref())
        .await
        .unwrap();
    assert_eq!(audited, 2);
    for (id, slug, old) in tenants {
        let mut tx = db.tenant_read(stockade::ids::TenantId(id)).await.unwrap();
        let settings = stockade::tenancy::settings::load(&mut tx).await.unwrap();
        drop(tx);
        assert_eq!(
            settings.mfa_required,
            stockade::tenancy::settings::MfaRequired::Off,
            "{slug}"
        );
        let updates = events(&db, id, "tenancy.settings.updated").await;
        if old == "off" {
            assert!(updates.is_empty(), "{slug}: {updates:?}");
            continue;
        }
        assert_eq!(updates.len(), 1, "{slug}");
        let (actor, details) = &updates[0];
        assert_eq!(actor, "system");
        assert_eq!(
            details["changes"],
            json!({"mfa_required": {"old": old, "new": "off"}})
        );
        assert_eq!(details["reason"], "setting_unavailable");
    }
    // Once only, and every chain verifies.
    assert_eq!(
        stockade::tenancy::settings_reset::audit_migrated_settings(&db, clock.as_ref())
            .await
            .unwrap(),
        0
    );
    for (id, slug, _) in tenants {
        assert!(
            events(&db, id, "tenancy.settings.updated").await.len() <= 1,
            "{slug}"
        );
    }
    for report in stockade::audit::verify_all(&db).await.unwrap() {
        assert!(report.ok, "{report:?}");
    }
}

crate::both_servers!(
    a_requirement_that_would_shut_out_its_unenrolled_author_is_refused,
    a_stored_requirement_is_reset_by_the_migration_and_audited,
);
