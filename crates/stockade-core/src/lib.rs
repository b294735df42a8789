//! Stockade's pure rules and types: what a password, a permission, a token,
//! an API key, an envelope ciphertext or an audit hash must be, decided from
//! values alone. No I/O: nothing here opens a database, a socket or a file,
//! spawns a task or starts a runtime. The compiler enforces it — this crate
//! depends on no database driver, HTTP stack, async runtime or network
//! client (`.ci/check-layers` keeps it so) — and its tests run in seconds.
//! The only ambient inputs are the wall clock (`clock::SystemClock`, the one
//! place it is read) and the OS random number generator (`crypto::random`,
//! `crypto::seal`). The modules mirror the layout of the `stockade` crate,
//! which re-exports each at its old path.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod apikeys;
pub mod audit;
pub mod clock;
pub mod crypto;
pub mod identity;
pub mod mfa;
pub mod ratelimit;
pub mod rbac;
pub mod records;
pub mod sessions;
pub mod tenancy;
pub mod text;
pub mod web;
