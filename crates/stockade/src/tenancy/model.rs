//! Tenants and memberships as stored ([`Tenant`], [`Membership`]) and what
//! can go wrong with them ([`TenancyError`]). What a slug, a name, a status
//! or a role name may be is a pure rule of `stockade_core::tenancy::model`,
//! re-exported here; this file does no I/O and must not redefine those rules.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::{TenantId, UserId};

pub(crate) use stockade_core::tenancy::model::validate_role;
pub use stockade_core::tenancy::model::{
    NewTenant, Slug, TenancyRefusal, TenantName, TenantStatus,
};

#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    /// A slug, tenant name or role name that breaks its rule.
    #[error(transparent)]
    Invalid(#[from] TenancyRefusal),
    #[error("a tenant with slug `{0}` already exists")]
    SlugTaken(String),
    #[error("the user is already a member of this tenant")]
    AlreadyMember,
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("cannot create the tenant's keys: {0}")]
    Keys(#[from] crate::crypto::envelope::EnvelopeError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub status: String,
    pub deletion_requested_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Tenant {
    pub fn status(&self) -> Option<TenantStatus> {
        TenantStatus::parse(&self.status)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Membership {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub role: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}
