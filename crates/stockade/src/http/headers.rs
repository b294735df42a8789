//! Security headers on every response (SPEC §2.14), whatever produced it:
//! handlers, 404s, 405s, timeouts, panics.

use axum::http::{HeaderName, HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

pub const HSTS: &str = "max-age=31536000; includeSubDomains";
/// The API's CSP. `base-uri` and `object-src` are spelled out: `base-uri`
/// does not fall back to `default-src`, so without it an injected `<base>`
/// could re-point relative URLs; `object-src 'none'` states the plugin ban
/// whatever `default-src` becomes (issue #17 item 14).
pub const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'self'; base-uri 'none'; object-src 'none'";

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each directive once, with the value the API needs.
    #[test]
    fn api_csp_forbids_everything_but_framing_by_ourselves() {
        let directives: Vec<(&str, &str)> = API_CSP
            .split(';')
            .map(|d| d.trim().split_once(' ').unwrap())
            .collect();
        assert_eq!(
            directives,
            vec![
                ("default-src", "'none'"),
                ("frame-ancestors", "'self'"),
                ("base-uri", "'none'"),
                ("object-src", "'none'"),
            ]
        );
    }
}
