//! Issue #19 item 3, end to end with a software authenticator
//! (`webauthn_kit::Device`) against the real server, on SQLite and
//! PostgreSQL: registering a security key and a platform passkey (after a
//! step-up; the first returns the recovery codes), the list, signing in
//! with the password then a credential (`POST /v1/auth/mfa` and
//! `login/finish`; the token's `amr` names both factors), a passwordless
//! sign-in (`amr` the credential's method alone), a step-up with a
//! credential, and removal (the removed credential no longer signs in).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::auth::{PASSWORD, audit_actions, signup};
use crate::testkit::Backend;
use crate::webauthn_kit::{
    Device, amr_of, complete, origin, password_step, post, post_from, register,
    second_factor_options, server,
};

const PAT: &str = "pat@acme.test";

async fn list(s: &crate::testkit::TestServer, access: &str) -> Vec<Value> {
    let res = s
        .client
        .get(s.url("/v1/auth/webauthn/credentials"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["credentials"].as_array().unwrap().clone()
}

async fn register_sign_in_passwordless_and_remove(backend: Backend) {
    let Some(s) = server(backend).await else {
        return;
    };
    let pat = signup(&s, "acme", PAT).await;
    // Six minutes after signing in, registering needs a fresh step-up.
    s.clock.advance(chrono::Duration::minutes(6));
    let (status, body) = post(
        &s,
        Some(&pat.access),
        "/v1/auth/webauthn/register/begin",
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "auth.step_up_required");
    let (status, body) = post(
        &s,
        Some(&pat.access),
        "/v1/auth/reauth",
        &json!({"password": PASSWORD}),
    )
    .await;
    assert!(status.is_success(), "{status} {body}");

    let mut key = Device::security_key();
    let mut laptop = Device::platform();
    let first = register(&s, &pat.access, &mut key, "  YubiKey 5  ").await;
    assert_eq!(first["name"], "YubiKey 5");
    assert_eq!(first["kind"], "hwk");
    assert_eq!(first["recovery_codes"].as_array().unwrap().len(), 10);
    let second = register(&s, &pat.access, &mut laptop, "Laptop").await;
    assert_eq!(second["kind"], "swk");
    assert!(
        second.get("recovery_codes").is_none(),
        "codes come once, with the first factor"
    );
    let listed = list(&s, &pat.access).await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["name"], "YubiKey 5");
    assert_eq!(listed[1]["name"], "Laptop");
    assert!(listed.iter().all(|c| c["last_used_at"].is_null()));
    assert!(
        listed[0].get("passkey").is_none(),
        "the list shows no key material"
    );

    // Password, then the security key through POST /v1/auth/mfa.
    let step = password_step(&s, PAT).await;
    let options = second_factor_options(&s, &step).await;
    let assertion = key.assert(&origin(), &options);
    let (status, body) = complete(&s, &step, &assertion).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let amr = amr_of(body["access_token"].as_str().unwrap());
    for m in ["pwd", "hwk", "mfa"] {
        assert!(amr.contains(&m.to_owned()), "{amr:?}");
    }
    // Password, then the laptop through login/finish.
    let step = password_step(&s, PAT).await;
    let options = second_factor_options(&s, &step).await;
    let assertion = laptop.assert(&origin(), &options);
    let (status, body) = post_from(
        &s,
        &step.ip,
        None,
        "/v1/auth/webauthn/login/finish",
        &json!({"mfa_token": step.token, "credential": assertion}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let amr = amr_of(body["access_token"].as_str().unwrap());
    assert!(
        amr.contains(&"swk".to_owned()) && amr.contains(&"mfa".to_owned()),
        "{amr:?}"
    );
    let listed = list(&s, &pat.access).await;
    assert!(
        listed.iter().all(|c| c["last_used_at"].is_string()),
        "{listed:?}"
    );

    // Passwordless with the laptop's discoverable credential.
    let (status, begun) = post(&s, None, "/v1/auth/webauthn/login/begin", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{begun}");
    assert!(
        begun["options"]["publicKey"]["allowCredentials"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    );
    let assertion = laptop.assert(&origin(), &begun["options"]);
    let (status, body) = post(
        &s,
        None,
        "/v1/auth/webauthn/login/finish",
        &json!({"ceremony_id": begun["ceremony_id"], "credential": assertion}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fresh = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(amr_of(&fresh), vec!["swk".to_owned()]);
    let me: Value = crate::auth::me(&s, &fresh).await.json().await.unwrap();
    assert_eq!(me["user"]["email"], PAT);

    // Removing the key (the passwordless session is a fresh proof).
    let key_id = listed[0]["id"].as_str().unwrap();
    let res = s
        .client
        .delete(s.url(&format!("/v1/auth/webauthn/credentials/{key_id}")))
        .bearer_auth(&fresh)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let listed = list(&s, &pat.access).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "Laptop");
    // The removed key signs in no more, passwordless or as a factor.
    let (_, begun) = post(&s, None, "/v1/auth/webauthn/login/begin", &json!({})).await;
    let assertion = key.assert(&origin(), &begun["options"]);
    let (status, body) = post(
        &s,
        None,
        "/v1/auth/webauthn/login/finish",
        &json!({"ceremony_id": begun["ceremony_id"], "credential": assertion}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "auth.webauthn_invalid");
    let step = password_step(&s, PAT).await;
    let options = second_factor_options(&s, &step).await;
    assert!(
        key.try_assert(&origin(), &options).is_none(),
        "the key is no longer asked for"
    );

    let actions = audit_actions(&s, "acme").await;
    let count = |a: &str| actions.iter().filter(|x| *x == a).count();
    assert_eq!(count("auth.mfa.webauthn.registered"), 2);
    assert_eq!(count("auth.mfa.webauthn.removed"), 1);
    assert_eq!(count("auth.mfa.recovery_codes.regenerated"), 1);
}

async fn a_credential_proves_a_step_up(backend: Backend) {
    let Some(s) = server(backend).await else {
        return;
    };
    let pat = signup(&s, "acme", PAT).await;
    let mut key = Device::security_key();
    let (status, body) = post(
        &s,
        Some(&pat.access),
        "/v1/auth/reauth",
        &json!({"password": PASSWORD}),
    )
    .await;
    assert!(status.is_success(), "{body}");
    register(&s, &pat.access, &mut key, "Key").await;
    s.clock.advance(chrono::Duration::minutes(6));
    let (status, _) = post(
        &s,
        Some(&pat.access),
        "/v1/auth/webauthn/register/begin",
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, begun) = post(
        &s,
        Some(&pat.access),
        "/v1/auth/webauthn/reauth/begin",
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{begun}");
    let assertion = key.assert(&origin(), &begun["options"]);
    let (status, body) = post(
        &s,
        Some(&pat.access),
        "/v1/auth/reauth",
        &json!({"webauthn": assertion}),
    )
    .await;
    assert!(status.is_success(), "{status} {body}");
    let (status, body) = post(
        &s,
        Some(&pat.access),
        "/v1/auth/webauthn/register/begin",
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The same assertion again: its ceremony is spent.
    let (status, body) = post(
        &s,
        Some(&pat.access),
        "/v1/auth/reauth",
        &json!({"webauthn": assertion}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "auth.webauthn_ceremony_invalid");
}

crate::both_servers!(
    register_sign_in_passwordless_and_remove,
    a_credential_proves_a_step_up
);
