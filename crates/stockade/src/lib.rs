//! Stockade: the secure core of a multi-tenant B2B SaaS.
//!
//! One folder per capability (see `docs/architecture.md`). Pure rules live in
//! each capability's `model.rs`, queries in `store.rs`, HTTP in `routes.rs`.
#![forbid(unsafe_code)]

pub mod apikeys;
pub mod app;
pub mod audit;
#[cfg(feature = "bench")]
pub mod bench;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod email;
pub mod http;
pub mod identity;
pub mod ids;
pub mod jobs;
pub mod ops;
pub mod platform;
pub mod ratelimit;
pub mod rbac;
pub mod records;
pub mod sessions;
pub mod tenancy;
pub mod text;
