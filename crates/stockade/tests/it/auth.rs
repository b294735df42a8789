//! Sign-up end to end (SPEC §2.1), on SQLite and PostgreSQL, and the
//! identity fixtures the whole suite signs in with (`server`, `signup`,
//! `login`, `login_ok`, `me`, `refresh`, `audit_actions`, ...). Other files
//! import these from here; this file must not grow tests of sign-in,
//! refresh, sessions or passwords, which live in `auth_signin.rs`,
//! `auth_refresh.rs`, `auth_sessions.rs` and `auth_password.rs`.

use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade::http::Problem;

use crate::testkit::{Backend, TestServer};

pub const PASSWORD: &str = "Correct-Horse-Battery-42";

/// A signed-in client: access token and refresh cookie value.
#[derive(Debug, Clone)]
pub struct Login {
    pub access: String,
    pub refresh: String,
}

pub async fn server(backend: Backend, extra: &[(&str, &str)]) -> Option<TestServer> {
    TestServer::start_on(backend, extra, true).await
}

/// The refresh cookie set by a response, with its attributes.
pub fn set_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned())
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("__Host-stockade_refresh=")
        .to_owned()
}

pub async fn signup(s: &TestServer, slug: &str, email: &str) -> Login {
    let res = s
        .client
        .post(s.url("/v1/auth/signup"))
        .json(
            &json!({"tenant_name": format!("{slug} Ltd"), "tenant_slug": slug,
            "email": email, "password": PASSWORD, "name": "Pat Owner"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED, "{:?}", res.text().await);
    // The owner proves the address with the link the sign-up emailed.
    let to = res.json::<Value>().await.unwrap()["user"]["email"]
        .as_str()
        .unwrap()
        .to_owned();
    login_from(crate::mailbox::verify_ok(s, &to, PASSWORD).await).await
}

pub async fn login_from(res: reqwest::Response) -> Login {
    let cookie = set_cookie(&res).expect("refresh cookie");
    let body: Value = res.json().await.unwrap();
    Login {
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: cookie_value(&cookie),
    }
}

pub async fn login(
    s: &TestServer,
    email: &str,
    password: &str,
    tenant: Option<&str>,
) -> reqwest::Response {
    let mut body = json!({"email": email, "password": password});
    if let Some(t) = tenant {
        body["tenant"] = json!(t);
    }
    s.client
        .post(s.url("/v1/auth/login"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub async fn login_ok(s: &TestServer, email: &str) -> Login {
    let res = login(s, email, PASSWORD, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    login_from(res).await
}

pub async fn me(s: &TestServer, access: &str) -> reqwest::Response {
    s.client
        .get(s.url("/v1/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
}

pub async fn refresh(s: &TestServer, refresh: &str) -> reqwest::Response {
    s.client
        .post(s.url("/v1/auth/refresh"))
        .header("cookie", format!("__Host-stockade_refresh={refresh}"))
        .send()
        .await
        .unwrap()
}

/// The audit actions of the tenant of `access`, in order.
pub async fn audit_actions(s: &TestServer, slug: &str) -> Vec<String> {
    let tenant = stockade::tenancy::find_by_slug(&s.db, slug)
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_read(tenant.id).await.unwrap();
    let rows: Vec<(String,)> = tx
        .fetch_all(
            "SELECT action FROM audit_events WHERE tenant_id = $1 ORDER BY seq",
            vec![],
        )
        .await
        .unwrap();
    rows.into_iter().map(|r| r.0).collect()
}

pub fn b64json(part: &str) -> Value {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn signup_issues_tokens_cookie_and_claims(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let res = s
        .client
        .post(s.url("/v1/auth/signup"))
        .json(&json!({"tenant_name": "Acme", "tenant_slug": "acme",
            "email": "Owner@Acme.test", "password": PASSWORD, "name": "Pat"}))
        .send()
        .await
        .unwrap();
    // Tokens come with the verification link (issue #17 item 8).
    let res = crate::mailbox::verify_accepted(&s, res, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let cookie = set_cookie(&res).unwrap();
    for attr in [
        "__Host-stockade_refresh=",
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=604800",
    ] {
        assert!(cookie.contains(attr), "{attr} missing from {cookie}");
    }
    assert!(!cookie.contains("Domain"));
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["tenant"]["slug"], "acme");
    assert_eq!(body["user"]["email"], "Owner@Acme.test");
    assert!(body["user"].get("password_hash").is_none());
    let token = body["access_token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let header = b64json(parts[0]);
    let claims = b64json(parts[1]);
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].is_string());
    for c in ["iss", "aud", "sub", "tid", "sid", "iat", "exp", "jti"] {
        assert!(claims.get(c).is_some(), "claim {c}");
    }
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    assert!(claims.get("act").is_none());
    // The JWKS publishes the key that verifies it.
    let jwks: Value = s
        .client
        .get(s.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert!(
        keys.iter()
            .any(|k| k["kid"] == header["kid"] && k["crv"] == "Ed25519")
    );
    assert!(keys.iter().all(|k| k.get("d").is_none()));
    // /me
    let me: Value = me(&s, token).await.json().await.unwrap();
    assert_eq!(me["role"], "owner");
    assert_eq!(me["tenant"]["slug"], "acme");
    assert!(
        me["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("members:manage"))
    );
    assert_eq!(
        audit_actions(&s, "acme").await,
        ["tenancy.tenant.created", "auth.user.signed_up"]
    );
    // Duplicates: a taken slug is a conflict; a registered email is answered
    // like a new one (no enumeration) and creates nothing.
    let res = s.client.post(s.url("/v1/auth/signup"))
        .json(&json!({"tenant_name": "Acme 2", "tenant_slug": "acme", "email": "x@acme.test", "password": PASSWORD, "name": "X"}))
        .send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let res = s.client.post(s.url("/v1/auth/signup"))
        .json(&json!({"tenant_name": "Other", "tenant_slug": "other", "email": "owner@acme.TEST", "password": PASSWORD, "name": "X"}))
        .send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    // Neither failed signup left a tenant behind.
    assert!(
        stockade::tenancy::find_by_slug(&s.db, "other")
            .await
            .unwrap()
            .is_none()
    );
}

async fn signup_rules(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let res = s.client.post(s.url("/v1/auth/signup"))
        .json(&json!({"tenant_name": "Acme", "tenant_slug": "acme", "email": "a@acme.test", "password": "short", "name": "A"}))
        .send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let p: Problem = res.json().await.unwrap();
    assert_eq!(p.code, "auth.weak_password");
    let codes: Vec<String> = p
        .errors
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["code"].as_str().unwrap().to_owned())
        .collect();
    for c in [
        "password.too_short",
        "password.missing_upper",
        "password.missing_digit",
    ] {
        assert!(codes.iter().any(|x| x == c), "{c} not in {codes:?}");
    }
    let res = s.client.post(s.url("/v1/auth/signup"))
        .json(&json!({"tenant_name": "Acme", "tenant_slug": "acme", "email": "a@acme.test", "password": PASSWORD, "name": "A", "role": "owner"}))
        .send().await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::BAD_REQUEST,
        "unknown fields are refused"
    );
    let Some(closed) = server(backend, &[("STOCKADE_SIGNUP", "closed")]).await else {
        return;
    };
    let res = closed.client.post(closed.url("/v1/auth/signup"))
        .json(&json!({"tenant_name": "Acme", "tenant_slug": "acme", "email": "a@acme.test", "password": PASSWORD, "name": "A"}))
        .send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "auth.signup_closed"
    );
}

crate::both_servers!(signup_issues_tokens_cookie_and_claims, signup_rules,);
