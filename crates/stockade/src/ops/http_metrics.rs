//! The request layer of the metrics and alerts, outermost of the stack (it
//! sees the final status: timeouts, panics, problem rewrites): counts and
//! times every answered request under its method, route *template* (axum's
//! `MatchedPath`; `unmatched` when no route matched, so a made-up path full
//! of ids is one series) and status class; counts the status class for the
//! instance's alerts (atomics, no lock); and for a 429 that names its
//! limiter (`http::RateLimited`, set where the limit refused) counts the
//! refusal and reports its client to the alerts. The client address is
//! used for that detection only, never as a label.
//!
//! It is on every request's path: no lock held across an await, no await
//! beyond the inner service's, no allocation once the request's series
//! exist (`ops::metrics::http_request` keeps their handles). Measured in
//! `benches/ops.rs`: about 0.6 µs per request.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::alerts::Monitor;
use super::metrics::{self, UNMATCHED};
use crate::http::RateLimited;

/// The layer (see the module documentation).
pub async fn track(State(monitor): State<Arc<Monitor>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = metrics::method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().cloned();
    let res = next.run(req).await;
    let status = res.status();
    monitor.request(status);
    if let Some(limited) = res.extensions().get::<RateLimited>() {
        metrics::rate_limited(limited.limiter);
        monitor.rate_limited(limited.client);
    }
    metrics::http_request(
        method,
        route.as_ref().map_or(UNMATCHED, MatchedPath::as_str),
        metrics::status_class(status),
        started.elapsed(),
    );
    res
}
