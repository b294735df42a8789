//! A platform owner acting for a user (SPEC §2.6), on SQLite and PostgreSQL:
//! impersonation marked, short-lived and attributed in both logs, ended by
//! the sweep when it runs out, never of another platform owner; one-time
//! sign-in links; and unknown or foreign users not found by either. Its
//! fixtures come from `platform.rs`; it defines none other files use.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade::clock::Clock;
use stockade::http::Problem;
use stockade::ids::TenantId;

use crate::auth::{PASSWORD, me, signup};
use crate::platform::{
    OWNERS, ROOT, audited_in_both, confirmed, count, expect, find_event, get, jwt_claims, post,
    tenant_id, time, user_id, world,
};
use crate::testkit::Backend;

async fn impersonation_is_marked_short_lived_and_attributed(backend: Backend) {
    let Some(w) = world(backend, OWNERS).await else {
        return;
    };
    let s = &w.s;
    let request = json!({"user_id": w.pat_id, "reason": "support ticket #42", "confirm": true});
    let res = post(
        s,
        &w.root.access,
        "/v1/platform/impersonate",
        request.clone(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers().get("set-cookie").is_none(),
        "no refresh cookie"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(
        time(&body["expires_at"]),
        s.clock.now() + Duration::minutes(15)
    );
    assert_eq!(body["impersonating"]["user_id"], w.pat_id);
    assert_eq!(body["impersonating"]["tenant"], "acme");
    assert_eq!(body["impersonating"]["tenant_id"], w.acme.to_string());
    let token = body["access_token"].as_str().unwrap().to_owned();

    let claims = jwt_claims(&token);
    assert_eq!(claims["sub"], w.pat_id);
    assert_eq!(claims["act"]["sub"], w.root_id);
    assert_eq!(claims["tid"], w.acme.to_string());

    let me_body: Value = me(s, &token).await.json().await.unwrap();
    assert_eq!(me_body["user"]["id"], w.pat_id);
    assert_eq!(me_body["impersonated_by"], w.root_id);
    assert_eq!(me_body["tenant"]["slug"], "acme");
    // pat's own token is not marked.
    let own: Value = me(s, &w.pat.access).await.json().await.unwrap();
    assert!(own.get("impersonated_by").is_none());

    let e = audited_in_both(&w, w.acme, "platform.impersonation.started").await;
    assert_eq!(e.target_id.as_deref(), Some(w.pat_id.as_str()));
    assert_eq!(e.details["session_id"], me_body["session_id"]);

    // It cannot be extended, cannot step up, cannot reach the platform API.
    let refreshed = s
        .client
        .post(s.url("/v1/auth/refresh"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::UNAUTHORIZED);
    expect(
        post(s, &token, "/v1/auth/reauth", json!({"password": PASSWORD})).await,
        StatusCode::FORBIDDEN,
        "platform.impersonation_forbidden",
    )
    .await;
    // Nor delete the account (pat still signs in below).
    let res = s
        .client
        .delete(s.url("/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    expect(
        res,
        StatusCode::FORBIDDEN,
        "platform.impersonation_forbidden",
    )
    .await;
    expect(
        get(s, &token, "/v1/platform/tenants").await,
        StatusCode::FORBIDDEN,
        "platform.forbidden",
    )
    .await;
    let denied = find_event(s, TenantId::PLATFORM, "platform.access.denied").await;
    assert_eq!(denied.details["reason"], "impersonation");
    assert_eq!(denied.actor_id.as_deref(), Some(w.pat_id.as_str()));
    assert_eq!(denied.impersonator_id.as_deref(), Some(w.root_id.as_str()));

    // What it does is attributed to pat, driven by root.
    let res = post(s, &token, "/v1/auth/logout", json!({})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let logout = find_event(s, w.acme, "auth.session.logged_out").await;
    assert_eq!(logout.actor_type, "user");
    assert_eq!(logout.actor_id.as_deref(), Some(w.pat_id.as_str()));
    assert_eq!(logout.impersonator_id.as_deref(), Some(w.root_id.as_str()));
    // The impersonation's end is said in both logs, by the owner.
    for tenant in [w.acme, TenantId::PLATFORM] {
        let ended = find_event(s, tenant, "platform.impersonation.ended").await;
        assert_eq!(ended.actor_type, "platform_owner");
        assert_eq!(ended.actor_id.as_deref(), Some(w.root_id.as_str()));
    }
    assert_eq!(me(s, &token).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(me(s, &w.pat.access).await.status(), StatusCode::OK);

    // A second impersonation ends by itself after 15 minutes.
    let res = post(s, &w.root.access, "/v1/platform/impersonate", request).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    s.clock.advance(Duration::minutes(14));
    assert_eq!(me(s, &token).await.status(), StatusCode::OK);
    s.clock.advance(Duration::minutes(1) + Duration::seconds(1));
    assert_eq!(me(s, &token).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        count(s, TenantId::PLATFORM, "platform.impersonation.started").await,
        2
    );
}

async fn platform_owners_cannot_be_impersonated(backend: Backend) {
    let env = [(
        "STOCKADE_PLATFORM_OWNERS",
        "root@platform.test, Second@Platform.test",
    )];
    let Some(w) = world(backend, &env).await else {
        return;
    };
    let s = &w.s;
    let second = signup(s, "second-ops", "second@platform.test").await;
    crate::mfa::owner_factor(s, &second.access).await;
    let second_id = user_id(s, &second.access).await;
    // The allow-list matches emails case-insensitively.
    assert_eq!(
        get(s, &second.access, "/v1/platform/tenants")
            .await
            .status(),
        StatusCode::OK
    );
    for target in [&second_id, &w.root_id] {
        for path in ["/v1/platform/impersonate", "/v1/platform/sign-in-links"] {
            expect(
                post(
                    s,
                    &w.root.access,
                    path,
                    json!({"user_id": target, "confirm": true, "reason": "x"}),
                )
                .await,
                StatusCode::FORBIDDEN,
                "platform.owner_protected",
            )
            .await;
        }
    }
    assert_eq!(
        count(s, TenantId::PLATFORM, "platform.impersonation.started").await,
        0
    );
}

async fn sign_in_links_are_single_use_and_expire(backend: Backend) {
    let Some(w) = world(backend, OWNERS).await else {
        return;
    };
    let s = &w.s;
    let pat_id = w.pat_id.as_str();
    let create = |access: String| async move {
        let res = post(
            s,
            &access,
            "/v1/platform/sign-in-links",
            json!({"user_id": pat_id, "confirm": true, "reason": "support ticket #42"}),
        )
        .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            time(&body["expires_at"]),
            s.clock.now() + Duration::minutes(15)
        );
        assert_eq!(body["sent_to"], "p***@acme.test");
        // The link goes to pat's mailbox, never to the caller.
        assert!(body.get("url").is_none(), "{body}");
        let mail = crate::mailbox::outbox(s)
            .await
            .into_iter()
            .rev()
            .find(|m| m.kind == "sign_in_link")
            .expect("a sign-in link email");
        assert_eq!(mail.to, "pat@acme.test");
        assert!(
            mail.body
                .contains(&format!("{}/sign-in#link=", s.state.issuer)),
            "{}",
            mail.body
        );
        let token = crate::mailbox::sign_in_link_token(&mail.body).unwrap();
        assert!(!body.to_string().contains(&token));
        token
    };
    let redeem = |token: String| async move {
        s.client
            .post(s.url("/v1/auth/sign-in-link"))
            .json(&json!({ "token": token }))
            .send()
            .await
            .unwrap()
    };

    let token = create(w.root.access.clone()).await;
    assert_eq!(token.len(), 43);
    let e = audited_in_both(&w, w.acme, "platform.sign_in_link.created").await;
    assert_eq!(e.target_id.as_deref(), Some(w.pat_id.as_str()));
    // Only the hash is stored.
    let stored: Vec<(Vec<u8>,)> =
        s.db.global_read()
            .await
            .unwrap()
            .fetch_all("SELECT token_hash FROM sign_in_links", vec![])
            .await
            .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0.len(), 32);

    let res = redeem(token.clone()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = crate::auth::set_cookie(&res).expect("refresh cookie");
    assert!(cookie.starts_with("__Host-stockade_refresh="));
    let body: Value = res.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap();
    assert!(jwt_claims(access).get("act").is_none());
    let who: Value = me(s, access).await.json().await.unwrap();
    assert_eq!(who["user"]["id"], w.pat_id);
    assert_eq!(who["tenant"]["slug"], "acme");
    assert!(who.get("impersonated_by").is_none());
    // No password was proved: sensitive actions will ask for one.
    assert!(who["authenticated_at"].is_null());
    let used = find_event(s, w.acme, "auth.sign_in_link.used").await;
    assert_eq!(used.actor_id.as_deref(), Some(w.pat_id.as_str()));
    assert_eq!(used.details["created_by"], w.root_id);
    assert_eq!(used.details["link_id"], e.details["link_id"]);

    // Single use.
    expect(
        redeem(token).await,
        StatusCode::BAD_REQUEST,
        "platform.link_invalid",
    )
    .await;
    let rejected = find_event(s, w.acme, "auth.sign_in_link.rejected").await;
    assert_eq!(rejected.details["reason"], "used");
    assert_eq!(rejected.actor_type, "system");
    assert_eq!(rejected.target_id.as_deref(), Some(w.pat_id.as_str()));

    // Expires after 15 minutes.
    let token = create(w.root.access.clone()).await;
    s.clock
        .advance(Duration::minutes(15) + Duration::seconds(1));
    expect(
        redeem(token).await,
        StatusCode::BAD_REQUEST,
        "platform.link_invalid",
    )
    .await;
    let rejected = find_event(s, w.acme, "auth.sign_in_link.rejected").await;
    assert_eq!(rejected.details["reason"], "expired");

    // Suspending the tenant kills its unused links, even after reinstatement.
    let root = crate::mfa::login_mfa(s, ROOT, &w.root_totp).await;
    let token = create(root.access.clone()).await;
    for action in ["suspend", "reinstate"] {
        let path = format!("/v1/platform/tenants/{}/{action}", w.acme);
        let res = post(s, &root.access, &path, confirmed()).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    expect(
        redeem(token).await,
        StatusCode::BAD_REQUEST,
        "platform.link_invalid",
    )
    .await;

    for garbage in ["", "short", &"A".repeat(43), &"é".repeat(43)] {
        expect(
            redeem(garbage.to_owned()).await,
            StatusCode::BAD_REQUEST,
            "platform.link_invalid",
        )
        .await;
    }
    assert_eq!(count(s, w.acme, "auth.sign_in_link.used").await, 1);
    assert_eq!(
        count(s, TenantId::PLATFORM, "platform.sign_in_link.created").await,
        3
    );
}

async fn unknown_or_foreign_users_are_not_found(backend: Backend) {
    let Some(w) = world(backend, OWNERS).await else {
        return;
    };
    let s = &w.s;
    let unknown = stockade::ids::UserId::new().to_string();
    for path in ["/v1/platform/impersonate", "/v1/platform/sign-in-links"] {
        expect(
            post(
                s,
                &w.root.access,
                path,
                json!({"user_id": unknown, "confirm": true, "reason": "x"}),
            )
            .await,
            StatusCode::NOT_FOUND,
            "http.not_found",
        )
        .await;
        // pat is no member of root-ops.
        expect(
            post(
                s,
                &w.root.access,
                path,
                json!({"user_id": w.pat_id, "tenant": "root-ops", "confirm": true, "reason": "x"}),
            )
            .await,
            StatusCode::NOT_FOUND,
            "http.not_found",
        )
        .await;
        expect(
            post(
                s,
                &w.root.access,
                path,
                json!({"user_id": "nope", "confirm": true, "reason": "x"}),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "request.invalid_body",
        )
        .await;
    }

    // bob belongs to beta and (as a viewer) to acme: he must be named in one.
    let bob = signup(s, "beta", "bob@beta.test").await;
    let bob_id = user_id(s, &bob.access).await;
    let mut tx = s.db.tenant_tx(w.acme).await.unwrap();
    stockade::tenancy::add_member(&mut tx, s.clock.as_ref(), bob_id.parse().unwrap(), "viewer")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let res = post(
        s,
        &w.root.access,
        "/v1/platform/impersonate",
        json!({"user_id": bob_id, "confirm": true, "reason": "x"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let problem: Problem = res.json().await.unwrap();
    assert_eq!(problem.code, "platform.tenant_required");
    assert_eq!(problem.errors.unwrap(), json!(["acme", "beta"]));
    let res = post(
        s,
        &w.root.access,
        "/v1/platform/impersonate",
        json!({"user_id": bob_id, "tenant": "acme", "confirm": true, "reason": "x"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let who: Value = me(s, body["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(who["tenant"]["slug"], "acme");
    assert_eq!(who["role"], "viewer");
    assert_eq!(who["impersonated_by"], w.root_id);
    // The acme log names bob's impersonation; beta's does not.
    let e = find_event(s, w.acme, "platform.impersonation.started").await;
    assert_eq!(e.target_id.as_deref(), Some(bob_id.as_str()));
    let beta = tenant_id(s, "beta").await;
    assert_eq!(count(s, beta, "platform.impersonation.started").await, 0);
}

/// An impersonation that runs out (no sign-out) is ended by the sweep of the
/// serving instance: once, in both logs, attributed to the owner.
async fn an_expired_impersonation_is_ended_in_both_logs(backend: Backend) {
    let Some(w) = world(backend, OWNERS).await else {
        return;
    };
    let s = &w.s;
    let request = json!({"user_id": w.pat_id, "reason": "support ticket #7", "confirm": true});
    let res = post(s, &w.root.access, "/v1/platform/impersonate", request).await;
    assert_eq!(res.status(), StatusCode::OK);
    let sweep = || stockade::platform::end_expired_impersonations(&s.db, s.clock.as_ref());
    assert_eq!(sweep().await.unwrap(), 0, "not expired yet");
    s.clock.advance(Duration::minutes(16));
    assert_eq!(sweep().await.unwrap(), 1);
    for tenant in [w.acme, TenantId::PLATFORM] {
        let ended = find_event(s, tenant, "platform.impersonation.ended").await;
        assert_eq!(ended.actor_type, "platform_owner");
        assert_eq!(ended.actor_id.as_deref(), Some(w.root_id.as_str()));
        assert_eq!(ended.details["reason"], "expired");
        assert_eq!(ended.details["user_id"], w.pat_id);
        assert!(ended.details["expired_at"].is_string());
    }
    let platform = find_event(s, TenantId::PLATFORM, "platform.impersonation.ended").await;
    assert_eq!(platform.details["tenant_id"], w.acme.to_string());
    // Once only.
    assert_eq!(sweep().await.unwrap(), 0);
    assert_eq!(
        count(s, TenantId::PLATFORM, "platform.impersonation.ended").await,
        1
    );
    for r in stockade::audit::verify_all(&s.db).await.unwrap() {
        assert!(r.ok, "{r:?}");
    }
}

crate::both_servers!(
    an_expired_impersonation_is_ended_in_both_logs,
    impersonation_is_marked_short_lived_and_attributed,
    platform_owners_cannot_be_impersonated,
    sign_in_links_are_single_use_and_expire,
    unknown_or_foreign_users_are_not_found,
);
