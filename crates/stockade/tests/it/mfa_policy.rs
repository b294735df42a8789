//! Who must have a second factor (SPEC §2.4, issue #19 items 4 and 5), on
//! SQLite and PostgreSQL: the tenant policy (`off`, `admins`, `all`) lets a
//! covered member without a factor do nothing but enrol; platform owners
//! always need one, used in the session; a sign-in link is a first factor
//! only; a tenant switch carries how the session was signed in. Attacks: an
//! unenrolled admin calling every other route, a policy change without a
//! step-up, an owner with a password-only session, an impersonator enrolling
//! a factor for the user.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::auth::{PASSWORD, login, login_from, server, signup};
use crate::members::join;
use crate::mfa::{amr, complete, enrol_totp, mfa_token, next_code, post, step_up_totp};
use crate::roles::call;
use crate::testkit::Backend;

async fn code(status_body: (StatusCode, Value)) -> (StatusCode, String) {
    (
        status_body.0,
        status_body.1["code"].as_str().unwrap_or("").to_owned(),
    )
}

async fn an_unenrolled_member_the_policy_covers_may_only_enrol(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let admin = join(&s, &owner.access, "admin@acme.test", "admin").await;
    let viewer = join(&s, &owner.access, "viewer@acme.test", "viewer").await;
    // The owner has no factor: a policy covering them is refused (409).
    let patch = |access: String, v: &'static str| {
        let s = &s;
        async move {
            call(
                s,
                Method::PATCH,
                "/v1/tenant/settings",
                &access,
                Some(json!({"mfa_required": v})),
            )
            .await
        }
    };
    let (status, body) = patch(owner.access.clone(), "admins").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("tenancy.mfa_self_lockout"))
    );
    let totp = enrol_totp(&s, &owner.access).await;
    // A policy change needs a fresh step-up.
    s.clock.advance(chrono::Duration::minutes(6));
    let (status, body) = patch(owner.access.clone(), "admins").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("auth.step_up_required"))
    );
    step_up_totp(&s, &owner.access, &totp).await;
    let (status, body) = patch(owner.access.clone(), "admins").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mfa_required"], "admins");
    let actions = crate::auth::audit_actions(&s, "acme").await;
    assert!(
        actions
            .iter()
            .any(|a| a == "tenancy.settings.mfa_policy.changed"),
        "{actions:?}"
    );
    // The unenrolled admin: every route but enrolment (and /v1/me, logout) answers 403.
    for (method, path) in [
        (Method::GET, "/v1/members"),
        (Method::GET, "/v1/roles"),
        (Method::GET, "/v1/api-keys"),
        (Method::GET, "/v1/audit/events"),
        (Method::GET, "/v1/tenant/settings"),
        (Method::GET, "/v1/auth/sessions"),
        (Method::POST, "/v1/auth/mfa/recovery-codes"),
        (Method::DELETE, "/v1/me"),
    ] {
        let got = code(call(&s, method.clone(), path, &admin.access, Some(json!({}))).await).await;
        assert_eq!(
            got,
            (StatusCode::FORBIDDEN, "auth.mfa_enrolment_required".into()),
            "{method} {path}"
        );
    }
    let (status, _) = call(&s, Method::GET, "/v1/me", &admin.access, None).await;
    assert_eq!(status, StatusCode::OK);
    // The viewer is not covered by `admins`.
    let (status, _) = call(&s, Method::GET, "/v1/auth/sessions", &viewer.access, None).await;
    assert_eq!(status, StatusCode::OK);
    // Enrolling (after a step-up: the admin signed in minutes ago) lifts
    // the gate on the next request.
    let (status, _) = post(
        &s,
        &admin.access,
        "/v1/auth/reauth",
        json!({"password": crate::members::NEW_PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    enrol_totp(&s, &admin.access).await;
    let (status, _) = call(&s, Method::GET, "/v1/members", &admin.access, None).await;
    assert_eq!(status, StatusCode::OK);
    // `all` covers the viewer too.
    step_up_totp(&s, &owner.access, &totp).await;
    let (status, _) = patch(owner.access.clone(), "all").await;
    assert_eq!(status, StatusCode::OK);
    let got = code(call(&s, Method::GET, "/v1/auth/sessions", &viewer.access, None).await).await;
    assert_eq!(
        got,
        (StatusCode::FORBIDDEN, "auth.mfa_enrolment_required".into())
    );
    // Bad values change nothing.
    for bad in [json!("ALL"), json!("sometimes"), json!(1), json!(["all"])] {
        let (status, _) = call(
            &s,
            Method::PATCH,
            "/v1/tenant/settings",
            &owner.access,
            Some(json!({"mfa_required": bad})),
        )
        .await;
        assert!(
            status.is_client_error() && status != StatusCode::FORBIDDEN,
            "{bad}: {status}"
        );
    }
    let (_, now) = call(&s, Method::GET, "/v1/tenant/settings", &owner.access, None).await;
    assert_eq!(now["mfa_required"], "all");
    s.stop().await;
}

/// A platform owner's session needs a factor proved in it: enrolled but
/// signed in with the password alone is not enough.
async fn platform_owners_always_need_a_second_factor(backend: Backend) {
    let Some(s) = server(backend, crate::platform::OWNERS).await else {
        return;
    };
    let root = signup(&s, "root-ops", crate::platform::ROOT).await;
    let list = |access: String| {
        let s = &s;
        async move { code(call(s, Method::GET, "/v1/platform/tenants", &access, None).await).await }
    };
    assert_eq!(
        list(root.access.clone()).await,
        (StatusCode::FORBIDDEN, "auth.mfa_enrolment_required".into())
    );
    let totp = enrol_totp(&s, &root.access).await;
    // Enrolled, but this session proved only the password.
    assert_eq!(
        list(root.access.clone()).await,
        (StatusCode::FORBIDDEN, "auth.mfa_enrolment_required".into())
    );
    step_up_totp(&s, &root.access, &totp).await;
    assert_eq!(list(root.access.clone()).await.0, StatusCode::OK);
    // A new sign-in with both factors works at once.
    let again = crate::mfa::login_mfa(&s, crate::platform::ROOT, &totp).await;
    assert!(amr(&again.access).contains(&"otp".to_owned()));
    assert_eq!(list(again.access.clone()).await.0, StatusCode::OK);
    s.stop().await;
}

/// A sign-in link proves the mailbox, not the second factor: a user with a
/// factor gets an `mfa_token` from it, and the session says `email otp`.
async fn a_sign_in_link_is_a_first_factor_only(backend: Backend) {
    let Some(w) = crate::platform::world(backend, crate::platform::OWNERS).await else {
        return;
    };
    let s = &w.s;
    let pat_totp = enrol_totp(s, &w.pat.access).await;
    let res = crate::platform::post(
        s,
        &w.root.access,
        "/v1/platform/sign-in-links",
        json!({"user_id": w.pat_id, "confirm": true, "reason": "support ticket #42"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let mail = crate::mailbox::outbox(s)
        .await
        .into_iter()
        .rev()
        .find(|m| m.kind == "sign_in_link")
        .unwrap();
    let token = crate::mailbox::sign_in_link_token(&mail.body).unwrap();
    let res = s
        .client
        .post(s.url("/v1/auth/sign-in-link"))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    let mfa = mfa_token(res).await;
    let res = complete(
        s,
        json!({"mfa_token": mfa, "totp": next_code(s, &pat_totp)}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(amr(&login_from(res).await.access), ["email", "otp", "mfa"]);
    w.s.stop().await;
}

/// An impersonator never touches the user's factors; switching tenant
/// keeps the session's `amr` (and asks for no second factor again).
async fn impersonators_cannot_enrol_and_switches_keep_amr(backend: Backend) {
    let Some(w) = crate::platform::world(backend, crate::platform::OWNERS).await else {
        return;
    };
    let s = &w.s;
    let res = crate::platform::post(
        s,
        &w.root.access,
        "/v1/platform/impersonate",
        json!({"user_id": w.pat_id, "confirm": true, "reason": "support ticket #42"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let imp: Value = res.json().await.unwrap();
    let imp = imp["access_token"].as_str().unwrap().to_owned();
    for path in [
        "/v1/auth/mfa/totp/setup",
        "/v1/auth/mfa/totp/confirm",
        "/v1/auth/mfa/recovery-codes",
    ] {
        let (status, body) = post(s, &imp, path, json!({"code": "123456"})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (
                StatusCode::FORBIDDEN,
                Some("platform.impersonation_forbidden")
            ),
            "{path}"
        );
    }
    let (status, body) = post(s, &imp, "/v1/auth/reauth", json!({"totp": "123456"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (
            StatusCode::FORBIDDEN,
            Some("platform.impersonation_forbidden")
        )
    );
    // pat joins a second tenant; signed in with both factors, a switch keeps them.
    let totp = enrol_totp(s, &w.pat.access).await;
    let other = signup(s, "beta", "bo@beta.test").await;
    let invitation = crate::members::invite_ok(s, &other.access, "pat@acme.test", "viewer").await;
    let res = crate::members::accept_bearer(s, &w.pat.access, &invitation).await;
    assert!(res.status().is_success(), "{:?}", res.text().await);
    let token = mfa_token(login(s, "pat@acme.test", PASSWORD, Some("acme")).await).await;
    let res = complete(s, json!({"mfa_token": token, "totp": next_code(s, &totp)})).await;
    let pat = login_from(res).await;
    let res = s
        .client
        .post(s.url("/v1/auth/switch-tenant"))
        .bearer_auth(&pat.access)
        .json(&json!({"tenant": "beta"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(amr(&login_from(res).await.access), ["pwd", "otp", "mfa"]);
    w.s.stop().await;
}

crate::both_servers!(
    an_unenrolled_member_the_policy_covers_may_only_enrol,
    platform_owners_always_need_a_second_factor,
    a_sign_in_link_is_a_first_factor_only,
    impersonators_cannot_enrol_and_switches_keep_amr,
);
