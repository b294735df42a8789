//! Tenant and membership queries.

use super::model::{Membership, NewTenant, TenancyError, Tenant, validate_role};
use crate::audit::{self, Actor, NewEvent, RequestContext, Target};
use crate::clock::Clock;
use crate::crypto::envelope;
use crate::crypto::keys::MasterKey;
use crate::db::{Db, DbError, GlobalTx, TenantTx};
use crate::ids::{TenantId, UserId};

/// Creates a tenant with its keys (one data key and one index key, wrapped
/// under `master`) and writes its first audit event, atomically.
pub async fn create_tenant(
    db: &Db,
    clock: &dyn Clock,
    master: &MasterKey,
    new: NewTenant,
    actor: Actor,
    context: RequestContext,
) -> Result<Tenant, TenancyError> {
    let mut tx = db.global_tx().await?;
    let tenant = insert_tenant(&mut tx, clock, &new).await?;
    let mut tx = tx.scoped(tenant.id).await?;
    provision_keys(&mut tx, clock, master).await?;
    audit::append(
        &mut tx,
        clock,
        NewEvent::new(actor, "tenancy.tenant.created")
            .target(Target::new("tenant", tenant.id))
            .details(serde_json::json!({ "slug": tenant.slug, "name": tenant.name }))
            .context(context),
    )
    .await?;
    tx.commit().await?;
    Ok(tenant)
}

/// Creates the keys of a tenant being created, in its creating transaction
/// (SPEC §2.9: one data key per tenant, created with the tenant).
pub async fn provision_keys(
    tx: &mut TenantTx,
    clock: &dyn Clock,
    master: &MasterKey,
) -> Result<(), TenancyError> {
    envelope::provision(tx, master, clock).await?;
    Ok(())
}

pub async fn insert_tenant(
    tx: &mut GlobalTx,
    clock: &dyn Clock,
    new: &NewTenant,
) -> Result<Tenant, TenancyError> {
    insert_tenant_with_id(tx, clock, TenantId::new(), new).await
}

/// [`insert_tenant`] with the id chosen by the caller (a sign-up names its
/// tenant's id before the tenant exists: `identity::signup`).
pub async fn insert_tenant_with_id(
    tx: &mut GlobalTx,
    clock: &dyn Clock,
    id: TenantId,
    new: &NewTenant,
) -> Result<Tenant, TenancyError> {
    let now = clock.now();
    tx.fetch_optional::<Tenant>(
        "INSERT INTO tenants (id, slug, name, status, created_at, updated_at) \
         VALUES ($1, $2, $3, 'active', $4, $4) RETURNING *",
        vec![
            id.into(),
            new.slug.as_str().into(),
            new.name.as_str().into(),
            now.into(),
        ],
    )
    .await
    .map_err(|e| match e {
        DbError::Unique(_) => TenancyError::SlugTaken(new.slug.as_str().to_owned()),
        other => other.into(),
    })?
    .ok_or(TenancyError::Db(DbError::Sqlx(sqlx::Error::RowNotFound)))
}

pub async fn find_by_slug(db: &Db, slug: &str) -> Result<Option<Tenant>, DbError> {
    db.global_read()
        .await?
        .fetch_optional("SELECT * FROM tenants WHERE slug = $1", vec![slug.into()])
        .await
}

pub async fn find_by_id(db: &Db, id: TenantId) -> Result<Option<Tenant>, DbError> {
    db.global_read()
        .await?
        .fetch_optional("SELECT * FROM tenants WHERE id = $1", vec![id.into()])
        .await
}

pub async fn list_tenants(db: &Db) -> Result<Vec<Tenant>, DbError> {
    db.global_read()
        .await?
        .fetch_all("SELECT * FROM tenants ORDER BY created_at, id", vec![])
        .await
}

/// Adds `user` to the transaction's tenant with `role`.
pub async fn add_member(
    tx: &mut TenantTx,
    clock: &dyn Clock,
    user: UserId,
    role: &str,
) -> Result<Membership, TenancyError> {
    validate_role(role)?;
    tx.fetch_one(
        "INSERT INTO memberships (tenant_id, user_id, role, status, created_at) \
         VALUES ($1, $2, $3, 'active', $4) RETURNING *",
        vec![user.into(), role.into(), clock.now().into()],
    )
    .await
    .map_err(|e| match e {
        DbError::Unique(_) => TenancyError::AlreadyMember,
        other => other.into(),
    })
}

pub async fn list_members(tx: &mut TenantTx) -> Result<Vec<Membership>, DbError> {
    tx.fetch_all(
        "SELECT * FROM memberships WHERE tenant_id = $1 ORDER BY created_at, user_id",
        vec![],
    )
    .await
}
