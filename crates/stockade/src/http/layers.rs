//! The layer stack, outermost first (the onion of axum's middleware docs):
//!
//! 1. request id — a valid incoming `x-request-id` is kept, anything else is
//!    replaced by a fresh UUIDv7; echoed on the response.
//! 2. trace — one span per request with method, path (never the query, which
//!    may carry a signed token) and request id; status and latency on close.
//! 3. security headers — on every response, including the ones below.
//! 4. problem fallback — any error response not already problem+json (404,
//!    405, 408, 413 from the layers below) is rewritten into one.
//! 5. unread body — a body the handler answered without reading to its end
//!    is read and discarded (at most `drain_limit` bytes, within
//!    `unread_body::DRAIN_TIME`) before the answer goes out, or the answer
//!    says `Connection: close` (see `super::unread_body`), so no keep-alive
//!    connection is left with a body on it.
//! 6. panic → 500 problem (the process keeps serving).
//! 7. timeout → 408.
//! 8. body limit → 413.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, Response, header};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use super::error::{ApiError, PROBLEM_JSON, code_for_status};
use super::headers;

pub const REQUEST_ID: &str = "x-request-id";

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub body_limit: usize,
    pub request_timeout: Duration,
    /// The most bytes of a body left unread by its handler that are read and
    /// discarded to keep the connection (more: `Connection: close`).
    pub drain_limit: usize,
}

/// Wraps `router` in the standard stack.
pub fn apply(router: Router, limits: Limits) -> Router {
    let router = router
        .layer(DefaultBodyLimit::max(limits.body_limit))
        .layer(RequestBodyLimitLayer::new(limits.body_limit))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(CatchPanicLayer::custom(|_panic| {
            // The payload may hold data; it is not logged verbatim.
            ApiError::internal("a handler panicked").into_response()
        }))
        .layer(middleware::from_fn_with_state(
            limits.drain_limit,
            super::unread_body::answer_whole,
        ))
        .layer(middleware::from_fn(problem_fallback));
    let router = headers::layers()
        .into_iter()
        .fold(router, |r, layer| r.layer(layer));
    router
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id = req
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                })
                .on_response(
                    |res: &Response<Body>, latency: Duration, _span: &tracing::Span| {
                        tracing::info!(status = res.status().as_u16(), latency_ms = latency.as_secs_f64() * 1000.0, "response");
                    },
                ),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuidV7))
        .layer(middleware::map_request(drop_invalid_request_id))
}

#[derive(Clone, Copy)]
struct MakeRequestUuidV7;

impl MakeRequestId for MakeRequestUuidV7 {
    fn make_request_id<B>(&mut self, _req: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// Client-chosen request ids are kept only when short and plain, so they
/// cannot inject into logs.
async fn drop_invalid_request_id(mut req: Request) -> Request {
    let valid = req.headers().get(REQUEST_ID).is_some_and(|v| {
        let b = v.as_bytes();
        (1..=64).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    });
    if !valid {
        req.headers_mut().remove(REQUEST_ID);
    }
    req
}

/// Rewrites error responses that are not problem+json into problem+json,
/// keeping headers such as `Allow` and `Retry-After`.
async fn problem_fallback(req: Request, next: Next) -> axum::response::Response {
    let res = next.run(req).await;
    let status = res.status();
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return res;
    }
    let (mut parts, _body) = res.into_parts();
    let problem = ApiError::new(status, code_for_status(status)).into_response();
    let (problem_parts, body) = problem.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        problem_parts
            .headers
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static(PROBLEM_JSON)),
    );
    axum::response::Response::from_parts(parts, body)
}
