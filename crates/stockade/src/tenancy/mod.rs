//! Tenants and memberships.

pub mod allowlist;
pub mod invitations;
pub mod members;
mod model;
pub mod routes;
pub mod settings;
pub mod settings_api;
mod store;

pub use model::{Membership, NewTenant, Slug, TenancyError, Tenant, TenantName, TenantStatus};
pub use routes::{TenancyApi, routes};
pub use settings::TenantSettings;
pub use store::{
    add_member, create_tenant, find_by_id, find_by_slug, insert_tenant, list_members, list_tenants,
    provision_keys,
};
