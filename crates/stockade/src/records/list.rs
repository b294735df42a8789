//! `GET /v1/collections/{c}/records`: cursor pagination, equality filters on
//! declared indexed fields, and the record rule applied after decryption
//! under a bounded scan budget.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use uuid::Uuid;

use super::RecordsState;
use super::access::Access;
use super::model::{Record, RecordPage, decode_cursor, encode_cursor, index_text};
use super::service;
use super::store;
use crate::crypto::envelope::TenantKeys;
use crate::db::TenantTx;
use crate::http::{ApiError, Principal};

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 200;
/// Most records one page request decrypts. A caller whose record rule hides
/// most of a collection gets short (even empty) pages with a `next_cursor`
/// rather than making the server decrypt the whole collection at once.
pub const SCAN_BUDGET: usize = 1000;

/// The parsed query string.
#[derive(Debug, Default, PartialEq)]
pub struct ListQuery {
    pub limit: usize,
    pub after: Option<Uuid>,
    /// `(field, value)` of each `filter[field]=value`.
    pub filters: Vec<(String, String)>,
}

/// Parses `limit`, `cursor` and `filter[field]=value`; anything else is 400.
pub fn parse_query(raw: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery {
        limit: DEFAULT_LIMIT,
        ..ListQuery::default()
    };
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if k == "limit" {
            q.limit = v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request("records.invalid_limit", "limit is 1 to 200")
                })?;
        } else if k == "cursor" {
            q.after = Some(decode_cursor(&v).ok_or_else(|| {
                ApiError::bad_request("records.invalid_cursor", "this cursor is not one we issued")
            })?);
        } else if let Some(field) = k.strip_prefix("filter[").and_then(|f| f.strip_suffix(']')) {
            if q.filters.iter().any(|(f, _)| f == field) {
                return Err(ApiError::bad_request(
                    "records.invalid_filter",
                    format!("filter[{field}] is given twice"),
                ));
            }
            q.filters.push((field.to_owned(), v.into_owned()));
        } else {
            return Err(ApiError::bad_request(
                "records.invalid_query",
                "the query takes limit, cursor and filter[field]=value only",
            ));
        }
    }
    Ok(q)
}

/// A page of the collection's records, in creation order (ids are UUIDv7).
#[utoipa::path(get, path = "/v1/collections/{collection}/records", tag = "records",
    security(("bearer" = [])),
    params(("collection" = String, Path),
        ("limit" = Option<usize>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("filter[field]" = Option<String>, Query, description = "equality on a declared indexed field; repeat for several fields")),
    responses((status = 200, body = RecordPage),
        (status = 400, body = crate::http::Problem, description = "`records.field_not_indexed`, `records.invalid_cursor`, …"),
        (status = 403, body = crate::http::Problem),
        (status = 500, body = crate::http::Problem, description = "`records.integrity`")))]
pub async fn list(
    State(state): State<RecordsState>,
    Path(collection): Path<String>,
    RawQuery(raw): RawQuery,
    p: Principal,
) -> Result<Json<RecordPage>, ApiError> {
    let access = Access::new(&p, &collection, "records:read")?;
    let query = parse_query(raw.as_deref())?;
    let mut tx = state.db.tenant_read(p.tenant_id).await?;
    let Some(coll) = store::collection(&mut tx, &collection).await? else {
        if let Some((field, _)) = query.filters.first() {
            return Err(not_indexed(field));
        }
        return Ok(Json(RecordPage {
            items: Vec::new(),
            next_cursor: None,
        }));
    };
    if let Some((field, _)) = query
        .filters
        .iter()
        .find(|(f, _)| !coll.indexed_fields.contains(f))
    {
        return Err(not_indexed(field));
    }
    // A collection exists only once a record or declaration was written,
    // each of which loaded (so created) the tenant's keys: this read-only
    // transaction never has to create them.
    let keys = service::keys(&mut tx, &state).await?;
    let blind: Vec<(String, [u8; 32])> = query
        .filters
        .iter()
        .map(|(f, v)| (f.clone(), keys.blind_index(&collection, f, v)))
        .collect();
    Ok(Json(scan(&mut tx, &keys, &access, &query, &blind).await?))
}

/// Reads one page: rows after the cursor that carry every blind index of
/// `blind`, decrypted, kept when the caller's rule and the filters match,
/// until the page is full or [`SCAN_BUDGET`] rows were decrypted.
pub async fn scan(
    tx: &mut TenantTx,
    keys: &TenantKeys,
    access: &Access,
    query: &ListQuery,
    blind: &[(String, [u8; 32])],
) -> Result<RecordPage, ApiError> {
    let mut items: Vec<Record> = Vec::new();
    let mut after = query.after.unwrap_or(Uuid::nil());
    let mut scanned = 0usize;
    let next_cursor = loop {
        let want = (query.limit + 1).min(SCAN_BUDGET - scanned + 1);
        let rows = store::page(tx, &access.collection, after, blind, want as i64).await?;
        let got = rows.len();
        let mut more = None;
        for row in rows {
            if items.len() == query.limit || scanned == SCAN_BUDGET {
                // A row beyond this page exists: resume after the last one seen.
                more = Some(encode_cursor(after));
                break;
            }
            let id = row.id;
            let record = service::open(keys, row)?;
            scanned += 1;
            after = id;
            if access.sees(&record.data) && matches_filters(&record, &query.filters) {
                items.push(record);
            }
        }
        if more.is_some() || got < want {
            break more;
        }
    };
    Ok(RecordPage { items, next_cursor })
}

/// The decrypted data agrees with every filter (the blind index found the
/// row; this refuses an index row that was tampered with).
fn matches_filters(record: &Record, filters: &[(String, String)]) -> bool {
    filters
        .iter()
        .all(|(f, v)| record.data.get(f).and_then(index_text).as_deref() == Some(v.as_str()))
}

fn not_indexed(field: &str) -> ApiError {
    ApiError::bad_request(
        "records.field_not_indexed",
        format!(
            "`{field}` is not an indexed field of this collection (PUT /v1/collections/{{c}} declares them)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = parse_query(Some("limit=10&filter%5Bstatus%5D=paid&filter[n]=a%20b")).unwrap();
        assert_eq!(q.limit, 10);
        assert_eq!(
            q.filters,
            vec![
                ("status".to_owned(), "paid".to_owned()),
                ("n".to_owned(), "a b".to_owned())
            ]
        );
        assert_eq!(parse_query(None).unwrap().limit, DEFAULT_LIMIT);
        for (bad, code) in [
            ("limit=0", "records.invalid_limit"),
            ("limit=201", "records.invalid_limit"),
            ("limit=x", "records.invalid_limit"),
            ("cursor=zz", "records.invalid_cursor"),
            ("sort=id", "records.invalid_query"),
            ("filter[a]=1&filter[a]=2", "records.invalid_filter"),
        ] {
            assert_eq!(parse_query(Some(bad)).unwrap_err().code(), code, "{bad}");
        }
    }
}
