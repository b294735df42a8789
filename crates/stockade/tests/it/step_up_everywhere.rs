//! Step-up on every sensitive action (issue #19 item 6), on SQLite and
//! PostgreSQL, one test per action: a session whose password proof is older
//! than the tenant's window is refused with 403 `auth.step_up_required`
//! naming the age limit (`max_age_seconds`) and `POST /v1/auth/reauth`, and
//! nothing anywhere changed (every tenant's members, roles, invitations,
//! keys, settings, sessions and audit chain, the platform chain, tenants,
//! passwords, the outbox); after a re-authentication the same call
//! succeeds. And the fixtures (`reauth`, `Snapshot`, `refused_then_allowed`)
//! `step_up_attacks.rs` uses; the attacks themselves live there.

use chrono::{DateTime, Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stockade::ids::TenantId;

use crate::auth::{PASSWORD, audit_actions, server, signup};
use crate::members::{invite_ok, members_ok};
use crate::platform::{OWNERS, confirmed, world};
use crate::roles::{call, create as create_role, member_with_id};
use crate::testkit::{Backend, TestServer};

/// The default step-up window, in seconds.
pub const DEFAULT_MAX_AGE: i64 = 300;

/// Re-authenticates the session of `access` with the fixtures' password.
pub async fn reauth(s: &TestServer, access: &str) {
    let (status, body) = call(
        s,
        Method::POST,
        "/v1/auth/reauth",
        access,
        Some(json!({"password": PASSWORD})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

/// Asserts a 403 `auth.step_up_required` problem naming `max_age` seconds
/// and the route that grants a step-up.
pub fn assert_step_up_required(res: &(StatusCode, Value), max_age: i64) {
    let (status, body) = res;
    assert_eq!(*status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "auth.step_up_required", "{body}");
    assert_eq!(body["max_age_seconds"], max_age, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("POST /v1/auth/reauth"), "{body}");
}

type Rows<T> = Vec<T>;
type When = Option<DateTime<Utc>>;

/// One tenant's state, as far as a sensitive action could change it.
#[derive(Debug, PartialEq)]
struct TenantState {
    members: Rows<(uuid::Uuid, String, String)>,
    roles: Rows<(String, String, String, String)>,
    invitations: Rows<(uuid::Uuid, When, When)>,
    api_keys: Rows<(uuid::Uuid, When, Option<uuid::Uuid>)>,
    settings: stockade::tenancy::TenantSettings,
    sessions: Rows<(uuid::Uuid, When)>,
    audit: Rows<(String,)>,
}

/// Everything a sensitive action could change, anywhere in the database.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    tenants: Rows<(uuid::Uuid, String, TenantState)>,
    platform_audit: Rows<(String,)>,
    users: Rows<(uuid::Uuid, String, Option<String>)>,
    outbox: Rows<(uuid::Uuid,)>,
}

impl Snapshot {
    pub async fn take(s: &TestServer) -> Snapshot {
        let mut g = s.db.global_read().await.unwrap();
        let list: Vec<(uuid::Uuid, String)> = g
            .fetch_all("SELECT id, status FROM tenants ORDER BY id", vec![])
            .await
            .unwrap();
        let users = g
            .fetch_all(
                "SELECT id, status, password_hash FROM users ORDER BY id",
                vec![],
            )
            .await
            .unwrap();
        let outbox = g
            .fetch_all("SELECT id FROM email_outbox ORDER BY id", vec![])
            .await
            .unwrap();
        drop(g);
        let mut tenants = Vec::new();
        for (id, status) in list {
            tenants.push((id, status, tenant_state(s, TenantId(id)).await));
        }
        let mut p = s.db.tenant_read(TenantId::PLATFORM).await.unwrap();
        let platform_audit = p
            .fetch_all(
                "SELECT action FROM audit_events WHERE tenant_id = $1 ORDER BY seq",
                vec![],
            )
            .await
            .unwrap();
        Snapshot {
            tenants,
            platform_audit,
            users,
            outbox,
        }
    }
}

async fn tenant_state(s: &TestServer, tenant: TenantId) -> TenantState {
    let mut tx = s.db.tenant_read(tenant).await.unwrap();
    let q = "WHERE tenant_id = $1 ORDER BY";
    TenantState {
        members: tx
            .fetch_all(
                &format!("SELECT user_id, role, status FROM memberships {q} user_id"),
                vec![],
            )
            .await
            .unwrap(),
        roles: tx
            .fetch_all(
                &format!("SELECT name, description, permissions, record_rules FROM roles {q} name"),
                vec![],
            )
            .await
            .unwrap(),
        invitations: tx
            .fetch_all(
                &format!("SELECT id, revoked_at, accepted_at FROM invitations {q} id"),
                vec![],
            )
            .await
            .unwrap(),
        api_keys: tx
            .fetch_all(
                &format!("SELECT id, revoked_at, replaced_by FROM api_keys {q} id"),
                vec![],
            )
            .await
            .unwrap(),
        settings: stockade::tenancy::settings::load(&mut tx).await.unwrap(),
        sessions: tx
            .fetch_all(
                &format!("SELECT id, revoked_at FROM sessions {q} id"),
                vec![],
            )
            .await
            .unwrap(),
        audit: tx
            .fetch_all(&format!("SELECT action FROM audit_events {q} seq"), vec![])
            .await
            .unwrap(),
    }
}

/// Lets the step-up of `access` (proved at sign-in or a re-authentication
/// just now) grow one second older than the default window, calls the
/// action — 403 `auth.step_up_required` with `max_age_seconds: 300`, and
/// nothing changed anywhere — then re-authenticates and calls it again:
/// that answer is returned.
pub async fn refused_then_allowed(
    s: &TestServer,
    access: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    s.clock
        .advance(Duration::seconds(DEFAULT_MAX_AGE) + Duration::seconds(1));
    let before = Snapshot::take(s).await;
    let refused = call(s, method.clone(), path, access, body.clone()).await;
    assert_step_up_required(&refused, DEFAULT_MAX_AGE);
    assert_eq!(
        Snapshot::take(s).await,
        before,
        "{method} {path} refused for want of a step-up changed something"
    );
    reauth(s, access).await;
    call(s, method, path, access, body).await
}

fn count(actions: &[String], action: &str) -> usize {
    actions.iter().filter(|a| *a == action).count()
}

crate::both_servers!(
    password_change_needs_a_step_up,
    role_create_needs_a_step_up,
    role_update_needs_a_step_up,
    role_delete_needs_a_step_up,
    role_assignment_needs_a_step_up,
    member_deactivation_needs_a_step_up,
    member_removal_needs_a_step_up,
    invitation_create_needs_a_step_up,
    invitation_resend_needs_a_step_up,
    invitation_revoke_needs_a_step_up,
    api_key_create_needs_a_step_up,
    api_key_rotate_needs_a_step_up,
    settings_change_needs_a_step_up,
    account_deletion_needs_a_step_up,
    platform_tenant_listing_needs_a_step_up,
    platform_suspend_needs_a_step_up,
    platform_reinstate_needs_a_step_up,
    platform_impersonate_needs_a_step_up,
    platform_sign_in_link_needs_a_step_up,
);

async fn password_change_needs_a_step_up(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = signup(&s, "acme", "owner@acme.test").await;
    let body = json!({"current_password": PASSWORD, "new_password": "Another-Strong-Passw0rd-7"});
    let (st, got) =
        refused_then_allowed(&s, &o.access, Method::POST, "/v1/auth/password", Some(body)).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{got}");
    let actions = audit_actions(&s, "acme").await;
    assert_eq!(count(&actions, "auth.password.changed"), 1);
}

async fn role_create_needs_a_step_up(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = signup(&s, "acme", "owner@acme.test").await;
    let body = json!({"name": "auditor", "permissions": ["audit:read"]});
    let (st, got) =
        refused_then_allowed(&s, &o.access, Method::POST, "/v1/roles", Some(body)).await;
    assert_eq!(st, StatusCode::CREATED, "{got}");
    assert_eq!(
        count(&audit_actions(&s, "acme").await, "rbac.role.created"),
        1
    );
}

async fn role_update_needs_a_step_up(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = signup(&s, "acme", "owner@acme.test").await;
    let (st, _) = create_role(&s, &o.access, json!({"name": "auditor", "permissions": []})).await;
    assert_eq!(st, StatusCode::CREATED);
    let body = json!({"permissions": ["audit:read"]});
    let (st, got) = refused_then_allowed(
        &s,
        &o.access,
        Method::PATCH,
        "/v1/roles/auditor",
        Some(body),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got["permissions"], json!(["audit:read"]));
    assert_eq!(
        count(&audit_actions(&s, "acme").await, "rbac.role.updated"),
        1
    );
}

async fn role_delete_needs_a_step_up(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = signup(&s, "acme", "owner@acme.test").await;
    let (st, _) = create_role(&s, &o.access, json!({"name": "auditor", "permissions": []})).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, got) =
        refused_then_allowed(&s, &o.access, Method::DELETE, "/v1/roles/auditor", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{got}");
    assert_eq!(
        count(&audit_actions(&s, "acme").await, "rbac.role.deleted"),
        1
    );
}

async fn role_assignment_needs_a_step_up(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = signup(&s, "acme", "owner@acme.test").await;
    let (_, bob) = member_with_id(&s, "acme", "bob@acme.test", "viewer").await;
    let path = format!("/v1/members/{bob}");
    let body = json!({"role": "admin"});
    let (st, got) = refused_then_allowed(&s, &o.access, Method::PATCH, &path, Some(body)).await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got["role"], "admin");
    assert_eq!(
        count(&audit_actions(&s, "acme").await, "tenancy.member.updated"),
        1
    );
}

async fn member_deactivation_needs_a_step_up(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = signup(&s, "acme", "owner@acme.test").await;
    let (bob_login, bob) = member_with_id(&s, "acme", "bob@acme.test", "editor").await;
    let path = format!("/v1/members/{bob}");
    let body = json!({"active": false});
    let (st, got) = refused_then_allowed(&s, &o.access, Method::PATCH, &path, Some(body)).await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got["status"], "deactivated");
    // Bob's session ended only with the accepted call.
    let (st, _) = call(&s, Method::GET, "/v1/me", &bob_login.access, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

async fn member_removal_needs_a_step_up(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = signup(&s, "acme", "owner@acme.test").await;
    let (_, bob) = member_with_id(&s, "acme", "bob@acme.test", "editor").await;
    let path = format!("/v1/members/{bob}");
    let (st, got) = refused_then_allowed(&s, &o.access, Method::DELETE, &path, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{got}");
    let members = members_ok(&s, &o.access).await;
    assert!(members.iter().all(|m| m["user_id"] != bob.as_str()));
    assert_eq!(
        count(&audit_actions(&s, "acme").await, "tenancy.member.removed"),
        1
    );
}

async fn invitation_create_needs_a_step_up(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = signup(&s, "acme", "owner@acme.test").await;
    let body = json!({"email": "new@acme.test", "role": "viewer"});
    let (st, got) =
        refused_then_allowed(&s, &o.access, Method::POST, "/v1/invitations", Some(body)).await;
    assert_eq!(st, StatusCode::CREATED, "{got}");
    assert!(got["token"].is_string());
    let actions = audit_actions(&s, "acme").await;
    assert_eq!(count(&actions, "tenancy.invitation.created"), 1);
}

/// A resend is a new invitation for the same address (it replaces the
/// pending one): refused, the first stays pending and its token works.
async fn invitation_resend_needs_a_step_up(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = signup(&s, "acme", "owner@acme.test").await;
    invite_ok(&s, &o.access, "new@acme.test", "viewer").await;
    let body = json!({"email": "new@acme.test", "role": "viewer"});
    let (st, got) =
        refused_then_allowed(&s, &o.access, Method::POST, "/v1/invitations", Some(body)).await;
    assert_eq!(st, StatusCode::CREATED, "{got}");
    let actions = audit_actions(&s, "acme").await;
    assert_eq!(count(&actions, "tenancy.invitation.created"), 2);
    assert_eq!(count(&actions, "tenancy.invitation.revoked"), 1);
}

async fn invitation_revoke_needs_a_step_up(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = signup(&s, "acme", "owner@acme.test").await;
    invite_ok(&s, &o.access, "new@acme.test", "viewer").await;
    let (_, list) = call(&s, Method::GET, "/v1/invitations", &o.access, None).await;
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/invitations/{id}");
    let (st, got) = refused_then_allowed(&s, &o.access, Method::DELETE, &path, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{got}");
    let (_, list) = call(&s, Method::GET, "/v1/invitations", &o.access, None).await;
    assert_eq!(list, json!([]));
}

async fn api_key_create_needs_a_step_up(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = signup(&s, "acme", "owner@acme.test").await;
    let body = json!({"name": "ci deploy", "scopes": ["records:read"]});
    let (st, got) =
        refused_then_allowed(&s, &o.access, Method::POST, "/v1/api-keys", Some(body)).await;
    assert_eq!(st, StatusCode::CREATED, "{got}");
    assert!(got["key"].as_str().unwrap().starts_with("stk_"));
    assert_eq!(
        count(&audit_actions(&s, "acme").await, "api_keys.key.created"),
        1
    );
}

async fn api_key_rotate_needs_a_step_up(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = signup(&s, "acme", "owner@acme.test").await;
    let (key, id) = crate::apikeys::create_key(&s, &o.access, &["records:read"]).await;
    let path = format!("/v1/api-keys/{id}/rotate");
    let (st, got) = refused_then_allowed(&s, &o.access, Method::POST, &path, None).await;
    assert_eq!(st, StatusCode::CREATED, "{got}");
    assert_ne!(got["key"].as_str().unwrap(), key);
    assert_eq!(
        count(&audit_actions(&s, "acme").await, "api_keys.key.rotated"),
        1
    );
    // Revoking is not on the list: it needs no step-up (it only takes
    // power away), even long after the proof.
    s.clock.advance(Duration::seconds(DEFAULT_MAX_AGE + 1));
    let new_id = got["id"].as_str().unwrap();
    let (st, got) = call(
        &s,
        Method::DELETE,
        &format!("/v1/api-keys/{new_id}"),
        &o.access,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{got}");
}

async fn settings_change_needs_a_step_up(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = signup(&s, "acme", "owner@acme.test").await;
    let body = json!({"session_idle_secs": 3600});
    let (st, got) = refused_then_allowed(
        &s,
        &o.access,
        Method::PATCH,
        "/v1/tenant/settings",
        Some(body),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got["session_idle_secs"], 3600);
    let actions = audit_actions(&s, "acme").await;
    assert_eq!(count(&actions, "tenancy.settings.updated"), 1);
}

async fn account_deletion_needs_a_step_up(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = signup(&s, "acme", "owner@acme.test").await;
    let (bob, _) = member_with_id(&s, "acme", "bob@acme.test", "editor").await;
    let (st, got) = refused_then_allowed(&s, &bob.access, Method::DELETE, "/v1/me", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{got}");
    assert_eq!(members_ok(&s, &o.access).await.len(), 1);
}

async fn platform_tenant_listing_needs_a_step_up(backend: Backend) {
    let Some(w) = world(backend, OWNERS).await else {
        return;
    };
    let (st, got) = refused_then_allowed(
        &w.s,
        &w.root.access,
        Method::GET,
        "/v1/platform/tenants",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got["tenants"].as_array().unwrap().len(), 2);
}

async fn platform_suspend_needs_a_step_up(backend: Backend) {
    let Some(w) = world(backend, OWNERS).await else {
        return;
    };
    let path = format!("/v1/platform/tenants/{}/suspend", w.acme);
    let (st, got) =
        refused_then_allowed(&w.s, &w.root.access, Method::POST, &path, Some(confirmed())).await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got["status"], "suspended");
}

async fn platform_reinstate_needs_a_step_up(backend: Backend) {
    let Some(w) = world(backend, OWNERS).await else {
        return;
    };
    let suspend = format!("/v1/platform/tenants/{}/suspend", w.acme);
    let (st, _) = call(
        &w.s,
        Method::POST,
        &suspend,
        &w.root.access,
        Some(confirmed()),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let path = format!("/v1/platform/tenants/{}/reinstate", w.acme);
    let (st, got) =
        refused_then_allowed(&w.s, &w.root.access, Method::POST, &path, Some(confirmed())).await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got["status"], "active");
}

async fn platform_impersonate_needs_a_step_up(backend: Backend) {
    let Some(w) = world(backend, OWNERS).await else {
        return;
    };
    let mut body = confirmed();
    body["user_id"] = json!(w.pat_id);
    let (st, got) = refused_then_allowed(
        &w.s,
        &w.root.access,
        Method::POST,
        "/v1/platform/impersonate",
        Some(body),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert!(got["access_token"].is_string());
}

async fn platform_sign_in_link_needs_a_step_up(backend: Backend) {
    let Some(w) = world(backend, OWNERS).await else {
        return;
    };
    let mut body = confirmed();
    body["user_id"] = json!(w.pat_id);
    let (st, got) = refused_then_allowed(
        &w.s,
        &w.root.access,
        Method::POST,
        "/v1/platform/sign-in-links",
        Some(body),
    )
    .await;
    assert!(st.is_success(), "{st} {got}");
    assert_eq!(
        crate::mailbox::sign_in_links(&w.s, "pat@acme.test")
            .await
            .len(),
        1
    );
}

/// Every route that asks for a step-up says so in `/openapi.json`, and the
/// problem and settings schemas carry the new members.
#[tokio::test]
async fn openapi_describes_every_step_up_refusal() {
    let s = TestServer::start().await;
    let doc = s.openapi().await;
    for (path, method) in [
        ("/v1/auth/password", "post"),
        ("/v1/me", "delete"),
        ("/v1/roles", "post"),
        ("/v1/roles/{name}", "patch"),
        ("/v1/roles/{name}", "delete"),
        ("/v1/members/{user_id}", "patch"),
        ("/v1/members/{user_id}", "delete"),
        ("/v1/invitations", "post"),
        ("/v1/invitations/{id}", "delete"),
        ("/v1/api-keys", "post"),
        ("/v1/api-keys/{id}/rotate", "post"),
        ("/v1/tenant/settings", "patch"),
        ("/v1/audit/webhook", "put"),
        ("/v1/audit/webhook", "delete"),
        ("/v1/platform/tenants", "get"),
        ("/v1/platform/tenants/{id}/suspend", "post"),
        ("/v1/platform/tenants/{id}/reinstate", "post"),
        ("/v1/platform/impersonate", "post"),
        ("/v1/platform/sign-in-links", "post"),
    ] {
        let refused = &doc["paths"][path][method]["responses"]["403"]["description"];
        let text = refused.as_str().unwrap_or_default();
        assert!(
            text.contains("auth.step_up_required") && text.contains("max_age_seconds"),
            "{method} {path}: {refused}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["Problem"]["properties"]["max_age_seconds"].is_object());
    assert!(schemas["TenantSettings"]["properties"]["step_up_minutes"].is_object());
    let patch = &schemas["SettingsPatch"]["properties"]["step_up_minutes"];
    assert_eq!(
        (patch["minimum"].as_i64(), patch["maximum"].as_i64()),
        (Some(1), Some(60)),
        "{patch}"
    );
}
