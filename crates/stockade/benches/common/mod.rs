//! Set-up shared by the benchmark harnesses (each `[[bench]]` is its own
//! crate and includes this module): the bench tenant and its editor.

use stockade::audit::{Actor, RequestContext};
use stockade::clock::Clock;
use stockade::crypto::keys::MasterKey;
use stockade::db::{Db, TenantTx};
use stockade::identity::{self, Email, User};
use stockade::tenancy::{self, NewTenant, Slug, Tenant, TenantName};

/// Creates the tenant `bench` (with its keys) on a migrated database.
pub(crate) async fn bench_tenant(db: &Db, clock: &dyn Clock, master: &MasterKey) -> Tenant {
    tenancy::create_tenant(
        db,
        clock,
        master,
        NewTenant {
            slug: Slug::parse("bench").expect("slug"),
            name: TenantName::parse("Bench Ltd").expect("name"),
        },
        Actor::System,
        RequestContext::default(),
    )
    .await
    .expect("create tenant")
}

/// Creates `bench@example.com` as an editor of `tenant`; returns the user and
/// the still-open transaction, for the caller's own set-up rows.
#[allow(dead_code)] // reason: not every harness needs a member
pub(crate) async fn bench_editor(db: &Db, clock: &dyn Clock, tenant: &Tenant) -> (User, TenantTx) {
    let mut global = db.global_tx().await.expect("global tx");
    let user = identity::create_user(
        &mut global,
        clock,
        &Email::parse("bench@example.com").expect("email"),
        "Bench",
    )
    .await
    .expect("create user");
    let mut tx = global.scoped(tenant.id).await.expect("scoped tx");
    tenancy::add_member(&mut tx, clock, user.id, "editor")
        .await
        .expect("add member");
    (user, tx)
}

/// The login role the PostgreSQL benches serve as (inherits `stockade_app`,
/// owns nothing), as a deployment does; created once, never dropped.
#[allow(dead_code)] // reason: only the harnesses with PostgreSQL benches use it
const PG_BENCH_LOGIN: &str = "stockade_bench_login";

/// Migrates database `name` of the server behind `admin` (the owner) and
/// opens it as [`PG_BENCH_LOGIN`].
#[allow(dead_code)] // reason: only the harnesses with PostgreSQL benches use it
pub(crate) async fn pg_serving_db(admin: &str, name: &str) -> (Db, String) {
    use sqlx::Connection;
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    let owner = format!("{base}/{name}");
    stockade::db::migrate_postgres(&owner, stockade::db::MigrateOptions::default())
        .await
        .expect("migrate as the owner");
    let mut conn = sqlx::PgConnection::connect(&owner)
        .await
        .expect("owner connection");
    sqlx::raw_sql(&format!(
        "DO $$ BEGIN CREATE ROLE {PG_BENCH_LOGIN} LOGIN IN ROLE stockade_app; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;"
    ))
    .execute(&mut conn)
    .await
    .expect("login role");
    let _ = conn.close().await;
    let mut url = url::Url::parse(&owner).expect("PostgreSQL URL");
    url.set_username(PG_BENCH_LOGIN).expect("user");
    url.set_password(None).expect("password");
    let url = url.to_string();
    (Db::open_postgres(&url).await.expect("open PostgreSQL"), url)
}
