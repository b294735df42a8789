//! Issue #17 item 1, as the attacker: a platform owner impersonating a user
//! tries to turn the 15-minute, marked impersonation into something that
//! outlives it or drops the mark — a normal session through a tenant switch,
//! a refresh, a step-up, API keys, the user's password, the account. Every
//! path is refused with 403 `platform.impersonation_forbidden` (a refresh:
//! 401), nothing changes, the refusal is audited with the impersonator, and
//! nothing obtained during the impersonation works after it ends. On SQLite
//! and PostgreSQL.

use chrono::Duration;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stockade::clock::Clock;
use stockade::ids::TenantId;

use crate::auth::{Login, PASSWORD, login, me, refresh, server, set_cookie, signup};
use crate::testkit::{Backend, TestServer};

const ROOT: &str = "root@platform.test";
const FORBIDDEN: &str = "platform.impersonation_forbidden";

/// A platform owner (`root`, tenant `root-ops`) and a user `pat`, owner of
/// tenant `acme` and viewer of tenant `beta`.
struct World {
    s: TestServer,
    root: Login,
    root_id: String,
    pat: Login,
    pat_id: String,
    acme: TenantId,
    beta: TenantId,
}

async fn world(backend: Backend) -> Option<World> {
    let s = server(backend, &[("STOCKADE_PLATFORM_OWNERS", ROOT)]).await?;
    let root = signup(&s, "root-ops", ROOT).await;
    let _root_totp = crate::mfa::owner_factor(&s, &root.access).await;
    let pat = signup(&s, "acme", "pat@acme.test").await;
    signup(&s, "beta", "bo@beta.test").await;
    let root_id = user_id(&s, &root.access).await;
    let pat_id = user_id(&s, &pat.access).await;
    let acme = tenant(&s, "acme").await;
    let beta = tenant(&s, "beta").await;
    let mut tx = s.db.tenant_tx(beta).await.unwrap();
    let pat_uuid = stockade::ids::UserId(pat_id.parse().unwrap());
    stockade::tenancy::add_member(&mut tx, s.clock.as_ref(), pat_uuid, "viewer")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    Some(World {
        s,
        root,
        root_id,
        pat,
        pat_id,
        acme,
        beta,
    })
}

async fn user_id(s: &TestServer, access: &str) -> String {
    let body: Value = me(s, access).await.json().await.unwrap();
    body["user"]["id"].as_str().unwrap().to_owned()
}

async fn tenant(s: &TestServer, slug: &str) -> TenantId {
    stockade::tenancy::find_by_slug(&s.db, slug)
        .await
        .unwrap()
        .unwrap()
        .id
}

async fn send(
    s: &TestServer,
    method: Method,
    path: &str,
    bearer: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = s.client.request(method, s.url(path)).bearer_auth(bearer);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

/// Root impersonates pat in acme: the marked token (no refresh cookie).
async fn impersonate(w: &World) -> String {
    let res = send(
        &w.s,
        Method::POST,
        "/v1/platform/impersonate",
        &w.root.access,
        Some(json!({"user_id": w.pat_id, "tenant": "acme",
                    "reason": "support ticket #42", "confirm": true})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        set_cookie(&res).is_none(),
        "an impersonation gets no cookie"
    );
    let body: Value = res.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// The refresh token a response sets.
fn cookie_of(res: &reqwest::Response) -> String {
    let cookie = set_cookie(res).expect("a refresh cookie");
    let value = cookie.split(';').next().unwrap();
    value
        .trim_start_matches("__Host-stockade_refresh=")
        .to_owned()
}

/// The answer is the impersonation refusal, with no cookie.
async fn refused(res: reqwest::Response) {
    let status = res.status();
    let cookie = set_cookie(&res);
    let text = res.text().await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["code"], FORBIDDEN, "{body}");
    assert!(cookie.is_none(), "a refusal sets no cookie: {cookie:?}");
}

/// `(actor_id, impersonator_id, details)` of every `action` event of a chain.
async fn events(s: &TestServer, chain: TenantId, action: &str) -> Vec<(String, String, Value)> {
    let mut tx = s.db.tenant_read(chain).await.unwrap();
    let rows: Vec<(Option<String>, Option<String>, String)> = tx
        .fetch_all(
            "SELECT actor_id, impersonator_id, details FROM audit_events \
             WHERE tenant_id = $1 AND action = $2 ORDER BY seq",
            vec![action.into()],
        )
        .await
        .unwrap();
    rows.into_iter()
        .map(|(a, i, d)| {
            (
                a.unwrap_or_default(),
                i.unwrap_or_default(),
                serde_json::from_str(&d).unwrap(),
            )
        })
        .collect()
}

/// The refusal of `operation` is in acme's chain and the platform's, as pat
/// driven by root: returns the `suppressed` counts of its events.
async fn denial_audited(w: &World, operation: &str) -> Vec<u64> {
    let mut counts = Vec::new();
    for chain in [w.acme, TenantId::PLATFORM] {
        let found: Vec<_> = events(&w.s, chain, "platform.impersonation.denied")
            .await
            .into_iter()
            .filter(|e| e.2["operation"] == operation)
            .collect();
        assert!(!found.is_empty(), "no refusal of {operation} in {chain}");
        for (actor, impersonator, details) in &found {
            assert_eq!(actor, &w.pat_id);
            assert_eq!(impersonator, &w.root_id, "the impersonator is named");
            if chain == TenantId::PLATFORM {
                assert_eq!(details["tenant_id"], w.acme.to_string());
            }
        }
        counts = found
            .iter()
            .map(|e| e.2["suppressed"].as_u64().unwrap())
            .collect();
    }
    counts
}

/// Sessions of pat in `tenant`, revoked or not.
async fn sessions_of(w: &World, tenant: TenantId) -> i64 {
    let mut tx = w.s.db.tenant_read(tenant).await.unwrap();
    let (n,): (i64,) = tx
        .fetch_one(
            "SELECT COUNT(*) FROM sessions WHERE tenant_id = $1 AND user_id = $2",
            vec![stockade::ids::UserId(w.pat_id.parse().unwrap()).into()],
        )
        .await
        .unwrap();
    n
}

async fn verify_all_chains(s: &TestServer) {
    for r in stockade::audit::verify_all(&s.db).await.unwrap() {
        assert!(r.ok, "{r:?}");
    }
}

/// Switching tenant (to the same tenant or another) would mint a normal,
/// unmarked, refreshable session of pat.
async fn switching_tenant_cannot_launder_an_impersonation(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let s = &w.s;
    let token = impersonate(&w).await;
    let before = (sessions_of(&w, w.acme).await, sessions_of(&w, w.beta).await);
    for slug in ["acme", "beta", "acme"] {
        let body = Some(json!({ "tenant": slug }));
        refused(send(s, Method::POST, "/v1/auth/switch-tenant", &token, body).await).await;
    }
    let after = (sessions_of(&w, w.acme).await, sessions_of(&w, w.beta).await);
    assert_eq!(before, after, "no session was created");
    for chain in [w.acme, w.beta] {
        assert!(events(s, chain, "auth.tenant.switched").await.is_empty());
    }
    // Three refusals in one minute: one event, in both chains.
    assert_eq!(denial_audited(&w, "tenant_switch").await, vec![0]);
    s.clock.advance(Duration::seconds(61));
    let body = Some(json!({ "tenant": "acme" }));
    refused(send(s, Method::POST, "/v1/auth/switch-tenant", &token, body).await).await;
    assert_eq!(denial_audited(&w, "tenant_switch").await, vec![0, 2]);
    // Pat switches as himself.
    let body = Some(json!({ "tenant": "beta" }));
    let own = send(
        s,
        Method::POST,
        "/v1/auth/switch-tenant",
        &w.pat.access,
        body,
    )
    .await;
    assert_eq!(own.status(), StatusCode::OK);
    verify_all_chains(s).await;
}

/// An impersonation is never extended by a refresh: it has no cookie, and a
/// refresh token planted for its session (what a bug elsewhere would leave)
/// is refused without being rotated.
async fn refresh_never_extends_an_impersonation(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let s = &w.s;
    let token = impersonate(&w).await;
    let with_bearer = s
        .client
        .post(s.url("/v1/auth/refresh"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(with_bearer.status(), StatusCode::UNAUTHORIZED);
    let me_body: Value = me(s, &token).await.json().await.unwrap();
    let session: uuid::Uuid = me_body["session_id"].as_str().unwrap().parse().unwrap();
    let planted = stockade::sessions::RefreshToken::generate(w.acme).unwrap();
    let mut tx = s.db.tenant_tx(w.acme).await.unwrap();
    tx.execute(
        "INSERT INTO refresh_tokens (tenant_id, token_hash, session_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
        vec![
            planted.hash().into(),
            session.into(),
            s.clock.now().into(),
            (s.clock.now() + Duration::days(7)).into(),
        ],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let res = refresh(s, &planted.encode()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "not refreshed");
    let mut tx = s.db.tenant_read(w.acme).await.unwrap();
    let rows: Vec<(Option<chrono::DateTime<chrono::Utc>>,)> = tx
        .fetch_all(
            "SELECT used_at FROM refresh_tokens WHERE tenant_id = $1 AND session_id = $2",
            vec![session.into()],
        )
        .await
        .unwrap();
    assert_eq!(rows, vec![(None,)], "nothing rotated, nothing issued");
    drop(tx);
    s.clock.advance(Duration::minutes(16));
    assert_eq!(me(s, &token).await.status(), StatusCode::UNAUTHORIZED);
    let res = refresh(s, &planted.encode()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

/// API keys would act for pat after the impersonation, with no impersonator.
async fn api_keys_cannot_be_made_rotated_or_revoked_while_impersonating(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let s = &w.s;
    let create = json!({"name": "laundered", "scopes": ["records:read"]});
    let res = send(
        s,
        Method::POST,
        "/v1/api-keys",
        &w.pat.access,
        Some(create.clone()),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let own: Value = res.json().await.unwrap();
    let (key, id) = (own["key"].as_str().unwrap(), own["id"].as_str().unwrap());
    let token = impersonate(&w).await;
    let rotate = format!("/v1/api-keys/{id}/rotate");
    let revoke = format!("/v1/api-keys/{id}");
    for (method, path, body) in [
        (Method::POST, "/v1/api-keys", Some(create)),
        (Method::GET, "/v1/api-keys", None),
        (
            Method::POST,
            rotate.as_str(),
            Some(json!({"grace_seconds": 3600})),
        ),
        (Method::DELETE, revoke.as_str(), None),
    ] {
        refused(send(s, method, path, &token, body).await).await;
    }
    for operation in [
        "api_key_create",
        "api_key_list",
        "api_key_rotate",
        "api_key_revoke",
    ] {
        assert_eq!(denial_audited(&w, operation).await, vec![0]);
    }
    // Pat's key is as it was: one key, live, neither rotated nor revoked.
    let listed: Value = send(s, Method::GET, "/v1/api-keys", &w.pat.access, None)
        .await
        .json()
        .await
        .unwrap();
    let keys = listed.as_array().unwrap();
    assert_eq!(keys.len(), 1, "{listed}");
    assert!(keys[0]["revoked_at"].is_null() && keys[0]["replaced_by"].is_null());
    let used = send(s, Method::GET, "/v1/collections/orders/records", key, None).await;
    assert_eq!(used.status(), StatusCode::OK);
    assert_eq!(events(s, w.acme, "api_keys.key.created").await.len(), 1);
    verify_all_chains(s).await;
}

/// A password change would sign pat out everywhere and lock him out; a
/// sign-out of every device would reach tenants never impersonated.
async fn password_change_and_logout_all_are_refused_while_impersonating(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let s = &w.s;
    let res = login(s, "pat@acme.test", PASSWORD, Some("acme")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let second = Login {
        refresh: cookie_of(&res),
        access: res.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned(),
    };
    let token = impersonate(&w).await;
    let body = json!({"current_password": PASSWORD, "new_password": "Quite-Different-Secret-77"});
    refused(send(s, Method::POST, "/v1/auth/password", &token, Some(body)).await).await;
    assert_eq!(denial_audited(&w, "password_change").await, vec![0]);
    // Pat's sessions live on, his password is unchanged.
    for access in [&w.pat.access, &second.access] {
        assert_eq!(me(s, access).await.status(), StatusCode::OK);
    }
    assert_eq!(refresh(s, &second.refresh).await.status(), StatusCode::OK);
    let new = login(
        s,
        "pat@acme.test",
        "Quite-Different-Secret-77",
        Some("acme"),
    )
    .await;
    assert_eq!(new.status(), StatusCode::UNAUTHORIZED);
    let old = login(s, "pat@acme.test", PASSWORD, Some("acme")).await;
    assert_eq!(old.status(), StatusCode::OK);
    assert!(events(s, w.acme, "auth.password.changed").await.is_empty());
    // Nor signing pat out everywhere (beta included, never impersonated).
    let beta = login(s, "pat@acme.test", PASSWORD, Some("beta")).await;
    let beta_access = beta.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    refused(send(s, Method::POST, "/v1/auth/logout-all", &token, None).await).await;
    assert_eq!(denial_audited(&w, "logout_all").await, vec![0]);
    for access in [&w.pat.access, &second.access, &beta_access] {
        assert_eq!(me(s, access).await.status(), StatusCode::OK);
    }
    assert_eq!(me(s, &token).await.status(), StatusCode::OK);
}

/// A step-up would open every sensitive action; deleting the account or
/// joining another tenant changes who pat is.
async fn step_up_deletion_and_invitations_are_refused_while_impersonating(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let s = &w.s;
    // Root's own tenant invites pat: accepting would need pat himself.
    let invite = Some(json!({"email": "pat@acme.test", "role": "viewer"}));
    let res = send(s, Method::POST, "/v1/invitations", &w.root.access, invite).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let invitation: Value = res.json().await.unwrap();
    let token = impersonate(&w).await;
    let reauth = Some(json!({ "password": PASSWORD }));
    refused(send(s, Method::POST, "/v1/auth/reauth", &token, reauth).await).await;
    let me_body: Value = me(s, &token).await.json().await.unwrap();
    assert!(me_body["authenticated_at"].is_null(), "no password proof");
    refused(send(s, Method::DELETE, "/v1/me", &token, None).await).await;
    assert_eq!(me(s, &w.pat.access).await.status(), StatusCode::OK);
    let accept = Some(json!({ "token": invitation["token"] }));
    refused(send(s, Method::POST, "/v1/invitations/accept", &token, accept).await).await;
    for operation in ["step_up", "account_deletion", "invitation_accept"] {
        assert_eq!(denial_audited(&w, operation).await, vec![0]);
    }
    let root_ops = tenant(s, "root-ops").await;
    let mut tx = s.db.tenant_read(root_ops).await.unwrap();
    let members: Vec<(uuid::Uuid,)> = tx
        .fetch_all(
            "SELECT user_id FROM memberships WHERE tenant_id = $1",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(members.len(), 1, "pat did not join root-ops");
}

/// Refusals held in a sampling window are not lost when the impersonator
/// stops: the refusal flush writes them, with their count, to the tenant's
/// chain and the platform's alike.
async fn held_refusals_are_flushed_to_both_chains(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let s = &w.s;
    let token = impersonate(&w).await;
    for _ in 0..4 {
        let reauth = Some(json!({ "password": PASSWORD }));
        refused(send(s, Method::POST, "/v1/auth/reauth", &token, reauth).await).await;
    }
    assert_eq!(denial_audited(&w, "step_up").await, vec![0]);
    s.clock.advance(Duration::seconds(61));
    assert_eq!(stockade::app::flush_refusals(&s.state).await, 1);
    for chain in [w.acme, TenantId::PLATFORM] {
        let counts: Vec<u64> = events(s, chain, "platform.impersonation.denied")
            .await
            .iter()
            .map(|e| e.2["count"].as_u64().unwrap())
            .collect();
        assert_eq!(counts, vec![1, 3], "{chain}");
    }
    assert_eq!(denial_audited(&w, "step_up").await, vec![0, 2]);
    verify_all_chains(s).await;
}

/// The chain of the issue: switch → cookie → refresh → API key. Whatever a
/// step yields is used by the next; after the impersonation's 15 minutes
/// nothing obtained in it may work, and nothing in acme's log may be pat's
/// without the impersonator.
async fn the_laundering_chain_fails_and_nothing_outlives_the_impersonation(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let s = &w.s;
    let token = impersonate(&w).await;
    let (mut bearers, mut cookies, mut keys) = (vec![token.clone()], Vec::new(), Vec::new());
    let mut statuses = Vec::new();
    // 1. switch to pat's own tenant.
    let body = Some(json!({ "tenant": "acme" }));
    let res = send(s, Method::POST, "/v1/auth/switch-tenant", &token, body).await;
    statuses.push(res.status());
    if res.status().is_success() {
        cookies.push(cookie_of(&res));
    }
    if res.status().is_success() {
        let b: Value = res.json().await.unwrap();
        bearers.push(b["access_token"].as_str().unwrap().to_owned());
    }
    // 2. refresh with whatever cookie came back.
    for cookie in cookies.clone() {
        let res = refresh(s, &cookie).await;
        statuses.push(res.status());
        if res.status().is_success() {
            cookies.push(cookie_of(&res));
        }
        if res.status().is_success() {
            let b: Value = res.json().await.unwrap();
            bearers.push(b["access_token"].as_str().unwrap().to_owned());
        }
    }
    // 3. an API key with the newest bearer.
    let newest = bearers.last().unwrap().clone();
    let create = Some(json!({"name": "backdoor", "scopes": ["records:read"]}));
    let res = send(s, Method::POST, "/v1/api-keys", &newest, create).await;
    statuses.push(res.status());
    if res.status().is_success() {
        let b: Value = res.json().await.unwrap();
        keys.push(b["key"].as_str().unwrap().to_owned());
    }

    // The impersonation ends; whatever it yielded must end with it.
    s.clock
        .advance(Duration::minutes(15) + Duration::seconds(1));
    stockade::platform::end_expired_impersonations(&s.db, s.clock.as_ref())
        .await
        .unwrap();
    for bearer in &bearers {
        assert_eq!(me(s, bearer).await.status(), StatusCode::UNAUTHORIZED);
    }
    // The newest cookie (the older ones were rotated: presenting one would
    // revoke the session as a reuse).
    if let Some(cookie) = cookies.last() {
        let res = refresh(s, cookie).await;
        assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "a cookie outlived it"
        );
    }
    for key in &keys {
        let res = send(s, Method::GET, "/v1/collections/orders/records", key, None).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "a key outlived it");
    }
    // Nothing pat "did" after the start lacks the impersonator.
    let mut tx = s.db.tenant_read(w.acme).await.unwrap();
    let unmarked: Vec<(String,)> = tx
        .fetch_all(
            "SELECT action FROM audit_events WHERE tenant_id = $1 AND actor_id = $2 \
             AND impersonator_id IS NULL AND seq > (SELECT MAX(seq) FROM audit_events \
             WHERE tenant_id = $1 AND action = 'platform.impersonation.started')",
            vec![w.pat_id.as_str().into()],
        )
        .await
        .unwrap();
    assert!(unmarked.is_empty(), "audited as pat alone: {unmarked:?}");
    drop(tx);
    // Every step was refused, and nothing was obtained.
    assert_eq!(statuses, vec![StatusCode::FORBIDDEN, StatusCode::FORBIDDEN]);
    assert_eq!((bearers.len(), cookies.len(), keys.len()), (1, 0, 0));
    // Pat's own session is untouched.
    assert_eq!(refresh(s, &w.pat.refresh).await.status(), StatusCode::OK);
    verify_all_chains(s).await;
}

crate::both_servers!(
    switching_tenant_cannot_launder_an_impersonation,
    refresh_never_extends_an_impersonation,
    api_keys_cannot_be_made_rotated_or_revoked_while_impersonating,
    password_change_and_logout_all_are_refused_while_impersonating,
    step_up_deletion_and_invitations_are_refused_while_impersonating,
    held_refusals_are_flushed_to_both_chains,
    the_laundering_chain_fails_and_nothing_outlives_the_impersonation,
);
