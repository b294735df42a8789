//! CORS and redirect allowlists (issue #20 item 4), attacked: preflights
//! from hostile and look-alike origins, a wildcard that must never appear
//! with credentials, and reset links pointed at `//evil.example`,
//! `https:evil`, backslashes and userinfo tricks. Each refusal is a 4xx
//! problem and changes nothing (no CORS header, no email queued).

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::auth::{server, signup};
use crate::mailbox::{fresh_ip, outbox};
use crate::testkit::{Backend, TestServer};

const APP: &str = "https://app.example.com";
const DEV: &str = "http://localhost:3000";

async fn cors_server(origins: &str) -> TestServer {
    TestServer::start_with(&[("STOCKADE_CORS_ORIGINS", origins)], true).await
}

/// A preflight for `GET /v1/me` with an `Authorization` header, from the
/// given `Origin` headers.
async fn preflight(s: &TestServer, origins: &[&str]) -> reqwest::Response {
    let mut headers = HeaderMap::new();
    for o in origins {
        headers.append("origin", HeaderValue::from_str(o).unwrap());
    }
    headers.insert(
        "access-control-request-method",
        HeaderValue::from_static("GET"),
    );
    headers.insert(
        "access-control-request-headers",
        HeaderValue::from_static("authorization"),
    );
    s.client
        .request(Method::OPTIONS, s.url("/v1/me"))
        .headers(headers)
        .send()
        .await
        .unwrap()
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    res.headers()
        .get(HeaderName::from_bytes(name.as_bytes()).unwrap())
        .map(|v| v.to_str().unwrap())
}

fn no_cors_headers(res: &reqwest::Response, case: &str) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-methods",
        "access-control-allow-headers",
    ] {
        assert!(header(res, name).is_none(), "{case}: {name} set");
    }
}

#[tokio::test]
async fn preflights_are_answered_only_for_listed_origins() {
    let s = cors_server(&format!("{APP},{DEV}")).await;
    for origin in [APP, DEV] {
        let res = preflight(&s, &[origin]).await;
        assert!(res.status().is_success(), "{origin}: {}", res.status());
        assert_eq!(header(&res, "access-control-allow-origin"), Some(origin));
        assert_eq!(
            header(&res, "access-control-allow-credentials"),
            Some("true")
        );
        let allowed = header(&res, "access-control-allow-headers").unwrap();
        assert!(allowed.contains("authorization"), "{allowed}");
        let vary = res
            .headers()
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(",");
        assert!(vary.contains("origin"), "{vary}");
    }
    let hostile = [
        "https://evil.example",
        "https://app.example.com.evil.example",
        "https://evilapp.example.com",
        "https://APP.example.com",
        "https://app.example.com/",
        "https://app.example.com:443",
        "http://app.example.com",
        "null",
        "*",
        "https://app.example.com\u{3000}",
        "https://app.example.com, https://evil.example",
        "https://xn--pp-8cd.example.com",
        "http://localhost:3001",
        "http://127.0.0.1:3000",
        "",
    ];
    for origin in hostile {
        let Ok(value) = HeaderValue::from_bytes(origin.as_bytes()) else {
            continue;
        };
        let res = preflight(&s, &[value.to_str().unwrap_or(origin)]).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{origin:?}");
        no_cors_headers(&res, origin);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "http.cors_origin_not_allowed", "{origin:?}");
    }
    // Two Origin headers, one of them allowed: refused.
    let res = preflight(&s, &[APP, "https://evil.example"]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    no_cors_headers(&res, "two origins");
    // No Origin at all: not a browser's preflight from a page; refused too.
    let res = preflight(&s, &[]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn actual_requests_name_only_the_listed_origin_never_a_wildcard() {
    let s = cors_server(APP).await;
    let get = |origin: &'static str| {
        s.client
            .get(s.url("/healthz"))
            .header("origin", origin)
            .send()
    };
    let res = get(APP).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "access-control-allow-origin"), Some(APP));
    assert_eq!(
        header(&res, "access-control-allow-credentials"),
        Some("true")
    );
    let exposed = header(&res, "access-control-expose-headers").unwrap();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    let res = get("https://evil.example").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the request itself is served");
    no_cors_headers(&res, "evil GET");
    // Whatever the origin, `*` never appears.
    for origin in [APP, "https://evil.example", "null"] {
        let res = get(origin).await.unwrap();
        assert_ne!(header(&res, "access-control-allow-origin"), Some("*"));
    }
}

#[tokio::test]
async fn without_configured_origins_no_browser_elsewhere_gets_an_answer() {
    let s = TestServer::start().await;
    let res = preflight(&s, &[APP]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    no_cors_headers(&res, "default");
    let res = s
        .client
        .get(s.url("/healthz"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    no_cors_headers(&res, "default GET");
}

/// Wildcards, `null`, paths and non-canonical spellings are refused at
/// start, with one line naming the setting.
#[test]
fn bad_cors_and_redirect_settings_are_refused() {
    use std::collections::BTreeMap;
    let load = |k: &str, v: &str| {
        let env: BTreeMap<String, String> = [(k.to_owned(), v.to_owned())].into();
        stockade::config::Config::load(None, &env)
    };
    for bad in [
        "*",
        "null",
        "https://app.example.com/path",
        "https://App.example.com",
        "app.example.com",
    ] {
        let err = load("STOCKADE_CORS_ORIGINS", bad).unwrap_err().to_string();
        assert!(err.starts_with("STOCKADE_CORS_ORIGINS"), "{bad}: {err}");
    }
    for bad in [
        "//evil.example",
        "https://u@app.example.com/",
        "https://app.example.com/#x",
        "https:\\\\evil",
    ] {
        let err = load("STOCKADE_REDIRECT_ALLOWLIST", bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("STOCKADE_REDIRECT_ALLOWLIST"),
            "{bad}: {err}"
        );
    }
    let cfg = load(
        "STOCKADE_CORS_ORIGINS",
        "https://a.example, https://a.example/",
    )
    .unwrap();
    assert_eq!(cfg.cors_origins.len(), 1, "duplicates kept");
}

/// The tricks every open-redirect checker meets, as `redirect_to`.
const HOSTILE_TARGETS: &[&str] = &[
    "//evil.example/auth/reset",
    "https:evil.example",
    "https:/evil.example/auth/",
    "/\\evil.example",
    "https:\\\\evil.example",
    "https://app.example.com\\@evil.example/auth/",
    "https://app.example.com@evil.example/auth/",
    "https://app.example.com:pw@evil.example/auth/",
    "https://evil.example#@app.example.com/auth/",
    "https://evil.example?https://app.example.com/auth/",
    "https://app.example.com.evil.example/auth/",
    "https://app.example.com/auth/../admin",
    "https://app.example.com/authx",
    "http://app.example.com/auth/",
    "javascript:alert(document.domain)",
    "data:text/html,<script>alert(1)</script>",
    " https://app.example.com/auth/",
    "https://app.example.com/auth/\r\nSet-Cookie: x=1",
    "https://\u{0430}pp.example.com/auth/",
    "",
];

async fn reset_request(s: &TestServer, email: &str, target: &str) -> reqwest::Response {
    s.client
        .post(s.url("/v1/auth/password-reset/request"))
        .header("x-forwarded-for", fresh_ip())
        .json(&json!({ "email": email, "redirect_to": target }))
        .send()
        .await
        .unwrap()
}

async fn reset_links_go_only_to_allowed_pages(backend: Backend) {
    let Some(s) = server(
        backend,
        &[
            (
                "STOCKADE_REDIRECT_ALLOWLIST",
                "https://app.example.com/auth/",
            ),
            ("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await
    else {
        return;
    };
    let email = "owner@acme.test";
    signup(&s, "acme", email).await;
    let mails = outbox(&s).await.len();
    for target in HOSTILE_TARGETS {
        // The same refusal for a registered and an unknown address.
        for who in [email, "nobody@acme.test"] {
            let res = reset_request(&s, who, target).await;
            assert_eq!(
                res.status(),
                StatusCode::BAD_REQUEST,
                "{target:?} for {who}"
            );
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["code"], "http.redirect_not_allowed", "{target:?}");
        }
    }
    assert_eq!(
        outbox(&s).await.len(),
        mails,
        "a refused request queued mail"
    );
    // An allowed page: the link is that page, its query kept, the token in
    // the fragment; it resets the password.
    let res = reset_request(&s, email, "https://app.example.com/auth/reset?lang=fr").await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let mail = outbox(&s).await.pop().unwrap();
    assert_eq!(mail.kind, "password_reset");
    let (page, token) = mail
        .body
        .split_whitespace()
        .find_map(|w| w.split_once("#token="))
        .unwrap();
    assert_eq!(page, "https://app.example.com/auth/reset?lang=fr");
    let res = s
        .client
        .post(s.url("/v1/auth/password-reset/confirm"))
        .json(&json!({ "token": token, "new_password": "A brand new passphrase 42" }))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    // The default page is the deployment's own.
    let res = s
        .client
        .post(s.url("/v1/auth/password-reset/request"))
        .header("x-forwarded-for", fresh_ip())
        .json(&json!({ "email": email }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let body = outbox(&s).await.pop().unwrap().body;
    assert!(body.contains("/reset-password#token="), "{body}");
    assert!(!body.contains("app.example.com"), "{body}");
}

/// A platform owner's one-time sign-in link may point at an allowed page of
/// the application, and nowhere else: the link carries a session of the
/// user, so a hostile page would receive it.
async fn sign_in_links_go_only_to_allowed_pages(backend: Backend) {
    const ROOT: &str = "root@platform.test";
    let Some(s) = server(
        backend,
        &[
            ("STOCKADE_PLATFORM_OWNERS", ROOT),
            (
                "STOCKADE_REDIRECT_ALLOWLIST",
                "https://app.example.com/auth/",
            ),
        ],
    )
    .await
    else {
        return;
    };
    let root = signup(&s, "root-ops", ROOT).await;
    let _factor = crate::mfa::owner_factor(&s, &root.access).await;
    let pat = signup(&s, "acme", "pat@acme.test").await;
    let me: Value = crate::auth::me(&s, &pat.access).await.json().await.unwrap();
    let pat_id = me["user"]["id"].as_str().unwrap().to_owned();
    let ask = |target: &'static str| {
        s.client
            .post(s.url("/v1/platform/sign-in-links"))
            .bearer_auth(&root.access)
            .json(&json!({"user_id": pat_id, "confirm": true,
                "reason": "support ticket #42", "redirect_to": target}))
            .send()
    };
    let mails = outbox(&s).await.len();
    for target in HOSTILE_TARGETS {
        let res = ask(target).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{target:?}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "http.redirect_not_allowed", "{target:?}");
    }
    assert_eq!(outbox(&s).await.len(), mails, "a refused link was queued");
    let res = ask("https://app.example.com/auth/sign-in").await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let mail = outbox(&s).await.pop().unwrap();
    assert_eq!(mail.kind, "sign_in_link");
    let (page, token) = mail
        .body
        .split_whitespace()
        .find_map(|w| w.split_once("#link="))
        .unwrap();
    assert_eq!(page, "https://app.example.com/auth/sign-in");
    let res = s
        .client
        .post(s.url("/v1/auth/sign-in-link"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

crate::both_servers!(
    reset_links_go_only_to_allowed_pages,
    sign_in_links_go_only_to_allowed_pages
);
