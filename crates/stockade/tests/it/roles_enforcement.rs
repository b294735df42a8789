//! Roles enforced (SPEC §2.6, issue #4 item 3), on SQLite and PostgreSQL: a
//! missing permission is a 403 naming it, no privilege escalation through
//! the roles API, a role change takes effect on the next request, and role
//! changes are audited with old and new permissions. Its fixtures come from
//! `roles.rs`; it defines none other files use.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::auth::{server, signup};
use crate::roles::{audit_events, call, create, driver_role, member, my_permissions, strings};
use crate::testkit::Backend;

async fn a_missing_permission_is_a_403_naming_it(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (status, _) = create(&s, &owner.access, driver_role()).await;
    assert_eq!(status, StatusCode::CREATED);
    let viewer = member(&s, "acme", "viewer@acme.test", "viewer").await;
    let driver = member(&s, "acme", "driver@acme.test", "driver").await;
    for who in [&viewer, &driver] {
        let res = s
            .client
            .post(s.url("/v1/roles"))
            .bearer_auth(&who.access)
            .json(&json!({"name": "sneaky", "permissions": ["records:read"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let p: Value = res.json().await.unwrap();
        assert_eq!(p["code"], "rbac.forbidden");
        assert!(
            p["detail"].as_str().unwrap().contains("roles:manage"),
            "{p}"
        );
        assert_eq!(p["errors"]["permission"], "roles:manage");
        // Checked before the body is even read.
        let (status, p) = create(&s, &who.access, json!({"bogus": 1})).await;
        assert_eq!(
            (status, p["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("rbac.forbidden"))
        );
        for (method, path, body) in [
            (Method::GET, "/v1/roles", None),
            (Method::GET, "/v1/roles/driver", None),
            (
                Method::PATCH,
                "/v1/roles/driver",
                Some(json!({"permissions": ["records:read"]})),
            ),
            (Method::DELETE, "/v1/roles/driver", None),
        ] {
            let (status, p) = call(&s, method.clone(), path, &who.access, body).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
            assert_eq!(p["code"], "rbac.forbidden");
            assert!(p["detail"].as_str().unwrap().contains("roles:manage"));
        }
    }
    // members:manage is enough to read roles (to assign them).
    let (status, _) = create(
        &s,
        &owner.access,
        json!({"name": "hr", "permissions": ["members:manage"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let hr = member(&s, "acme", "hr@acme.test", "hr").await;
    let (status, _) = call(&s, Method::GET, "/v1/roles", &hr.access, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = create(&s, &hr.access, json!({"name": "x", "permissions": []})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Nothing was created by the refused calls.
    let (_, list) = call(&s, Method::GET, "/v1/roles", &owner.access, None).await;
    assert_eq!(list["roles"].as_array().unwrap().len(), 6);
}

async fn no_privilege_escalation(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let admin = member(&s, "acme", "admin@acme.test", "admin").await;
    // An admin cannot hand out owners:manage, which only owners hold.
    let (status, p) = create(
        &s,
        &admin.access,
        json!({"name": "treasurer", "permissions": ["owners:manage", "records:read"]}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(p["code"], "rbac.escalation");
    assert!(
        p["detail"].as_str().unwrap().contains("owners:manage"),
        "{p}"
    );
    assert_eq!(p["errors"]["permissions"], json!(["owners:manage"]));
    // Within their rights it works.
    let (status, _) = create(
        &s,
        &admin.access,
        json!({"name": "clerk", "permissions": ["records:read:orders"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    // ... but not widened past them.
    let (status, p) = call(
        &s,
        Method::PATCH,
        "/v1/roles/clerk",
        &admin.access,
        Some(json!({"permissions": ["records:read:orders", "owners:manage"]})),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("rbac.escalation"))
    );
    // A role beyond the caller's rights cannot be edited or deleted by them.
    let (status, _) = create(
        &s,
        &owner.access,
        json!({"name": "treasurer", "permissions": ["owners:manage"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, p) = call(
        &s,
        Method::PATCH,
        "/v1/roles/treasurer",
        &admin.access,
        Some(json!({"permissions": ["records:read"]})),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("rbac.escalation"))
    );
    let (status, _) = call(
        &s,
        Method::DELETE,
        "/v1/roles/treasurer",
        &admin.access,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, t) = call(&s, Method::GET, "/v1/roles/treasurer", &owner.access, None).await;
    assert_eq!(strings(&t["permissions"]), ["owners:manage"]);

    // A custom manager with a per-collection grant cannot widen it.
    let (status, _) = create(
        &s,
        &owner.access,
        json!({"name": "manager", "permissions": ["roles:manage", "records:read:orders"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let manager = member(&s, "acme", "manager@acme.test", "manager").await;
    let (status, p) = create(
        &s,
        &manager.access,
        json!({"name": "reader", "permissions": ["records:read"]}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(p["errors"]["permissions"], json!(["records:read"]));
    let (status, _) = create(
        &s,
        &manager.access,
        json!({"name": "reader", "permissions": ["records:read:orders"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    // Someone who sees only their own deals cannot create a role that sees all.
    let (status, _) = create(
        &s,
        &owner.access,
        json!({"name": "partner-admin",
            "permissions": ["roles:manage", "records:read:deals", "records:write:deals"],
            "record_rules": [{"collection": "deals", "field": "partner_id"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let partner = member(&s, "acme", "partner@acme.test", "partner-admin").await;
    let (status, p) = create(
        &s,
        &partner.access,
        json!({"name": "all-deals", "permissions": ["records:read:deals"]}),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("rbac.escalation"))
    );
    assert_eq!(
        p["errors"]["record_rules"],
        json!([{"collection": "deals", "field": "partner_id"}])
    );
    let (status, _) = create(
        &s,
        &partner.access,
        json!({"name": "partner", "permissions": ["records:read:deals"],
            "record_rules": [{"collection": "deals", "field": "partner_id"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    // Refusals are audited as denials.
    let events = audit_events(&s, "acme").await;
    let denied: Vec<&Value> = events
        .iter()
        .filter(|(a, _)| a == "rbac.escalation.denied")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(denied.len(), 6, "{denied:?}");
    assert_eq!(denied[0]["operation"], "create");
    assert_eq!(denied[0]["permissions"], json!(["owners:manage"]));
}

async fn a_role_change_takes_effect_on_the_next_request(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (status, _) = create(
        &s,
        &owner.access,
        json!({"name": "manager", "permissions": ["records:read", "roles:manage"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let manager = member(&s, "acme", "manager@acme.test", "manager").await;
    assert_eq!(
        my_permissions(&s, &manager.access).await,
        ["records:read", "roles:manage"]
    );
    let (status, _) = create(
        &s,
        &manager.access,
        json!({"name": "reader", "permissions": ["records:read"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    // The session check is now cached (on SQLite); the edit must still show.
    let (status, _) = call(
        &s,
        Method::PATCH,
        "/v1/roles/manager",
        &owner.access,
        Some(json!({"permissions": ["records:read:orders"],
            "record_rules": [{"collection": "orders", "field": "owner_id"}]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        my_permissions(&s, &manager.access).await,
        ["records:read:orders"]
    );
    let (status, p) = create(
        &s,
        &manager.access,
        json!({"name": "reader2", "permissions": ["records:read:orders"]}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(p["code"], "rbac.forbidden");
    // And back.
    let (status, _) = call(
        &s,
        Method::PATCH,
        "/v1/roles/manager",
        &owner.access,
        Some(json!({"permissions": ["records:read:orders", "roles:manage"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        my_permissions(&s, &manager.access).await,
        ["records:read:orders", "roles:manage"]
    );
    // The record rule it kept binds what the manager may hand out.
    let (status, p) = create(
        &s,
        &manager.access,
        json!({"name": "reader2", "permissions": ["records:read:orders"]}),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("rbac.escalation"))
    );
}

async fn role_changes_are_audited_with_old_and_new_permissions(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let (status, _) = create(&s, &owner.access, driver_role()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, patched) = call(
        &s,
        Method::PATCH,
        "/v1/roles/driver",
        &owner.access,
        Some(json!({"permissions": ["records:read:runs"], "description": "Read-only driver"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["description"], "Read-only driver");
    // Absent fields are kept.
    assert_eq!(patched["record_rules"], driver_role()["record_rules"]);
    let (status, _) = call(&s, Method::DELETE, "/v1/roles/driver", &owner.access, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let events = audit_events(&s, "acme").await;
    let find = |action: &str| {
        events
            .iter()
            .find(|(a, _)| a == action)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("{action} not audited: {events:?}"))
    };
    let created = find("rbac.role.created");
    assert_eq!(created["name"], "driver");
    assert_eq!(created["permissions"], driver_role()["permissions"]);
    assert_eq!(created["record_rules"], driver_role()["record_rules"]);
    let updated = find("rbac.role.updated");
    assert_eq!(updated["name"], "driver");
    assert_eq!(updated["old"]["permissions"], driver_role()["permissions"]);
    assert_eq!(updated["new"]["permissions"], json!(["records:read:runs"]));
    assert_eq!(updated["new"]["description"], "Read-only driver");
    let deleted = find("rbac.role.deleted");
    assert_eq!(deleted["permissions"], json!(["records:read:runs"]));
    let actions: Vec<&str> = events.iter().map(|(a, _)| a.as_str()).collect();
    let pos = |a: &str| actions.iter().position(|x| *x == a).unwrap();
    assert!(pos("rbac.role.created") < pos("rbac.role.updated"));
    assert!(pos("rbac.role.updated") < pos("rbac.role.deleted"));
    // Actor and target are recorded; the chain still verifies.
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_read(tenant.id).await.unwrap();
    let rows: Vec<(String, Option<String>, Option<String>)> = tx
        .fetch_all(
            "SELECT actor_type, target_type, target_id FROM audit_events \
             WHERE tenant_id = $1 AND action LIKE 'rbac.role.%'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    for (actor, target_type, target_id) in rows {
        assert_eq!(actor, "user");
        assert_eq!(target_type.as_deref(), Some("role"));
        assert_eq!(target_id.as_deref(), Some("driver"));
    }
    let report = stockade::audit::verify_tenant(&s.db, tenant.id)
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
}

crate::both_servers!(
    a_missing_permission_is_a_403_naming_it,
    no_privilege_escalation,
    a_role_change_takes_effect_on_the_next_request,
    role_changes_are_audited_with_old_and_new_permissions,
);
