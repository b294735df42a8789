//! `/v1/members` and `/v1/invitations`.

use axum::Router;

use crate::app::AppState;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi()]
pub struct TenancyApi;

pub fn routes() -> Router<AppState> {
    Router::new()
}
