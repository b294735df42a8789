//! The client's IP address: the socket peer, or — only when that peer is a
//! trusted proxy (`STOCKADE_TRUSTED_PROXIES`) — the nearest untrusted address
//! in `X-Forwarded-For`, read from the right so a client cannot prepend a
//! spoofed one.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::app::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        Ok(Self(resolve(
            peer,
            &parts.headers,
            &state.config.trusted_proxies,
        )))
    }
}

/// The pure rule, for tests.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().parse::<IpAddr>())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        // Untrusted peer: its header is ignored.
        assert_eq!(
            resolve(client, &headers(&["198.51.100.1"]), &trusted),
            client
        );
        // Trusted peer: the nearest untrusted hop from the right.
        assert_eq!(
            resolve(
                proxy,
                &headers(&["198.51.100.1, 203.0.113.7, 10.9.9.9"]),
                &trusted
            ),
            client
        );
        assert_eq!(
            resolve(proxy, &headers(&["198.51.100.1", "203.0.113.7"]), &trusted),
            client
        );
        // Malformed header: fall back to the peer.
        assert_eq!(resolve(proxy, &headers(&["not-an-ip"]), &trusted), proxy);
        assert_eq!(resolve(proxy, &headers(&[]), &trusted), proxy);
    }
}
