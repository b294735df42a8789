//! Issue #19 items 3 and 9, as the attacker, on SQLite and PostgreSQL: a
//! cloned authenticator (its signature counter goes backwards) is refused
//! and audited; an assertion for another challenge, another user's
//! sign-in, or another origin is refused and changes nothing (counter and
//! `last_used_at` as they were), and another user's credential cannot be
//! removed; a replayed assertion, a ceremony used
//! twice, an expired one and another user's registration ceremony are
//! refused; oversized, non-CBOR, truncated or misshapen responses are 4xx
//! (never 5xx) and store nothing; an impersonation and an API key cannot
//! register; wrong assertions count toward the account lockout.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::auth::{audit_actions, signup};
use crate::testkit::{Backend, TestServer};
use crate::webauthn_kit::{
    Device, ORIGIN, complete, credential_rows, origin, password_step, post, register,
    second_factor_options, server,
};

const PAT: &str = "pat@acme.test";
const BOB: &str = "bob@beta.test";

/// Pat (acme) with a registered security key.
async fn pat_with_key(s: &TestServer) -> (crate::auth::Login, Device) {
    let pat = signup(s, "acme", PAT).await;
    let mut key = Device::security_key();
    register(s, &pat.access, &mut key, "Key").await;
    (pat, key)
}

fn refused(answer: (StatusCode, Value), code: &str) {
    assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{}", answer.1);
    assert_eq!(answer.1["code"], code, "{}", answer.1);
}

async fn a_cloned_authenticator_is_refused_and_audited(backend: Backend) {
    let Some(s) = server(backend).await else {
        return;
    };
    let (_pat, mut key) = pat_with_key(&s).await;
    let mut clone = key.clone_device();
    // The original signs in twice (counter 1, then 2).
    for _ in 0..2 {
        let step = password_step(&s, PAT).await;
        let options = second_factor_options(&s, &step).await;
        let (status, body) = complete(&s, &step, &key.assert(&origin(), &options)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let before = credential_rows(&s).await;
    // The clone signs with counter 1: a valid signature, a counter behind.
    let step = password_step(&s, PAT).await;
    let options = second_factor_options(&s, &step).await;
    refused(
        complete(&s, &step, &clone.assert(&origin(), &options)).await,
        "auth.webauthn_invalid",
    );
    assert_eq!(
        credential_rows(&s).await,
        before,
        "nothing recorded for the clone"
    );
    let actions = audit_actions(&s, "acme").await;
    assert!(
        actions.contains(&"auth.mfa.webauthn.counter_regression".to_owned()),
        "{actions:?}"
    );
    assert!(actions.contains(&"auth.mfa.failed".to_owned()));
    // The original still works.
    let step = password_step(&s, PAT).await;
    let options = second_factor_options(&s, &step).await;
    assert_eq!(
        complete(&s, &step, &key.assert(&origin(), &options))
            .await
            .0,
        StatusCode::OK
    );
}

async fn assertions_for_another_challenge_user_or_origin_change_nothing(backend: Backend) {
    let Some(s) = server(backend).await else {
        return;
    };
    let (pat, mut key) = pat_with_key(&s).await;
    let bob = signup(&s, "beta", BOB).await;
    let mut bobs = Device::security_key();
    register(&s, &bob.access, &mut bobs, "Bob's key").await;
    let before = credential_rows(&s).await;

    // Another challenge: options of a ceremony replaced by a newer one.
    let step = password_step(&s, PAT).await;
    let stale = second_factor_options(&s, &step).await;
    let _newer = second_factor_options(&s, &step).await;
    refused(
        complete(&s, &step, &key.assert(&origin(), &stale)).await,
        "auth.webauthn_invalid",
    );

    // Another user: Pat's assertion presented on Bob's sign-in.
    let pats = password_step(&s, PAT).await;
    let assertion = key.assert(&origin(), &second_factor_options(&s, &pats).await);
    let bobs_step = password_step(&s, BOB).await;
    let _ = second_factor_options(&s, &bobs_step).await;
    refused(
        complete(&s, &bobs_step, &assertion).await,
        "auth.webauthn_invalid",
    );
    // Bob's answer on Pat's sign-in, for Pat's ceremony: Bob's key is not Pat's.
    let pats = password_step(&s, PAT).await;
    let mut forged = second_factor_options(&s, &pats).await;
    forged["publicKey"]["allowCredentials"] = json!([]);
    let bobs_answer = bobs.assert(&origin(), &forged);
    refused(
        complete(&s, &pats, &bobs_answer).await,
        "auth.webauthn_invalid",
    );

    // Another origin: a subdomain, another port, another scheme's host.
    for bad in ["https://evil.id.example.com", "https://id.example.com:8443"] {
        let step = password_step(&s, PAT).await;
        let options = second_factor_options(&s, &step).await;
        let assertion = key.assert(&url::Url::parse(bad).unwrap(), &options);
        refused(
            complete(&s, &step, &assertion).await,
            "auth.webauthn_invalid",
        );
    }
    assert_eq!(
        credential_rows(&s).await,
        before,
        "no counter or last use recorded"
    );

    // Another user's credential cannot be removed by Bob (404, still there).
    let res = s
        .client
        .get(s.url("/v1/auth/webauthn/credentials"))
        .bearer_auth(&pat.access)
        .send()
        .await
        .unwrap();
    let listed: Value = res.json().await.unwrap();
    let pats_id = listed["credentials"][0]["id"].as_str().unwrap().to_owned();
    let res = s
        .client
        .delete(s.url(&format!("/v1/auth/webauthn/credentials/{pats_id}")))
        .bearer_auth(&bob.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = s
        .client
        .delete(s.url("/v1/auth/webauthn/credentials/not-a-uuid"))
        .bearer_auth(&bob.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(credential_rows(&s).await, before);

    // Another user's registration ceremony: refused, nothing stored, and
    // Pat's ceremony is still Pat's to finish.
    let (status, begun) = post(
        &s,
        Some(&pat.access),
        "/v1/auth/webauthn/register/begin",
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut second = Device::platform();
    let credential = second.register(&origin(), &begun["options"]);
    let body =
        json!({"ceremony_id": begun["ceremony_id"], "name": "stolen", "credential": credential});
    refused(
        post(
            &s,
            Some(&bob.access),
            "/v1/auth/webauthn/register/finish",
            &body,
        )
        .await,
        "auth.webauthn_ceremony_invalid",
    );
    assert_eq!(credential_rows(&s).await.len(), 2);
    let (status, _) = post(
        &s,
        Some(&pat.access),
        "/v1/auth/webauthn/register/finish",
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
}

async fn replays_and_spent_or_expired_ceremonies_are_refused(backend: Backend) {
    let Some(s) = server(backend).await else {
        return;
    };
    let (_pat, mut key) = pat_with_key(&s).await;
    let step = password_step(&s, PAT).await;
    let assertion = key.assert(&origin(), &second_factor_options(&s, &step).await);
    assert_eq!(complete(&s, &step, &assertion).await.0, StatusCode::OK);
    // Replayed on the spent token, then on a new sign-in's ceremony.
    let (status, body) = complete(&s, &step, &assertion).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "auth.mfa_token_invalid");
    let step = password_step(&s, PAT).await;
    let _ = second_factor_options(&s, &step).await;
    refused(
        complete(&s, &step, &assertion).await,
        "auth.webauthn_invalid",
    );
    // Without a ceremony at all.
    refused(
        complete(&s, &step, &assertion).await,
        "auth.webauthn_ceremony_invalid",
    );

    // A passwordless ceremony used twice.
    let (_, begun) = post(&s, None, "/v1/auth/webauthn/login/begin", &json!({})).await;
    let assertion = key.assert(&origin(), &begun["options"]);
    let finish = json!({"ceremony_id": begun["ceremony_id"], "credential": assertion});
    let (status, body) = post(&s, None, "/v1/auth/webauthn/login/finish", &finish).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    refused(
        post(&s, None, "/v1/auth/webauthn/login/finish", &finish).await,
        "auth.webauthn_ceremony_invalid",
    );

    // An expired one (five minutes).
    let before = credential_rows(&s).await;
    let (_, begun) = post(&s, None, "/v1/auth/webauthn/login/begin", &json!({})).await;
    let assertion = key.assert(&origin(), &begun["options"]);
    s.clock.advance(Duration::minutes(6));
    let finish = json!({"ceremony_id": begun["ceremony_id"], "credential": assertion});
    refused(
        post(&s, None, "/v1/auth/webauthn/login/finish", &finish).await,
        "auth.webauthn_ceremony_invalid",
    );
    assert_eq!(credential_rows(&s).await, before);
}

async fn malformed_oversized_and_non_cbor_responses_are_4xx(backend: Backend) {
    let Some(s) = server(backend).await else {
        return;
    };
    let pat = signup(&s, "acme", PAT).await;
    let mut dev = Device::security_key();
    let (_, begun) = post(
        &s,
        Some(&pat.access),
        "/v1/auth/webauthn/register/begin",
        &json!({}),
    )
    .await;
    let good = dev.register(&origin(), &begun["options"]);
    let finish = |credential: Value, name: &str| json!({"ceremony_id": begun["ceremony_id"], "name": name, "credential": credential});
    let path = "/v1/auth/webauthn/register/finish";
    // Names: control, bidi, too long, empty — before the ceremony is taken.
    for name in ["tab\there", "\u{202e}yek", &"x".repeat(65), "   "] {
        refused(
            post(&s, Some(&pat.access), path, &finish(good.clone(), name)).await,
            "mfa.webauthn_name_invalid",
        );
    }
    // Misshapen: no 400 but webauthn_malformed.
    refused(
        post(&s, Some(&pat.access), path, &finish(json!({"id": 1}), "k")).await,
        "auth.webauthn_malformed",
    );
    // Oversized: the body is capped.
    let mut big = good.clone();
    big["response"]["attestationObject"] = json!("A".repeat(70 * 1024));
    let (status, body) = post(&s, Some(&pat.access), path, &finish(big, "k")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    // Truncated JSON.
    let text = serde_json::to_string(&finish(good.clone(), "k")).unwrap();
    let res = s
        .client
        .post(s.url(path))
        .bearer_auth(&pat.access)
        .header("content-type", "application/json")
        .body(text[..text.len() / 2].to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // Not CBOR: base64url of plain text.
    let mut junk = good.clone();
    junk["response"]["attestationObject"] = json!("bm90LWNib3ItYXQtYWxs");
    refused(
        post(&s, Some(&pat.access), path, &finish(junk, "k")).await,
        "auth.webauthn_invalid",
    );
    assert!(credential_rows(&s).await.is_empty(), "nothing stored");
    // The ceremony was spent by that attempt: the good answer needs a new one.
    refused(
        post(&s, Some(&pat.access), path, &finish(good, "k")).await,
        "auth.webauthn_ceremony_invalid",
    );

    // The second-factor path: oversized inside a body the global cap admits.
    let mut key = Device::security_key();
    register(&s, &pat.access, &mut key, "Key").await;
    let step = password_step(&s, PAT).await;
    let mut assertion = key.assert(&origin(), &second_factor_options(&s, &step).await);
    let good = assertion.clone();
    assertion["response"]["signature"] = json!("A".repeat(100 * 1024));
    let (status, body) = complete(&s, &step, &assertion).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["code"], "auth.webauthn_too_large");
    refused(
        complete(&s, &step, &json!({"rawId": "%%%"})).await,
        "auth.webauthn_malformed",
    );
    // Neither counted nor spent: the good assertion still completes.
    assert_eq!(complete(&s, &step, &good).await.0, StatusCode::OK);
}

async fn impersonation_and_api_keys_cannot_register(backend: Backend) {
    let Some(s) = crate::auth::server(
        backend,
        &[
            ("STOCKADE_PUBLIC_URL", ORIGIN),
            ("STOCKADE_PLATFORM_OWNERS", "root@platform.test"),
        ],
    )
    .await
    else {
        return;
    };
    let pat = signup(&s, "acme", PAT).await;
    let (key, _) = crate::apikeys::create_key(&s, &pat.access, &["settings:manage"]).await;
    let (status, body) = post(
        &s,
        Some(&key),
        "/v1/auth/webauthn/register/begin",
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "auth.api_key_not_allowed");
    let res = s
        .client
        .get(s.url("/v1/auth/webauthn/credentials"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // A platform owner (with a factor, as platform routes require).
    let root = signup(&s, "root-ops", "root@platform.test").await;
    let mut roots = Device::platform();
    register(&s, &root.access, &mut roots, "Root key").await;
    // ...confirmed in this session (platform routes need it proved).
    let (_, begun) = post(
        &s,
        Some(&root.access),
        "/v1/auth/webauthn/reauth/begin",
        &json!({}),
    )
    .await;
    let assertion = roots.assert(&origin(), &begun["options"]);
    let (status, body) = post(
        &s,
        Some(&root.access),
        "/v1/auth/reauth",
        &json!({"webauthn": assertion}),
    )
    .await;
    assert!(status.is_success(), "{body}");
    let me: Value = crate::auth::me(&s, &pat.access).await.json().await.unwrap();
    let (status, body) = post(
        &s,
        Some(&root.access),
        "/v1/platform/impersonate",
        &json!({"user_id": me["user"]["id"], "tenant": "acme",
                "reason": "support ticket #42", "confirm": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let marked = body["access_token"].as_str().unwrap();
    for path in [
        "/v1/auth/webauthn/register/begin",
        "/v1/auth/webauthn/reauth/begin",
    ] {
        let (status, body) = post(&s, Some(marked), path, &json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path} {body}");
        assert_eq!(body["code"], "platform.impersonation_forbidden");
    }
    assert_eq!(credential_rows(&s).await.len(), 1, "only root's");
}

async fn wrong_assertions_count_toward_the_lockout(backend: Backend) {
    let Some(s) = crate::auth::server(
        backend,
        &[
            ("STOCKADE_PUBLIC_URL", ORIGIN),
            ("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await
    else {
        return;
    };
    let (pat, mut key) = pat_with_key(&s).await;
    let evil = url::Url::parse("https://id.example.com:8443").unwrap();
    // Each attempt from its own address: the per-address limit stays out of the way.
    let send = |n: u32, path: &'static str, body: Value| {
        let req = s
            .client
            .post(s.url(path))
            .bearer_auth(&pat.access)
            .header("x-forwarded-for", format!("198.51.100.{}", n % 250 + 1))
            .json(&body);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for n in 0..10u32 {
        let (_, begun) = send(2 * n, "/v1/auth/webauthn/reauth/begin", json!({})).await;
        let wrong = key.assert(&evil, &begun["options"]);
        refused(
            send(2 * n + 1, "/v1/auth/reauth", json!({"webauthn": wrong})).await,
            "auth.webauthn_invalid",
        );
    }
    // Locked: even the right assertion is not checked.
    let (_, begun) = send(100, "/v1/auth/webauthn/reauth/begin", json!({})).await;
    let right = key.assert(&origin(), &begun["options"]);
    let (status, body) = send(101, "/v1/auth/reauth", json!({"webauthn": right})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "auth.account_locked");
}

crate::both_servers!(
    a_cloned_authenticator_is_refused_and_audited,
    assertions_for_another_challenge_user_or_origin_change_nothing,
    replays_and_spent_or_expired_ceremonies_are_refused,
    malformed_oversized_and_non_cbor_responses_are_4xx,
    impersonation_and_api_keys_cannot_register,
    wrong_assertions_count_toward_the_lockout,
);
