//! The HTTP skeleton: headers on every response, problem+json for every
//! error, body limits, timeouts, request ids, health, readiness, OpenAPI.

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use reqwest::StatusCode;
use serde::Deserialize;
use stockade::http::layers::{self, Limits};
use stockade::http::{ApiJson, Problem};

use crate::testkit::TestServer;

const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("x-frame-options", "SAMEORIGIN"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'self'; base-uri 'none'; object-src 'none'",
    ),
    ("cache-control", "no-store"),
];

fn assert_security_headers(res: &reqwest::Response) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(
            res.headers().get(*name).and_then(|v| v.to_str().ok()),
            Some(*value),
            "{name} on {} {}",
            res.status(),
            res.url()
        );
    }
    assert!(res.headers().contains_key("x-request-id"));
}

async fn problem(res: reqwest::Response) -> Problem {
    assert_eq!(
        res.headers()["content-type"],
        "application/problem+json",
        "{}",
        res.status()
    );
    res.json().await.unwrap()
}

#[tokio::test]
async fn security_headers_on_every_kind_of_response() {
    let s = TestServer::start().await;
    let cases = [
        (reqwest::Method::GET, "/healthz", StatusCode::OK),
        (reqwest::Method::GET, "/readyz", StatusCode::OK),
        (reqwest::Method::GET, "/openapi.json", StatusCode::OK),
        (
            reqwest::Method::GET,
            "/no/such/route",
            StatusCode::NOT_FOUND,
        ),
        (
            reqwest::Method::DELETE,
            "/healthz",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (method, path, status) in cases {
        let res = s.client.request(method, s.url(path)).send().await.unwrap();
        assert_eq!(res.status(), status, "{path}");
        assert_security_headers(&res);
        if !status.is_success() {
            let p = problem(res).await;
            assert_eq!(p.status, status.as_u16());
            assert!(p.code.starts_with("http."), "{}", p.code);
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn health_readiness_and_openapi() {
    let s = TestServer::start().await;
    let health: serde_json::Value = s
        .client
        .get(s.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ready: serde_json::Value = s
        .client
        .get(s.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["backend"], "sqlite");
    let doc = s.openapi().await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/v1/auth/signup",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/reauth",
        "/v1/auth/sessions",
        "/v1/me",
        "/v1/tenant/settings",
        "/v1/roles",
        "/v1/members",
        "/v1/invitations",
        "/v1/platform/tenants",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from OpenAPI"
        );
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    s.stop().await;
}

#[tokio::test]
async fn readiness_fails_until_migrations_are_applied() {
    let s = TestServer::start_with(&[], false).await;
    let res = s.client.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_security_headers(&res);
    assert_eq!(problem(res).await.code, "ops.migrations_pending");
    s.db.migrate().await.unwrap();
    let res = s.client.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let s = TestServer::start().await;
    s.db.close().await;
    let res = s.client.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem(res).await.code, "ops.database_unreachable");
    s.stop().await;
}

#[tokio::test]
async fn request_ids_are_generated_or_kept_only_when_plain() {
    let s = TestServer::start().await;
    let res = s
        .client
        .get(s.url("/healthz"))
        .header("x-request-id", "abc-123.X_y")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123.X_y");
    for hostile in ["a b", "x\"}{\"admin\":true", &"a".repeat(65)] {
        let res = s
            .client
            .get(s.url("/healthz"))
            .header("x-request-id", hostile)
            .send()
            .await
            .unwrap();
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(id, hostile);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
    s.stop().await;
}

/// A strict body type, as every handler's input is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Input {
    name: String,
    count: u32,
}

/// The standard layers around test routes (JSON input, a slow route, a
/// panicking route).
async fn layered(limits: Limits) -> (String, tokio::task::JoinHandle<()>) {
    let router = Router::new()
        .route(
            "/echo",
            post(|ApiJson(input): ApiJson<Input>| async move { input.name }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            }),
        )
        .route(
            "/panic",
            get(|| async {
                let v: Vec<u8> = Vec::new();
                #[allow(clippy::indexing_slicing)]
                let x = v[1];
                x.to_string()
            }),
        );
    let app = layers::apply(router, limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), task)
}

#[tokio::test]
async fn bad_bodies_get_problem_json_4xx() {
    let (base, task) = layered(Limits {
        body_limit: 1024,
        request_timeout: Duration::from_secs(30),
        drain_limit: 1024,
    })
    .await;
    let c = reqwest::Client::new();
    let send = |body: &'static str, ct: Option<&'static str>| {
        let mut req = c.post(format!("{base}/echo")).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    let ok = send(r#"{"name":"a","count":1}"#, Some("application/json"))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_security_headers(&ok);
    let cases: [(&str, Option<&str>, StatusCode, &str); 6] = [
        (
            r#"{"name":"a","#,
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            "request.malformed_json",
        ),
        (
            r#"{"name":"a","count":1}"#,
            Some("text/plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request.unsupported_media_type",
        ),
        (
            r#"{"name":"a","count":1}"#,
            None,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request.unsupported_media_type",
        ),
        (
            r#"{"name":"a","count":1,"is_admin":true}"#,
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            "request.invalid_body",
        ),
        (
            r#"{"name":"a","count":-1}"#,
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            "request.invalid_body",
        ),
        (
            r#"{"name":"a"}"#,
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            "request.invalid_body",
        ),
    ];
    for (body, ct, status, code) in cases {
        let res = send(body, ct).await.unwrap();
        assert_eq!(res.status(), status, "{body} {ct:?}");
        assert_security_headers(&res);
        let p = problem(res).await;
        assert_eq!(p.code, code, "{body}");
    }
    let res = c
        .post(format!("{base}/echo"))
        .header("content-type", "application/json")
        .body(r#"{"name":"a","count":1,"is_admin":true}"#)
        .send()
        .await
        .unwrap();
    assert!(problem(res).await.detail.unwrap().contains("is_admin"));
    task.abort();
}

#[tokio::test]
async fn oversized_bodies_get_413_problem_json() {
    let (base, task) = layered(Limits {
        body_limit: 1024,
        request_timeout: Duration::from_secs(30),
        drain_limit: 1024,
    })
    .await;
    let c = reqwest::Client::new();
    let big = format!(r#"{{"name":"{}","count":1}}"#, "x".repeat(4096));
    // With a Content-Length…
    let res = c
        .post(format!("{base}/echo"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_security_headers(&res);
    assert_eq!(problem(res).await.code, "request.too_large");
    // …and streamed without one.
    let stream = futures_stream(big.into_bytes());
    let res = c
        .post(format!("{base}/echo"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem(res).await.code, "request.too_large");
    task.abort();
}

fn futures_stream(
    bytes: Vec<u8>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(512).map(|c| Ok(c.to_vec())).collect();
    tokio_stream::iter(chunks)
}

#[tokio::test]
async fn timeouts_and_panics_answer_problem_json() {
    let (base, task) = layered(Limits {
        body_limit: 1024,
        request_timeout: Duration::from_millis(200),
        drain_limit: 1024,
    })
    .await;
    let c = reqwest::Client::new();
    let res = c.get(format!("{base}/slow")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
    assert_security_headers(&res);
    assert_eq!(problem(res).await.code, "http.timeout");
    let res = c.get(format!("{base}/panic")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_security_headers(&res);
    let p = problem(res).await;
    assert_eq!(p.code, "internal.error");
    assert!(p.detail.is_none());
    // The server is still serving.
    let ok = c
        .post(format!("{base}/echo"))
        .header("content-type", "application/json")
        .body(r#"{"name":"a","count":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    task.abort();
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let router = Router::new().route(
        "/work",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            "done"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(stockade::app::serve(listener, router, async {
        let _ = rx.await;
    }));
    let in_flight = tokio::spawn(async move {
        reqwest::get(format!("http://{addr}/work"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    tx.send(()).unwrap();
    assert_eq!(in_flight.await.unwrap(), "done");
    server.await.unwrap().unwrap();
    // And it no longer accepts connections.
    assert!(reqwest::get(format!("http://{addr}/work")).await.is_err());
}
