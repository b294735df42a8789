//! Step-up as the attacker tries it (issue #19 item 6), on SQLite and
//! PostgreSQL: sessions that never proved a password (tenant switch,
//! one-time sign-in link), a proof carried to another session or tenant,
//! the tenant's window at its edges and changed mid-session, bad
//! `step_up_minutes`, API keys, a proof dated in the future, and a platform
//! owner's tenant lengthening the platform's window. One test per action is
//! `step_up_everywhere.rs`, whose fixtures this file uses.

use chrono::Duration;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stockade::clock::Clock;

use crate::auth::{Login, login, login_from, refresh, server, signup};
use crate::platform::{OWNERS, confirmed, world};
use crate::roles::{call, member_with_id};
use crate::step_up_everywhere::{DEFAULT_MAX_AGE, Snapshot, assert_step_up_required, reauth};
use crate::testkit::{Backend, TestServer};

/// A sensitive action (an invitation) by `access`: its answer.
async fn invite(s: &TestServer, access: &str, n: u32) -> (StatusCode, Value) {
    let body = json!({"email": format!("invitee{n}@example.test"), "role": "viewer"});
    call(s, Method::POST, "/v1/invitations", access, Some(body)).await
}

/// Asserts `access` is refused a sensitive action for want of a step-up
/// (`max_age` seconds), changing nothing.
async fn refused(s: &TestServer, access: &str, max_age: i64) {
    let before = Snapshot::take(s).await;
    assert_step_up_required(&invite(s, access, 0).await, max_age);
    assert_eq!(
        Snapshot::take(s).await,
        before,
        "a refused call changed something"
    );
}

async fn allowed(s: &TestServer, access: &str, n: u32) {
    let (st, body) = invite(s, access, n).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
}

async fn patch_settings(s: &TestServer, access: &str, body: Value) -> (StatusCode, Value) {
    call(s, Method::PATCH, "/v1/tenant/settings", access, Some(body)).await
}

/// Makes the owner of `acme` an owner of `beta` too, straight in the
/// database.
async fn join_beta(s: &TestServer, email: &str) {
    let user = stockade::identity::find_user_by_email(
        &s.db,
        &stockade::identity::Email::parse(email).unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let beta = stockade::tenancy::find_by_slug(&s.db, "beta")
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_tx(beta.id).await.unwrap();
    stockade::tenancy::add_member(&mut tx, s.clock.as_ref(), user.id, "owner")
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

crate::both_servers!(
    a_switch_tenant_session_never_proved_a_password,
    a_sign_in_link_session_never_proved_a_password,
    a_step_up_stays_in_its_own_session,
    the_tenant_window_is_read_on_every_request,
    bad_step_up_minutes_are_refused_and_nothing_is_stored,
    api_keys_never_pass_a_step_up,
    a_proof_dated_in_the_future_is_not_fresh,
    a_platform_owners_tenant_cannot_lengthen_the_platform_window,
);

async fn a_switch_tenant_session_never_proved_a_password(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    signup(&s, "beta", "other@beta.test").await;
    join_beta(&s, "owner@acme.test").await;
    // Fresh in acme; the new session in beta proves nothing, at once.
    allowed(&s, &a.access, 1).await;
    let res = crate::members::switch(&s, &a.access, "beta").await;
    assert_eq!(res.status(), StatusCode::OK);
    let switched = login_from(res).await;
    refused(&s, &switched.access, DEFAULT_MAX_AGE).await;
    // Nor does its refresh.
    let renewed = login_from(refresh(&s, &switched.refresh).await).await;
    refused(&s, &renewed.access, DEFAULT_MAX_AGE).await;
    reauth(&s, &renewed.access).await;
    allowed(&s, &renewed.access, 2).await;
}

async fn a_sign_in_link_session_never_proved_a_password(backend: Backend) {
    let Some(w) = world(backend, OWNERS).await else {
        return;
    };
    let mut body = confirmed();
    body["user_id"] = json!(w.pat_id);
    let (st, got) = call(
        &w.s,
        Method::POST,
        "/v1/platform/sign-in-links",
        &w.root.access,
        Some(body),
    )
    .await;
    assert!(st.is_success(), "{got}");
    let token = crate::mailbox::sign_in_link(&w.s, "pat@acme.test").await;
    let res =
        w.s.client
            .post(w.s.url("/v1/auth/sign-in-link"))
            .json(&json!({ "token": token }))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let linked = login_from(res).await;
    refused(&w.s, &linked.access, DEFAULT_MAX_AGE).await;
    reauth(&w.s, &linked.access).await;
    allowed(&w.s, &linked.access, 1).await;
}

/// A step-up is one session's: not another session of the same user in the
/// same tenant, nor the user's session in another tenant.
async fn a_step_up_stays_in_its_own_session(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    signup(&s, "beta", "other@beta.test").await;
    join_beta(&s, "owner@acme.test").await;
    let signed_in = |tenant: &'static str| {
        let s = &s;
        async move {
            let res = login(s, "owner@acme.test", crate::auth::PASSWORD, Some(tenant)).await;
            assert_eq!(res.status(), StatusCode::OK);
            login_from(res).await
        }
    };
    let b: Login = signed_in("acme").await;
    let in_beta: Login = signed_in("beta").await;
    s.clock.advance(Duration::seconds(DEFAULT_MAX_AGE + 1));
    for l in [&a, &b, &in_beta] {
        refused(&s, &l.access, DEFAULT_MAX_AGE).await;
    }
    reauth(&s, &a.access).await;
    allowed(&s, &a.access, 1).await;
    refused(&s, &b.access, DEFAULT_MAX_AGE).await;
    refused(&s, &in_beta.access, DEFAULT_MAX_AGE).await;
    // Two requests at once, one the re-authentication of A: B stays refused.
    let ((), other) = tokio::join!(reauth(&s, &a.access), invite(&s, &b.access, 2));
    assert_step_up_required(&other, DEFAULT_MAX_AGE);
}

/// 1 minute refuses at 61 s; 60 minutes accepts at 59 minutes; a change
/// applies from the next request of a session already cached; one tenant's
/// window is not another's.
async fn the_tenant_window_is_read_on_every_request(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let beta = signup(&s, "beta", "other@beta.test").await;
    s.clock.advance(Duration::minutes(3));
    allowed(&s, &a.access, 1).await; // cached now, with the 5-minute window
    let (st, got) = patch_settings(&s, &a.access, json!({"step_up_minutes": 1})).await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got["step_up_minutes"], 1);
    // The very next request: a 3-minute-old proof is too old for 1 minute.
    refused(&s, &a.access, 60).await;
    reauth(&s, &a.access).await;
    s.clock.advance(Duration::seconds(60));
    allowed(&s, &a.access, 2).await;
    s.clock.advance(Duration::seconds(1));
    refused(&s, &a.access, 60).await;
    reauth(&s, &a.access).await;
    let (st, got) = patch_settings(&s, &a.access, json!({"step_up_minutes": 60})).await;
    assert_eq!(st, StatusCode::OK, "{got}");
    reauth(&s, &beta.access).await;
    s.clock.advance(Duration::minutes(59));
    // Access tokens last 15 minutes: the clients refresh, as they would.
    let a = login_from(refresh(&s, &a.refresh).await).await;
    let beta = login_from(refresh(&s, &beta.refresh).await).await;
    allowed(&s, &a.access, 3).await;
    refused(&s, &beta.access, DEFAULT_MAX_AGE).await;
    s.clock.advance(Duration::seconds(60 + 1));
    refused(&s, &a.access, 3600).await;
    // The change is audited with old and new values.
    let changed = crate::members::audit_details(&s, "acme", "tenancy.settings.updated").await;
    assert_eq!(
        changed["changes"]["step_up_minutes"],
        json!({"old": 1, "new": 60})
    );
}

async fn bad_step_up_minutes_are_refused_and_nothing_is_stored(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let (_, got) = call(&s, Method::GET, "/v1/tenant/settings", &a.access, None).await;
    assert_eq!(got["step_up_minutes"], 5);
    let before = Snapshot::take(&s).await;
    let out_of_range = "tenancy.invalid_settings";
    let not_an_integer = "request.invalid_body";
    for (value, code) in [
        (json!(0), out_of_range),
        (json!(61), out_of_range),
        (json!(-1), out_of_range),
        (json!(i64::MAX), out_of_range),
        (json!("5"), not_an_integer),
        (json!(1.5), not_an_integer),
        (json!(5.0), not_an_integer),
        (json!(1e3), not_an_integer),
        (json!(null), not_an_integer),
        (json!(true), not_an_integer),
        (json!([5]), not_an_integer),
        (json!(u64::MAX), not_an_integer),
    ] {
        for body in [
            json!({"step_up_minutes": value}),
            // Beside a valid change, nothing of the request is applied.
            json!({"step_up_minutes": value, "session_idle_secs": 3600}),
        ] {
            let (st, problem) = patch_settings(&s, &a.access, body.clone()).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {problem}");
            assert_eq!(problem["code"], code, "{body}: {problem}");
        }
    }
    assert_eq!(
        Snapshot::take(&s).await,
        before,
        "a refused value was stored"
    );
    // The database holds the same bounds, whoever writes (each statement in
    // a transaction never committed; 7 shows the statement is otherwise fine).
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    for (minutes, stored) in [(7_i64, true), (0, false), (61, false), (-1, false)] {
        let mut tx = s.db.tenant_tx(tenant.id).await.unwrap();
        let res = tx
            .execute(
                "INSERT INTO tenant_settings (tenant_id, updated_at, step_up_minutes) \
                 VALUES ($1, $2, $3) ON CONFLICT (tenant_id) DO UPDATE SET step_up_minutes = $3",
                vec![s.clock.now().into(), minutes.into()],
            )
            .await;
        assert_eq!(res.is_ok(), stored, "step_up_minutes = {minutes}: {res:?}");
    }
    assert_eq!(Snapshot::take(&s).await, before);
}

/// An API key has no session: it never passes step-up, even with every
/// scope the action needs and its creator freshly re-authenticated.
async fn api_keys_never_pass_a_step_up(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let (_, bob) = member_with_id(&s, "acme", "bob@acme.test", "viewer").await;
    let scopes = ["members:manage", "roles:manage", "settings:manage"];
    let (key, _) = crate::apikeys::create_key(&s, &a.access, &scopes).await;
    reauth(&s, &a.access).await;
    let before = Snapshot::take(&s).await;
    let member = format!("/v1/members/{bob}");
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/invitations",
            Some(json!({"email": "x@acme.test", "role": "viewer"})),
        ),
        (
            Method::PATCH,
            member.as_str(),
            Some(json!({"role": "admin"})),
        ),
        (
            Method::PATCH,
            member.as_str(),
            Some(json!({"active": false})),
        ),
        (Method::DELETE, member.as_str(), None),
        (
            Method::POST,
            "/v1/roles",
            Some(json!({"name": "r", "permissions": []})),
        ),
        (
            Method::PATCH,
            "/v1/tenant/settings",
            Some(json!({"step_up_minutes": 60})),
        ),
    ] {
        let (st, problem) = call(&s, method.clone(), path, &key, body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{method} {path}: {problem}");
        assert_eq!(problem["code"], "auth.step_up_required", "{method} {path}");
        assert!(problem.get("max_age_seconds").is_none(), "{problem}");
    }
    assert_eq!(
        Snapshot::take(&s).await,
        before,
        "a key's refused call changed something"
    );
    // Where a person is needed, the key is refused before any step-up (it
    // cannot hold `api_keys:manage`, so key management is out of its scope).
    let new_key = json!({"name": "k", "scopes": ["members:manage"]});
    let password = json!({"current_password": crate::auth::PASSWORD,
        "new_password": "Another-Strong-Passw0rd-7"});
    let proof = json!({"password": crate::auth::PASSWORD});
    for (method, path, body, code) in [
        (
            Method::POST,
            "/v1/api-keys",
            Some(new_key),
            "rbac.forbidden",
        ),
        (
            Method::POST,
            "/v1/auth/password",
            Some(password),
            "auth.api_key_not_allowed",
        ),
        (Method::DELETE, "/v1/me", None, "auth.api_key_not_allowed"),
        (
            Method::POST,
            "/v1/auth/reauth",
            Some(proof),
            "auth.api_key_not_allowed",
        ),
        (
            Method::GET,
            "/v1/platform/tenants",
            None,
            "auth.api_key_not_allowed",
        ),
    ] {
        let (st, problem) = call(&s, method.clone(), path, &key, body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{method} {path}: {problem}");
        assert_eq!(problem["code"], code, "{method} {path}");
    }
}

/// A proof dated after the server's now — the clock went backwards, or a
/// row was forged — does not count as fresh.
async fn a_proof_dated_in_the_future_is_not_fresh(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let signed_in_at = s.clock.now();
    s.clock.set(signed_in_at - Duration::seconds(30));
    refused(&s, &a.access, DEFAULT_MAX_AGE).await;
    reauth(&s, &a.access).await;
    allowed(&s, &a.access, 1).await;
    // A row claiming a proof a day from now.
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_tx(tenant.id).await.unwrap();
    let n = tx
        .execute(
            "UPDATE sessions SET authenticated_at = $2 WHERE tenant_id = $1",
            vec![(s.clock.now() + Duration::days(1)).into()],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    tx.commit().await.unwrap();
    refused(&s, &a.access, DEFAULT_MAX_AGE).await;
}

/// The platform's window is the owner's tenant's, but never longer than
/// the default: that tenant's admins cannot stretch it.
async fn a_platform_owners_tenant_cannot_lengthen_the_platform_window(backend: Backend) {
    let Some(w) = world(backend, OWNERS).await else {
        return;
    };
    let (st, got) = patch_settings(&w.s, &w.root.access, json!({"step_up_minutes": 60})).await;
    assert_eq!(st, StatusCode::OK, "{got}");
    w.s.clock.advance(Duration::seconds(DEFAULT_MAX_AGE + 1));
    let before = Snapshot::take(&w.s).await;
    for (method, path, body) in [
        (Method::GET, "/v1/platform/tenants".to_owned(), None),
        (
            Method::POST,
            format!("/v1/platform/tenants/{}/suspend", w.acme),
            Some(confirmed()),
        ),
    ] {
        let res = call(&w.s, method, &path, &w.root.access, body).await;
        assert_step_up_required(&res, DEFAULT_MAX_AGE);
    }
    assert_eq!(Snapshot::take(&w.s).await, before);
    // In the owner's own tenant, its 60 minutes hold.
    allowed(&w.s, &w.root.access, 1).await;
    // Shorter windows do apply to the platform.
    reauth(&w.s, &w.root.access).await;
    let (st, _) = patch_settings(&w.s, &w.root.access, json!({"step_up_minutes": 1})).await;
    assert_eq!(st, StatusCode::OK);
    w.s.clock.advance(Duration::seconds(61));
    let res = call(
        &w.s,
        Method::GET,
        "/v1/platform/tenants",
        &w.root.access,
        None,
    )
    .await;
    assert_step_up_required(&res, 60);
}
