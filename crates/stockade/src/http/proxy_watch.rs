//! Proxy misconfiguration is loud. Behind a proxy that is not in
//! `STOCKADE_TRUSTED_PROXIES`, `X-Forwarded-For` is ignored and every
//! client shares the proxy's address (one sign-in limit for everyone, the
//! proxy's address in every log and allowlist check). So a request carrying
//! `X-Forwarded-For` from an untrusted peer (that, or a client forging the
//! header) is:
//!
//! - warned about in the log, naming the peer, once per peer per
//!   [`WARN_EVERY`] (at most [`MAX_PEERS`] peers remembered: past it, new
//!   peers are only counted until old ones are an hour old);
//! - counted for `GET /readyz` (`proxy.forwarded_for_from_untrusted_peers`:
//!   how many requests and when the last one came; no address, as the
//!   endpoint answers anyone).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::auth_state::AuthState;
use super::client_ip::in_any;

/// One warning per peer per this long.
pub const WARN_EVERY: Duration = Duration::hours(1);

/// Peers remembered for the warning at most.
pub const MAX_PEERS: usize = 1024;

#[derive(Default)]
pub struct ForwardedWatch {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    count: u64,
    last_seen_at: Option<DateTime<Utc>>,
    /// When each peer was last warned about.
    warned: HashMap<IpAddr, DateTime<Utc>>,
}

/// What `/readyz` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ForwardedReport {
    /// Requests with `X-Forwarded-For` from an untrusted peer since start.
    pub count: u64,
    pub last_seen_at: DateTime<Utc>,
}

impl ForwardedWatch {
    /// Counts a request with `X-Forwarded-For` from the untrusted `peer` at
    /// `now`; true when a warning about this peer is due.
    pub fn saw(&self, peer: IpAddr, now: DateTime<Utc>) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.count = inner.count.saturating_add(1);
        inner.last_seen_at = Some(now);
        if let Some(at) = inner.warned.get(&peer)
            && now - *at < WARN_EVERY
        {
            return false;
        }
        if inner.warned.len() >= MAX_PEERS && !inner.warned.contains_key(&peer) {
            inner.warned.retain(|_, at| now - *at < WARN_EVERY);
            if inner.warned.len() >= MAX_PEERS {
                return false;
            }
        }
        inner.warned.insert(peer, now);
        true
    }

    /// Since start, if any.
    pub fn report(&self) -> Option<ForwardedReport> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.last_seen_at.map(|last_seen_at| ForwardedReport {
            count: inner.count,
            last_seen_at,
        })
    }
}

/// The layer's state: the settings and clock it reads, and the watch it
/// counts in (shared with `/readyz`). One `Arc`, cloned per request.
pub struct Watching {
    pub auth: AuthState,
    pub watch: Arc<ForwardedWatch>,
}

/// The layer: watches every request before it is routed.
pub async fn watch_forwarded(
    State(state): State<Arc<Watching>>,
    req: Request,
    next: Next,
) -> Response {
    if req.headers().contains_key("x-forwarded-for")
        && let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>()
    {
        let (config, clock) = (&state.auth.config, &state.auth.clock);
        let peer = peer.ip().to_canonical();
        if !in_any(&config.trusted_proxies, peer) && state.watch.saw(peer, clock.now()) {
            tracing::warn!(
                %peer,
                trusted_proxies_set = config.trusted_proxies_set,
                "X-Forwarded-For from a peer not in STOCKADE_TRUSTED_PROXIES is ignored: if this \
                 peer is your proxy, every client behind it shares its address (list its CIDR in \
                 STOCKADE_TRUSTED_PROXIES); if not, a client is forging the header. Said once per \
                 peer per hour"
            );
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(mins: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap() + Duration::minutes(mins)
    }

    #[test]
    fn once_per_peer_per_hour_with_bounded_memory() {
        let w = ForwardedWatch::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert_eq!(w.report(), None);
        assert!(w.saw(a, t(0)));
        assert!(!w.saw(a, t(59)));
        assert!(w.saw(b, t(59)));
        assert!(w.saw(a, t(60)));
        assert_eq!(
            w.report(),
            Some(ForwardedReport {
                count: 4,
                last_seen_at: t(60)
            })
        );
        // Full: new peers are counted, not warned about, until old ones age.
        let w = ForwardedWatch::default();
        for i in 0..MAX_PEERS {
            let peer = IpAddr::from(u32::try_from(i).unwrap().to_be_bytes());
            assert!(w.saw(peer, t(0)));
        }
        assert!(!w.saw(a, t(1)));
        assert_eq!(w.report().unwrap().count, MAX_PEERS as u64 + 1);
        assert!(w.saw(a, t(61)), "the old ones are forgotten after the hour");
    }
}
