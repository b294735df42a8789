//! Security headers on every response (SPEC §2.14), whatever produced it:
//! handlers, 404s, 405s, timeouts, panics.

use axum::http::{HeaderName, HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

pub const HSTS: &str = "max-age=31536000; includeSubDomains";
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'self'";

/// The layers that add the headers (a response that already set one, e.g. a
/// UI page with its own CSP, keeps its own).
pub fn layers() -> Vec<SetResponseHeaderLayer<HeaderValue>> {
    let fixed: [(HeaderName, &'static str); 6] = [
        (header::STRICT_TRANSPORT_SECURITY, HSTS),
        (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
        (header::CONTENT_SECURITY_POLICY, API_CSP),
        // API responses carry credentials or tenant data: never cache them.
        (header::CACHE_CONTROL, "no-store"),
    ];
    fixed
        .into_iter()
        .map(|(name, value)| {
            SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
        })
        .collect()
}
