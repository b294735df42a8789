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
