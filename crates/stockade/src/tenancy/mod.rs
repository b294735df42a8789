//! Tenants and memberships.

pub mod allowlist;
pub mod invitation_accounts;
pub mod invitation_store;
pub mod invitations;
pub mod members;
mod model;
pub mod routes;
pub mod settings;
pub mod settings_api;
pub mod settings_reset;
mod state;
mod store;

pub use model::{
    Membership, NewTenant, Slug, TenancyError, TenancyRefusal, Tenant, TenantName, TenantStatus,
};
pub use routes::{TenancyApi, routes};
pub use settings::TenantSettings;
pub use state::TenancyState;
pub use store::{
    add_member, create_tenant, find_by_id, find_by_slug, insert_tenant, insert_tenant_with_id,
    list_members, list_tenants, provision_keys,
};
