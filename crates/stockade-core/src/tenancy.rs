//! Tenants' pure rules (`model`): slugs, display names, statuses, role
//! names. Tenant and membership rows, invitations and settings stay in
//! `stockade::tenancy`; nothing here reads a tenant.

pub mod model;
