//! Tenants and memberships.

mod model;
mod store;

pub use model::{NewTenant, Slug, Tenant, TenantName, TenantStatus, TenancyError, Membership};
pub use store::{add_member, create_tenant, find_by_slug, list_members, list_tenants};
