//! Roles and permissions (SPEC §2.6): permissions are `area:verb` strings,
//! optionally narrowed to one collection (`records:read:orders`); a role is
//! a named set of them plus record-level rules. Built-in roles are fixed in
//! code; tenants add custom roles (stored in `roles`).

mod planned;
mod role_rules;
pub mod routes;
mod state;
mod store;

// The pure rules live in `stockade-core`.
use stockade_core::rbac::model;

pub use model::{
    BUILTIN_ROLES, PERMISSIONS, PLANNED_PERMISSIONS, PermissionError, PermissionSet, RecordRule,
    builtin_role, parse_permission,
};
pub use planned::{PermissionStatus, is_planned, planned_among, planned_refused};
pub use role_rules::{
    Escalation, MAX_DESCRIPTION_CHARS, MAX_RECORD_RULES, MAX_ROLE_PERMISSIONS, escalation,
};
pub use routes::{RbacApi, routes};
pub use state::RbacState;
pub use store::{CustomRole, find_custom_role, list_custom_roles, role_holders, role_permissions};
