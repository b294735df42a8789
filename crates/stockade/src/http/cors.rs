//! Cross-origin requests from browsers (SPEC §2.14, issue #20 item 4): only
//! the exact origins of `STOCKADE_CORS_ORIGINS` (default none) get CORS
//! answers. tower-http's `CorsLayer` writes them (`Access-Control-Allow-*`
//! naming the one requesting origin, never `*`; credentials allowed, which
//! is why a wildcard can never be configured; `Vary: Origin`), and
//! [`guard`] answers a preflight from any other origin 403
//! `http.cors_origin_not_allowed` before anything else runs and strips
//! CORS headers from other answers to it, so a page elsewhere learns
//! nothing and reaches no handler.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;
use stockade_core::web::WebOrigin;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::ApiError;

/// The refusal's stable code.
pub const CORS_ORIGIN_NOT_ALLOWED: &str = "http.cors_origin_not_allowed";

/// How long a browser may cache a preflight answer.
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The CORS layer for `origins`; `None` when the list is empty (no origin
/// gets CORS headers, every preflight is refused).
pub fn layer(origins: &[WebOrigin]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let values: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.as_str()).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(values))
            .allow_credentials(true)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([
                HeaderName::from_static("x-request-id"),
                header::ETAG,
                header::LOCATION,
                header::RETRY_AFTER,
            ])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

/// The allowed origins, shared with [`guard`].
pub type Origins = Arc<Vec<WebOrigin>>;

/// Whether the request's `Origin` is exactly one of the allowed origins
/// (byte for byte: no case folding, no trailing slash, a single header).
fn allowed(origins: &[WebOrigin], headers: &HeaderMap) -> bool {
    let mut sent = headers.get_all(header::ORIGIN).iter();
    match (sent.next(), sent.next()) {
        (Some(origin), None) => origins
            .iter()
            .any(|o| o.as_str().as_bytes() == origin.as_bytes()),
        _ => false,
    }
}

/// Around the CORS layer: a preflight (`OPTIONS` with
/// `Access-Control-Request-Method`) from an origin that is not allowed is
/// answered 403 `http.cors_origin_not_allowed` and reaches nothing; any
/// other request from such an origin is served, but every
/// `Access-Control-*` header is taken off its answer, so nothing (not even
/// `Allow-Credentials`) speaks to a page elsewhere.
pub async fn guard(State(origins): State<Origins>, req: Request, next: Next) -> Response {
    let allowed = allowed(&origins, req.headers());
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight && !allowed {
        return ApiError::new(StatusCode::FORBIDDEN, CORS_ORIGIN_NOT_ALLOWED)
            .with_detail("this origin is not in STOCKADE_CORS_ORIGINS")
            .into_response();
    }
    let mut res = next.run(req).await;
    if !allowed {
        let cors: Vec<HeaderName> = res
            .headers()
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in cors {
            res.headers_mut().remove(name);
        }
    }
    res
}
