//! A setting that does nothing must not exist (issue #17 item 7): a tenant's
//! `plan` (always "free") and `trial_ends_at` (extended by a platform owner)
//! were shown and changed while nothing read them. Until billing (issue
//! #23) gives them a meaning, they are gone from the API and the schema.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::auth::{server, signup};
use crate::roles::call;
use crate::testkit::Backend;

const ROOT: &str = "root@platform.test";

async fn a_trial_nothing_reads_cannot_be_extended_or_shown(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_PLATFORM_OWNERS", ROOT)]).await else {
        return;
    };
    let root = signup(&s, "root-ops", ROOT).await;
    let _root_totp = crate::mfa::owner_factor(&s, &root.access).await;
    // The sign-up answer shows no plan or trial (wherever it shows the tenant).
    let res = s
        .client
        .post(s.url("/v1/auth/signup"))
        .json(&json!({"tenant_name": "Beta", "tenant_slug": "beta",
            "email": "sam@beta.test", "password": crate::auth::PASSWORD, "name": "Sam"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let answer = res.text().await.unwrap();
    for field in ["\"plan\"", "\"trial_ends_at\""] {
        assert!(!answer.contains(field), "{field}: {answer}");
    }
    let pat = signup(&s, "acme", "pat@acme.test").await.access;
    let acme = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap()
        .id
        .0
        .to_string();

    // The platform owner cannot move a trial end any more (step-up is
    // fresh: the owner just signed up) …
    let extend = format!("/v1/platform/tenants/{acme}/extend-trial");
    let body = json!({"days": 30, "confirm": true, "reason": "support ticket #42"});
    let (status, problem) = call(&s, Method::POST, &extend, &root.access, Some(body.clone())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert_eq!(problem["code"], "http.not_found");
    // … and anyone else still learns nothing of the platform API.
    let (status, problem) = call(&s, Method::POST, &extend, &pat, Some(body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(problem["code"], "platform.forbidden");

    // Tenants are listed without them.
    let (status, page) = call(&s, Method::GET, "/v1/platform/tenants", &root.access, None).await;
    assert_eq!(status, StatusCode::OK);
    for tenant in page["tenants"].as_array().unwrap() {
        for field in ["plan", "trial_ends_at"] {
            assert!(tenant.get(field).is_none(), "{field}: {tenant}");
        }
    }
    // Not described, and not stored.
    let doc = s.openapi().await;
    assert!(
        doc["paths"]["/v1/platform/tenants/{id}/extend-trial"].is_null(),
        "extend-trial still in OpenAPI"
    );
    assert!(doc["components"]["schemas"]["ExtendTrialRequest"].is_null());
    let view = &doc["components"]["schemas"]["TenantView"]["properties"];
    assert!(view["status"].is_object(), "{view}");
    assert!(
        view["plan"].is_null() && view["trial_ends_at"].is_null(),
        "{view}"
    );
    for column in ["plan", "trial_ends_at"] {
        let read =
            s.db.global_read()
                .await
                .unwrap()
                .fetch_optional::<(String,)>(
                    &format!("SELECT CAST({column} AS TEXT) FROM tenants WHERE id = $1"),
                    vec![uuid::Uuid::parse_str(&acme).unwrap().into()],
                )
                .await;
        assert!(read.is_err(), "tenants.{column} still exists");
    }
    // The tenant's first event does not claim a plan either.
    let tenant = stockade::ids::TenantId(uuid::Uuid::parse_str(&acme).unwrap());
    let mut tx = s.db.tenant_read(tenant).await.unwrap();
    let (details,): (String,) = tx
        .fetch_one(
            "SELECT details FROM audit_events \
             WHERE tenant_id = $1 AND action = 'tenancy.tenant.created'",
            vec![],
        )
        .await
        .unwrap();
    let details: Value = serde_json::from_str(&details).unwrap();
    assert_eq!(details, json!({"slug": "acme", "name": "acme Ltd"}));
}

crate::both_servers!(a_trial_nothing_reads_cannot_be_extended_or_shown);
