//! Criterion benchmark of the metrics and alerts on the request path (issue
//! #20 items 5 and 6): what the request layer (`ops::http_metrics`) adds to
//! a request, measured as one router answering without it, with a layer
//! that does nothing (what axum's `from_fn` costs) and with it
//! (`router_bare`, `router_with_noop_layer`, `router_with_metrics_layer`);
//! the layer's recording on its own (`record_request`: one counter and one
//! histogram sample through handles registered once, and the three atomics
//! of the alerts); and the pure detector
//! (`stockade_core::alerts`): one rate-limit refusal observed, with one and
//! with 10,000 addresses tracked, and one evaluation over a full hour of
//! request buckets and 1,000 addresses.
//! Run: `cargo bench --bench ops`.

// reason: a benchmark harness aborts on any set-up failure; there is no caller
// to hand an error to, and a panic with a message is the clearest report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use stockade::clock::ManualClock;
use stockade::ops::alerts::Monitor;
use stockade::ops::{http_metrics, metrics};
use stockade_core::alerts::{Alerts, Requests, Settings};
use tower::ServiceExt;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("valid timestamp")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn router() -> Router {
    Router::new().route(
        "/v1/collections/{collection}/records/{id}",
        get(|| async { "ok" }),
    )
}

fn request_path(c: &mut Criterion) {
    metrics::install().expect("the recorder");
    let rt = runtime();
    let monitor = Arc::new(Monitor::new(
        Settings::default(),
        Arc::new(ManualClock::new(t0())),
    ));
    let bare = router();
    let tracked = router().layer(axum::middleware::from_fn_with_state(
        monitor.clone(),
        http_metrics::track,
    ));
    // The same stack with a layer that does nothing: what `from_fn` itself costs.
    let noop = router().layer(axum::middleware::from_fn(
        |req: axum::extract::Request, next: axum::middleware::Next| next.run(req),
    ));
    let path = "/v1/collections/notes/records/0191c7a1-2b3c-7d4e-8f90-123456789abc";
    let mut group = c.benchmark_group("ops");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for (name, app) in [
        ("router_bare", &bare),
        ("router_with_noop_layer", &noop),
        ("router_with_metrics_layer", &tracked),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let req = Request::get(path).body(Body::empty()).unwrap();
                let res = app.clone().oneshot(req).await.unwrap();
                assert_eq!(res.status(), StatusCode::OK);
            });
        });
    }
    group.bench_function("record_request", |b| {
        b.iter(|| {
            monitor.request(black_box(StatusCode::OK));
            metrics::http_request(
                "GET",
                black_box("/v1/collections/{collection}/records/{id}"),
                "2xx",
                Duration::from_micros(250),
            );
        });
    });
    group.finish();
}

fn detector(c: &mut Criterion) {
    let mut group = c.benchmark_group("alerts");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    let mut one = Alerts::<u32>::new(Settings::default());
    let mut at = t0();
    group.bench_function("observe_rate_limited_one_address", |b| {
        b.iter(|| {
            at += chrono::Duration::milliseconds(1);
            one.observe_rate_limited(at, black_box(&7), 1);
        });
    });
    let mut many = Alerts::<u32>::new(Settings::default());
    for i in 0..10_000 {
        many.observe_rate_limited(t0(), &i, 1);
    }
    let mut n = 0u32;
    group.bench_function("observe_rate_limited_10000_addresses", |b| {
        b.iter(|| {
            n = (n + 1) % 10_000;
            many.observe_rate_limited(t0(), black_box(&n), 1);
        });
    });
    // An hour of 15 s evaluations' request counts and 1,000 addresses.
    let mut full = Alerts::<u32>::new(Settings::default());
    let start = t0() - chrono::Duration::hours(1);
    for step in 0..240 {
        let at = start + chrono::Duration::seconds(15 * step);
        full.observe_requests(
            at,
            Requests {
                total: 1_000,
                client_errors: 20,
                server_errors: 1,
            },
        );
    }
    for i in 0..1_000 {
        full.observe_rate_limited(t0(), &i, 1);
    }
    group.bench_function("evaluate_hour_of_buckets_1000_addresses", |b| {
        b.iter(|| black_box(full.evaluate(black_box(t0()))));
    });
    group.finish();
}

criterion_group!(benches, request_path, detector);
criterion_main!(benches);
