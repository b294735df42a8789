//! Behind a TLS proxy (`STOCKADE_BEHIND_TLS_PROXY=true`, issue #20 item
//! 1): the proxy says which scheme the client used in `X-Forwarded-Proto`,
//! and it is believed only from a peer in `STOCKADE_TRUSTED_PROXIES`. A
//! request a trusted proxy says came over `http` is answered `308` to the
//! same path and query on the public URL (built as the redirector builds
//! it: `super::redirector::Target`), before any route runs. From any other
//! peer the header is ignored.
//!
//! Header shapes: several headers are one list, entries are split on `,`
//! and trimmed, compared without case; the request came over `http` when
//! any entry says `http` (a client cannot hide a proxy's `http` by
//! prepending `https`). A trusted proxy that sends no such header changes
//! nothing: it must set it (docs/tls.md says how).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::Response;
use ipnet::IpNet;

use super::client_ip::in_any;
use super::redirector::Target;
use crate::config::Config;

pub const X_FORWARDED_PROTO: &str = "x-forwarded-proto";

struct ProxyScheme {
    trusted: Vec<IpNet>,
    target: Target,
}

/// `router` with the rule on, when the configuration says a TLS proxy is in
/// front (the configuration then has a public URL); otherwise unchanged.
pub fn behind_proxy(router: Router, config: &Config) -> Router {
    match (&config.public_url, config.behind_tls_proxy) {
        (Some(public), true) => router.layer(middleware::from_fn_with_state(
            Arc::new(ProxyScheme {
                trusted: config.trusted_proxies.clone(),
                target: Target::new(public),
            }),
            require_https,
        )),
        _ => router,
    }
}

async fn require_https(State(rule): State<Arc<ProxyScheme>>, req: Request, next: Next) -> Response {
    let from_proxy = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|peer| in_any(&rule.trusted, peer.0.ip().to_canonical()));
    if from_proxy && came_over_http(req.headers()) {
        return rule.target.redirect(req.uri());
    }
    next.run(req).await
}

/// Whether any `X-Forwarded-Proto` entry says `http`.
pub fn came_over_http(headers: &HeaderMap) -> bool {
    headers
        .get_all(X_FORWARDED_PROTO)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|entry| entry.trim_ascii().eq_ignore_ascii_case(b"http"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_http_entry_means_http() {
        let with = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(X_FORWARDED_PROTO, v.parse().unwrap());
            }
            came_over_http(&h)
        };
        assert!(!with(&[]));
        assert!(!with(&["https"]));
        assert!(!with(&["HTTPS", " https ,https"]));
        assert!(with(&["http"]));
        assert!(with(&["HTTP"]));
        assert!(with(&["https, http"]));
        assert!(with(&["https", "http"]));
        assert!(!with(&["httpx", "ws"]));
    }
}
