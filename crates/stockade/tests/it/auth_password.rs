//! The password after sign-in (SPEC §2.1, §2.3), on SQLite and PostgreSQL:
//! step-up reauthentication, a password change signing out the other
//! sessions, and the reset flow through the emailed link. It proves these
//! three routes; the account lockout they share is `auth_signin.rs` and
//! `lockout_everywhere.rs`, and this file defines no fixture other files use.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::auth::{PASSWORD, audit_actions, login, login_from, login_ok, me, server, signup};
use crate::testkit::{Backend, TestServer};

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

crate::both_servers!(
    step_up_reauthentication,
    password_change_signs_out_other_sessions,
    password_reset_flow,
);

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
            .filter(|x| *x == "auth.step_up.failed" || *x == "auth.step_up.succeeded")
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
