//! Platform owners (SPEC §2.6), on SQLite and PostgreSQL: the allow-list
//! (non-owners get 403 on every platform route), tenant listing, step-up
//! and confirmation for sensitive actions, tenant suspension and
//! reinstatement; and the `World` fixture the `platform_*` files share.
//! Acting as a user (impersonation, sign-in links) is
//! `platform_impersonation.rs`; this file must not duplicate its tests.

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade::clock::Clock;
use stockade::http::Problem;
use stockade::ids::TenantId;

use crate::auth::{Login, PASSWORD, login, login_ok, me, server, signup};
use crate::testkit::{Backend, TestServer};

pub const ROOT: &str = "root@platform.test";
pub const OWNERS: &[(&str, &str)] = &[("STOCKADE_PLATFORM_OWNERS", ROOT)];

/// A server with one platform owner (who signed up `root-ops`) and one
/// ordinary tenant `acme` (owner pat@acme.test).
pub struct World {
    pub s: TestServer,
    pub root: Login,
    /// The owner's TOTP (signing in again needs it: `mfa::login_mfa`).
    pub root_totp: crate::mfa::Totp,
    pub root_id: String,
    pub pat: Login,
    pub pat_id: String,
    pub acme: TenantId,
}

pub async fn world(backend: Backend, env: &[(&str, &str)]) -> Option<World> {
    let s = server(backend, env).await?;
    let root = signup(&s, "root-ops", ROOT).await;
    // Platform owners always need a second factor: enrolled, and used in
    // this session (`amr`), as a real owner would before any platform call.
    let root_totp = crate::mfa::enrol_totp(&s, &root.access).await;
    crate::mfa::step_up_totp(&s, &root.access, &root_totp).await;
    let pat = signup(&s, "acme", "pat@acme.test").await;
    let root_id = user_id(&s, &root.access).await;
    let pat_id = user_id(&s, &pat.access).await;
    let acme = tenant_id(&s, "acme").await;
    Some(World {
        s,
        root,
        root_totp,
        root_id,
        pat,
        pat_id,
        acme,
    })
}

pub async fn user_id(s: &TestServer, access: &str) -> String {
    let body: Value = me(s, access).await.json().await.unwrap();
    body["user"]["id"].as_str().unwrap().to_owned()
}

pub async fn tenant_id(s: &TestServer, slug: &str) -> TenantId {
    stockade::tenancy::find_by_slug(&s.db, slug)
        .await
        .unwrap()
        .unwrap()
        .id
}

pub async fn post(s: &TestServer, access: &str, path: &str, body: Value) -> reqwest::Response {
    s.client
        .post(s.url(path))
        .bearer_auth(access)
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub async fn get(s: &TestServer, access: &str, path: &str) -> reqwest::Response {
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

pub async fn expect(res: reqwest::Response, status: StatusCode, problem: &str) {
    assert_eq!(res.status(), status);
    assert_eq!(code(res).await, problem);
}

pub fn confirmed() -> Value {
    json!({"confirm": true, "reason": "support ticket #42"})
}

/// One audit event, as the tests look at it.
#[derive(Debug)]
pub struct Event {
    pub action: String,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub impersonator_id: Option<String>,
    pub target_id: Option<String>,
    pub details: Value,
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

pub async fn find_event(s: &TestServer, tenant: TenantId, action: &str) -> Event {
    events(s, tenant)
        .await
        .into_iter()
        .rev()
        .find(|e| e.action == action)
        .unwrap_or_else(|| panic!("no `{action}` event in {tenant}"))
}

pub async fn count(s: &TestServer, tenant: TenantId, action: &str) -> usize {
    events(s, tenant)
        .await
        .iter()
        .filter(|e| e.action == action)
        .count()
}

/// A platform action audited by `root` in both logs.
pub async fn audited_in_both(w: &World, tenant: TenantId, action: &str) -> Event {
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

pub fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

pub fn time(v: &Value) -> DateTime<Utc> {
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
    // Every platform route needs a step-up, the tenant listing included.
    expect(
        get(s, &w.root.access, "/v1/platform/tenants").await,
        StatusCode::FORBIDDEN,
        "auth.step_up_required",
    )
    .await;
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

crate::both_servers!(
    non_owners_get_403_on_every_platform_route,
    owner_lists_tenants_in_pages,
    sensitive_actions_need_step_up_and_confirm,
    suspension_revokes_at_once_and_reinstatement_restores,
);
