//! Records: the tenant's business data (SPEC §2.10), collections of JSON
//! documents stored encrypted under the tenant's data key (SPEC §2.9).
//! See docs/records.md.

pub mod access;
mod api;
pub mod cipher;
mod collections;
pub mod import;
mod import_api;
pub mod list;
pub(crate) mod service;
mod state;
pub mod store;

pub use stockade_core::records::model;

#[cfg(feature = "bench")]
pub(crate) use api::with_etag;
use axum::Router;
use axum::routing::{get, post};
pub use state::RecordsState;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        api::create,
        api::get_record,
        api::patch_record,
        api::delete_record,
        list::list,
        collections::get_collection,
        collections::put_collection,
        import_api::import,
    ),
    components(schemas(
        model::Record,
        model::RecordPage,
        api::NewRecord,
        api::RecordPatch,
        store::Collection,
        collections::CollectionPut,
        import_api::ImportResult,
    ))
)]
pub struct RecordsApi;

pub fn routes() -> Router<RecordsState> {
    Router::new()
        .route(
            "/v1/collections/{collection}",
            get(collections::get_collection).put(collections::put_collection),
        )
        .route(
            "/v1/collections/{collection}/records",
            get(list::list).post(api::create),
        )
        .route(
            "/v1/collections/{collection}/records/{id}",
            get(api::get_record)
                .patch(api::patch_record)
                .delete(api::delete_record),
        )
}

/// The import route: it reads its body itself, up to `import_max_bytes`,
/// so it is merged outside the JSON body limit (see `app::app`).
pub fn import_routes() -> Router<RecordsState> {
    Router::new().route(
        "/v1/collections/{collection}/import",
        post(import_api::import),
    )
}
