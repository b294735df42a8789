//! Issue #17 item 3, as the attacker: the client address cannot be forged
//! through `X-Forwarded-For` (one unreadable entry used to make the server
//! fall back to the proxy's own address), IPv4-mapped IPv6 is its IPv4 twin,
//! and per-address limits count IPv6 per /64. On SQLite and PostgreSQL,
//! behind a trusted proxy (the test client's 127.0.0.1).

use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};
use stockade::http::Problem;

use crate::auth::{Login, PASSWORD, server, signup};
use crate::testkit::{Backend, TestServer};

pub const XFF: &str = "x-forwarded-for";
pub const PROXIED: &[(&str, &str)] = &[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")];

/// A sign-in through the proxy, which forwards `xff` (any bytes).
pub async fn login_via(
    s: &TestServer,
    xff: &[u8],
    email: &str,
    password: &str,
) -> reqwest::Response {
    s.client
        .post(s.url("/v1/auth/login"))
        .header(XFF, HeaderValue::from_bytes(xff).unwrap())
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

/// A failed sign-in through the proxy, each for another (unknown) address,
/// so only the per-client limit can refuse it, never an account lock.
async fn wrong_password_via(s: &TestServer, xff: &str) -> StatusCode {
    static N: AtomicUsize = AtomicUsize::new(0);
    let email = format!("nobody{}@x.test", N.fetch_add(1, Ordering::Relaxed));
    login_via(s, xff.as_bytes(), &email, "Wrong-Password-1")
        .await
        .status()
}

/// A bearer request through the proxy.
pub async fn get_via(s: &TestServer, path: &str, access: &str, xff: &str) -> reqwest::Response {
    s.client
        .get(s.url(path))
        .bearer_auth(access)
        .header(XFF, xff)
        .send()
        .await
        .unwrap()
}

/// Sets the tenant's allowlist, the owner calling through `from`.
pub async fn set_allowlist(s: &TestServer, owner: &Login, from: &str, list: Value) {
    let res = s
        .client
        .patch(s.url("/v1/tenant/settings"))
        .bearer_auth(&owner.access)
        .header(XFF, from)
        .json(&json!({ "ip_allowlist": list }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{:?}", res.text().await);
}

/// The tenant's events with `action`, newest first, as its owner reads them
/// through the proxy from `from`.
pub async fn events(s: &TestServer, owner: &Login, action: &str, from: &str) -> Vec<Value> {
    let path = format!("/v1/audit/events?action={action}");
    let res = get_via(s, &path, &owner.access, from).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.unwrap()["events"]
        .as_array()
        .unwrap()
        .clone()
}

/// The 10-per-15-minutes sign-in limit of one client, then `forged`: every
/// spelling of the same client is refused, whatever it puts in front.
async fn junk_in_front_does_not_reset_the_sign_in_limit(backend: Backend) {
    let Some(s) = server(backend, PROXIED).await else {
        return;
    };
    signup(&s, "acme", "owner@acme.test").await;
    for _ in 0..10 {
        assert_eq!(
            wrong_password_via(&s, "198.51.100.23").await,
            StatusCode::UNAUTHORIZED
        );
    }
    for forged in [
        "junk, 198.51.100.23",
        "unknown,198.51.100.23",
        "_hidden, 10.0.0.1, 198.51.100.23",
        "1.2.3, 198.51.100.23",
        "198.51.100.23:4711",
        "[::ffff:198.51.100.23]:80",
    ] {
        let res = login_via(&s, forged.as_bytes(), "owner@acme.test", PASSWORD).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{forged}");
        assert_eq!(
            res.json::<Problem>().await.unwrap().code,
            "auth.rate_limited"
        );
    }
    // Non-UTF-8 junk in front changes nothing either.
    let res = login_via(&s, b"\xff\xfe, 198.51.100.23", "owner@acme.test", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another client is not limited.
    assert_eq!(
        wrong_password_via(&s, "198.51.100.24").await,
        StatusCode::UNAUTHORIZED
    );
}

/// An allowlist that admits the proxy's own network must not admit a client
/// that puts junk in its header, nor one whose address is unreadable.
async fn junk_does_not_bypass_an_allowlist_that_admits_the_proxy(backend: Backend) {
    let Some(s) = server(backend, PROXIED).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    set_allowlist(
        &s,
        &owner,
        "203.0.113.5",
        json!(["127.0.0.0/8", "203.0.113.0/24"]),
    )
    .await;
    for (xff, allowed) in [
        ("junk, 198.51.100.23", false),
        ("198.51.100.23, junk", false),
        ("unknown", false),
        ("198.51.100.23, _hidden, 127.0.0.1", false),
        ("127.0.0.2, 198.51.100.23", false),
        ("junk, 203.0.113.9", true),
        ("198.51.100.23, 203.0.113.9", true),
        ("203.0.113.9", true),
    ] {
        let res = get_via(&s, "/v1/me", &owner.access, xff).await;
        if allowed {
            assert_eq!(res.status(), StatusCode::OK, "{xff}");
        } else {
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{xff}");
            assert_eq!(
                res.json::<Problem>().await.unwrap().code,
                "tenancy.ip_not_allowed"
            );
        }
    }
    // With no allowlist an unknown client gets in, but cannot set one: it
    // would not be in it (409, nothing changed).
    set_allowlist(&s, &owner, "203.0.113.5", json!([])).await;
    let res = s
        .client
        .patch(s.url("/v1/tenant/settings"))
        .bearer_auth(&owner.access)
        .header(XFF, "203.0.113.5, bogus")
        .json(&json!({ "ip_allowlist": ["203.0.113.0/24", "127.0.0.0/8"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "tenancy.allowlist_lockout"
    );
    assert_eq!(
        get_via(&s, "/v1/me", &owner.access, "junk, 198.51.100.23")
            .await
            .status(),
        StatusCode::OK
    );
}

/// 15 failures spread over one IPv6 /64 are one client's: 10, then 429.
async fn failures_across_one_ipv6_64_are_limited_together(backend: Backend) {
    let Some(s) = server(backend, PROXIED).await else {
        return;
    };
    signup(&s, "acme", "owner@acme.test").await;
    let mut statuses = Vec::new();
    for i in 1..=15u32 {
        let addr = format!("2001:db8:1:2:{i:x}:{:x}::{i:x}", i * 7);
        statuses.push(wrong_password_via(&s, &addr).await);
    }
    assert!(
        statuses[..10]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert!(
        statuses[10..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // The next /64 is another client.
    assert_eq!(
        wrong_password_via(&s, "2001:db8:1:3::1").await,
        StatusCode::UNAUTHORIZED
    );
}

/// `::ffff:198.51.100.7` and `0:0:0:0:0:ffff:c633:6407` are 198.51.100.7:
/// for the limit, the allowlist, and what the session and the log record.
async fn a_mapped_address_is_its_ipv4_twin(backend: Backend) {
    let Some(s) = server(backend, PROXIED).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    for xff in ["198.51.100.7", "::ffff:198.51.100.7"].repeat(5) {
        assert_eq!(wrong_password_via(&s, xff).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        wrong_password_via(&s, "0:0:0:0:0:ffff:c633:6407").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // An IPv4 allowlist admits the mapped spelling of its addresses.
    set_allowlist(&s, &owner, "198.51.100.9", json!(["198.51.100.0/24"])).await;
    let res = get_via(&s, "/v1/me", &owner.access, "::ffff:198.51.100.9").await;
    assert_eq!(res.status(), StatusCode::OK);
    // A sign-in from a mapped address is recorded as the IPv4 address.
    let res = login_via(&s, b"::ffff:198.51.100.10", "owner@acme.test", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
    let access = res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sessions: Value = get_via(&s, "/v1/auth/sessions", &access, "198.51.100.10")
        .await
        .json()
        .await
        .unwrap();
    let current = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["current"] == true)
        .unwrap();
    assert_eq!(current["ip"], "198.51.100.10");
    let logins = events(&s, &owner, "auth.login.succeeded", "198.51.100.200").await;
    assert_eq!(logins[0]["ip"], "198.51.100.10", "{logins:?}");
}

/// The audit log and the session list show the real client when junk is in
/// front, and `unknown` (never the proxy) when the client is unreadable;
/// every unknown client shares one sign-in limit.
async fn audit_and_sessions_record_the_client_or_unknown(backend: Backend) {
    let Some(s) = server(backend, PROXIED).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let cases = [
        ("junk, 198.51.100.23", "198.51.100.23"),
        ("198.51.100.23, unknown", "unknown"),
    ];
    for (xff, recorded) in cases {
        let res = login_via(&s, xff.as_bytes(), "owner@acme.test", PASSWORD).await;
        assert_eq!(res.status(), StatusCode::OK, "{xff}");
        let access = res.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let sessions: Value = get_via(&s, "/v1/auth/sessions", &access, xff)
            .await
            .json()
            .await
            .unwrap();
        let current = sessions
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["current"] == true)
            .unwrap()
            .clone();
        assert_eq!(current["ip"], recorded, "{xff}: {sessions}");
        let logins = events(&s, &owner, "auth.login.succeeded", "198.51.100.200").await;
        assert_eq!(logins[0]["ip"], recorded, "{xff}");
    }
    let res = login_via(&s, b"bogus", "owner@acme.test", "Wrong-Password-1").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let failed = events(&s, &owner, "auth.login.failed", "198.51.100.200").await;
    assert_eq!(failed[0]["ip"], "unknown");
    assert!(
        failed
            .iter()
            .chain(&events(&s, &owner, "auth.login.succeeded", "198.51.100.200").await)
            .all(|e| e["ip"] != "127.0.0.1"),
        "the proxy is never recorded as the client"
    );
    // Unknown clients share one limit (one sign-in and one failure so far):
    // 8 more, then 429 for any unknown client, and only for them.
    for i in 0..8 {
        let junk = format!("junk-{i}");
        assert_eq!(
            wrong_password_via(&s, &junk).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        wrong_password_via(&s, "198.51.100.1, _obfuscated").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        wrong_password_via(&s, "198.51.100.1").await,
        StatusCode::UNAUTHORIZED
    );
}

crate::both_servers!(
    junk_in_front_does_not_reset_the_sign_in_limit,
    junk_does_not_bypass_an_allowlist_that_admits_the_proxy,
    failures_across_one_ipv6_64_are_limited_together,
    a_mapped_address_is_its_ipv4_twin,
    audit_and_sessions_record_the_client_or_unknown,
);
