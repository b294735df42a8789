//! Prometheus metrics on the admin listener (issue #20 item 5), against a
//! real server: `/metrics` is served only on the admin listener (404 on the
//! public port, absent from the OpenAPI document), passes `promtool check
//! metrics`, its series move with real traffic (sign-ins by outcome,
//! rate-limit refusals, lockouts, refresh reuse, audit appends, webhook and
//! email deliveries), and no label value ever holds a raw path, an id, an
//! address or an email, whatever a client sends.
//!
//! The recorder is process-wide and the suite runs many servers at once, so
//! every assertion is on an increase between two scrapes, never an absolute
//! value.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::json;
use stockade::ops::admin::{self, AdminListener};

use crate::auth::{PASSWORD, login, login_ok, refresh, signup};
use crate::mailbox::fresh_ip;
use crate::testkit::TestServer;

/// One sample line of the exposition.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A scraped exposition, parsed.
pub struct Exposition {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The sum of the samples of `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    pub fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.matching(name, labels).next().is_some()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Every label value of every sample, with its label name.
    pub fn label_values(&self) -> Vec<(String, String)> {
        self.samples
            .iter()
            .flat_map(|s| s.labels.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect()
    }
}

/// Parses the text format (labels with `\\`, `\"` and `\n` escapes).
pub fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("unreadable sample line {line:?}"),
        };
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(mut body) = rest.strip_prefix('{') {
            loop {
                if let Some(after) = body.strip_prefix('}') {
                    rest = after;
                    break;
                }
                body = body.strip_prefix(',').unwrap_or(body);
                let eq = body.find("=\"").unwrap_or_else(|| panic!("{line:?}"));
                let key = body[..eq].to_owned();
                let mut value = String::new();
                let mut chars = body[eq + 2..].char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c)) => value.push(c),
                            None => panic!("{line:?}"),
                        },
                        Some((i, '"')) => break eq + 2 + i + 1,
                        Some((_, c)) => value.push(c),
                        None => panic!("unterminated label in {line:?}"),
                    }
                };
                labels.insert(key, value);
                body = &body[end..];
            }
        }
        let value = rest
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("{line:?}"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value of {line:?}")),
        };
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    out
}

/// Starts an admin listener for `s` on a free loopback port, as `serve`
/// does for `STOCKADE_ADMIN_LISTEN`.
pub async fn admin_for(s: &TestServer) -> AdminListener {
    admin::start("127.0.0.1:0".parse().unwrap(), s.db.clone())
        .await
        .unwrap()
}

/// `GET /metrics` on the admin listener, parsed.
pub async fn scrape(admin: &AdminListener) -> Exposition {
    let res = reqwest::get(format!("http://{}/metrics", admin.addr))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = res.text().await.unwrap();
    Exposition {
        samples: parse(&text),
        text,
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `promtool check metrics` on `text` (Debian's `prometheus` package; CI
/// installs it, and fails here without it).
pub fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if in_ci() => {
            panic!("promtool is required under CI=true (Debian package prometheus): {e}")
        }
        Err(e) => {
            eprintln!("skipping promtool check: {e}");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn metrics_are_served_on_the_admin_listener_only() {
    let s = TestServer::start().await;
    let admin = admin_for(&s).await;
    assert_ne!(admin.addr, s.addr);
    // The public port has no /metrics: a 404 problem like any unknown path.
    for path in ["/metrics", "/metrics/", "/v1/metrics"] {
        let res = s.client.get(s.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(!res.text().await.unwrap().contains("stockade_"), "{path}");
    }
    let doc = s.openapi().await;
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert!(!paths.iter().any(|p| p.contains("metrics")), "{paths:?}");
    // The admin listener has /metrics and nothing else.
    let body = scrape(&admin).await;
    assert!(body.has(
        "stockade_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))]
    ));
    for path in [
        "/",
        "/healthz",
        "/v1/auth/login",
        "/openapi.json",
        "/metrics/x",
    ] {
        let res = reqwest::get(format!("http://{}{path}", admin.addr))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let res = reqwest::Client::new()
        .post(format!("http://{}/metrics", admin.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_exposition_passes_promtool_and_moves_with_real_traffic() {
    let s = TestServer::start_with(&[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")], true).await;
    let admin = admin_for(&s).await;
    let before = scrape(&admin).await;
    // A failed sign-in (unknown address: bad credentials, platform chain).
    let res = login(&s, "nobody-at-all@example.com", "Wrong-Horse-1", None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // A successful one, and a refresh token used twice (reuse).
    signup(&s, "metricsco", "owner@metricsco.example").await;
    let first = login_ok(&s, "owner@metricsco.example").await;
    assert_eq!(refresh(&s, &first.refresh).await.status(), StatusCode::OK);
    assert_eq!(
        refresh(&s, &first.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A 404 on a path holding an id.
    let res = s
        .client
        .get(s.url("/v1/nothing/0191c7a1-2b3c-7d4e-8f90-123456789abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // The sign-up's verification mail, delivered by the development sender.
    stockade::app::deliver_mail(&s.state).await;
    let after = scrape(&admin).await;
    promtool_check(&after.text);

    let grew =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    let password = [("step", "password")];
    assert!(
        grew(
            "stockade_sign_ins_total",
            &[password[0], ("outcome", "bad_credentials")]
        ) >= 1.0
    );
    assert!(
        grew(
            "stockade_sign_ins_total",
            &[password[0], ("outcome", "success")]
        ) >= 1.0
    );
    assert!(grew("stockade_refresh_token_reuse_detected_total", &[]) >= 1.0);
    assert!(
        grew(
            "stockade_audit_events_appended_total",
            &[("chain", "platform")]
        ) >= 1.0
    );
    assert!(
        grew(
            "stockade_audit_events_appended_total",
            &[("chain", "tenant")]
        ) >= 1.0
    );
    assert!(
        grew(
            "stockade_email_deliveries_total",
            &[("sender", "development"), ("outcome", "sent")]
        ) >= 1.0
    );
    let login_4xx = [
        ("method", "POST"),
        ("route", "/v1/auth/login"),
        ("status", "4xx"),
    ];
    assert!(grew("stockade_http_requests_total", &login_4xx) >= 1.0);
    assert!(grew("stockade_http_request_duration_seconds_count", &login_4xx) >= 1.0);
    assert!(after.has(
        "stockade_http_request_duration_seconds_bucket",
        &[("le", "0.005")]
    ));
    let unmatched = [("method", "GET"), ("route", "unmatched"), ("status", "4xx")];
    assert!(grew("stockade_http_requests_total", &unmatched) >= 1.0);
    assert!(!after.text.contains("0191c7a1"), "an id became a label");
    // Database pools, read at the scrape.
    for pool in ["sqlite_writer", "sqlite_reader"] {
        assert!(
            after.sum("stockade_db_pool_max_connections", &[("pool", pool)]) >= 1.0,
            "{pool}"
        );
        assert!(
            after.has("stockade_db_pool_connections", &[("pool", pool)]),
            "{pool}"
        );
        assert!(
            after.has("stockade_db_pool_idle_connections", &[("pool", pool)]),
            "{pool}"
        );
    }
    // Every alert has its series (0 unless some instance raised it).
    for alert in stockade_core::alerts::Alert::ALL {
        assert!(
            after.has("stockade_alert", &[("name", alert.name())]),
            "{}",
            alert.name()
        );
    }
    // No backup exists yet (issue #24): its series is absent, not invented.
    assert!(!after.has("stockade_backup_last_success_timestamp_seconds", &[]));
}

#[tokio::test]
async fn rate_limit_refusals_and_lockouts_are_counted() {
    let s = TestServer::start_with(&[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")], true).await;
    let admin = admin_for(&s).await;
    signup(&s, "lockco", "victim@lockco.example").await;
    let before = scrape(&admin).await;
    // Ten wrong passwords, each from an address of its own: the account
    // locks (the per-address limit never refuses).
    for _ in 0..10 {
        let res = s
            .client
            .post(s.url("/v1/auth/login"))
            .header("x-forwarded-for", fresh_ip())
            .json(&json!({"email": "victim@lockco.example", "password": "Wrong-Horse-1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = s
        .client
        .post(s.url("/v1/auth/login"))
        .header("x-forwarded-for", fresh_ip())
        .json(&json!({"email": "victim@lockco.example", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // Eleven attempts from one address: the last is refused by the limit.
    let one = fresh_ip();
    for i in 0..11 {
        let res = s
            .client
            .post(s.url("/v1/auth/login"))
            .header("x-forwarded-for", &one)
            .json(&json!({"email": "someone-else@lockco.example", "password": "x"}))
            .send()
            .await
            .unwrap();
        let want = if i < 10 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(res.status(), want, "attempt {i}");
    }
    let after = scrape(&admin).await;
    let grew =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    assert!(grew("stockade_account_lockouts_total", &[]) >= 1.0);
    let step = ("step", "password");
    assert!(grew("stockade_sign_ins_total", &[step, ("outcome", "locked")]) >= 1.0);
    assert!(
        grew(
            "stockade_sign_ins_total",
            &[step, ("outcome", "rate_limited")]
        ) >= 1.0
    );
    assert!(
        grew(
            "stockade_sign_ins_total",
            &[step, ("outcome", "bad_credentials")]
        ) >= 20.0
    );
    assert!(
        grew(
            "stockade_rate_limit_refusals_total",
            &[("limiter", "password_address")]
        ) >= 1.0
    );
    // The address is counted for the alert, never shown as a label.
    assert!(!after.text.contains(&one), "{one} became a label");
}

/// Attacker: request paths and headers full of ids, emails, addresses,
/// quotes and newlines, on matched and unmatched routes and with odd
/// methods; then the whole exposition is searched for any of it.
#[tokio::test]
async fn no_id_address_or_email_ever_becomes_a_label() {
    let s = TestServer::start().await;
    let admin = admin_for(&s).await;
    let uuid = "6f1c2d3e-4a5b-7c6d-8e9f-0a1b2c3d4e5f";
    let needles = [
        uuid,
        "victim@example.com",
        "198.51.100.23",
        "2001:db8::dead:beef",
        "evil-label",
        "x-injected",
    ];
    let paths = [
        format!("/v1/collections/notes/records/{uuid}"),
        format!("/v1/members/{uuid}"),
        format!("/v1/users/{uuid}/victim@example.com"),
        "/v1/collections/victim@example.com/records/198.51.100.23".to_owned(),
        "/198.51.100.23/2001:db8::dead:beef".to_owned(),
        "/v1/evil-label%22%7Droute%3D%22x-injected".to_owned(),
        "/v1/evil-label\"}x-injected{"
            .replace('"', "%22")
            .replace('{', "%7B")
            .replace('}', "%7D"),
        format!("/v1/api-keys/{uuid}/rotate"),
        format!("/v1/{}", "evil-label/".repeat(200)),
    ];
    let methods = [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::DELETE,
        reqwest::Method::from_bytes(b"PROPFIND").unwrap(),
        reqwest::Method::from_bytes(b"X-INJECTED").unwrap(),
    ];
    for path in &paths {
        for method in &methods {
            let res = s
                .client
                .request(method.clone(), s.url(path))
                .header(
                    "x-forwarded-for",
                    "198.51.100.23, evil-label\"} x-injected, 2001:db8::dead:beef",
                )
                .header("x-request-id", uuid)
                .header("user-agent", "victim@example.com")
                .bearer_auth(format!("{uuid}.victim@example.com"))
                .send()
                .await
                .unwrap();
            assert!(
                res.status().is_client_error(),
                "{method} {path}: {}",
                res.status()
            );
        }
    }
    let exposition = scrape(&admin).await;
    promtool_check(&exposition.text);
    for needle in needles {
        assert!(
            !exposition.text.contains(needle),
            "{needle} in the exposition"
        );
    }
    // Every label value is bounded: a route is a template of the API (or
    // `unmatched`), never something that reads as an id or an address.
    let doc = s.openapi().await;
    let templates = doc["paths"].as_object().unwrap();
    for (label, value) in exposition.label_values() {
        assert!(!value.contains('@'), "{label}={value}");
        assert!(
            value.parse::<std::net::IpAddr>().is_err(),
            "{label}={value}"
        );
        assert!(uuid::Uuid::parse_str(&value).is_err(), "{label}={value}");
        if label == "route" {
            assert!(
                value == "unmatched" || templates.contains_key(&value),
                "route label {value:?} is not a template"
            );
        }
        if label == "method" {
            assert!(
                [
                    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"
                ]
                .contains(&value.as_str()),
                "{value}"
            );
        }
    }
    // The matched routes were counted under their templates.
    assert!(exposition.has(
        "stockade_http_requests_total",
        &[
            ("route", "/v1/collections/{collection}/records/{id}"),
            ("status", "4xx")
        ]
    ));
    assert!(exposition.has("stockade_http_requests_total", &[("method", "other")]));
}

#[tokio::test]
async fn the_admin_listener_refuses_an_address_in_use() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let s = TestServer::start().await;
    let Err(e) = admin::start(addr, s.db.clone()).await else {
        panic!("bound an address in use");
    };
    assert!(
        e.starts_with("cannot listen on STOCKADE_ADMIN_LISTEN "),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1);
}

/// `stockade serve` starts the admin listener beside the public one; the
/// configuration refuses them on one address, in one line.
#[tokio::test]
async fn serve_runs_the_admin_listener_and_refuses_it_on_the_public_address() {
    use crate::cli::{run, start, stderr_lines, stockade, stop};
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin = format!("127.0.0.1:{port}");
    let started = start(dir.path(), &[("STOCKADE_ADMIN_LISTEN", &admin)]);
    let res = reqwest::get(format!("{}/healthz", started.url))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = reqwest::get(format!("{}/metrics", started.url))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = Exposition {
        samples: parse(&text),
        text,
    };
    promtool_check(&samples.text);
    assert!(samples.sum("stockade_http_requests_total", &[("route", "/healthz")]) >= 1.0);
    assert!(samples.has("stockade_build_info", &[]));
    assert!(stop(started).success());

    for cmd in [&["config", "check"][..], &["serve"][..]] {
        let out = run(stockade(dir.path())
            .args(cmd)
            .env("STOCKADE_LISTEN", "127.0.0.1:18080")
            .env("STOCKADE_ADMIN_LISTEN", "127.0.0.1:18080"));
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        let lines = stderr_lines(&out);
        assert_eq!(lines.len(), 1, "{cmd:?}: {lines:?}");
        assert!(
            lines[0].starts_with("error: STOCKADE_ADMIN_LISTEN: "),
            "{lines:?}"
        );
        assert!(lines[0].contains("public listener's address"), "{lines:?}");
    }
}
