//! `POST/GET/PATCH/DELETE /v1/collections/{c}/records[/{id}]`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::RecordsState;
use super::access::Access;
use super::cipher::StoredDocument;
use super::model::{Record, merge_patch, parse_if_match, valid_key};
use super::service::{self, not_found};
use super::store;
use crate::audit::Target;
use crate::http::{ApiError, ApiJson, Principal};

/// A new record.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRecord {
    /// The document: a JSON object.
    #[schema(value_type = Object)]
    pub(crate) data: Value,
    /// Optional caller-chosen key, unique in the collection (1–256 characters).
    #[serde(default)]
    pub(crate) key: Option<String>,
}

/// Changes to a record's data (RFC 7386 JSON merge patch: `null` removes a field).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordPatch {
    #[schema(value_type = Object)]
    pub(crate) data: Value,
}

/// A record with its `ETag` (the version).
pub(crate) fn with_etag(status: StatusCode, record: Record) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", record.version)).ok();
    let mut res = (status, Json(record)).into_response();
    if let Some(etag) = etag {
        res.headers_mut().insert(header::ETAG, etag);
    }
    res
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse::<Uuid>().map_err(|_| not_found())
}

/// Creates a record (and its collection, on first use).
#[utoipa::path(post, path = "/v1/collections/{collection}/records", tag = "records",
    security(("bearer" = [])), request_body = NewRecord,
    params(("collection" = String, Path, description = "collection name")),
    responses((status = 201, body = Record, description = "created; `ETag` is the version"),
        (status = 400, body = crate::http::Problem), (status = 403, body = crate::http::Problem),
        (status = 409, body = crate::http::Problem, description = "`records.key_conflict`"),
        (status = 413, body = crate::http::Problem)))]
pub(crate) async fn create(
    State(state): State<RecordsState>,
    Path(collection): Path<String>,
    p: Principal,
    ApiJson(body): ApiJson<NewRecord>,
) -> Result<Response, ApiError> {
    let access = Access::new(&p, &collection, "records:write")?;
    service::check_object(&body.data)?;
    service::check_size(&state, &body.data)?;
    if let Some(key) = &body.key
        && !valid_key(key)
    {
        return Err(ApiError::bad_request(
            "records.invalid_key",
            "a key is 1 to 256 characters, no control characters",
        ));
    }
    access.check_write(&body.data)?;
    let now = state.clock.now();
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    let keys = service::keys(&mut tx, &state).await?;
    let coll = store::ensure_collection(&mut tx, &collection, now).await?;
    let doc = StoredDocument {
        key: body.key,
        data: body.data,
    };
    let id = service::insert(&mut tx, &keys, &coll, &doc, p.user_id.0, now).await?;
    service::audit(
        &mut tx,
        &state,
        &p,
        "records.record.created",
        Target::new("record", id),
        json!({ "collection": collection, "version": 1 }),
    )
    .await?;
    tx.commit().await?;
    let record = Record {
        id,
        collection,
        key: doc.key,
        data: doc.data,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    Ok(with_etag(StatusCode::CREATED, record))
}

/// One record.
#[utoipa::path(get, path = "/v1/collections/{collection}/records/{id}", tag = "records",
    security(("bearer" = [])),
    params(("collection" = String, Path), ("id" = String, Path, description = "record id (UUID)")),
    responses((status = 200, body = Record, description = "`ETag` is the version"),
        (status = 403, body = crate::http::Problem),
        (status = 404, body = crate::http::Problem, description = "absent, another tenant's, or outside your record rule"),
        (status = 500, body = crate::http::Problem, description = "`records.integrity`: the stored ciphertext does not authenticate")))]
pub(crate) async fn get_record(
    State(state): State<RecordsState>,
    Path((collection, id)): Path<(String, String)>,
    p: Principal,
) -> Result<Response, ApiError> {
    let access = Access::new(&p, &collection, "records:read")?;
    let id = parse_id(&id)?;
    let record = service::read(&state, p.tenant_id, &collection, id).await?;
    if !access.sees(&record.data) {
        return Err(not_found());
    }
    Ok(with_etag(StatusCode::OK, record))
}

/// The version `If-Match` names: 428 `records.if_match_required` when
/// absent, 400 `records.invalid_if_match` when not a version.
fn if_match(headers: &HeaderMap, required: bool) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        if required {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_REQUIRED,
                "records.if_match_required",
            )
            .with_detail("send If-Match: <version> (the record's current version)"));
        }
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(parse_if_match)
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(
                "records.invalid_if_match",
                "If-Match must be a record version such as \"3\"",
            )
        })
}

fn version_mismatch(current: i64) -> ApiError {
    ApiError::new(StatusCode::PRECONDITION_FAILED, "records.version_mismatch")
        .with_detail(format!("the record is at version {current}"))
        .with_errors(json!({ "current_version": current }))
}

/// Updates a record's data (JSON merge patch). Needs `If-Match: <version>`.
#[utoipa::path(patch, path = "/v1/collections/{collection}/records/{id}", tag = "records",
    security(("bearer" = [])), request_body = RecordPatch,
    params(("collection" = String, Path), ("id" = String, Path),
        ("If-Match" = String, Header, description = "the version being changed, e.g. \"3\"")),
    responses((status = 200, body = Record),
        (status = 400, body = crate::http::Problem), (status = 403, body = crate::http::Problem),
        (status = 404, body = crate::http::Problem),
        (status = 412, body = crate::http::Problem, description = "`records.version_mismatch`"),
        (status = 413, body = crate::http::Problem),
        (status = 428, body = crate::http::Problem, description = "`records.if_match_required`")))]
pub(crate) async fn patch_record(
    State(state): State<RecordsState>,
    Path((collection, id)): Path<(String, String)>,
    headers: HeaderMap,
    p: Principal,
    ApiJson(body): ApiJson<RecordPatch>,
) -> Result<Response, ApiError> {
    let access = Access::new(&p, &collection, "records:write")?;
    let id = parse_id(&id)?;
    service::check_object(&body.data)?;
    let now = state.clock.now();
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    let row = store::fetch(&mut tx, &collection, id)
        .await?
        .ok_or_else(not_found)?;
    let keys = service::keys(&mut tx, &state).await?;
    let old = service::open(&keys, row)?;
    if !access.sees(&old.data) {
        return Err(not_found());
    }
    // After the lookup: a record the caller cannot see is 404 either way.
    let expected = if_match(&headers, true)?;
    if expected != Some(old.version) {
        return Err(version_mismatch(old.version));
    }
    let mut data = old.data.clone();
    merge_patch(&mut data, &body.data);
    service::check_size(&state, &data)?;
    access.check_write(&data)?;
    let doc = StoredDocument {
        key: old.key.clone(),
        data,
    };
    let (sealed, key_version) = service::seal(&keys, &collection, id, &doc)?;
    if !store::update(&mut tx, id, old.version, sealed, key_version, now).await? {
        return Err(version_mismatch(old.version + 1));
    }
    let coll = store::ensure_collection(&mut tx, &collection, now).await?;
    store::write_index(
        &mut tx,
        &keys,
        &collection,
        id,
        &coll.indexed_fields,
        &doc.data,
    )
    .await?;
    let version = old.version + 1;
    service::audit(
        &mut tx,
        &state,
        &p,
        "records.record.updated",
        Target::new("record", id),
        json!({ "collection": collection, "version": version }),
    )
    .await?;
    tx.commit().await?;
    let record = Record {
        data: doc.data,
        version,
        updated_at: now,
        ..old
    };
    Ok(with_etag(StatusCode::OK, record))
}

/// Deletes a record. `If-Match` is optional; when sent it must match.
#[utoipa::path(delete, path = "/v1/collections/{collection}/records/{id}", tag = "records",
    security(("bearer" = [])),
    params(("collection" = String, Path), ("id" = String, Path),
        ("If-Match" = Option<String>, Header, description = "optional: the version being deleted")),
    responses((status = 204, description = "deleted"),
        (status = 403, body = crate::http::Problem), (status = 404, body = crate::http::Problem),
        (status = 412, body = crate::http::Problem)))]
pub(crate) async fn delete_record(
    State(state): State<RecordsState>,
    Path((collection, id)): Path<(String, String)>,
    headers: HeaderMap,
    p: Principal,
) -> Result<StatusCode, ApiError> {
    let access = Access::new(&p, &collection, "records:write")?;
    let id = parse_id(&id)?;
    let expected = if_match(&headers, false)?;
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    let row = store::fetch(&mut tx, &collection, id)
        .await?
        .ok_or_else(not_found)?;
    let keys = service::keys(&mut tx, &state).await?;
    let old = service::open(&keys, row)?;
    if !access.sees(&old.data) {
        return Err(not_found());
    }
    if expected.is_some_and(|v| v != old.version) {
        return Err(version_mismatch(old.version));
    }
    store::delete(&mut tx, id).await?;
    service::audit(
        &mut tx,
        &state,
        &p,
        "records.record.deleted",
        Target::new("record", id),
        json!({ "collection": collection, "version": old.version }),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
