//! `GET /v1/audit/events`, `/v1/audit/verify` and `/v1/audit/export`: a
//! tenant reads, verifies and streams its own log (SPEC §2.7). Every route
//! needs `audit:read` and reads through the caller's tenant transaction only.

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::AuditState;
use super::model::{AuditError, NewEvent, StoredEvent, Target, VerifyReport};
use super::pii::{EventView, Ids, reveal};
use super::query::{EventQuery, QueryError, page_after};
use crate::clock::Clock;
use crate::db::Db;
use crate::http::{ApiError, Principal};
use crate::ids::TenantId;

/// Events fetched per round trip while exporting: memory stays constant
/// however long the log is.
pub const EXPORT_PAGE: i64 = 1000;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_events, verify, export),
    components(schemas(EventPage, EventView, StoredEvent, VerifyReport))
)]
pub struct AuditApi;

pub fn routes() -> Router<AuditState> {
    Router::new()
        .route("/v1/audit/events", get(list_events))
        .route("/v1/audit/verify", get(verify))
        .route("/v1/audit/export", get(export))
}

/// One page of events and the cursor of the next (absent on the last page).
/// Personal data is shown opened; an erased user's events are `anonymised`
/// and name them `deleted-user-<last 8 hex digits of the id>`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventPage {
    pub events: Vec<EventView>,
    pub next_cursor: Option<String>,
}

fn invalid(e: QueryError) -> ApiError {
    ApiError::bad_request("audit.invalid_query", e.to_string())
        .with_errors(serde_json::json!({ e.param: e.message }))
}

/// The caller's tenant's events, newest first unless `order=asc`.
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit", security(("bearer" = [])),
    params(
        ("action" = Option<String>, Query, description = "exact action, or `area.*`"),
        ("actor" = Option<String>, Query, description = "actor id (a user id)"),
        ("target" = Option<String>, Query, description = "target id"),
        ("outcome" = Option<String>, Query, description = "success, failure or denied"),
        ("since" = Option<String>, Query, description = "RFC 3339, inclusive"),
        ("until" = Option<String>, Query, description = "RFC 3339, inclusive"),
        ("limit" = Option<i64>, Query, description = "1-500, default 100"),
        ("order" = Option<String>, Query, description = "desc (default) or asc"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses((status = 200, body = EventPage), (status = 400, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem)))]
async fn list_events(
    State(state): State<AuditState>,
    p: Principal,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<EventPage>, ApiError> {
    p.require("audit:read")?;
    let q = EventQuery::parse(&pairs).map_err(invalid)?;
    let mut tx = state.db.tenant_read(p.tenant_id).await?;
    let (events, next_cursor) = q.fetch(&mut tx).await?;
    let events = reveal(&mut tx, events, Ids::Labelled)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(EventPage {
        events,
        next_cursor,
    }))
}

/// Verifies the caller's tenant's hash chain against its head record.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = VerifyReport), (status = 400, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem)))]
async fn verify(
    State(state): State<AuditState>,
    p: Principal,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<VerifyReport>, ApiError> {
    p.require("audit:read")?;
    if let Some((k, _)) = pairs.first() {
        return Err(invalid(QueryError {
            param: k.clone(),
            message: "unknown query parameter".into(),
        }));
    }
    Ok(Json(super::verify_tenant(&state.db, p.tenant_id).await?))
}

/// `after` of the export: a sequence number, 0 (the default) for all.
fn parse_after(pairs: &[(String, String)]) -> Result<i64, QueryError> {
    let mut after = None;
    for (k, v) in pairs {
        let err = |m: &str| QueryError {
            param: k.clone(),
            message: m.to_owned(),
        };
        match k.as_str() {
            "after" if after.is_some() => return Err(err("given more than once")),
            "after" => {
                after = Some(
                    v.parse::<i64>()
                        .ok()
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| err("expected a sequence number (0 or more)"))?,
                );
            }
            _ => return Err(err("unknown query parameter")),
        }
    }
    Ok(after.unwrap_or(0))
}

/// One NDJSON line: the stored event as hashed (`details` as the object
/// whose canonical text was hashed, see `audit::details`; ids as stored,
/// also for an erased user, whose events say `anonymised`), with `seq`,
/// `prev_hash` and `hash`, so the receiver can recompute the chain with
/// [`StoredEvent::compute_hash`] (form v2 leaves out the opened `ip`,
/// `user_agent` and `personal_details`).
pub fn ndjson_line(e: &EventView) -> Vec<u8> {
    let mut line = serde_json::to_vec(e).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Streams every event with `seq > after` as NDJSON, in ascending order, in
/// pages of [`EXPORT_PAGE`] (constant memory). The export is itself audited.
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit", security(("bearer" = [])),
    params(("after" = Option<i64>, Query, description = "resume after this sequence number")),
    responses((status = 200, content_type = "application/x-ndjson", body = EventView,
        description = "one event per line, ascending"),
        (status = 400, body = crate::http::Problem), (status = 403, body = crate::http::Problem)))]
async fn export(
    State(state): State<AuditState>,
    p: Principal,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    p.require("audit:read")?;
    let after = parse_after(&pairs).map_err(invalid)?;
    audit_export(
        &state.db,
        state.clock.as_ref(),
        p.tenant_id,
        NewEvent::new(p.actor(), EXPORTED).context(p.context.clone()),
        after,
    )
    .await
    .map_err(ApiError::internal)?;
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    tokio::spawn(stream_pages(state.db.clone(), p.tenant_id, after, sender));
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// The action of an export (API or CLI).
pub const EXPORTED: &str = "audit.events.exported";

/// Records an export of `tenant`'s chain after `after`, in a transaction of
/// its own, **before** the export reads anything: the event is then the last
/// line of the export it announces, and a chain read back always verifies
/// (an event written after the last page would start the next export).
pub async fn audit_export(
    db: &Db,
    clock: &dyn Clock,
    tenant: TenantId,
    event: NewEvent,
    after: i64,
) -> Result<StoredEvent, AuditError> {
    let mut tx = db.tenant_tx(tenant).await?;
    let stored = super::append(
        &mut tx,
        clock,
        event
            .target(Target::new("tenant", tenant))
            .details(serde_json::json!({ "after": after })),
    )
    .await?;
    tx.commit().await?;
    Ok(stored)
}

type Chunk = Result<Bytes, std::io::Error>;

/// One export page with its personal data opened.
async fn read_page(
    tx: &mut crate::db::TenantTx,
    after: i64,
) -> Result<Vec<EventView>, super::AuditError> {
    let page = page_after(tx, after, EXPORT_PAGE).await?;
    reveal(tx, page, Ids::Stored).await
}

/// Sends pages until the end of the log (or the client goes away).
async fn stream_pages(
    db: Db,
    tenant: TenantId,
    mut after: i64,
    sender: tokio::sync::mpsc::Sender<Chunk>,
) {
    loop {
        let page = match db.tenant_read(tenant).await {
            Ok(mut tx) => read_page(&mut tx, after).await,
            Err(e) => Err(e.into()),
        };
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "audit export failed");
                let _ = sender
                    .send(Err(std::io::Error::other("audit export failed")))
                    .await;
                return;
            }
        };
        let full = page.len() as i64 == EXPORT_PAGE;
        let mut buf = Vec::new();
        for e in &page {
            buf.extend(ndjson_line(e));
            after = e.event.seq;
        }
        if !buf.is_empty() && sender.send(Ok(Bytes::from(buf))).await.is_err() {
            return;
        }
        if !full {
            return;
        }
    }
}

/// Writes the NDJSON export of `tenant` after `after` to `out` (the CLI).
pub async fn export_to(
    db: &Db,
    tenant: TenantId,
    mut after: i64,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<u64> {
    let mut n = 0u64;
    loop {
        let mut tx = db.tenant_read(tenant).await?;
        let page = read_page(&mut tx, after).await?;
        drop(tx);
        for e in &page {
            out.write_all(&ndjson_line(e))?;
            after = e.event.seq;
            n += 1;
        }
        if (page.len() as i64) < EXPORT_PAGE {
            out.flush()?;
            return Ok(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn after_is_validated() {
        assert_eq!(parse_after(&pairs(&[])).unwrap(), 0);
        assert_eq!(parse_after(&pairs(&[("after", "7")])).unwrap(), 7);
        for bad in [
            vec![("after", "-1")],
            vec![("after", "x")],
            vec![("after", "1"), ("after", "2")],
            vec![("limit", "1")],
        ] {
            assert!(parse_after(&pairs(&bad)).is_err(), "{bad:?}");
        }
    }
}
