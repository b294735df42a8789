//! API keys (SPEC §2.8): tenant-scoped, permission-scoped keys for a
//! tenant's own integrations, stored as keyed hashes. See docs/api-keys.md.
//!
//! - `model`: the key format, its strict parser, generation, HMAC.
//! - `store`: rows (`api_keys`, tenant-owned; `api_key_ids`, the global
//!   public id → tenant map).
//! - `auth`: authenticating `Authorization: Bearer stk_…` (used by
//!   `http::Principal`), the per-key and per-address rate limits.
//! - `denials`: sampled `api_keys.key.denied` audit events.
//! - `routes`: `/v1/api-keys`.

mod auth;
mod denials;
mod routes;
mod state;
mod store;

// The key format is a pure rule of `stockade-core`.
use stockade_core::apikeys::model;

use axum::Router;
use axum::routing::{get, post};

pub use auth::{
    ApiKeyAuth, Authenticated, FAILURE_QUOTA, HMAC_PURPOSE, TOUCH_EVERY, admit, authenticate,
    effective, hmac_key,
};
pub use denials::{DENIAL_WINDOW, DenialAudit, DeniedKey, denial_audit, record_later};
pub use model::{
    ApiKey, KEY_LEN, KeyEnv, PREFIX, ParseError, display_prefix, looks_like_key, parse,
};
pub use routes::{CreateKey, CreatedKey, MAX_EXPIRY_DAYS, MAX_GRACE_SECONDS, RotateKey};
pub use state::ApiKeysState;
pub use store::{
    AuthRow, KeyName, KeyView, NewKey, auth_row, insert, live_created_by, revoke_created_by,
    revoke_created_by_named, tenant_of,
};

/// A key's environment follows the deployment profile (`live` in production).
impl model::Deployment for crate::config::Config {
    fn is_production(&self) -> bool {
        crate::config::Config::is_production(self)
    }
}

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(routes::create, routes::list, routes::revoke, routes::rotate),
    components(schemas(CreateKey, RotateKey, CreatedKey, KeyView))
)]
pub struct ApiKeysApi;

pub fn routes() -> Router<ApiKeysState> {
    Router::new()
        .route("/v1/api-keys", get(routes::list).post(routes::create))
        .route("/v1/api-keys/{id}", axum::routing::delete(routes::revoke))
        .route("/v1/api-keys/{id}/rotate", post(routes::rotate))
}
