//! Roles end to end (SPEC §2.6, issue #4 item 3), on SQLite and PostgreSQL:
//! the permission catalogue, custom roles with per-collection grants and
//! record rules, built-in roles immutable, names unique, roles in use kept,
//! bodies validated, other tenants' roles invisible, docs/roles.md's bodies
//! accepted; and the fixtures (`member`, `member_with_id`, `call`) the
//! whole suite uses. Enforcement is `roles_enforcement.rs`; this file must
//! not duplicate its tests.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stockade::rbac::PermissionSet;

use crate::auth::{Login, PASSWORD, audit_actions, login_ok, me, server, signup};
use crate::testkit::{Backend, TestServer};

/// Adds a new user to tenant `slug` with `role`, straight in the database,
/// and signs them in.
pub async fn member(s: &TestServer, slug: &str, email: &str, role: &str) -> Login {
    member_with_id(s, slug, email, role).await.0
}

/// [`member`], also returning the new user's id.
pub async fn member_with_id(
    s: &TestServer,
    slug: &str,
    email: &str,
    role: &str,
) -> (Login, String) {
    let hash = s
        .state
        .hasher
        .hash(secrecy::SecretString::from(PASSWORD))
        .await
        .unwrap();
    let tenant = stockade::tenancy::find_by_slug(&s.db, slug)
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.global_tx().await.unwrap();
    let user = stockade::identity::create_user_with_password(
        &mut tx,
        s.clock.as_ref(),
        &stockade::identity::Email::parse(email).unwrap(),
        "Sam Member",
        Some(&hash),
    )
    .await
    .unwrap();
    let mut tx = tx.scoped(tenant.id).await.unwrap();
    stockade::tenancy::add_member(&mut tx, s.clock.as_ref(), user.id, role)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (login_ok(s, email).await, user.id.to_string())
}

/// One API call; the body as JSON (`Null` when empty).
pub async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    access: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = s.client.request(method, s.url(path)).bearer_auth(access);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, value)
}

pub async fn create(s: &TestServer, access: &str, body: Value) -> (StatusCode, Value) {
    call(s, Method::POST, "/v1/roles", access, Some(body)).await
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

pub async fn my_permissions(s: &TestServer, access: &str) -> Vec<String> {
    let res = me(s, access).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    strings(&body["permissions"])
}

/// `(action, details)` of every audit event of tenant `slug`, in order.
pub async fn audit_events(s: &TestServer, slug: &str) -> Vec<(String, Value)> {
    let tenant = stockade::tenancy::find_by_slug(&s.db, slug)
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_read(tenant.id).await.unwrap();
    let rows: Vec<(String, String)> = tx
        .fetch_all(
            "SELECT action, details FROM audit_events WHERE tenant_id = $1 ORDER BY seq",
            vec![],
        )
        .await
        .unwrap();
    rows.into_iter()
        .map(|(a, d)| (a, serde_json::from_str(&d).unwrap()))
        .collect()
}

pub fn driver_role() -> Value {
    json!({
        "name": "driver",
        "description": "Sees and updates only the runs assigned to them",
        "permissions": ["records:read:runs", "records:write:runs"],
        "record_rules": [{"collection": "runs", "field": "driver_id"}]
    })
}

async fn permissions_are_listed_to_any_member(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    signup(&s, "acme", "owner@acme.test").await;
    let viewer = member(&s, "acme", "viewer@acme.test", "viewer").await;
    let (status, body) = call(&s, Method::GET, "/v1/permissions", &viewer.access, None).await;
    assert_eq!(status, StatusCode::OK);
    let list = body["permissions"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|p| p["name"].as_str().unwrap()).collect();
    // The live permissions, then the planned ones (planned_permissions.rs).
    let catalogue: Vec<&str> = stockade::rbac::PERMISSIONS
        .iter()
        .chain(stockade::rbac::PLANNED_PERMISSIONS)
        .copied()
        .collect();
    assert_eq!(names, catalogue);
    let flag = |name: &str| {
        list.iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .get("per_collection")
            .unwrap()
            .as_bool()
            .unwrap()
    };
    assert!(flag("records:read") && flag("records:write"));
    assert!(!flag("members:manage") && !flag("owners:manage"));
    // Anonymous: 401.
    let res = s.client.get(s.url("/v1/permissions")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Described in the OpenAPI document, as bearer-secured operations.
    let doc = s.openapi().await;
    for (path, method) in [
        ("/v1/permissions", "get"),
        ("/v1/roles", "get"),
        ("/v1/roles", "post"),
        ("/v1/roles/{name}", "get"),
        ("/v1/roles/{name}", "patch"),
        ("/v1/roles/{name}", "delete"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing from /openapi.json");
        assert!(op["security"].is_array(), "{method} {path} is not secured");
    }
}

async fn custom_role_with_collection_grant_and_record_rule(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "haulage", "owner@haulage.test").await;
    let res = s
        .client
        .post(s.url("/v1/roles"))
        .bearer_auth(&owner.access)
        .json(&driver_role())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["location"], "/v1/roles/driver");
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["name"], "driver");
    assert_eq!(created["builtin"], false);
    assert_eq!(
        strings(&created["permissions"]),
        ["records:read:runs", "records:write:runs"]
    );
    assert_eq!(
        created["record_rules"],
        json!([{"collection": "runs", "field": "driver_id"}])
    );
    assert!(created["created_at"].is_string());

    // Listed after the built-ins, which carry their permissions.
    let (status, list) = call(&s, Method::GET, "/v1/roles", &owner.access, None).await;
    assert_eq!(status, StatusCode::OK);
    let roles = list["roles"].as_array().unwrap();
    let names: Vec<&str> = roles.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["owner", "admin", "editor", "viewer", "driver"]);
    let builtin: Vec<bool> = roles
        .iter()
        .map(|r| r["builtin"].as_bool().unwrap())
        .collect();
    assert_eq!(builtin, [true, true, true, true, false]);
    assert_eq!(strings(&roles[3]["permissions"]), ["records:read"]);
    let (status, one) = call(&s, Method::GET, "/v1/roles/driver", &owner.access, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["record_rules"], created["record_rules"]);
    let (status, admin) = call(&s, Method::GET, "/v1/roles/admin", &owner.access, None).await;
    assert_eq!(
        (status, admin["builtin"].clone()),
        (StatusCode::OK, json!(true))
    );

    // A member holding it gets exactly those rights.
    let driver = member(&s, "haulage", "driver@haulage.test", "driver").await;
    assert_eq!(
        my_permissions(&s, &driver.access).await,
        ["records:read:runs", "records:write:runs"]
    );
    let tenant = stockade::tenancy::find_by_slug(&s.db, "haulage")
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_read(tenant.id).await.unwrap();
    let set: PermissionSet = stockade::rbac::role_permissions(&mut tx, "driver")
        .await
        .unwrap()
        .unwrap();
    assert!(set.allows("records:read", Some("runs")));
    assert!(!set.allows("records:read", Some("orders")));
    assert!(!set.allows("records:read", None));
    assert_eq!(set.record_rules().len(), 1);
    assert_eq!(set.record_rules()[0].field, "driver_id");
}

async fn builtin_roles_are_immutable(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    for name in stockade::rbac::BUILTIN_ROLES {
        let path = format!("/v1/roles/{name}");
        let (status, p) = call(
            &s,
            Method::PATCH,
            &path,
            &owner.access,
            Some(json!({"permissions": ["records:read"]})),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}");
        assert_eq!(p["code"], "rbac.builtin_immutable");
        let (status, p) = call(&s, Method::DELETE, &path, &owner.access, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}");
        assert_eq!(p["code"], "rbac.builtin_immutable");
        let (status, p) = create(
            &s,
            &owner.access,
            json!({"name": name, "permissions": ["records:read"]}),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{name}");
        assert_eq!(p["code"], "rbac.role_exists");
    }
    let (_, viewer) = call(&s, Method::GET, "/v1/roles/viewer", &owner.access, None).await;
    assert_eq!(strings(&viewer["permissions"]), ["records:read"]);
}

async fn duplicate_names_conflict(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (status, _) = create(&s, &owner.access, driver_role()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, p) = create(
        &s,
        &owner.access,
        json!({"name": "driver", "permissions": ["records:read"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(p["code"], "rbac.role_exists");
    // The first one is untouched.
    let (_, d) = call(&s, Method::GET, "/v1/roles/driver", &owner.access, None).await;
    assert_eq!(
        strings(&d["permissions"]),
        ["records:read:runs", "records:write:runs"]
    );
}

async fn a_role_in_use_cannot_be_deleted(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (status, _) = create(&s, &owner.access, driver_role()).await;
    assert_eq!(status, StatusCode::CREATED);
    member(&s, "acme", "driver@acme.test", "driver").await;
    let (status, p) = call(&s, Method::DELETE, "/v1/roles/driver", &owner.access, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(p["code"], "rbac.role_in_use");
    assert_eq!(p["errors"]["members"], 1);
    let (status, _) = call(&s, Method::GET, "/v1/roles/driver", &owner.access, None).await;
    assert_eq!(status, StatusCode::OK);
    // An unused one goes; then it is not found.
    let (status, _) = create(
        &s,
        &owner.access,
        json!({"name": "temp", "permissions": ["records:read"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = call(&s, Method::DELETE, "/v1/roles/temp", &owner.access, None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    for method in [Method::GET, Method::DELETE] {
        let (status, _) = call(&s, method, "/v1/roles/temp", &owner.access, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, _) = call(
        &s,
        Method::PATCH,
        "/v1/roles/temp",
        &owner.access,
        Some(json!({"description": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn bodies_are_validated(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let too_many: Vec<String> = (0..65).map(|i| format!("records:read:c{i}")).collect();
    for (body, code) in [
        (
            json!({"name": "x", "permissions": [], "is_admin": true}),
            "request.invalid_body",
        ),
        (
            json!({"name": "x", "permissions": [],
                "record_rules": [{"collection": "runs", "field": "driver_id", "op": "ne"}]}),
            "request.invalid_body",
        ),
        (json!({"name": "x"}), "request.invalid_body"),
        (
            json!({"name": "x", "permissions": ["records:read", "records:delete"]}),
            "rbac.invalid_permission",
        ),
        (
            json!({"name": "x", "permissions": ["members:manage:orders"]}),
            "rbac.invalid_permission",
        ),
        (
            json!({"name": "Driver", "permissions": []}),
            "rbac.invalid_role_name",
        ),
        (
            json!({"name": "a".repeat(41), "permissions": []}),
            "rbac.invalid_role_name",
        ),
        (
            json!({"name": "x", "permissions": too_many}),
            "rbac.too_many_permissions",
        ),
        (
            json!({"name": "x", "permissions": ["records:read:runs"],
                "record_rules": [{"collection": "runs", "field": "driver_id"},
                                 {"collection": "runs", "field": "worker_id"}]}),
            "rbac.invalid_record_rule",
        ),
        (
            json!({"name": "x", "permissions": [],
                "record_rules": [{"collection": "runs", "field": "driver id"}]}),
            "rbac.invalid_record_rule",
        ),
        (
            json!({"name": "x", "permissions": [], "description": "a\u{0}b"}),
            "rbac.invalid_description",
        ),
    ] {
        let (status, p) = create(&s, &owner.access, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(p["code"], code, "{body}: {p}");
    }
    let (_, p) = create(
        &s,
        &owner.access,
        json!({"name": "x", "permissions": ["records:read", "records:delete"]}),
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("records:delete"),
        "{p}"
    );
    // PATCH: unknown fields, bad values, nothing to change.
    let (status, _) = create(&s, &owner.access, driver_role()).await;
    assert_eq!(status, StatusCode::CREATED);
    for (body, code) in [
        (json!({"name": "boss"}), "request.invalid_body"),
        (
            json!({"permissions": ["root:all"]}),
            "rbac.invalid_permission",
        ),
        (json!({}), "request.invalid_body"),
    ] {
        let (status, p) = call(
            &s,
            Method::PATCH,
            "/v1/roles/driver",
            &owner.access,
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(p["code"], code, "{body}: {p}");
    }
    // None of it was stored.
    let (_, list) = call(&s, Method::GET, "/v1/roles", &owner.access, None).await;
    assert_eq!(list["roles"].as_array().unwrap().len(), 5);
    let (_, d) = call(&s, Method::GET, "/v1/roles/driver", &owner.access, None).await;
    assert_eq!(d["permissions"], driver_role()["permissions"]);
}

async fn another_tenants_roles_are_invisible(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "alpha", "owner@alpha.test").await;
    let b = signup(&s, "bravo", "owner@bravo.test").await;
    let (status, _) = create(&s, &b.access, driver_role()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, list) = call(&s, Method::GET, "/v1/roles", &a.access, None).await;
    assert!(
        list["roles"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["name"] != "driver")
    );
    let (status, _) = call(&s, Method::GET, "/v1/roles/driver", &a.access, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        &s,
        Method::PATCH,
        "/v1/roles/driver",
        &a.access,
        Some(json!({"permissions": []})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&s, Method::DELETE, "/v1/roles/driver", &a.access, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The same name is free in tenant A, and B's role is unchanged.
    let (status, _) = create(
        &s,
        &a.access,
        json!({"name": "driver", "permissions": ["records:read"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, d) = call(&s, Method::GET, "/v1/roles/driver", &b.access, None).await;
    assert_eq!(d["permissions"], driver_role()["permissions"]);
    assert_eq!(d["record_rules"], driver_role()["record_rules"]);
    assert!(
        !audit_actions(&s, "alpha")
            .await
            .contains(&"rbac.role.deleted".to_owned())
    );
}

/// Every ```json block of docs/roles.md is a `POST /v1/roles` body; each is
/// accepted as written (by an admin: none needs the owner's rights).
async fn docs_role_bodies_are_accepted(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/roles.md"));
    let bodies: Vec<Value> = doc
        .split("```json\n")
        .skip(1)
        .map(|rest| serde_json::from_str(rest.split("```").next().unwrap()).unwrap())
        .collect();
    assert_eq!(bodies.len(), 6);
    signup(&s, "acme", "owner@acme.test").await;
    let admin = member(&s, "acme", "admin@acme.test", "admin").await;
    for body in bodies {
        let (status, p) = create(&s, &admin.access, body.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}: {p}");
        assert_eq!(
            p["permissions"].as_array().unwrap().len(),
            body["permissions"].as_array().unwrap().len()
        );
    }
    // The reserved-name claim of the view/edit/admin section.
    let (status, p) = create(
        &s,
        &admin.access,
        json!({"name": "viewer", "permissions": ["records:read"]}),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("rbac.role_exists"))
    );
}

crate::both_servers!(
    permissions_are_listed_to_any_member,
    custom_role_with_collection_grant_and_record_rule,
    builtin_roles_are_immutable,
    duplicate_names_conflict,
    a_role_in_use_cannot_be_deleted,
    bodies_are_validated,
    another_tenants_roles_are_invisible,
    docs_role_bodies_are_accepted,
);
