//! Sign-in (SPEC §2.1–2.2), on SQLite and PostgreSQL: an unknown email and
//! a wrong password look alike, the per-IP rate limit (and which forwarded
//! address it trusts), the account lockout and its history, choosing and
//! switching among several tenants, and bcrypt hashes rehashed on sign-in.
//! It proves what a password sign-in answers; it defines no fixture other
//! files use (those stay in `auth.rs`).

use std::time::Duration as StdDuration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade::http::Problem;

use crate::auth::{PASSWORD, audit_actions, login, login_from, me, server, signup};
use crate::testkit::{Backend, TestServer};

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

crate::both_servers!(
    unknown_email_and_wrong_password_are_indistinguishable,
    ip_rate_limit_rejects_before_hashing_and_ignores_untrusted_forwarded_for,
    trusted_proxy_forwarded_for_is_used,
    account_lockout_doubles_and_counts_unknown_emails_alike,
    a_successful_sign_in_clears_the_failure_count,
    several_tenants_need_a_choice_and_can_switch,
    bcrypt_users_are_rehashed_on_login,
);

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
