//! `POST /v1/collections/{c}/import`: a CSV file into records, all or
//! nothing, with every problem listed by line.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Serialize;
use serde_json::json;

use super::RecordsState;
use super::access::Access;
use super::cipher::StoredDocument;
use super::import::{self, FormulaCells, MAX_LISTED_ERRORS, ParseError, RowError};
use super::model::KEY_FIELD;
use super::service;
use super::store;
use crate::audit::{self, NewEvent, Outcome, Target};
use crate::http::{ApiError, AuthState, Principal};

/// What an import stored.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ImportResult {
    pub(crate) collection: String,
    /// Records created.
    pub(crate) imported: usize,
}

/// Imports a CSV file (`Content-Type: text/csv`): the header row names the
/// fields, a `key` column is the record key, values are strings. All rows or
/// none: any problem answers 400 `records.import_invalid` listing up to 100
/// of them as `errors: [{line, field?, message}]`.
#[utoipa::path(post, path = "/v1/collections/{collection}/import", tag = "records",
    security(("bearer" = [])),
    request_body(content = String, content_type = "text/csv"),
    params(("collection" = String, Path),
        ("formula_cells" = Option<String>, Query, description = "`escape`: store cells starting with = + - @ tab CR (also behind invisible characters or white space, or in full-width form) prefixed with `'` instead of refusing them")),
    responses((status = 201, body = ImportResult),
        (status = 400, body = crate::http::Problem, description = "`records.import_invalid` (per-row errors), `records.import_malformed` (ragged row, a quote never closed, text after a closing quote; with the line), `records.import_bad_header`, `records.import_not_utf8`"),
        (status = 403, body = crate::http::Problem),
        (status = 409, body = crate::http::Problem, description = "`records.key_conflict`"),
        (status = 413, body = crate::http::Problem, description = "`request.too_large` or `records.import_too_many_rows`"),
        (status = 415, body = crate::http::Problem)))]
pub(crate) async fn import(
    State(state): State<RecordsState>,
    Path(collection): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    p: Principal,
    body: Body,
) -> Result<(StatusCode, Json<ImportResult>), ApiError> {
    let access = Access::new(&p, &collection, "records:write")?;
    let formula = formula_mode(raw.as_deref())?;
    let is_csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/csv"));
    if !is_csv {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request.unsupported_media_type",
        )
        .with_detail("expected Content-Type: text/csv"));
    }
    match run(&state, &p, &access, &collection, formula, body).await {
        Ok(done) => Ok(done),
        Err(Failed::Other(e)) => Err(e),
        Err(Failed::Refused(r)) => {
            audit_refusal(&state, &p, &collection, &r).await;
            Err(r.error)
        }
    }
}

/// A file refused for its content: the answer, and what
/// `records.import.failed` records (counts and line numbers, never cells).
struct Refused {
    error: ApiError,
    errors: usize,
    first_line: Option<u64>,
}

impl Refused {
    fn whole_file(error: ApiError) -> Self {
        Self {
            error,
            errors: 1,
            first_line: None,
        }
    }
}

enum Failed {
    Refused(Refused),
    /// Not the file's fault (database, keys): not audited as a refusal.
    Other(ApiError),
}

impl From<ApiError> for Failed {
    fn from(e: ApiError) -> Self {
        Self::Other(e)
    }
}

impl From<crate::db::DbError> for Failed {
    fn from(e: crate::db::DbError) -> Self {
        Self::Other(e.into())
    }
}

/// Writes `records.import.failed` in a transaction of its own (the import
/// wrote nothing). A failure to audit is logged; the caller still gets its
/// 4xx answer.
async fn audit_refusal(state: &AuthState, p: &Principal, collection: &str, r: &Refused) {
    let written = async {
        let mut tx = state.db.tenant_tx(p.tenant_id).await?;
        audit::append(
            &mut tx,
            state.clock.as_ref(),
            NewEvent::new(p.actor(), "records.import.failed")
                .target(Target::new("collection", collection))
                .outcome(Outcome::Failure)
                .details(json!({
                    "collection": collection,
                    "code": r.error.code(),
                    "errors": r.errors,
                    "first_line": r.first_line,
                }))
                .context(p.context.clone()),
        )
        .await?;
        tx.commit().await?;
        Ok::<(), audit::AuditError>(())
    };
    if let Err(e) = written.await {
        tracing::error!(error = %e, "records.import.failed could not be audited");
    }
}

/// Reads, checks and stores the file: all rows in one transaction, or none.
async fn run(
    state: &AuthState,
    p: &Principal,
    access: &Access,
    collection: &str,
    formula: FormulaCells,
    body: Body,
) -> Result<(StatusCode, Json<ImportResult>), Failed> {
    let limit = state.config.import_max_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        Failed::Refused(Refused::whole_file(
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request.too_large")
                .with_detail(format!("an import file may be at most {limit} bytes")),
        ))
    })?;
    let rows = import::parse(&bytes, state.config.import_max_rows, formula)
        .map_err(|e| Failed::Refused(parse_error(e)))?;
    let mut errors: Vec<RowError> = Vec::new();
    for row in &rows {
        if service::check_size(state, &row.data).is_err() {
            errors.push(row_error(row.line, "the record is larger than allowed"));
        } else if access.check_write(&row.data).is_err() {
            errors.push(row_error(row.line, "outside your record rule"));
        }
    }
    if !errors.is_empty() {
        return Err(Failed::Refused(rows_error(errors)));
    }
    let now = state.clock.now();
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    let keys = service::keys(&mut tx, state).await?;
    let coll = store::ensure_collection(&mut tx, collection, now).await?;
    for row in &rows {
        let index = row
            .key
            .as_deref()
            .map(|k| keys.blind_index(collection, KEY_FIELD, k));
        if let Some(index) = index
            && store::key_taken(&mut tx, collection, index).await?
        {
            errors.push(RowError {
                line: row.line,
                field: Some(import::KEY_COLUMN.to_owned()),
                message: "a record of this collection already has this key".to_owned(),
            });
        }
    }
    if !errors.is_empty() {
        // Dropping `tx` rolls back the collection it may have created.
        return Err(Failed::Refused(rows_error(errors)));
    }
    let count = rows.len();
    for row in rows {
        let doc = StoredDocument {
            key: row.key,
            data: row.data,
        };
        service::insert(&mut tx, &keys, &coll, &doc, p.user_id.0, now).await?;
    }
    service::audit(
        &mut tx,
        state,
        p,
        "records.import.completed",
        Target::new("collection", collection),
        json!({ "collection": collection, "count": count }),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(ImportResult {
            collection: collection.to_owned(),
            imported: count,
        }),
    ))
}

fn formula_mode(raw: Option<&str>) -> Result<FormulaCells, ApiError> {
    let mut mode = FormulaCells::Reject;
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match (k.as_ref(), v.as_ref()) {
            ("formula_cells", "escape") => mode = FormulaCells::Escape,
            ("formula_cells", "reject") => mode = FormulaCells::Reject,
            _ => {
                return Err(ApiError::bad_request(
                    "records.invalid_query",
                    "the query takes formula_cells=escape|reject only",
                ));
            }
        }
    }
    Ok(mode)
}

fn row_error(line: u64, message: &str) -> RowError {
    RowError {
        line,
        field: None,
        message: message.to_owned(),
    }
}

/// 400 `records.import_invalid` listing the first 100 problems.
fn rows_error(mut errors: Vec<RowError>) -> Refused {
    errors.sort_by_key(|e| e.line);
    let total = errors.len();
    let first_line = errors.first().map(|e| e.line);
    errors.truncate(MAX_LISTED_ERRORS);
    Refused {
        error: ApiError::bad_request(
            "records.import_invalid",
            format!("{total} problem(s) in the file (the first {MAX_LISTED_ERRORS} are listed); nothing was imported"),
        )
        .with_errors(serde_json::to_value(errors).unwrap_or_default()),
        errors: total,
        first_line,
    }
}

fn parse_error(e: ParseError) -> Refused {
    match e {
        ParseError::NotUtf8 => Refused::whole_file(ApiError::bad_request(
            "records.import_not_utf8",
            "the file is not UTF-8 text",
        )),
        ParseError::Malformed { line, message } => Refused {
            error: ApiError::bad_request(
                "records.import_malformed",
                format!("line {line}: {message}"),
            )
            .with_errors(json!([{ "line": line, "message": message }])),
            errors: 1,
            first_line: Some(line),
        },
        ParseError::Header(m) => Refused {
            error: ApiError::bad_request("records.import_bad_header", m),
            errors: 1,
            first_line: Some(1),
        },
        ParseError::TooManyRows(max) => Refused::whole_file(
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "records.import_too_many_rows",
            )
            .with_detail(format!("an import may hold at most {max} rows")),
        ),
        ParseError::Rows(errors) => rows_error(errors),
    }
}
