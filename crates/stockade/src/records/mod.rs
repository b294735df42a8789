//! Records: the tenant's business data (SPEC §2.10), collections of JSON
//! documents stored encrypted under the tenant's data key (SPEC §2.9).

pub mod cipher;

use axum::Router;

use crate::app::AppState;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi()]
pub struct RecordsApi;

pub fn routes() -> Router<AppState> {
    Router::new()
}
