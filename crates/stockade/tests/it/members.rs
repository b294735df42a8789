//! Members end to end (SPEC §2.5, §2.13), on SQLite and PostgreSQL: listing
//! and changing roles, the last owner kept, deactivation and removal
//! revoking at once, no escalation, other tenants' users not found; and the
//! member fixtures (`join`, `invite_ok`, `accept_bearer`, ...) other files
//! use. Invitations are `members_invitations.rs`. Each test stays within
//! the per-IP quota of 10 password attempts (signup, login and accepting as
//! a new user each count one).

use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade::http::Problem;

use crate::auth::{PASSWORD, login, me, refresh, server, set_cookie, signup};
use crate::testkit::{Backend, TestServer};

pub const NEW_PASSWORD: &str = "Invited-Strong-Passw0rd";

/// A signed-in member: access token, refresh cookie value, user id.
pub struct Member {
    pub access: String,
    refresh: String,
    pub id: String,
}

async fn member_from(s: &TestServer, res: reqwest::Response) -> Member {
    let cookie = set_cookie(&res).expect("refresh cookie");
    let refresh = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("__Host-stockade_refresh=")
        .to_owned();
    let body: Value = res.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    let id = user_id(s, &access).await;
    Member {
        access,
        refresh,
        id,
    }
}

async fn user_id(s: &TestServer, access: &str) -> String {
    let m: Value = me(s, access).await.json().await.unwrap();
    m["user"]["id"].as_str().unwrap().to_owned()
}

pub async fn owner(s: &TestServer, slug: &str, email: &str) -> Member {
    let l = signup(s, slug, email).await;
    let id = user_id(s, &l.access).await;
    Member {
        access: l.access,
        refresh: l.refresh,
        id,
    }
}

pub async fn invite(s: &TestServer, access: &str, email: &str, role: &str) -> reqwest::Response {
    s.client
        .post(s.url("/v1/invitations"))
        .bearer_auth(access)
        .json(&json!({"email": email, "role": role}))
        .send()
        .await
        .unwrap()
}

/// Invites and returns the token (checked against the one in the outbox).
pub async fn invite_ok(s: &TestServer, access: &str, email: &str, role: &str) -> String {
    let res = invite(s, access, email, role).await;
    assert_eq!(res.status(), StatusCode::CREATED, "{:?}", res.text().await);
    let body: Value = res.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    assert_eq!(invitation_token_from_outbox(s, email).await, token);
    token
}

/// Reads the newest invitation out of the sealed outbox, as the mail sender
/// would, and returns the token of its accept link.
pub async fn invitation_token_from_outbox(s: &TestServer, to: &str) -> String {
    let rows: Vec<(uuid::Uuid, Vec<u8>, String, String)> =
        s.db.global_read()
            .await
            .unwrap()
            .fetch_all(
                "SELECT id, sealed_body, kind, to_address FROM email_outbox \
                 ORDER BY created_at DESC, id DESC",
                vec![],
            )
            .await
            .unwrap();
    let (id, sealed, kind, to_address) = rows.first().unwrap().clone();
    assert_eq!((kind.as_str(), to_address.as_str()), ("invitation", to));
    let body = s
        .state
        .keys
        .master
        .open(1, &stockade::email::outbox_aad(id), &sealed)
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    let text = body["body"].as_str().unwrap();
    assert!(text.contains("/accept-invitation#token="), "{text}");
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

pub async fn accept_new(
    s: &TestServer,
    token: &str,
    name: &str,
    password: &str,
) -> reqwest::Response {
    s.client
        .post(s.url("/v1/invitations/accept"))
        .json(&json!({"token": token, "name": name, "password": password}))
        .send()
        .await
        .unwrap()
}

pub async fn accept_bearer(s: &TestServer, access: &str, token: &str) -> reqwest::Response {
    s.client
        .post(s.url("/v1/invitations/accept"))
        .bearer_auth(access)
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap()
}

/// Invites `email` with `role` and accepts as a new user: signed in.
pub async fn join(s: &TestServer, inviter: &str, email: &str, role: &str) -> Member {
    let token = invite_ok(s, inviter, email, role).await;
    let res = accept_new(s, &token, "Invited Person", NEW_PASSWORD).await;
    member_from(
        s,
        crate::mailbox::verify_accepted(s, res, NEW_PASSWORD).await,
    )
    .await
}

async fn members(s: &TestServer, access: &str) -> reqwest::Response {
    s.client
        .get(s.url("/v1/members"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
}

pub async fn members_ok(s: &TestServer, access: &str) -> Vec<Value> {
    let res = members(s, access).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

pub async fn patch(s: &TestServer, access: &str, user: &str, body: Value) -> reqwest::Response {
    s.client
        .patch(s.url(&format!("/v1/members/{user}")))
        .bearer_auth(access)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn remove(s: &TestServer, access: &str, user: &str) -> reqwest::Response {
    s.client
        .delete(s.url(&format!("/v1/members/{user}")))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
}

pub async fn switch(s: &TestServer, access: &str, slug: &str) -> reqwest::Response {
    s.client
        .post(s.url("/v1/auth/switch-tenant"))
        .bearer_auth(access)
        .json(&json!({"tenant": slug}))
        .send()
        .await
        .unwrap()
}

/// Asserts the status and stable code of a problem response.
pub async fn refused(res: reqwest::Response, status: StatusCode, code: &str) {
    assert_eq!(res.status(), status, "expected {code}");
    let p: Problem = res.json().await.unwrap();
    assert_eq!(p.code, code);
}

pub async fn me_json(s: &TestServer, access: &str) -> Value {
    let res = me(s, access).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// The details of the last audit event `action` of tenant `slug`.
pub async fn audit_details(s: &TestServer, slug: &str, action: &str) -> Value {
    let tenant = stockade::tenancy::find_by_slug(&s.db, slug)
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_read(tenant.id).await.unwrap();
    let rows: Vec<(String,)> = tx
        .fetch_all(
            "SELECT details FROM audit_events WHERE tenant_id = $1 AND action = $2 \
             ORDER BY seq DESC",
            vec![action.into()],
        )
        .await
        .unwrap();
    serde_json::from_str(&rows.first().expect(action).0).unwrap()
}

async fn list_and_change_role(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = owner(&s, "acme", "owner@acme.test").await;
    let bob = join(&s, &o.access, "bob@acme.test", "viewer").await;
    let list = members_ok(&s, &o.access).await;
    assert_eq!(list.len(), 2);
    let row = list
        .iter()
        .find(|m| m["user_id"] == bob.id.as_str())
        .unwrap();
    assert_eq!(
        (
            row["email"].as_str(),
            row["role"].as_str(),
            row["status"].as_str()
        ),
        (Some("bob@acme.test"), Some("viewer"), Some("active"))
    );
    // Listing needs members:manage.
    refused(
        members(&s, &bob.access).await,
        StatusCode::FORBIDDEN,
        "rbac.forbidden",
    )
    .await;
    // Change the role: the member's next request carries it.
    let res = patch(&s, &o.access, &bob.id, json!({"role": "editor"})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["role"], "editor");
    assert_eq!(me_json(&s, &bob.access).await["role"], "editor");
    // Bad input.
    refused(
        patch(&s, &o.access, &bob.id, json!({})).await,
        StatusCode::BAD_REQUEST,
        "tenancy.empty_update",
    )
    .await;
    refused(
        patch(&s, &o.access, &bob.id, json!({"role": "wizard"})).await,
        StatusCode::BAD_REQUEST,
        "tenancy.unknown_role",
    )
    .await;
    refused(
        patch(&s, &o.access, &bob.id, json!({"role": "Not A Role!"})).await,
        StatusCode::BAD_REQUEST,
        "tenancy.unknown_role",
    )
    .await;
    // Unknown fields, in every body of these endpoints.
    refused(
        patch(
            &s,
            &o.access,
            &bob.id,
            json!({"role": "viewer", "status": "x"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "request.invalid_body",
    )
    .await;
    let res = s
        .client
        .post(s.url("/v1/invitations"))
        .bearer_auth(&o.access)
        .json(&json!({"email": "x@acme.test", "role": "viewer", "tenant_id": "x"}))
        .send()
        .await
        .unwrap();
    refused(res, StatusCode::BAD_REQUEST, "request.invalid_body").await;
    let res = s
        .client
        .post(s.url("/v1/invitations/accept"))
        .json(&json!({"token": "t", "name": "n", "password": "p", "role": "owner"}))
        .send()
        .await
        .unwrap();
    refused(res, StatusCode::BAD_REQUEST, "request.invalid_body").await;
    // Audited with old and new values.
    let d = audit_details(&s, "acme", "tenancy.member.updated").await;
    assert_eq!(
        (d["old_role"].as_str(), d["new_role"].as_str()),
        (Some("viewer"), Some("editor"))
    );
    assert_eq!(
        (d["old_active"].as_bool(), d["new_active"].as_bool()),
        (Some(true), Some(true))
    );
}

async fn the_last_owner_can_be_neither_demoted_nor_removed(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = owner(&s, "acme", "owner@acme.test").await;
    for res in [
        patch(&s, &o.access, &o.id, json!({"role": "admin"})).await,
        patch(&s, &o.access, &o.id, json!({"active": false})).await,
        remove(&s, &o.access, &o.id).await,
    ] {
        refused(res, StatusCode::CONFLICT, "tenancy.last_owner").await;
    }
    assert_eq!(me_json(&s, &o.access).await["role"], "owner");
    // With a second owner, the first may step down; then the second is last.
    let second = join(&s, &o.access, "second@acme.test", "owner").await;
    let res = patch(&s, &o.access, &o.id, json!({"role": "admin"})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(me_json(&s, &o.access).await["role"], "admin");
    refused(
        remove(&s, &second.access, &second.id).await,
        StatusCode::CONFLICT,
        "tenancy.last_owner",
    )
    .await;
    refused(
        patch(
            &s,
            &second.access,
            &second.id,
            json!({"role": "editor", "active": false}),
        )
        .await,
        StatusCode::CONFLICT,
        "tenancy.last_owner",
    )
    .await;
    // A no-op on the last owner is fine.
    let res = patch(&s, &second.access, &second.id, json!({"role": "owner"})).await;
    assert_eq!(res.status(), StatusCode::OK);
}

async fn deactivation_revokes_access_to_that_tenant_only(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = owner(&s, "acme", "owner@acme.test").await;
    // Bob owns beta and joins acme as an editor with his bearer token.
    let bob_b = owner(&s, "beta", "bob@beta.test").await;
    let token = invite_ok(&s, &o.access, "bob@beta.test", "editor").await;
    assert_eq!(
        accept_bearer(&s, &bob_b.access, &token).await.status(),
        StatusCode::OK
    );
    let res = switch(&s, &bob_b.access, "acme").await;
    assert_eq!(res.status(), StatusCode::OK);
    let bob_a = member_from(&s, res).await;
    assert_eq!(me_json(&s, &bob_a.access).await["tenant"]["slug"], "acme");

    let res = patch(&s, &o.access, &bob_a.id, json!({"active": false})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "deactivated");
    // The very next request with his acme token fails; so does its refresh.
    assert_eq!(
        me(&s, &bob_a.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        refresh(&s, &bob_a.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // He cannot sign in to acme, nor switch to it; beta is untouched.
    assert_eq!(
        login(&s, "bob@beta.test", PASSWORD, Some("acme"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        switch(&s, &bob_b.access, "acme").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(me_json(&s, &bob_b.access).await["tenant"]["slug"], "beta");
    assert_eq!(
        login(&s, "bob@beta.test", PASSWORD, Some("beta"))
            .await
            .status(),
        StatusCode::OK
    );
    let d = audit_details(&s, "acme", "tenancy.member.updated").await;
    assert_eq!(d["new_active"], false);
    assert_eq!(d["sessions_revoked"], 1);
    // Reactivated: he may sign in again (his old session stays revoked).
    let res = patch(&s, &o.access, &bob_a.id, json!({"active": true})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        me(&s, &bob_a.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&s, "bob@beta.test", PASSWORD, Some("acme"))
            .await
            .status(),
        StatusCode::OK
    );
}

async fn removal_revokes_access_at_once(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = owner(&s, "acme", "owner@acme.test").await;
    let carol = join(&s, &o.access, "carol@acme.test", "editor").await;
    assert_eq!(me(&s, &carol.access).await.status(), StatusCode::OK);
    assert_eq!(
        remove(&s, &o.access, &carol.id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        me(&s, &carol.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        refresh(&s, &carol.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(
        members_ok(&s, &o.access)
            .await
            .iter()
            .all(|m| m["user_id"] != carol.id.as_str())
    );
    refused(
        remove(&s, &o.access, &carol.id).await,
        StatusCode::NOT_FOUND,
        "tenancy.member_not_found",
    )
    .await;
    assert_eq!(
        login(&s, "carol@acme.test", NEW_PASSWORD, None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let d = audit_details(&s, "acme", "tenancy.member.removed").await;
    assert_eq!(
        (d["role"].as_str(), d["sessions_revoked"].as_i64()),
        (Some("editor"), Some(1))
    );
}

async fn no_escalation(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = owner(&s, "acme", "owner@acme.test").await;
    let admin = join(&s, &o.access, "admin@acme.test", "admin").await;
    let eve = join(&s, &o.access, "eve@acme.test", "viewer").await;
    // An admin lacks owners:manage, so cannot make anyone an owner…
    refused(
        patch(&s, &admin.access, &eve.id, json!({"role": "owner"})).await,
        StatusCode::FORBIDDEN,
        "rbac.escalation",
    )
    .await;
    refused(
        patch(&s, &admin.access, &admin.id, json!({"role": "owner"})).await,
        StatusCode::FORBIDDEN,
        "rbac.escalation",
    )
    .await;
    refused(
        invite(&s, &admin.access, "boss@acme.test", "owner").await,
        StatusCode::FORBIDDEN,
        "rbac.escalation",
    )
    .await;
    // …nor demote, deactivate or remove one.
    for res in [
        patch(&s, &admin.access, &o.id, json!({"role": "viewer"})).await,
        patch(&s, &admin.access, &o.id, json!({"active": false})).await,
        remove(&s, &admin.access, &o.id).await,
    ] {
        refused(res, StatusCode::FORBIDDEN, "rbac.escalation").await;
    }
    assert_eq!(me_json(&s, &o.access).await["role"], "owner");
    // Within their own permissions they may.
    let res = patch(&s, &admin.access, &eve.id, json!({"role": "editor"})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        invite(&s, &admin.access, "helper@acme.test", "admin")
            .await
            .status(),
        StatusCode::CREATED
    );
    refused(
        invite(&s, &admin.access, "helper@acme.test", "wizard").await,
        StatusCode::BAD_REQUEST,
        "tenancy.unknown_role",
    )
    .await;
    // An editor manages nobody.
    for res in [
        members(&s, &eve.access).await,
        patch(&s, &eve.access, &eve.id, json!({"role": "viewer"})).await,
        remove(&s, &eve.access, &admin.id).await,
        invite(&s, &eve.access, "x@acme.test", "viewer").await,
    ] {
        refused(res, StatusCode::FORBIDDEN, "rbac.forbidden").await;
    }
}

async fn another_tenants_user_is_not_found(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = owner(&s, "acme", "owner@acme.test").await;
    let b = owner(&s, "beta", "owner@beta.test").await;
    for res in [
        patch(&s, &a.access, &b.id, json!({"role": "viewer"})).await,
        patch(&s, &a.access, &b.id, json!({"active": false})).await,
        remove(&s, &a.access, &b.id).await,
        remove(&s, &a.access, "not-a-uuid").await,
    ] {
        refused(res, StatusCode::NOT_FOUND, "tenancy.member_not_found").await;
    }
    // Beta's owner is untouched.
    let m = me_json(&s, &b.access).await;
    assert_eq!(
        (m["tenant"]["slug"].as_str(), m["role"].as_str()),
        (Some("beta"), Some("owner"))
    );
    // Invitations of another tenant are not found either.
    let res = invite(&s, &b.access, "guest@beta.test", "viewer").await;
    let inv: Value = res.json().await.unwrap();
    let id = inv["id"].as_str().unwrap();
    let res = s
        .client
        .delete(s.url(&format!("/v1/invitations/{id}")))
        .bearer_auth(&a.access)
        .send()
        .await
        .unwrap();
    refused(res, StatusCode::NOT_FOUND, "tenancy.invitation_not_found").await;
    let pending: Vec<Value> = s
        .client
        .get(s.url("/v1/invitations"))
        .bearer_auth(&a.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(pending.is_empty());
}

async fn two_owners_demoting_each_other_at_once_leave_one(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = owner(&s, "acme", "owner@acme.test").await;
    let b = join(&s, &a.access, "second@acme.test", "owner").await;
    let (ra, rb) = tokio::join!(
        patch(&s, &a.access, &b.id, json!({"role": "editor"})),
        patch(&s, &b.access, &a.id, json!({"role": "editor"})),
    );
    let statuses = [ra.status(), rb.status()];
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    // The loser is refused as the last owner, or (if its request began after
    // the winner committed) as no longer allowed to manage members.
    assert!(
        statuses
            .iter()
            .all(|s| [StatusCode::OK, StatusCode::CONFLICT, StatusCode::FORBIDDEN].contains(s)),
        "{statuses:?}"
    );
    let winner = if ra.status() == StatusCode::OK {
        &a
    } else {
        &b
    };
    let owners: Vec<Value> = members_ok(&s, &winner.access)
        .await
        .into_iter()
        .filter(|m| m["role"] == "owner" && m["status"] == "active")
        .collect();
    assert_eq!(owners.len(), 1);
}

crate::both_servers!(
    two_owners_demoting_each_other_at_once_leave_one,
    list_and_change_role,
    the_last_owner_can_be_neither_demoted_nor_removed,
    deactivation_revokes_access_to_that_tenant_only,
    removal_revokes_access_at_once,
    no_escalation,
    another_tenants_user_is_not_found,
);

#[tokio::test]
async fn openapi_describes_members_and_invitations() {
    let s = TestServer::start().await;
    let doc = s.openapi().await;
    for (path, method) in [
        ("/v1/members", "get"),
        ("/v1/members/{user_id}", "patch"),
        ("/v1/members/{user_id}", "delete"),
        ("/v1/invitations", "get"),
        ("/v1/invitations", "post"),
        ("/v1/invitations/{id}", "delete"),
        ("/v1/invitations/accept", "post"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    assert!(doc["components"]["schemas"]["AcceptInvitation"].is_object());
}
