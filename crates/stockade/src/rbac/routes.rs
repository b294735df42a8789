//! `/v1/permissions` and `/v1/roles`.

use axum::Router;

use crate::app::AppState;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi()]
pub struct RbacApi;

pub fn routes() -> Router<AppState> {
    Router::new()
}
