//! Platform owners (SPEC §2.6): the allow-list, tenant suspension and trial
//! extension, impersonation, one-time sign-in links, on SQLite and
//! PostgreSQL.

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade::clock::Clock;
use stockade::http::Problem;
use stockade::ids::TenantId;

use crate::auth::{Login, PASSWORD, login, login_ok, me, server, signup};
use crate::testkit::{Backend, TestServer};

const ROOT: &str = "root@platform.test";
const OWNERS: &[(&str, &str)] = &[("STOCKADE_PLATFORM_OWNERS", ROOT)];

/// A server with one platform owner (who signed up `root-ops`) and one
/// ordinary tenant `acme` (owner pat@acme.test).
struct World {
    s: TestServer,
    root: Login,
    root_id: String,
    pat: Login,
    pat_id: String,
    acme: TenantId,
}

async fn world(backend: Backend, env: &[(&str, &str)]) -> Option<World> {
    let s = server(backend, env).await?;
    let root = signup(&s, "root-ops", ROOT).await;
    let pat = signup(&s, "acme", "pat@acme.test").await;
    let root_id = user_id(&s, &root.access).await;
    let pat_id = user_id(&s, &pat.access).await;
    let acme = tenant_id(&s, "acme").await;
    Some(World {
        s,
        root,
        root_id,
        pat,
        pat_id,
        acme,
    })
}

async fn user_id(s: &TestServer, access: &str) -> String {
    let body: Value = me(s, access).await.json().await.unwrap();
    body["user"]["id"].as_str().unwrap().to_owned()
}

async fn tenant_id(s: &TestServer, slug: &str) -> TenantId {
    stockade::tenancy::find_by_slug(&s.db, slug)
        .await
        .unwrap()
        .unwrap()
        .id
}

async fn post(s: &TestServer, access: &str, path: &str, body: Value) -> reqwest::Response {
    s.client
        .post(s.url(path))
        .bearer_auth(access)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn get(s: &TestServer, access: &str, path: &str) -> reqwest::Response {
    s.client
        .get(s.url(path))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
}

async fn code(res: reqwest::Response) -> String {
    res.json::<Problem>().await.unwrap().code
}

async fn expect(res: reqwest::Response, status: StatusCode, problem: &str) {
    assert_eq!(res.status(), status);
    assert_eq!(code(res).await, problem);
}

fn confirmed() -> Value {
    json!({"confirm": true, "reason": "support ticket #42"})
}

/// One audit event, as the tests look at it.
#[derive(Debug)]
struct Event {
    action: String,
    actor_type: String,
    actor_id: Option<String>,
    impersonator_id: Option<String>,
    target_id: Option<String>,
    details: Value,
}

async fn events(s: &TestServer, tenant: TenantId) -> Vec<Event> {
    let mut tx = s.db.tenant_read(tenant).await.unwrap();
    type Row = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
    );
    let rows: Vec<Row> = tx
        .fetch_all(
            "SELECT action, actor_type, actor_id, impersonator_id, target_id, details \
             FROM audit_events WHERE tenant_id = $1 ORDER BY seq",
            vec![],
        )
        .await
        .unwrap();
    rows.into_iter()
        .map(|r| Event {
            action: r.0,
            actor_type: r.1,
            actor_id: r.2,
            impersonator_id: r.3,
            target_id: r.4,
            details: serde_json::from_str(&r.5).unwrap(),
        })
        .collect()
}

async fn find_event(s: &TestServer, tenant: TenantId, action: &str) -> Event {
    events(s, tenant)
        .await
        .into_iter()
        .rev()
        .find(|e| e.action == action)
        .unwrap_or_else(|| panic!("no `{action}` event in {tenant}"))
}

async fn count(s: &TestServer, tenant: TenantId, action: &str) -> usize {
    events(s, tenant)
        .await
        .iter()
        .filter(|e| e.action == action)
        .count()
}

/// A platform action audited by `root` in both logs.
async fn audited_in_both(w: &World, tenant: TenantId, action: &str) -> Event {
    let platform = find_event(&w.s, TenantId::PLATFORM, action).await;
    let local = find_event(&w.s, tenant, action).await;
    for e in [&platform, &local] {
        assert_eq!(e.actor_type, "platform_owner");
        assert_eq!(e.actor_id.as_deref(), Some(w.root_id.as_str()));
        assert_eq!(e.details["reason"], "support ticket #42");
    }
    assert_eq!(platform.details, local.details);
    for t in [TenantId::PLATFORM, tenant] {
        let report = stockade::audit::verify_tenant(&w.s.db, t).await.unwrap();
        assert!(report.ok, "{report:?}");
    }
    local
}

fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

async fn non_owners_get_403_on_every_platform_route(backend: Backend) {
    let Some(w) = world(backend, OWNERS).await else {
        return;
    };
    let s = &w.s;
    let acme = w.acme.to_string();
    let posts = [
        (format!("/v1/platform/tenants/{acme}/suspend"), confirmed()),
        (
            format!("/v1/platform/tenants/{acme}/reinstate"),
            confirmed(),
        ),
        (
            format!("/v1/platform/tenants/{acme}/extend-trial"),
            json!({"days": 30, "confirm": true, "reason": "x"}),
        ),
        (
            "/v1/platform/impersonate".to_owned(),
            json!({"user_id": w.root_id, "confirm": true, "reason": "x"}),
        ),
        (
            "/v1/platform/sign-in-links".to_owned(),
            json!({"user_id": w.root_id, "confirm": true, "reason": "x"}),
        ),
        ("/v1/platform/no-such-route".to_owned(), json!({})),
    ];
    // pat owns a tenant: that is no platform power.
    expect(
        get(s, &w.pat.access, "/v1/platform/tenants").await,
        StatusCode::FORBIDDEN,
        "platform.forbidden",
    )
    .await;
    expect(
        get(s, &w.pat.access, "/v1/platform/anything/else").await,
        StatusCode::FORBIDDEN,
        "platform.forbidden",
    )
    .await;
    for (path, body) in &posts {
        expect(
            post(s, &w.pat.access, path, body.clone()).await,
            StatusCode::FORBIDDEN,
            "platform.forbidden",
        )
        .await;
        let anonymous = s.client.post(s.url(path)).json(body).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let anonymous = s
        .client
        .get(s.url("/v1/platform/tenants"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // Nothing changed.
    let tenant = stockade::tenancy::find_by_id(&s.db, w.acme)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tenant.status, "active");
    assert_eq!(
        count(s, TenantId::PLATFORM, "platform.tenant.suspended").await,
        0
    );
    // Eight refusals in one minute: one sampled event in the platform chain,
    // none in pat's tenant.
    let first = find_event(s, TenantId::PLATFORM, "platform.access.denied").await;
    assert_eq!(
        count(s, TenantId::PLATFORM, "platform.access.denied").await,
        1
    );
    assert_eq!(first.actor_type, "user");
    assert_eq!(first.actor_id.as_deref(), Some(w.pat_id.as_str()));
    assert_eq!(first.details["reason"], "not_owner");
    assert_eq!(first.details["path"], "/v1/platform/tenants");
    assert_eq!(first.details["suppressed"], 0);
    assert_eq!(count(s, w.acme, "platform.access.denied").await, 0);
    // The next minute's first refusal writes the next event, with the count
    // of the refusals not logged since.
    s.clock.advance(chrono::Duration::seconds(61));
    expect(
        get(s, &w.pat.access, "/v1/platform/tenants").await,
        StatusCode::FORBIDDEN,
        "platform.forbidden",
    )
    .await;
    assert_eq!(
        count(s, TenantId::PLATFORM, "platform.access.denied").await,
        2
    );
    let next = find_event(s, TenantId::PLATFORM, "platform.access.denied").await;
    assert_eq!(next.details["suppressed"], 7);
    // The owner sees an unknown platform route as missing.
    expect(
        get(s, &w.root.access, "/v1/platform/no-such-route").await,
        StatusCode::NOT_FOUND,
        "http.not_found",
    )
    .await;
    // The API is described.
    let doc = s.openapi().await;
    for path in [
        "/v1/platform/tenants",
        "/v1/platform/tenants/{id}/suspend",
        "/v1/platform/tenants/{id}/reinstate",
        "/v1/platform/impersonate",
        "/v1/platform/sign-in-links",
        "/v1/auth/sign-in-link",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from OpenAPI"
        );
    }
}

async fn owner_lists_tenants_in_pages(backend: Backend) {
    let Some(w) = world(backend, OWNERS).await else {
        return;
    };
    let s = &w.s;
    let res = get(s, &w.root.access, "/v1/platform/tenants").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let tenants = body["tenants"].as_array().unwrap();
    let slugs: Vec<&str> = tenants
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["root-ops", "acme"]);
    let acme = &tenants[1];
    assert_eq!(acme["id"], w.acme.to_string());
    assert_eq!(acme["name"], "acme Ltd");
    assert_eq!(acme["status"], "active");
    // No plan or trial: nothing reads them until billing (issue #23).
    assert!(acme.get("plan").is_none() && acme.get("trial_ends_at").is_none());
    assert_eq!(time(&acme["created_at"]), s.clock.now());
    assert!(body.get("next_after").is_none());

    let page: Value = get(s, &w.root.access, "/v1/platform/tenants?limit=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(page["tenants"][0]["slug"], "root-ops");
    let after = page["next_after"].as_str().unwrap();
    let page: Value = get(
        s,
        &w.root.access,
        &format!("/v1/platform/tenants?limit=1&after={after}"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(page["tenants"][0]["slug"], "acme");
    for bad in ["limit=0", "limit=501", "limit=x", "after=nope"] {
        expect(
            get(s, &w.root.access, &format!("/v1/platform/tenants?{bad}")).await,
            StatusCode::BAD_REQUEST,
            "platform.invalid_query",
        )
        .await;
    }
}

async fn sensitive_actions_need_step_up_and_confirm(backend: Backend) {
    let Some(w) = world(backend, OWNERS).await else {
        return;
    };
    let s = &w.s;
    let suspend = format!("/v1/platform/tenants/{}/suspend", w.acme);
    let body = confirmed();
    s.clock.advance(Duration::minutes(6));
    // Reading needs no step-up; every change does.
    assert_eq!(
        get(s, &w.root.access, "/v1/platform/tenants")
            .await
            .status(),
        StatusCode::OK
    );
    for (path, body) in [
        (suspend.clone(), body.clone()),
        (
            format!("/v1/platform/tenants/{}/reinstate", w.acme),
            confirmed(),
        ),
        (
            "/v1/platform/impersonate".to_owned(),
            json!({"user_id": w.pat_id, "confirm": true, "reason": "x"}),
        ),
        (
            "/v1/platform/sign-in-links".to_owned(),
            json!({"user_id": w.pat_id, "confirm": true, "reason": "x"}),
        ),
    ] {
        expect(
            post(s, &w.root.access, &path, body).await,
            StatusCode::FORBIDDEN,
            "auth.step_up_required",
        )
        .await;
    }
    let res = post(
        s,
        &w.root.access,
        "/v1/auth/reauth",
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    for (body, problem) in [
        (
            json!({"reason": "support ticket #42"}),
            "platform.confirm_required",
        ),
        (
            json!({"confirm": false, "reason": "support ticket #42"}),
            "platform.confirm_required",
        ),
        (json!({"confirm": true}), "platform.invalid_reason"),
        (
            json!({"confirm": true, "reason": "   "}),
            "platform.invalid_reason",
        ),
        (
            json!({"confirm": true, "reason": "r".repeat(501)}),
            "platform.invalid_reason",
        ),
        (
            json!({"confirm": true, "reason": "a\u{7}b"}),
            "platform.invalid_reason",
        ),
        (
            json!({"confirm": "yes", "reason": "x"}),
            "request.invalid_body",
        ),
    ] {
        expect(
            post(s, &w.root.access, &suspend, body).await,
            StatusCode::BAD_REQUEST,
            problem,
        )
        .await;
    }
    assert_eq!(
        count(s, TenantId::PLATFORM, "platform.tenant.suspended").await,
        0
    );
    let res = post(s, &w.root.access, &suspend, body).await;
    assert_eq!(res.status(), StatusCode::OK);
    audited_in_both(&w, w.acme, "platform.tenant.suspended").await;
}

async fn suspension_revokes_at_once_and_reinstatement_restores(backend: Backend) {
    let Some(w) = world(backend, OWNERS).await else {
        return;
    };
    let s = &w.s;
    let suspend = format!("/v1/platform/tenants/{}/suspend", w.acme);
    let reinstate = format!("/v1/platform/tenants/{}/reinstate", w.acme);
    assert_eq!(me(s, &w.pat.access).await.status(), StatusCode::OK);
    let second = login_ok(s, "pat@acme.test").await;

    let res = post(s, &w.root.access, &suspend, confirmed()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "suspended");

    // Every session of the tenant ends on its next request, which says why.
    for token in [&w.pat.access, &second.access] {
        expect(
            me(s, token).await,
            StatusCode::FORBIDDEN,
            "tenancy.suspended",
        )
        .await;
    }
    let refreshed = s
        .client
        .post(s.url("/v1/auth/refresh"))
        .header(
            "cookie",
            format!("__Host-stockade_refresh={}", w.pat.refresh),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::UNAUTHORIZED);
    let mut tx = s.db.tenant_read(w.acme).await.unwrap();
    let reasons: Vec<(Option<String>,)> = tx
        .fetch_all(
            "SELECT revoked_reason FROM sessions WHERE tenant_id = $1",
            vec![],
        )
        .await
        .unwrap();
    drop(tx);
    assert_eq!(reasons.len(), 2);
    assert!(
        reasons
            .iter()
            .all(|r| r.0.as_deref() == Some("tenant_suspended"))
    );
    // Its users are told at sign-in (after proving their password).
    expect(
        login(s, "pat@acme.test", PASSWORD, None).await,
        StatusCode::FORBIDDEN,
        "tenancy.suspended",
    )
    .await;
    // The owner's own session and tenant are untouched.
    assert_eq!(me(s, &w.root.access).await.status(), StatusCode::OK);

    let e = audited_in_both(&w, w.acme, "platform.tenant.suspended").await;
    assert_eq!(e.target_id, Some(w.acme.to_string()));
    assert_eq!(e.details["sessions_revoked"], 2);

    // Once only; unknown tenants; never the owner's own tenant.
    expect(
        post(s, &w.root.access, &suspend, confirmed()).await,
        StatusCode::CONFLICT,
        "platform.tenant_state",
    )
    .await;
    for id in [TenantId::new().to_string(), "not-an-id".to_owned()] {
        expect(
            post(
                s,
                &w.root.access,
                &format!("/v1/platform/tenants/{id}/suspend"),
                confirmed(),
            )
            .await,
            StatusCode::NOT_FOUND,
            "http.not_found",
        )
        .await;
    }
    let own = tenant_id(s, "root-ops").await;
    expect(
        post(
            s,
            &w.root.access,
            &format!("/v1/platform/tenants/{own}/suspend"),
            confirmed(),
        )
        .await,
        StatusCode::CONFLICT,
        "platform.own_tenant",
    )
    .await;

    let res = post(s, &w.root.access, &reinstate, confirmed()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "active");
    audited_in_both(&w, w.acme, "platform.tenant.reinstated").await;
    expect(
        post(s, &w.root.access, &reinstate, confirmed()).await,
        StatusCode::CONFLICT,
        "platform.tenant_state",
    )
    .await;
    // Users sign in again; the revoked sessions stay revoked.
    let again = login_ok(s, "pat@acme.test").await;
    assert_eq!(me(s, &again.access).await.status(), StatusCode::OK);
    assert_eq!(
        me(s, &w.pat.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

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
    let root = login_ok(s, ROOT).await;
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
    non_owners_get_403_on_every_platform_route,
    an_expired_impersonation_is_ended_in_both_logs,
    owner_lists_tenants_in_pages,
    sensitive_actions_need_step_up_and_confirm,
    suspension_revokes_at_once_and_reinstatement_restores,
    impersonation_is_marked_short_lived_and_attributed,
    platform_owners_cannot_be_impersonated,
    sign_in_links_are_single_use_and_expire,
    unknown_or_foreign_users_are_not_found,
);
