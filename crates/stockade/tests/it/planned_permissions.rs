//! Permissions that guard no route (issue #17 item 7): `files:*`,
//! `secrets:*`, `billing:manage` and `exports:create` are listed as planned,
//! carried by no built-in role, and cannot be granted to a role or an API
//! key; and without `billing:manage` the owner stays apart from the admin.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::auth::{server, signup};
use crate::roles::{call, member, member_with_id};
use crate::testkit::{Backend, TestServer};

const PLANNED: [&str; 6] = [
    "files:read",
    "files:write",
    "secrets:manage",
    "secrets:reveal",
    "billing:manage",
    "exports:create",
];

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

async fn audit_actions(s: &TestServer, slug: &str) -> Vec<String> {
    crate::auth::audit_actions(s, slug).await
}

async fn planned_permissions_are_listed_as_planned_and_held_by_no_role(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let viewer = member(&s, "acme", "viewer@acme.test", "viewer").await;
    let (status, body) = call(&s, Method::GET, "/v1/permissions", &viewer.access, None).await;
    assert_eq!(status, StatusCode::OK);
    let list = body["permissions"].as_array().unwrap();
    let status_of = |name: &str| {
        list.iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed"))["status"]
            .clone()
    };
    for p in PLANNED {
        assert_eq!(status_of(p), "planned", "{p}");
    }
    for p in stockade::rbac::PERMISSIONS {
        assert_eq!(status_of(p), "live", "{p}");
    }
    assert_eq!(status_of("owners:manage"), "live");
    assert_eq!(
        list.len(),
        stockade::rbac::PERMISSIONS.len() + PLANNED.len()
    );

    // No built-in role carries one, so no member holds one.
    let (_, roles) = call(&s, Method::GET, "/v1/roles", &owner.access, None).await;
    for role in roles["roles"].as_array().unwrap() {
        let held = names(&role["permissions"]);
        assert!(
            PLANNED.iter().all(|p| !held.iter().any(|h| h == p)),
            "{}: {held:?}",
            role["name"]
        );
    }
    for (access, owns) in [(&owner.access, true), (&viewer.access, false)] {
        let (_, me) = call(&s, Method::GET, "/v1/me", access, None).await;
        let held = names(&me["permissions"]);
        assert!(
            PLANNED.iter().all(|p| !held.iter().any(|h| h == p)),
            "{held:?}"
        );
        assert_eq!(held.iter().any(|h| h == "owners:manage"), owns);
    }
}

async fn roles_cannot_carry_planned_permissions(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let before = audit_actions(&s, "acme").await;
    for p in PLANNED {
        for grant in [p.to_owned(), format!("{p}:orders")] {
            let (status, problem) = call(
                &s,
                Method::POST,
                "/v1/roles",
                &owner.access,
                Some(json!({"name": "operator", "permissions": ["records:read", grant]})),
            )
            .await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{grant}: {problem}"
            );
            assert_eq!(problem["code"], "rbac.permission_planned");
            assert_eq!(problem["errors"]["permissions"], json!([grant]));
        }
    }
    let (_, roles) = call(&s, Method::GET, "/v1/roles", &owner.access, None).await;
    assert_eq!(
        roles["roles"].as_array().unwrap().len(),
        4,
        "a role was created"
    );
    // A custom role cannot be widened to one either.
    let (status, _) = call(
        &s,
        Method::POST,
        "/v1/roles",
        &owner.access,
        Some(json!({"name": "clerk", "permissions": ["records:read"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, problem) = call(
        &s,
        Method::PATCH,
        "/v1/roles/clerk",
        &owner.access,
        Some(json!({"permissions": ["records:read", "secrets:reveal", "exports:create"]})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(
        problem["errors"]["permissions"],
        json!(["secrets:reveal", "exports:create"])
    );
    let (_, clerk) = call(&s, Method::GET, "/v1/roles/clerk", &owner.access, None).await;
    assert_eq!(names(&clerk["permissions"]), ["records:read"]);
    // Only the clerk's creation was audited.
    let after = audit_actions(&s, "acme").await;
    assert_eq!(&after[before.len()..], ["rbac.role.created"]);
    // Described.
    let doc = s.openapi().await;
    for (path, method) in [("/v1/roles", "post"), ("/v1/roles/{name}", "patch")] {
        assert!(
            doc["paths"][path][method]["responses"]["422"].is_object(),
            "{method} {path}"
        );
    }
}

async fn api_keys_cannot_be_scoped_to_planned_permissions(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    for p in PLANNED {
        let (status, problem) = call(
            &s,
            Method::POST,
            "/v1/api-keys",
            &owner.access,
            Some(json!({"name": "ci deploy", "scopes": ["records:read", p]})),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}: {problem}");
        assert_eq!(problem["code"], "rbac.permission_planned");
        assert_eq!(problem["errors"]["permissions"], json!([p]));
    }
    let (_, keys) = call(&s, Method::GET, "/v1/api-keys", &owner.access, None).await;
    assert_eq!(keys, json!([]));
    let doc = s.openapi().await;
    assert!(doc["paths"]["/v1/api-keys"]["post"]["responses"]["422"].is_object());
}

async fn an_admin_still_cannot_make_change_or_invite_an_owner(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (_, me) = call(&s, Method::GET, "/v1/me", &owner.access, None).await;
    let owner_id = me["user"]["id"].as_str().unwrap().to_owned();
    let (admin, admin_id) = member_with_id(&s, "acme", "admin@acme.test", "admin").await;
    let (_, viewer_id) = member_with_id(&s, "acme", "viewer@acme.test", "viewer").await;
    // Billing no longer sets the owner apart: owners:manage does.
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/v1/members/{admin_id}"),
            Some(json!({"role": "owner"})),
        ),
        (
            Method::PATCH,
            format!("/v1/members/{viewer_id}"),
            Some(json!({"role": "owner"})),
        ),
        (
            Method::PATCH,
            format!("/v1/members/{owner_id}"),
            Some(json!({"role": "viewer"})),
        ),
        (Method::DELETE, format!("/v1/members/{owner_id}"), None),
        (
            Method::POST,
            "/v1/invitations".to_owned(),
            Some(json!({"email": "new@acme.test", "role": "owner"})),
        ),
    ] {
        let (status, problem) = call(&s, method.clone(), &path, &admin.access, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {problem}");
        assert_eq!(problem["code"], "rbac.escalation", "{method} {path}");
    }
    let (_, members) = call(&s, Method::GET, "/v1/members", &owner.access, None).await;
    let owners = members
        .as_array()
        .or_else(|| members["members"].as_array())
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "owner")
        .count();
    assert_eq!(owners, 1);
    // The owner can.
    let (status, _) = call(
        &s,
        Method::PATCH,
        &format!("/v1/members/{viewer_id}"),
        &owner.access,
        Some(json!({"role": "owner"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

crate::both_servers!(
    planned_permissions_are_listed_as_planned_and_held_by_no_role,
    roles_cannot_carry_planned_permissions,
    api_keys_cannot_be_scoped_to_planned_permissions,
    an_admin_still_cannot_make_change_or_invite_an_owner,
);
