#![allow(unreachable_pub)] // reason: a test binary; `pub` only shares fixtures between its modules
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // reason: test code; a failed unwrap is a failed test

//! One integration-test binary (link time on 2 cores): a real server on
//! 127.0.0.1:0, real SQLite files, real PostgreSQL databases.

mod alerts;
mod allowlist_pathways;
mod apikeys;
mod apikeys_cache;
mod apikeys_properties;
mod apikeys_refusals;
mod audit;
mod audit_details;
mod audit_retention;
mod audit_retention_floor;
mod audit_scenario;
mod audit_tail;
mod audit_webhook;
mod audit_webhook_more;
mod auth;
mod auth_password;
mod auth_refresh;
mod auth_sessions;
mod auth_signin;
mod cli;
mod cli_import;
mod cli_keys;
mod cli_secrets;
mod connection_limits;
mod cors_redirects;
mod cross_site_refresh;
mod database_urls;
mod dev_outbox;
mod envelope;
mod erasure;
mod forwarded_for;
mod hs256_secret;
mod http;
mod http_early_rejections;
mod impersonation_laundering;
mod isolation;
mod jobs;
mod keyring;
mod leader;
mod lockout_everywhere;
mod lockout_notice;
mod lookalike_addresses;
mod mailbox;
mod members;
mod members_invitations;
mod metrics;
mod mfa;
mod mfa_policy;
mod mfa_totp;
mod planned_permissions;
mod platform;
mod platform_impersonation;
mod platform_owner_claims;
mod postgres_pool;
mod postgres_rls;
mod postgres_roles;
mod postgres_tls;
mod proxy_misconfiguration;
mod records;
mod records_at_rest;
mod records_import;
mod records_import_hostile;
mod records_rules;
mod redirector;
mod refusals_counted;
mod reset_links;
mod roles;
mod roles_enforcement;
mod rotation;
mod session_cache;
mod settings;
mod settings_unavailable;
mod sign_in_link_laundering;
mod signup_enumeration;
mod step_up_attacks;
mod step_up_everywhere;
mod storage;
mod testkit;
mod tls;
mod tls_cli;
mod tls_kit;
mod tls_reload;
mod tls_scan;
mod trial_and_plan;
mod trust;
mod webauthn;
mod webauthn_attacks;
mod webauthn_kit;
mod webhook_receiver;
