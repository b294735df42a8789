//! Stockade: the secure core of a multi-tenant B2B SaaS.
//!
//! One folder per capability (see `docs/architecture.md`). Pure rules live in
//! the `stockade-core` crate (no I/O: the compiler refuses it), re-exported
//! here at their old paths (`clock`, `text`, `ratelimit`, each capability's
//! `model`); queries in `store.rs`, HTTP in `routes.rs`.
#![forbid(unsafe_code)]

pub mod apikeys;
pub mod app;
pub mod audit;
#[cfg(feature = "bench")]
pub mod bench;
pub mod cache;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod db;
pub mod email;
pub mod http;
pub mod identity;
pub mod ids;
pub mod jobs;
pub mod mfa;
pub mod ops;
pub mod platform;
pub mod rbac;
pub mod records;
pub mod sessions;
pub mod tenancy;
pub mod trust;

pub use stockade_core::{clock, ratelimit, text};
