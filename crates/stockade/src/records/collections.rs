//! `GET/PUT /v1/collections/{c}`: a collection's declared indexed fields.
//! Declaring them rebuilds the collection's blind index from the records.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::RecordsState;
use super::access::valid_collection;
use super::model::{MAX_INDEXED_FIELDS, valid_name};
use super::service;
use super::store::{self, Collection};
use crate::audit::Target;
use crate::http::{ApiError, ApiJson, Principal};

/// The declaration of a collection's indexed fields.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CollectionPut {
    /// Top-level fields to index for `filter[field]=value` (at most 32 names
    /// matching `^[a-z][a-z0-9_]{0,62}$`). Replaces the previous list.
    pub(crate) indexed_fields: Vec<String>,
}

/// A collection and its indexed fields.
#[utoipa::path(get, path = "/v1/collections/{collection}", tag = "records",
    security(("bearer" = [])), params(("collection" = String, Path)),
    responses((status = 200, body = Collection), (status = 403, body = crate::http::Problem),
        (status = 404, body = crate::http::Problem, description = "`records.collection_not_found`")))]
pub(crate) async fn get_collection(
    State(state): State<RecordsState>,
    Path(collection): Path<String>,
    p: Principal,
) -> Result<Json<Collection>, ApiError> {
    valid_collection(&collection)?;
    p.require_in("records:read", Some(&collection))?;
    let mut tx = state.db.tenant_read(p.tenant_id).await?;
    store::collection(&mut tx, &collection)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "records.collection_not_found")
                .with_detail("no such collection")
        })
}

/// Declares the collection's indexed fields (creating the collection if
/// needed) and rebuilds its blind index for the existing records. Needs
/// `settings:manage`.
#[utoipa::path(put, path = "/v1/collections/{collection}", tag = "records",
    security(("bearer" = [])), request_body = CollectionPut, params(("collection" = String, Path)),
    responses((status = 200, body = Collection), (status = 400, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem),
        (status = 500, body = crate::http::Problem, description = "`records.integrity`: a stored record failed to decrypt; nothing changed")))]
pub(crate) async fn put_collection(
    State(state): State<RecordsState>,
    Path(collection): Path<String>,
    p: Principal,
    ApiJson(body): ApiJson<CollectionPut>,
) -> Result<Json<Collection>, ApiError> {
    valid_collection(&collection)?;
    p.require("settings:manage")?;
    let mut fields = body.indexed_fields;
    if let Some(bad) = fields.iter().find(|f| !valid_name(f)) {
        return Err(ApiError::bad_request(
            "records.invalid_field",
            format!(
                "`{}` is not a field name: 1 to 63 characters of a-z, 0-9 and _, starting with a letter",
                bad.chars().take(80).collect::<String>()
            ),
        ));
    }
    fields.sort();
    fields.dedup();
    if fields.len() > MAX_INDEXED_FIELDS {
        return Err(ApiError::bad_request(
            "records.invalid_field",
            format!("at most {MAX_INDEXED_FIELDS} indexed fields"),
        ));
    }
    let now = state.clock.now();
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    let keys = service::keys(&mut tx, &state).await?;
    let old = store::ensure_collection(&mut tx, &collection, now).await?;
    if old.indexed_fields != fields {
        store::set_indexed_fields(&mut tx, &collection, &fields, now).await?;
        store::clear_index(&mut tx, &collection).await?;
        for row in store::all(&mut tx, &collection).await? {
            let record = service::open(&keys, row)?;
            store::write_index(
                &mut tx,
                &keys,
                &collection,
                record.id,
                &fields,
                &record.data,
            )
            .await?;
        }
        service::audit(
            &mut tx,
            &state,
            &p,
            "records.collection.updated",
            Target::new("collection", &collection),
            json!({ "collection": collection, "old": old.indexed_fields, "new": fields }),
        )
        .await?;
    }
    let coll = store::collection(&mut tx, &collection)
        .await?
        .ok_or_else(|| ApiError::internal("collection vanished"))?;
    tx.commit().await?;
    Ok(Json(coll))
}
