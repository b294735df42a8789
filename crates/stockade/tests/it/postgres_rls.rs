//! PostgreSQL's own enforcement of tenant isolation, shown without the
//! application's help: deliberately unscoped SQL through the server's role.

use sqlx::Row;
use stockade::audit::{Actor, RequestContext};
use stockade::db::{APP_ROLE, TENANT_TABLES};
use stockade::identity::{self, Email};
use stockade::tenancy::{self, NewTenant, Slug, TenantName};

use crate::testkit::{PG_LOGIN_ROLE, TestDb, fixed_clock};

/// Two tenants with one member each; returns (db, tenant a, tenant b).
async fn two_tenants() -> Option<(TestDb, uuid::Uuid, uuid::Uuid)> {
    let t = TestDb::postgres().await?;
    let clock = fixed_clock();
    let mut ids = Vec::new();
    for slug in ["rls-a", "rls-b"] {
        let tenant = tenancy::create_tenant(
            &t.db,
            clock.as_ref(),
            &stockade::crypto::keys::MasterKey::single(1, [7u8; 32]),
            NewTenant {
                slug: Slug::parse(slug).unwrap(),
                name: TenantName::parse(slug).unwrap(),
            },
            Actor::System,
            RequestContext::default(),
        )
        .await
        .unwrap();
        let mut g = t.db.global_tx().await.unwrap();
        let user = identity::create_user(
            &mut g,
            clock.as_ref(),
            &Email::parse(&format!("{slug}@example.com")).unwrap(),
            slug,
        )
        .await
        .unwrap();
        let mut tx = g.scoped(tenant.id).await.unwrap();
        tenancy::add_member(&mut tx, clock.as_ref(), user.id, "owner")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        ids.push(tenant.id.as_uuid());
    }
    Some((t, ids[0], ids[1]))
}

#[tokio::test]
async fn unscoped_select_in_a_tenant_transaction_sees_only_that_tenant() {
    let Some((t, a, b)) = two_tenants().await else {
        return;
    };
    let pool = t.db.postgres_app_pool().unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('stockade.tenant_id', $1, true)")
        .bind(a.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let role: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(role, PG_LOGIN_ROLE);
    for table in ["memberships", "audit_events", "audit_heads"] {
        // No WHERE clause: the bug RLS exists to contain.
        let rows = sqlx::query(&format!("SELECT tenant_id FROM {table}"))
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert!(!rows.is_empty(), "{table}");
        for row in rows {
            let tid: uuid::Uuid = row.get("tenant_id");
            assert_eq!(tid, a, "{table} leaked a row of another tenant");
        }
    }
    // Writing a row for tenant B from tenant A's transaction is refused.
    let err = sqlx::query(
        "INSERT INTO audit_heads (tenant_id, seq, hash, updated_at) VALUES ($1, 0, 'x', now())",
    )
    .bind(b)
    .execute(&mut *tx)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
}

#[tokio::test]
async fn a_transaction_without_a_tenant_sees_no_tenant_rows() {
    let Some((t, _a, _b)) = two_tenants().await else {
        return;
    };
    let pool = t.db.postgres_app_pool().unwrap();
    let mut conn = pool.acquire().await.unwrap();
    for table in TENANT_TABLES {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table} visible without a tenant");
    }
    // The tenant setting is transaction-local: it does not leak to the next
    // transaction on the same pooled connection.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('stockade.tenant_id', $1, true)")
        .bind(_a.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM memberships")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    // Global tables stay readable.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(n, 2);
}

#[tokio::test]
async fn the_server_role_owns_nothing_and_cannot_rewrite_audit() {
    let Some((t, a, _b)) = two_tenants().await else {
        return;
    };
    let pool = t.db.postgres_app_pool().unwrap();
    for role in [APP_ROLE, PG_LOGIN_ROLE] {
        let owned: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = $1",
        )
        .bind(role)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(owned, 0, "{role}");
        let (superuser, bypass): (bool, bool) =
            sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1")
                .bind(role)
                .fetch_one(pool)
                .await
                .unwrap();
        assert!(!superuser && !bypass, "{role}");
    }
    for sql in [
        "UPDATE audit_events SET details = '{}'",
        "DELETE FROM audit_events",
    ] {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SELECT set_config('stockade.tenant_id', $1, true)")
            .bind(a.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
        let err = sqlx::query(sql).execute(&mut *tx).await.unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "{sql}: {err}"
        );
    }
}

#[tokio::test]
async fn every_tenant_table_has_forced_rls_and_tenant_id_first_in_its_keys() {
    let Some(t) = TestDb::postgres().await else {
        return;
    };
    let pool = &crate::testkit::owner_pool(&t.db).await;
    for table in TENANT_TABLES {
        let (enabled, forced): (bool, bool) = sqlx::query_as(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = $1",
        )
        .bind(table)
        .fetch_one(pool)
        .await
        .unwrap();
        assert!(enabled && forced, "{table}");
        // Every unique index (the primary key included) starts with tenant_id.
        let first_cols: Vec<String> = sqlx::query_scalar(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] \
             WHERE c.relname = $1 AND i.indisunique",
        )
        .bind(table)
        .fetch_all(pool)
        .await
        .unwrap();
        assert!(!first_cols.is_empty(), "{table} has no key");
        assert!(
            first_cols.iter().all(|c| c == "tenant_id"),
            "{table}: {first_cols:?}"
        );
    }
    // And no other table in the schema carries tenant_id without being listed.
    let with_tenant: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND column_name = 'tenant_id' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut listed: Vec<String> = TENANT_TABLES.iter().map(|s| (*s).to_owned()).collect();
    listed.sort();
    assert_eq!(with_tenant, listed);
}

#[tokio::test]
async fn sqlite_tenant_tables_have_tenant_id_first_in_their_keys() {
    let t = TestDb::sqlite().await;
    let pool = t.db.sqlite_pool().unwrap();
    for table in TENANT_TABLES {
        // Columns of the primary key, in key order.
        let pk: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT name, pk FROM pragma_table_info('{table}') WHERE pk > 0 ORDER BY pk"
        ))
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(
            pk.first().map(|c| c.0.as_str()),
            Some("tenant_id"),
            "{table}"
        );
        let indexes: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT name, \"unique\" FROM pragma_index_list('{table}')"
        ))
        .fetch_all(pool)
        .await
        .unwrap();
        for (index, unique) in indexes {
            if unique == 1 {
                let first: String = sqlx::query_scalar(&format!(
                    "SELECT name FROM pragma_index_info('{index}') ORDER BY seqno LIMIT 1"
                ))
                .fetch_one(pool)
                .await
                .unwrap();
                assert_eq!(first, "tenant_id", "{table}.{index}");
            }
        }
    }
}
