//! API keys (SPEC §2.8): tenant-scoped, permission-scoped keys for a
//! tenant's own integrations, stored as keyed hashes.

use axum::Router;

use crate::app::AppState;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi()]
pub struct ApiKeysApi;

pub fn routes() -> Router<AppState> {
    Router::new()
}
