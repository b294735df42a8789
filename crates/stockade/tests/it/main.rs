#![allow(unreachable_pub)] // reason: a test binary; `pub` only shares fixtures between its modules
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // reason: test code; a failed unwrap is a failed test

//! One integration-test binary (link time on 2 cores): a real server on
//! 127.0.0.1:0, real SQLite files, real PostgreSQL databases.

mod allowlist_pathways;
mod apikeys;
mod audit;
mod audit_retention;
mod audit_scenario;
mod audit_tail;
mod audit_webhook;
mod audit_webhook_more;
mod auth;
mod cli;
mod envelope;
mod erasure;
mod forwarded_for;
mod http;
mod isolation;
mod keyring;
mod members;
mod platform;
mod postgres_pool;
mod postgres_rls;
mod proxy_misconfiguration;
mod records;
mod records_at_rest;
mod records_import;
mod records_rules;
mod refusals_counted;
mod roles;
mod rotation;
mod session_cache;
mod settings;
mod storage;
mod testkit;
mod webhook_receiver;
