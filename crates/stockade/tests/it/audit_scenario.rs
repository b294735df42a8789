//! The audit scenario (issue #6 item 1, SPEC §2.7), on SQLite and PostgreSQL:
//! one tenant's life through the HTTP API, then the owner reads
//! `GET /v1/audit/events?order=asc` and the exact sequence of actions,
//! actor types and actor ids is asserted (multi-factor enrolment, step-up
//! with a code, the tenant policy and a sign-in with a recovery code
//! included).
//!
//! **Every later capability adds its events to this test**: extend the
//! scenario with the steps that write them and the expected list with the
//! events, in order (and `docs/audit-events.md` with the action).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::auth::{PASSWORD, server, signup};
use crate::roles::call;
use crate::testkit::Backend;

const OWNER: &str = "owner@acme.test";

async fn audit_trail_of_a_tenant(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")]).await else {
        return;
    };
    // Sign up.
    let owner = signup(&s, "acme", OWNER).await;
    let owner_id = crate::records::user_id(&s, &owner.access).await;
    // Failed sign-ins up to the lockout (10), each from its own address so
    // the per-address limit stays out of the way; then one attempt while
    // locked, with the right password.
    let attempt = |password: &'static str, n: u32| {
        s.client
            .post(s.url("/v1/auth/login"))
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .json(&json!({"email": OWNER, "password": password}))
            .send()
    };
    for n in 1..=stockade::identity::throttle::MAX_FAILURES {
        let res = attempt("Wrong-Password-1", u32::try_from(n).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = attempt(PASSWORD, 99).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // Invite a member, who accepts as a new user; change their role.
    let member = crate::members::join(&s, &owner.access, "sam@acme.test", "viewer").await;
    let member_id = crate::records::user_id(&s, &member.access).await;
    let (st, body) = call(
        &s,
        Method::PATCH,
        &format!("/v1/members/{member_id}"),
        &owner.access,
        Some(json!({"role": "editor"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    // Records: create, update, delete; a CSV import.
    let record =
        crate::records::created_id(&s, &owner.access, "orders", json!({"data": {"total": 10}}))
            .await;
    let path = format!("/v1/collections/orders/records/{record}");
    let (st, body) = crate::records::patch(
        &s,
        &owner.access,
        &path,
        Some("\"1\""),
        json!({"data": {"total": 11}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = call(&s, Method::DELETE, &path, &owner.access, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    let res = s
        .client
        .post(s.url("/v1/collections/orders/import"))
        .bearer_auth(&owner.access)
        .header("content-type", "text/csv")
        .body("key,total\nK-1,1\nK-2,2\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED, "{:?}", res.text().await);
    // The same keys again: refused, nothing imported, the refusal audited.
    let res = s
        .client
        .post(s.url("/v1/collections/orders/import"))
        .bearer_auth(&owner.access)
        .header("content-type", "text/csv")
        .body("key,total\nK-1,1\nK-2,2\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // While the account is locked, password change (the session's step-up
    // still recent) and step-up are refused, even with the right password.
    let change = |current: &str| {
        Some(json!({"current_password": current, "new_password": "Scenario-New-Passw0rd-3"}))
    };
    let (st, body) = call(
        &s,
        Method::POST,
        "/v1/auth/password",
        &owner.access,
        change(PASSWORD),
    )
    .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // A settings change needs a recent password (step-up).
    s.clock.advance(chrono::Duration::minutes(6));
    let reauth = Some(json!({"password": PASSWORD}));
    let (st, body) = call(&s, Method::POST, "/v1/auth/reauth", &owner.access, reauth).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "auth.account_locked");
    // The lock ends (and the access token with it: the session refreshes);
    // the right password proves step-up, then a wrong current password is
    // refused.
    s.clock.advance(chrono::Duration::minutes(9));
    let res = crate::auth::refresh(&s, &owner.refresh).await;
    assert_eq!(res.status(), StatusCode::OK);
    let owner = crate::auth::login_from(res).await;
    let reauth = Some(json!({"password": PASSWORD}));
    let (st, body) = call(&s, Method::POST, "/v1/auth/reauth", &owner.access, reauth).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    let (st, body) = call(
        &s,
        Method::POST,
        "/v1/auth/password",
        &owner.access,
        change("Wrong-Password-1"),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let (st, body) = call(
        &s,
        Method::PATCH,
        "/v1/tenant/settings",
        &owner.access,
        Some(json!({"session_idle_secs": 3600})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    // An audit webhook to a public address (no delivery runs here), removed.
    let (st, body) = call(
        &s,
        Method::PUT,
        "/v1/audit/webhook",
        &owner.access,
        Some(json!({"url": "https://93.184.215.14/siem"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let (st, body) = call(&s, Method::DELETE, "/v1/audit/webhook", &owner.access, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    // Multi-factor: a TOTP (with recovery codes), a wrong then a right
    // code at step-up, the admins policy, recovery codes replaced.
    let totp = crate::mfa::enrol_totp(&s, &owner.access).await;
    let wrong = if crate::mfa::code_now(&s, &totp) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (st, body) = call(
        &s,
        Method::POST,
        "/v1/auth/reauth",
        &owner.access,
        Some(json!({"totp": wrong})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    crate::mfa::step_up_totp(&s, &owner.access, &totp).await;
    let (st, body) = call(
        &s,
        Method::PATCH,
        "/v1/tenant/settings",
        &owner.access,
        Some(json!({"mfa_required": "admins"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, codes) = call(
        &s,
        Method::POST,
        "/v1/auth/mfa/recovery-codes",
        &owner.access,
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{codes}");
    // Sign out; later, sign in again to read the log: the password, a
    // wrong code, then a recovery code.
    let (st, body) = call(&s, Method::POST, "/v1/auth/logout", &owner.access, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    s.clock.advance(chrono::Duration::minutes(15));
    let token = crate::mfa::mfa_token(crate::auth::login(&s, OWNER, PASSWORD, None).await).await;
    let res = crate::mfa::complete(&s, json!({"mfa_token": token, "totp": wrong})).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = crate::mfa::complete(
        &s,
        json!({"mfa_token": token,
        "recovery_code": codes["recovery_codes"][0]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let owner = crate::auth::login_from(res).await;
    // The policy off again, then the TOTP removed (a fresh sign-in is a
    // fresh step-up).
    let (st, body) = call(
        &s,
        Method::PATCH,
        "/v1/tenant/settings",
        &owner.access,
        Some(json!({"mfa_required": "off"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = call(&s, Method::DELETE, "/v1/auth/mfa/totp", &owner.access, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");

    let (st, page) = call(
        &s,
        Method::GET,
        "/v1/audit/events?order=asc&limit=500",
        &owner.access,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page["next_cursor"].is_null(), "{page}");
    let got: Vec<(String, String, Option<String>)> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor_type"].as_str().unwrap().to_owned(),
                e["actor_id"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let user = |action: &str, id: &str| (action.to_owned(), "user".to_owned(), Some(id.to_owned()));
    let system = |action: &str| (action.to_owned(), "system".to_owned(), None);
    let mut want = vec![
        user("tenancy.tenant.created", &owner_id),
        user("auth.user.signed_up", &owner_id),
    ];
    for _ in 1..stockade::identity::throttle::MAX_FAILURES {
        want.push(user("auth.login.failed", &owner_id));
    }
    want.extend([
        user("auth.login.failed", &owner_id),
        system("auth.account.locked"),
        user("auth.login.failed", &owner_id),
        user("tenancy.invitation.created", &owner_id),
        user("tenancy.invitation.accepted", &member_id),
        user("tenancy.member.updated", &owner_id),
        user("records.record.created", &owner_id),
        user("records.record.updated", &owner_id),
        user("records.record.deleted", &owner_id),
        user("records.import.completed", &owner_id),
        user("records.import.failed", &owner_id),
        user("auth.password.change_failed", &owner_id),
        user("auth.step_up.failed", &owner_id),
        user("auth.step_up.succeeded", &owner_id),
        user("auth.password.change_failed", &owner_id),
        user("tenancy.settings.updated", &owner_id),
        user("audit.webhook.configured", &owner_id),
        user("audit.webhook.removed", &owner_id),
        user("auth.mfa.totp.enabled", &owner_id),
        user("auth.mfa.recovery_codes.regenerated", &owner_id),
        user("auth.step_up.failed", &owner_id),
        user("auth.step_up.succeeded", &owner_id),
        user("tenancy.settings.updated", &owner_id),
        user("tenancy.settings.mfa_policy.changed", &owner_id),
        user("auth.mfa.recovery_codes.regenerated", &owner_id),
        user("auth.session.logged_out", &owner_id),
        user("auth.mfa.challenged", &owner_id),
        user("auth.mfa.failed", &owner_id),
        user("auth.mfa.recovery_codes.used", &owner_id),
        user("auth.mfa.succeeded", &owner_id),
        user("auth.login.succeeded", &owner_id),
        user("tenancy.settings.updated", &owner_id),
        user("tenancy.settings.mfa_policy.changed", &owner_id),
        user("auth.mfa.totp.disabled", &owner_id),
    ]);
    assert_eq!(got, want);
    // The attempt while locked says so; every sign-in attempt has its address.
    let events = page["events"].as_array().unwrap();
    let failed: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "auth.login.failed")
        .collect();
    let last = failed.last().unwrap();
    assert_eq!(last["details"]["reason"], "account_locked", "{last}");
    assert_eq!(last["outcome"], "denied");
    assert_eq!(last["ip"], "198.51.100.99");
    assert_eq!(failed[0]["ip"], "198.51.100.1");
    // Step-up and password change while locked: denied, not counted.
    let outcomes = |action: &str| -> Vec<(String, String)> {
        events
            .iter()
            .filter(|e| e["action"] == action)
            .map(|e| {
                let reason = e["details"]["reason"].as_str().unwrap_or("");
                (e["outcome"].as_str().unwrap().to_owned(), reason.to_owned())
            })
            .collect()
    };
    let pair = |o: &str, r: &str| (o.to_owned(), r.to_owned());
    assert_eq!(
        outcomes("auth.step_up.failed"),
        [
            pair("denied", "account_locked"),
            pair("failure", "wrong_or_replayed_code")
        ]
    );
    assert_eq!(
        outcomes("auth.step_up.succeeded"),
        [pair("success", ""), pair("success", "")]
    );
    assert_eq!(
        outcomes("auth.password.change_failed"),
        [
            pair("denied", "account_locked"),
            pair("failure", "wrong_password")
        ]
    );
    s.stop().await;
}

crate::both_servers!(audit_trail_of_a_tenant);
