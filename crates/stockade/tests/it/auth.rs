//! Identity end to end (SPEC §2.1–2.3), on SQLite and PostgreSQL.

use std::time::Duration as StdDuration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade::clock::Clock;
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

fn b64json(part: &str) -> Value {
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

async fn unknown_email_and_wrong_password_are_indistinguishable(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")]).await else {
        return;
    };
    signup(&s, "acme", "owner@acme.test").await;
    let mut answers = Vec::new();
    for (i, email) in ["owner@acme.test", "nobody@acme.test"]
        .into_iter()
        .enumerate()
    {
        let before = s.state.hasher.operations();
        let res = s
            .client
            .post(s.url("/v1/auth/login"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .json(&json!({"email": email, "password": "Wrong-Password-99"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            s.state.hasher.operations(),
            before + 1,
            "one hash ran for {email}"
        );
        let status = res.status();
        let mut headers: Vec<(String, String)> = res
            .headers()
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "x-request-id" | "date"))
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        headers.sort();
        answers.push((status, headers, res.bytes().await.unwrap()));
    }
    assert_eq!(answers[0].0, StatusCode::UNAUTHORIZED);
    assert_eq!(answers[0], answers[1]);
    let actions = audit_actions(&s, "acme").await;
    assert_eq!(actions.last().unwrap(), "auth.login.failed");
}

async fn ip_rate_limit_rejects_before_hashing_and_ignores_untrusted_forwarded_for(
    backend: Backend,
) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    for i in 0..10 {
        // A spoofed X-Forwarded-For from an untrusted peer changes nothing.
        let res = s
            .client
            .post(s.url("/v1/auth/login"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({"email": format!("u{i}@x.test"), "password": "Whatever-123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let before = s.state.hasher.operations();
    let res = s
        .client
        .post(s.url("/v1/auth/login"))
        .header("x-forwarded-for", "192.0.2.200")
        .json(&json!({"email": "u@x.test", "password": "Whatever-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry));
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "auth.rate_limited"
    );
    assert_eq!(
        s.state.hasher.operations(),
        before,
        "no hashing for a rejected attempt"
    );
    // Refusals are audited once per blocked stretch, not once per request.
    for _ in 0..3 {
        let res = login(&s, "u@x.test", "Whatever-123", None).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    let mut tx =
        s.db.tenant_read(stockade::ids::TenantId::PLATFORM)
            .await
            .unwrap();
    let limited: Vec<(String, Option<String>)> = tx
        .fetch_all(
            "SELECT action, ip FROM audit_events WHERE tenant_id = $1 AND action = 'auth.ip.rate_limited'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].1.as_deref(), Some("127.0.0.1"));
    drop(tx);
    // Time heals.
    s.clock.advance(chrono::Duration::minutes(15));
    let res = login(&s, "u@x.test", "Whatever-123", None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

async fn trusted_proxy_forwarded_for_is_used(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")]).await else {
        return;
    };
    for i in 0..10 {
        let res = s
            .client
            .post(s.url("/v1/auth/login"))
            .header("x-forwarded-for", "203.0.113.9")
            .json(&json!({"email": format!("u{i}@x.test"), "password": "Whatever-123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = s
        .client
        .post(s.url("/v1/auth/login"))
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"email": "u@x.test", "password": "Whatever-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let other = s
        .client
        .post(s.url("/v1/auth/login"))
        .header("x-forwarded-for", "203.0.113.10")
        .json(&json!({"email": "u@x.test", "password": "Whatever-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);
}

async fn account_lockout_doubles_and_counts_unknown_emails_alike(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")]).await else {
        return;
    };
    signup(&s, "acme", "owner@acme.test").await;
    let attempt = |email: &'static str, password: &'static str, n: u32| {
        s.client
            .post(s.url("/v1/auth/login"))
            .header("x-forwarded-for", format!("198.51.{}.{}", n / 200, n % 200))
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    let mut n = 0;
    for email in ["owner@acme.test", "ghost@acme.test"] {
        for _ in 0..10 {
            n += 1;
            assert_eq!(
                attempt(email, "Wrong-Password-1", n)
                    .await
                    .unwrap()
                    .status(),
                StatusCode::UNAUTHORIZED
            );
        }
    }
    let mut locked = Vec::new();
    for email in ["owner@acme.test", "ghost@acme.test"] {
        n += 1;
        let before = s.state.hasher.operations();
        let res = attempt(email, PASSWORD, n).await.unwrap();
        assert_eq!(s.state.hasher.operations(), before, "locked: no hashing");
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry = res.headers()["retry-after"].to_str().unwrap().to_owned();
        locked.push((retry, res.json::<Problem>().await.unwrap().code));
    }
    assert_eq!(locked[0], locked[1]);
    assert_eq!(locked[0].1, "auth.account_locked");
    assert_eq!(locked[0].0, "900");
    let actions = audit_actions(&s, "acme").await;
    assert!(
        actions.contains(&"auth.account.locked".to_owned()),
        "{actions:?}"
    );
    // After 15 minutes the right password works again.
    s.clock.advance(chrono::Duration::minutes(15));
    n += 1;
    assert_eq!(
        attempt("owner@acme.test", PASSWORD, n)
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // The next lockout lasts twice as long.
    for _ in 0..10 {
        n += 1;
        attempt("owner@acme.test", "Wrong-Password-1", n)
            .await
            .unwrap();
    }
    n += 1;
    let res = attempt("owner@acme.test", PASSWORD, n).await.unwrap();
    assert_eq!(res.headers()["retry-after"], "1800");
}

/// A sign-in reads the throttle with the user and writes it only when there
/// is something to clear: a success after failures clears them, so nine
/// more failures do not lock the account.
async fn a_successful_sign_in_clears_the_failure_count(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")]).await else {
        return;
    };
    signup(&s, "acme", "owner@acme.test").await;
    let mut n = 0;
    let mut attempt = |password: &'static str| {
        n += 1;
        s.client
            .post(s.url("/v1/auth/login"))
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .json(&json!({"email": "owner@acme.test", "password": password}))
            .send()
    };
    for round in 0..2 {
        for _ in 0..9 {
            let res = attempt("Wrong-Password-1").await.unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "round {round}");
        }
        let res = attempt(PASSWORD).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "round {round}");
    }
    let failures: Option<(i64,)> =
        s.db.global_read()
            .await
            .unwrap()
            .fetch_optional(
                "SELECT CAST(failures AS BIGINT) FROM login_throttle WHERE email_key = $1",
                vec!["owner@acme.test".into()],
            )
            .await
            .unwrap();
    assert_eq!(failures, Some((0,)));
}

async fn refresh_rotates_and_reuse_revokes_the_session(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let first = signup(&s, "acme", "owner@acme.test").await;
    let res = refresh(&s, &first.refresh).await;
    assert_eq!(res.status(), StatusCode::OK);
    let second = login_from(res).await;
    assert_ne!(second.refresh, first.refresh);
    assert_eq!(me(&s, &second.access).await.status(), StatusCode::OK);
    // The old token is dead, and presenting it kills the session.
    let res = refresh(&s, &first.refresh).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&res).unwrap().contains("Max-Age=0"));
    assert_eq!(
        refresh(&s, &second.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me(&s, &second.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me(&s, &first.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(
        audit_actions(&s, "acme")
            .await
            .contains(&"sessions.refresh.reused".to_owned())
    );
    // Garbage cookies are a plain 401.
    for bad in [
        "",
        "x",
        "00000000000000000000000000000000.AAAA",
        &"a".repeat(5000),
    ] {
        assert_eq!(refresh(&s, bad).await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        s.client
            .post(s.url("/v1/auth/refresh"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn concurrent_refreshes_exactly_one_wins(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let l = signup(&s, "acme", "owner@acme.test").await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let client = s.client.clone();
        let url = s.url("/v1/auth/refresh");
        let cookie = format!("__Host-stockade_refresh={}", l.refresh);
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            match res.status() {
                StatusCode::OK => Some(login_from(res).await),
                _ => None,
            }
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        if let Some(l) = t.await.unwrap() {
            winners.push(l);
        }
    }
    assert_eq!(winners.len(), 1);
    // The losers presented a used token: the session is revoked, the
    // winner's new token with it, and the reuse is in the audit log.
    assert_eq!(
        refresh(&s, &winners[0].refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me(&s, &winners[0].access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(
        audit_actions(&s, "acme")
            .await
            .contains(&"sessions.refresh.reused".to_owned())
    );
}

/// Under a grace window, concurrent presentations of one token (tabs racing
/// after a wake-up) all succeed: one rotation, the others siblings, and the
/// session stays live.
async fn concurrent_refreshes_inside_the_grace_window_get_siblings(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_REFRESH_REUSE_GRACE", "10")]).await else {
        return;
    };
    let l = signup(&s, "acme", "owner@acme.test").await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let client = s.client.clone();
        let url = s.url("/v1/auth/refresh");
        let cookie = format!("__Host-stockade_refresh={}", l.refresh);
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
        }));
    }
    let mut tokens = std::collections::BTreeSet::new();
    for t in tasks {
        let res = t.await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        tokens.insert(login_from(res).await.refresh);
    }
    assert_eq!(tokens.len(), 6, "six distinct tokens");
    for t in &tokens {
        assert_eq!(refresh(&s, t).await.status(), StatusCode::OK);
    }
    assert!(
        !audit_actions(&s, "acme")
            .await
            .contains(&"sessions.refresh.reused".to_owned())
    );
}

/// The presented token and its session, with what a direct call of the
/// store needs.
async fn sighting_parts(
    s: &TestServer,
    l: &Login,
) -> (stockade::sessions::RefreshToken, uuid::Uuid, uuid::Uuid) {
    let token = stockade::sessions::RefreshToken::parse(&l.refresh).unwrap();
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let sid: uuid::Uuid = b64json(l.access.split('.').nth(1).unwrap())["sid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (token, tenant.id.0, sid)
}

/// On PostgreSQL the read of `rotate` can be stale by the time it writes
/// (read committed: concurrent transactions run). A read taken before
/// another request rotated the same token must not rotate it a second time:
/// the conditional claim catches it as a reuse. (Simulated on both backends
/// with the read in its own transaction.)
async fn a_stale_sighting_cannot_rotate_a_token_twice(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let l = signup(&s, "acme", "owner@acme.test").await;
    let (token, tenant, _) = sighting_parts(&s, &l).await;
    let ctx = stockade::audit::RequestContext::default();
    let policy = s.state.session_policy;
    let clock = s.clock.as_ref();
    let tenant = stockade::ids::TenantId(tenant);
    let stale = {
        let mut read = s.db.tenant_read(tenant).await.unwrap();
        stockade::sessions::look_up(&mut read, &token, clock.now())
            .await
            .unwrap()
    };
    // Another request rotates the same token between the read and the write.
    let winner = stockade::sessions::rotate(&s.db, clock, &token, &policy, &ctx)
        .await
        .unwrap();
    let tx = s.db.tenant_tx(tenant).await.unwrap();
    let late = stockade::sessions::rotate_seen(tx, clock, &token, stale, &policy, &ctx).await;
    assert!(
        matches!(late, Err(stockade::sessions::RefreshError::Reused)),
        "{late:?}"
    );
    assert_eq!(
        refresh(&s, &winner.token.encode()).await.status(),
        StatusCode::UNAUTHORIZED,
        "the session was revoked"
    );
    assert!(
        audit_actions(&s, "acme")
            .await
            .contains(&"sessions.refresh.reused".to_owned())
    );
}

/// Refreshes that arrive together share one transaction on SQLite (group
/// commit, `sessions::rotation_batch`) and still behave like separate
/// transactions in arrival order: two tenants, a token presented twice in
/// the batch (the second is a reuse that revokes that session, new token
/// included), an unknown token; the others rotate. PostgreSQL takes the
/// direct path with the same outcomes (which of the two presentations wins
/// is then up to the database).
async fn group_committed_rotations_behave_like_separate_transactions(backend: Backend) {
    use stockade::sessions::{RefreshError, RefreshToken};
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let b = signup(&s, "beta", "owner@beta.test").await;
    let a2 = login_ok(&s, "owner@acme.test").await;
    let (_, acme, _) = sighting_parts(&s, &a).await;
    let unknown = format!("{}.{}", acme.simple(), "A".repeat(43));
    assert!(
        RefreshToken::parse(&unknown).is_some(),
        "well formed, never issued"
    );
    let state = &s.state;
    let before = state.refresh_rotations.batches();
    let rotate = |t: &str| {
        state.refresh_rotations.rotate(
            RefreshToken::parse(t).unwrap(),
            stockade::audit::RequestContext::default(),
        )
    };
    // Polled together: all five queue before the writer task runs.
    let (first_a, b_new, second_a, a2_new, unknown) = tokio::join!(
        rotate(&a.refresh),
        rotate(&b.refresh),
        rotate(&a.refresh),
        rotate(&a2.refresh),
        rotate(&unknown)
    );
    // SQLite runs the batch in arrival order: the first presentation rotates.
    // PostgreSQL runs the five as concurrent transactions: either one may
    // win, and the other is then the reuse.
    let first_a = match (first_a, second_a) {
        (Ok(won), Err(RefreshError::Reused)) => won,
        (Err(RefreshError::Reused), Ok(won)) if backend == Backend::Postgres => won,
        other => panic!("one presentation rotates, the other is a reuse: {other:?}"),
    };
    assert!(matches!(unknown, Err(RefreshError::Invalid)), "{unknown:?}");
    if backend == Backend::Sqlite {
        assert_eq!(state.refresh_rotations.batches() - before, 1, "one commit");
        assert!(state.refresh_rotations.rotations() >= 5);
    }
    // Committed, and each unit as its own transaction would have left it.
    assert_eq!(
        refresh(&s, &first_a.token.encode()).await.status(),
        StatusCode::UNAUTHORIZED,
        "the reuse revoked the session, the new token with it"
    );
    assert_eq!(me(&s, &a.access).await.status(), StatusCode::UNAUTHORIZED);
    for other in [
        b_new.expect("beta rotates"),
        a2_new.expect("a second session rotates"),
    ] {
        assert_eq!(
            refresh(&s, &other.token.encode()).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(me(&s, &a2.access).await.status(), StatusCode::OK);
    let acme_log = audit_actions(&s, "acme").await;
    assert_eq!(
        acme_log
            .iter()
            .filter(|a| *a == "sessions.refresh.reused")
            .count(),
        1
    );
    assert!(
        !audit_actions(&s, "beta")
            .await
            .contains(&"sessions.refresh.reused".to_owned())
    );
}

/// A session revoked between the read and the writes (here without its
/// tokens being deleted, as a sign-out everywhere leaves them) is re-checked
/// on the writer: no rotation, and the token is not even claimed.
async fn a_session_revoked_after_the_sighting_is_not_rotated(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let l = signup(&s, "acme", "owner@acme.test").await;
    let (token, tenant, sid) = sighting_parts(&s, &l).await;
    let ctx = stockade::audit::RequestContext::default();
    let policy = s.state.session_policy;
    let clock = s.clock.as_ref();
    let tenant = stockade::ids::TenantId(tenant);
    let seen = {
        let mut read = s.db.tenant_read(tenant).await.unwrap();
        stockade::sessions::look_up(&mut read, &token, clock.now())
            .await
            .unwrap()
    };
    let mut tx = s.db.tenant_tx(tenant).await.unwrap();
    tx.execute(
        "UPDATE sessions SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2",
        vec![sid.into(), clock.now().into()],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let tx = s.db.tenant_tx(tenant).await.unwrap();
    let late = stockade::sessions::rotate_seen(tx, clock, &token, seen, &policy, &ctx).await;
    assert!(
        matches!(late, Err(stockade::sessions::RefreshError::Invalid)),
        "{late:?}"
    );
    let mut tx = s.db.tenant_read(tenant).await.unwrap();
    let used: Vec<(Option<chrono::DateTime<chrono::Utc>>,)> = tx
        .fetch_all(
            "SELECT used_at FROM refresh_tokens WHERE tenant_id = $1 AND session_id = $2",
            vec![sid.into()],
        )
        .await
        .unwrap();
    assert_eq!(used.len(), 1, "no successor was issued");
    assert!(used[0].0.is_none(), "the token was not claimed");
}

/// A refresh only stamps the session's last sight, which cannot make a
/// cached session check wrong: it leaves the liveness generation (and so
/// every cached check) alone. A reuse and a sign-out revoke: they bump it.
async fn a_refresh_does_not_empty_the_session_cache(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let first = signup(&s, "acme", "owner@acme.test").await;
    let generation = s.db.liveness_generation();
    let res = refresh(&s, &first.refresh).await;
    assert_eq!(res.status(), StatusCode::OK);
    let second = login_from(res).await;
    assert_eq!(s.db.liveness_generation(), generation);
    // The stamp is written all the same.
    let (_, tenant, sid) = sighting_parts(&s, &second).await;
    s.clock.advance(chrono::Duration::seconds(30));
    assert_eq!(refresh(&s, &second.refresh).await.status(), StatusCode::OK);
    let mut tx =
        s.db.tenant_read(stockade::ids::TenantId(tenant))
            .await
            .unwrap();
    let seen: Vec<(chrono::DateTime<chrono::Utc>,)> = tx
        .fetch_all(
            "SELECT last_seen_at FROM sessions WHERE tenant_id = $1 AND id = $2",
            vec![sid.into()],
        )
        .await
        .unwrap();
    drop(tx);
    assert_eq!(seen, vec![(s.clock.now(),)]);
    assert_eq!(s.db.liveness_generation(), generation);
    // Reuse revokes: the generation moves.
    assert_eq!(
        refresh(&s, &first.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(s.db.liveness_generation() > generation);
    // So does a sign-out.
    let other = login_ok(&s, "owner@acme.test").await;
    let before = s.db.liveness_generation();
    let res = s
        .client
        .post(s.url("/v1/auth/logout"))
        .bearer_auth(&other.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(s.db.liveness_generation() > before);
}

async fn reuse_grace_window_gives_a_sibling_token(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_REFRESH_REUSE_GRACE", "10")]).await else {
        return;
    };
    let l = signup(&s, "acme", "owner@acme.test").await;
    let a = refresh(&s, &l.refresh).await;
    assert_eq!(a.status(), StatusCode::OK);
    s.clock.advance(chrono::Duration::seconds(5));
    let b = refresh(&s, &l.refresh).await;
    assert_eq!(b.status(), StatusCode::OK, "second tab inside the window");
    let b = login_from(b).await;
    assert_eq!(me(&s, &b.access).await.status(), StatusCode::OK);
    s.clock.advance(chrono::Duration::seconds(6));
    assert_eq!(
        refresh(&s, &l.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me(&s, &b.access).await.status(),
        StatusCode::UNAUTHORIZED,
        "session revoked"
    );
}

async fn revocation_takes_effect_on_the_next_request(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let b = login_ok(&s, "owner@acme.test").await;
    let c = login_ok(&s, "owner@acme.test").await;
    // Each sign-in is audited with its client address.
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_read(tenant.id).await.unwrap();
    let rows: Vec<stockade::audit::StoredEvent> = tx
        .fetch_all(
            "SELECT * FROM audit_events WHERE tenant_id = $1 \
             AND action = 'auth.login.succeeded'",
            vec![],
        )
        .await
        .unwrap();
    // The address is sealed under the user's key (`audit::pii`): opened here.
    assert!(rows.iter().all(|e| e.ip.is_none() && e.pii.is_some()));
    let logins = stockade::audit::pii::reveal(&mut tx, rows, stockade::audit::pii::Ids::Stored)
        .await
        .unwrap();
    drop(tx);
    assert_eq!(logins.len(), 2);
    assert!(logins.iter().all(|l| l.event.outcome == "success"
        && l.event.ip.as_deref() == Some("127.0.0.1")
        && l.event.actor_type == "user"));
    // Sessions list marks the current one.
    let list: Value = s
        .client
        .get(s.url("/v1/auth/sessions"))
        .bearer_auth(&a.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list.iter().filter(|x| x["current"] == true).count(), 1);
    // Remote sign-out of b from a.
    let sid_b = b64json(b.access.split('.').nth(1).unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = s
        .client
        .delete(s.url(&format!("/v1/auth/sessions/{sid_b}")))
        .bearer_auth(&a.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(&s, &b.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        refresh(&s, &b.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Logout of c.
    let res = s
        .client
        .post(s.url("/v1/auth/logout"))
        .bearer_auth(&c.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(&s, &c.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(me(&s, &a.access).await.status(), StatusCode::OK);
    // Another tenant's session id is "not found".
    let other = signup(&s, "other", "other@other.test").await;
    let sid_a = b64json(a.access.split('.').nth(1).unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = s
        .client
        .delete(s.url(&format!("/v1/auth/sessions/{sid_a}")))
        .bearer_auth(&other.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Logout everywhere.
    let d = login_ok(&s, "owner@acme.test").await;
    let res = s
        .client
        .post(s.url("/v1/auth/logout-all"))
        .bearer_auth(&a.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(&s, &a.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(me(&s, &d.access).await.status(), StatusCode::UNAUTHORIZED);
    let actions = audit_actions(&s, "acme").await;
    for a in [
        "sessions.session.revoked",
        "auth.session.logged_out",
        "auth.session.logged_out_all",
    ] {
        assert!(actions.contains(&a.to_owned()), "{a}");
    }
}

async fn deactivation_and_suspension_revoke_at_once(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let b = signup(&s, "beta", "owner@beta.test").await;
    let mut tx = s.db.global_tx().await.unwrap();
    tx.execute(
        "UPDATE tenants SET status = 'suspended' WHERE slug = $1",
        vec!["acme".into()],
    )
    .await
    .unwrap();
    tx.execute(
        "UPDATE users SET status = 'deactivated' WHERE email_key = $1",
        vec!["owner@beta.test".into()],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // A suspended tenant's credentials are refused and say why.
    let res = me(&s, &a.access).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "tenancy.suspended"
    );
    assert_eq!(me(&s, &b.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        login(&s, "owner@beta.test", PASSWORD, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A suspended tenant says so, but only to someone who knows the password.
    let res = login(&s, "owner@acme.test", PASSWORD, None).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "tenancy.suspended"
    );
    assert_eq!(
        login(&s, "owner@acme.test", "Wrong-Passw0rd-77", None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn expired_and_forged_tokens_are_refused(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let parts: Vec<&str> = a.access.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims = b64json(parts[1]);
    claims["sub"] = json!(uuid::Uuid::now_v7().to_string());
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let mut header = b64json(parts[0]);
    header["alg"] = json!("HS256");
    let confused = format!(
        "{}.{}.{}",
        b64.encode(header.to_string()),
        parts[1],
        parts[2]
    );
    for bad in [
        tampered.as_str(),
        none.as_str(),
        confused.as_str(),
        "garbage",
        "",
    ] {
        assert_eq!(
            me(&s, bad).await.status(),
            StatusCode::UNAUTHORIZED,
            "{bad}"
        );
    }
    let res = me(&s, "garbage").await;
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let res = s
        .client
        .get(s.url("/v1/me"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(me(&s, &a.access).await.status(), StatusCode::OK);
    s.clock.advance(chrono::Duration::minutes(15));
    assert_eq!(
        me(&s, &a.access).await.status(),
        StatusCode::UNAUTHORIZED,
        "expired"
    );
    // The refresh cookie still works, and gives a fresh access token.
    let res = refresh(&s, &a.refresh).await;
    assert_eq!(res.status(), StatusCode::OK);
    let fresh = login_from(res).await;
    assert_eq!(me(&s, &fresh.access).await.status(), StatusCode::OK);
}

async fn idle_and_absolute_timeouts(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    // Idle (8 h): a refresh one second inside it works; one 8 h after the
    // last use does not, although the session is far from its 30 days.
    let a = signup(&s, "acme", "owner@acme.test").await;
    s.clock
        .advance(chrono::Duration::hours(8) - chrono::Duration::seconds(1));
    let res = refresh(&s, &a.refresh).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "alive 1 s inside the idle timeout"
    );
    let a = login_from(res).await;
    s.clock.advance(chrono::Duration::hours(8));
    assert_eq!(
        refresh(&s, &a.refresh).await.status(),
        StatusCode::UNAUTHORIZED,
        "idle 8 h (only the idle timeout can end this session: it is 16 h old)"
    );
    // Absolute (30 days): refreshed every 7 h, the session is never idle for
    // 8 h; it stays alive up to its 30 days and ends at them, 7 h after its
    // last refresh, so only the absolute timeout can end it.
    let mut l = login_ok(&s, "owner@acme.test").await;
    let started = s.clock.now();
    let end = started + chrono::Duration::days(30);
    let mut refreshes = 0;
    loop {
        s.clock.advance(chrono::Duration::hours(7));
        let res = refresh(&s, &l.refresh).await;
        if s.clock.now() < end {
            assert_eq!(
                res.status(),
                StatusCode::OK,
                "alive {} h after sign-in",
                (s.clock.now() - started).num_hours()
            );
            l = login_from(res).await;
            refreshes += 1;
        } else {
            assert_eq!(
                res.status(),
                StatusCode::UNAUTHORIZED,
                "absolute 30 days ({} h after sign-in, 7 h after the last refresh)",
                (s.clock.now() - started).num_hours()
            );
            break;
        }
    }
    assert_eq!(refreshes, 102, "kept alive right up to the end");
}

async fn password_change_signs_out_other_sessions(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let b = login_ok(&s, "owner@acme.test").await;
    let change = |current: &str, new: &str| {
        s.client
            .post(s.url("/v1/auth/password"))
            .bearer_auth(&a.access)
            .json(&json!({"current_password": current, "new_password": new}))
            .send()
    };
    let res = change("Wrong-Current-1", "Another-Strong-Passw0rd")
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = change(PASSWORD, "weak").await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = change(PASSWORD, "Another-Strong-Passw0rd").await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(&s, &a.access).await.status(), StatusCode::OK);
    assert_eq!(me(&s, &b.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        login(&s, "owner@acme.test", PASSWORD, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&s, "owner@acme.test", "Another-Strong-Passw0rd", None)
            .await
            .status(),
        StatusCode::OK
    );
    assert!(
        audit_actions(&s, "acme")
            .await
            .contains(&"auth.password.changed".to_owned())
    );
}

/// Reads the newest reset link's token out of the sealed outbox, as the mail
/// sender would (a completed reset also queues a `password_reset_notice`).
async fn reset_token_from_outbox(s: &TestServer) -> String {
    let rows: Vec<(uuid::Uuid, Vec<u8>, String)> =
        s.db.global_read()
            .await
            .unwrap()
            .fetch_all(
                "SELECT id, sealed_body, kind FROM email_outbox WHERE kind = 'password_reset' \
                 ORDER BY created_at DESC, id DESC",
                vec![],
            )
            .await
            .unwrap();
    let (id, sealed, kind) = rows.first().unwrap().clone();
    assert_eq!(kind, "password_reset");
    let body = s
        .state
        .keys
        .master
        .open(1, &stockade::email::outbox_aad(id), &sealed)
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    let text = body["body"].as_str().unwrap();
    let token = text
        .split("#token=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    // The outbox row does not hold the token in clear.
    assert!(!sealed.windows(token.len()).any(|w| w == token.as_bytes()));
    token.to_owned()
}

async fn password_reset_flow(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    for email in ["nobody@acme.test", "not-an-email", "owner@acme.test"] {
        let res = s
            .client
            .post(s.url("/v1/auth/password-reset/request"))
            .json(&json!({"email": email}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED, "{email}");
    }
    let token = reset_token_from_outbox(&s).await;
    let confirm = |token: String, pw: &'static str| {
        s.client
            .post(s.url("/v1/auth/password-reset/confirm"))
            .json(&json!({"token": token, "new_password": pw}))
            .send()
    };
    assert_eq!(
        confirm("x".repeat(43), "Reset-Strong-Passw0rd")
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        confirm(token.clone(), "weak").await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        confirm(token.clone(), "Reset-Strong-Passw0rd")
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        me(&s, &a.access).await.status(),
        StatusCode::UNAUTHORIZED,
        "all sessions revoked"
    );
    assert_eq!(
        confirm(token.clone(), "Reset-Strong-Passw0rd-2")
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST,
        "single use"
    );
    assert_eq!(
        login(&s, "owner@acme.test", "Reset-Strong-Passw0rd", None)
            .await
            .status(),
        StatusCode::OK
    );
    // Expiry after 30 minutes, with fresh, unused links: the per-address
    // limit (sign-up, verification and the requests above spent it) is
    // given its 15 minutes back first, so each request really issues one.
    let request = || async {
        s.clock.advance(chrono::Duration::minutes(15));
        let res = s
            .client
            .post(s.url("/v1/auth/password-reset/request"))
            .json(&json!({"email": "owner@acme.test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        reset_token_from_outbox(&s).await
    };
    let late = request().await;
    assert_ne!(late, token, "a new link was issued");
    s.clock.advance(chrono::Duration::minutes(30));
    assert_eq!(
        confirm(late.clone(), "Late-Strong-Passw0rd")
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST,
        "expired at 30 minutes"
    );
    let in_time = request().await;
    assert_ne!(in_time, late, "a new link was issued");
    s.clock.advance(chrono::Duration::minutes(29));
    assert_eq!(
        confirm(in_time, "In-Time-Strong-Passw0rd")
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT,
        "still valid at 29 minutes"
    );
    let actions = audit_actions(&s, "acme").await;
    assert!(actions.contains(&"auth.password.reset_requested".to_owned()));
    assert!(actions.contains(&"auth.password.reset_completed".to_owned()));
}

async fn several_tenants_need_a_choice_and_can_switch(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "vendor", "partner@example.test").await;
    let _ = a;
    signup(&s, "partner-co", "boss@partner.test").await;
    // Add the first user into the second tenant as a viewer.
    let user = stockade::identity::find_user_by_email(
        &s.db,
        &stockade::identity::Email::parse("partner@example.test").unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let t = stockade::tenancy::find_by_slug(&s.db, "partner-co")
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_tx(t.id).await.unwrap();
    stockade::tenancy::add_member(&mut tx, s.clock.as_ref(), user.id, "viewer")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let res = login(&s, "partner@example.test", PASSWORD, None).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let p: Problem = res.json().await.unwrap();
    assert_eq!(p.code, "auth.tenant_required");
    let res = login(&s, "partner@example.test", PASSWORD, Some("partner-co")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let l = login_from(res).await;
    let m: Value = me(&s, &l.access).await.json().await.unwrap();
    assert_eq!(
        (m["tenant"]["slug"].as_str(), m["role"].as_str()),
        (Some("partner-co"), Some("viewer"))
    );
    let res = s
        .client
        .post(s.url("/v1/auth/switch-tenant"))
        .bearer_auth(&l.access)
        .json(&json!({"tenant": "vendor"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let switched = login_from(res).await;
    let m: Value = me(&s, &switched.access).await.json().await.unwrap();
    assert_eq!(
        (m["tenant"]["slug"].as_str(), m["role"].as_str()),
        (Some("vendor"), Some("owner"))
    );
    // Not a member: not found. Not a tenant of mine: not found either.
    signup(&s, "stranger", "s@stranger.test").await;
    let res = s
        .client
        .post(s.url("/v1/auth/switch-tenant"))
        .bearer_auth(&l.access)
        .json(&json!({"tenant": "stranger"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(
        audit_actions(&s, "vendor")
            .await
            .contains(&"auth.tenant.switched".to_owned())
    );
}

async fn bcrypt_users_are_rehashed_on_login(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    signup(&s, "acme", "owner@acme.test").await;
    let hash = bcrypt::hash("Imported-Passw0rd-1", 4).unwrap();
    let mut tx = s.db.global_tx().await.unwrap();
    let user = stockade::identity::create_user_with_password(
        &mut tx,
        s.clock.as_ref(),
        &stockade::identity::Email::parse("old@acme.test").unwrap(),
        "Old",
        Some(&hash),
    )
    .await
    .unwrap();
    let t = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let mut tx = tx.scoped(t.id).await.unwrap();
    stockade::tenancy::add_member(&mut tx, s.clock.as_ref(), user.id, "editor")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        login(&s, "old@acme.test", "Imported-Passw0rd-1", None)
            .await
            .status(),
        StatusCode::OK
    );
    let stored = stockade::identity::find_auth_user(&s.db, "old@acme.test")
        .await
        .unwrap()
        .unwrap()
        .password_hash
        .unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert_eq!(
        login(&s, "old@acme.test", "Imported-Passw0rd-1", None)
            .await
            .status(),
        StatusCode::OK
    );
    let _ = StdDuration::ZERO;
}

async fn tenant_settings_drive_timeouts_and_password_policy(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let first = signup(&s, "acme", "owner@acme.test").await;
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let mut settings = stockade::tenancy::TenantSettings {
        session_idle_secs: 600,
        ..Default::default()
    };
    settings.password_policy.min_length = 16;
    let mut tx = s.db.tenant_tx(tenant.id).await.unwrap();
    stockade::tenancy::settings::save(&mut tx, s.clock.as_ref(), &settings)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let l = login_ok(&s, "owner@acme.test").await;
    s.clock.advance(chrono::Duration::minutes(11));
    assert_eq!(
        refresh(&s, &l.refresh).await.status(),
        StatusCode::UNAUTHORIZED,
        "tenant idle timeout"
    );
    // The session made before the change keeps the timeout it was made with.
    let first = refresh(&s, &first.refresh).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first = login_from(first).await;
    let res = s
        .client
        .post(s.url("/v1/auth/password"))
        .bearer_auth(&first.access)
        .json(&json!({"current_password": PASSWORD, "new_password": "Strong-Pw-12a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let p: Problem = res.json().await.unwrap();
    assert!(p.errors.unwrap().to_string().contains("password.too_short"));
    let res = s
        .client
        .post(s.url("/v1/auth/password"))
        .bearer_auth(&first.access)
        .json(&json!({"current_password": PASSWORD, "new_password": "Much-Longer-Strong-Pw-12a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // Out-of-range settings are refused.
    settings.session_idle_secs = 10;
    let mut tx = s.db.tenant_tx(tenant.id).await.unwrap();
    assert!(
        stockade::tenancy::settings::save(&mut tx, s.clock.as_ref(), &settings)
            .await
            .is_err()
    );
}

async fn session_checks_are_cached_and_invalidated(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    assert_eq!(me(&s, &a.access).await.status(), StatusCode::OK);
    assert_eq!(me(&s, &a.access).await.status(), StatusCode::OK);
    // A second handle on the same database, as another process would have.
    let other = match backend {
        Backend::Sqlite => {
            stockade::db::Db::open_sqlite_file(&s.state.config.data_dir.join("stockade.db"))
                .await
                .unwrap()
        }
        Backend::Postgres => {
            let url = secrecy::ExposeSecret::expose_secret(
                &s.state.config.database_url.as_ref().unwrap().value,
            )
            .to_owned();
            stockade::db::Db::open_postgres(&url).await.unwrap()
        }
    };
    let sid: uuid::Uuid = b64json(a.access.split('.').nth(1).unwrap())["sid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let mut tx = other.tenant_tx(tenant.id).await.unwrap();
    tx.execute(
        "UPDATE sessions SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2",
        vec![sid.into(), s.clock.now().into()],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    match backend {
        Backend::Sqlite => {
            assert_eq!(s.state.session_cache.len(), 1);
            // Cached: another process's change is seen within the bound.
            assert_eq!(me(&s, &a.access).await.status(), StatusCode::OK);
            s.clock
                .advance(stockade::sessions::cache::CROSS_PROCESS_TTL);
            assert_eq!(me(&s, &a.access).await.status(), StatusCode::UNAUTHORIZED);
        }
        Backend::Postgres => {
            // Cluster mode does not cache: seen at once.
            assert!(s.state.session_cache.is_empty());
            assert_eq!(me(&s, &a.access).await.status(), StatusCode::UNAUTHORIZED);
        }
    }
}

crate::both_servers!(
    step_up_reauthentication,
    tenant_settings_drive_timeouts_and_password_policy,
    session_checks_are_cached_and_invalidated,
    signup_issues_tokens_cookie_and_claims,
    signup_rules,
    unknown_email_and_wrong_password_are_indistinguishable,
    ip_rate_limit_rejects_before_hashing_and_ignores_untrusted_forwarded_for,
    trusted_proxy_forwarded_for_is_used,
    account_lockout_doubles_and_counts_unknown_emails_alike,
    a_successful_sign_in_clears_the_failure_count,
    refresh_rotates_and_reuse_revokes_the_session,
    concurrent_refreshes_exactly_one_wins,
    concurrent_refreshes_inside_the_grace_window_get_siblings,
    a_stale_sighting_cannot_rotate_a_token_twice,
    group_committed_rotations_behave_like_separate_transactions,
    a_session_revoked_after_the_sighting_is_not_rotated,
    a_refresh_does_not_empty_the_session_cache,
    reuse_grace_window_gives_a_sibling_token,
    revocation_takes_effect_on_the_next_request,
    deactivation_and_suspension_revoke_at_once,
    expired_and_forged_tokens_are_refused,
    idle_and_absolute_timeouts,
    password_change_signs_out_other_sessions,
    password_reset_flow,
    several_tenants_need_a_choice_and_can_switch,
    bcrypt_users_are_rehashed_on_login,
);

#[tokio::test]
async fn a_rotated_signing_key_is_picked_up_and_old_tokens_still_verify() {
    let s = TestServer::start().await;
    let a = signup(&s, "acme", "owner@acme.test").await;
    let old_kid = b64json(a.access.split('.').next().unwrap())["kid"].clone();
    let new_kid = stockade::crypto::keyring::rotate(&s.db, &s.state.keys, s.clock.as_ref())
        .await
        .unwrap();
    stockade::app::reload_keyring(&s.state).await;
    let b = login_ok(&s, "owner@acme.test").await;
    let header = b64json(b.access.split('.').next().unwrap());
    assert_eq!(header["kid"], json!(new_kid));
    assert_ne!(header["kid"], old_kid);
    // Both verify during the overlap; the JWKS lists both.
    assert_eq!(me(&s, &a.access).await.status(), StatusCode::OK);
    assert_eq!(me(&s, &b.access).await.status(), StatusCode::OK);
    let jwks: Value = s
        .client
        .get(s.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn wrong_audience_issuer_and_key_are_refused() {
    let s = TestServer::start().await;
    let a = signup(&s, "acme", "owner@acme.test").await;
    let claims: stockade::crypto::jwt::Claims =
        serde_json::from_value(b64json(a.access.split('.').nth(1).unwrap())).unwrap();
    let keyring = s.state.keyring();
    let reissue = |c: &stockade::crypto::jwt::Claims| keyring.issue(c).unwrap();
    // The same claims re-signed by the server verify (the baseline).
    assert_eq!(me(&s, &reissue(&claims)).await.status(), StatusCode::OK);
    let mut wrong_aud = claims.clone();
    wrong_aud.aud = "another-service".into();
    let mut wrong_iss = claims.clone();
    wrong_iss.iss = "https://evil.example".into();
    for token in [reissue(&wrong_aud), reissue(&wrong_iss)] {
        assert_eq!(me(&s, &token).await.status(), StatusCode::UNAUTHORIZED);
    }
    // A key the server never had, even under the server's own kid.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let kid = keyring.current_kid().to_owned();
    let foreign = stockade::crypto::jwt::Keyring::new(
        stockade::crypto::jwt::KeyEntry::signing(
            kid,
            stockade::crypto::jwt::KeySecret::Ed25519(&stranger),
        )
        .unwrap(),
        [],
    )
    .unwrap();
    assert_eq!(
        me(&s, &foreign.issue(&claims).unwrap()).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn step_up_reauthentication(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    signup(&s, "beta", "other@beta.test").await;
    let m: Value = me(&s, &a.access).await.json().await.unwrap();
    let signed_in_at = m["authenticated_at"].clone();
    assert!(signed_in_at.is_string(), "signing in proves the password");
    s.clock.advance(chrono::Duration::minutes(6));
    let reauth = |token: String, pw: &'static str| {
        s.client
            .post(s.url("/v1/auth/reauth"))
            .bearer_auth(token)
            .json(&json!({"password": pw}))
            .send()
    };
    assert_eq!(
        reauth(a.access.clone(), "Wrong-Passw0rd-1")
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        reauth(a.access.clone(), PASSWORD).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let m: Value = me(&s, &a.access).await.json().await.unwrap();
    assert_ne!(m["authenticated_at"], signed_in_at);
    let actions = audit_actions(&s, "acme").await;
    assert_eq!(
        actions
            .iter()
            .filter(|x| *x == "auth.session.reauthenticated")
            .count(),
        2
    );
    // A session made by switching tenant has no password proof of its own.
    let user = stockade::identity::find_user_by_email(
        &s.db,
        &stockade::identity::Email::parse("owner@acme.test").unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let beta = stockade::tenancy::find_by_slug(&s.db, "beta")
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_tx(beta.id).await.unwrap();
    stockade::tenancy::add_member(&mut tx, s.clock.as_ref(), user.id, "viewer")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let res = s
        .client
        .post(s.url("/v1/auth/switch-tenant"))
        .bearer_auth(&a.access)
        .json(&json!({"tenant": "beta"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let switched = login_from(res).await;
    let m: Value = me(&s, &switched.access).await.json().await.unwrap();
    assert!(m["authenticated_at"].is_null());
}

#[tokio::test]
async fn lockout_history_is_forgotten_after_a_quiet_day() {
    let s = TestServer::start_with(&[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")], true).await;
    signup(&s, "acme", "owner@acme.test").await;
    let mut n = 0u32;
    let mut fail_ten = || {
        let mut reqs = Vec::new();
        for _ in 0..10 {
            n += 1;
            reqs.push(
                s.client
                    .post(s.url("/v1/auth/login"))
                    .header("x-forwarded-for", format!("198.51.{}.{}", n / 200, n % 200))
                    .json(&json!({"email": "owner@acme.test", "password": "Wrong-Password-1"})),
            );
        }
        reqs
    };
    for req in fail_ten() {
        assert_eq!(req.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    // Locked for 15 minutes; a day later the history is gone, so the next
    // lockout is 15 minutes again, not 30.
    s.clock.advance(chrono::Duration::hours(25));
    for req in fail_ten() {
        assert_eq!(req.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    let res = s
        .client
        .post(s.url("/v1/auth/login"))
        .header("x-forwarded-for", "203.0.113.250")
        .json(&json!({"email": "owner@acme.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "900");
}
