//! `GET/PATCH /v1/tenant/settings` and the IP allowlist, on both backends.

use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade::http::Problem;

use crate::auth::{PASSWORD, audit_actions, login_ok, me, server, signup};
use crate::testkit::Backend;

const XFF: &str = "x-forwarded-for";

async fn settings_read_change_and_audit(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let got: Value = s
        .client
        .get(s.url("/v1/tenant/settings"))
        .bearer_auth(&owner.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["session_idle_secs"], 28800);
    assert_eq!(got["mfa_required"], "off");
    assert_eq!(got["ip_allowlist"], json!([]));
    assert_eq!(got["password_policy"]["min_length"], 10);
    let res = s.client.patch(s.url("/v1/tenant/settings")).bearer_auth(&owner.access)
        .json(&json!({"session_idle_secs": 3600, "api_key_rate_per_minute": 120, "audit_retention_days": 365}))
        .send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let new: Value = res.json().await.unwrap();
    assert_eq!(new["session_idle_secs"], 3600);
    assert_eq!(new["audit_retention_days"], 365);
    // Audited with old and new values.
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_read(tenant.id).await.unwrap();
    let rows: Vec<(String,)> = tx
        .fetch_all("SELECT details FROM audit_events WHERE tenant_id = $1 AND action = 'tenancy.settings.updated'", vec![])
        .await.unwrap();
    drop(tx);
    assert_eq!(rows.len(), 1);
    let details: Value = serde_json::from_str(&rows[0].0).unwrap();
    assert_eq!(
        details["changes"]["session_idle_secs"],
        json!({"old": 28800, "new": 3600})
    );
    assert_eq!(
        details["changes"]["api_key_rate_per_minute"],
        json!({"old": 600, "new": 120})
    );
    // (`mfa_required` other than `off` is refused: settings_unavailable.rs.)
    assert!(details["changes"].get("password_policy").is_none());
    // Bad input changes nothing.
    for body in [
        json!({"session_idle_secs": 10}),
        json!({"audit_retention_days": 0}),
        json!({"ip_allowlist": ["not-a-cidr"]}),
        json!({"mfa_required": "sometimes"}),
        json!({"tenant_id": "x"}),
        json!({"password_policy": {"min_length": 3}}),
    ] {
        let res = s
            .client
            .patch(s.url("/v1/tenant/settings"))
            .bearer_auth(&owner.access)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let again: Value = s
        .client
        .get(s.url("/v1/tenant/settings"))
        .bearer_auth(&owner.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again, new);
}

async fn settings_need_settings_manage(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    signup(&s, "acme", "owner@acme.test").await;
    let mut tx = s.db.global_tx().await.unwrap();
    let hash = s
        .state
        .hasher
        .hash(PASSWORD.to_owned().into())
        .await
        .unwrap();
    let user = stockade::identity::create_user_with_password(
        &mut tx,
        s.clock.as_ref(),
        &stockade::identity::Email::parse("ed@acme.test").unwrap(),
        "Ed",
        Some(&hash),
    )
    .await
    .unwrap();
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let mut tx = tx.scoped(tenant.id).await.unwrap();
    stockade::tenancy::add_member(&mut tx, s.clock.as_ref(), user.id, "editor")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let editor = login_ok(&s, "ed@acme.test").await;
    for res in [
        s.client
            .get(s.url("/v1/tenant/settings"))
            .bearer_auth(&editor.access)
            .send()
            .await
            .unwrap(),
        s.client
            .patch(s.url("/v1/tenant/settings"))
            .bearer_auth(&editor.access)
            .json(&json!({"session_idle_secs": 3600}))
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let p: Problem = res.json().await.unwrap();
        assert_eq!(p.code, "rbac.forbidden");
        assert!(p.detail.unwrap().contains("settings:manage"));
    }
    assert_eq!(
        s.client
            .get(s.url("/v1/tenant/settings"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn ip_allowlist_is_enforced_on_every_request(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let other = signup(&s, "other", "owner@other.test").await;
    let patch = |ip: &'static str, list: Value| {
        s.client
            .patch(s.url("/v1/tenant/settings"))
            .bearer_auth(&owner.access)
            .header(XFF, ip)
            .json(&json!({"ip_allowlist": list}))
            .send()
    };
    // Locking yourself out is refused.
    let res = patch("198.51.100.7", json!(["10.0.0.0/8"])).await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "tenancy.allowlist_lockout"
    );
    let res = patch("198.51.100.7", json!(["198.51.100.0/24", "2001:db8::/32"]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let from = |ip: &'static str, token: String| {
        s.client
            .get(s.url("/v1/me"))
            .bearer_auth(token)
            .header(XFF, ip)
            .send()
    };
    assert_eq!(
        from("198.51.100.9", owner.access.clone())
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    for _ in 0..3 {
        let res = from("203.0.113.5", owner.access.clone()).await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            res.json::<Problem>().await.unwrap().code,
            "tenancy.ip_not_allowed"
        );
    }
    let denied = audit_actions(&s, "acme")
        .await
        .iter()
        .filter(|a| *a == "tenancy.ip.denied")
        .count();
    assert_eq!(denied, 1, "one event per address per window");
    // Another tenant is unaffected.
    assert_eq!(
        from("203.0.113.5", other.access.clone())
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // Emptying the list opens it again (from an allowed address).
    let res = patch("198.51.100.7", json!([])).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        from("203.0.113.5", owner.access.clone())
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(me(&s, &owner.access).await.status(), StatusCode::OK);
}

async fn subdomain_must_agree_with_the_token(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_TENANT_DOMAIN", "example.com")]).await else {
        return;
    };
    let acme = signup(&s, "acme", "owner@acme.test").await;
    let beta = signup(&s, "beta", "owner@beta.test").await;
    let at = |host: &'static str, token: String| {
        s.client
            .get(s.url("/v1/me"))
            .bearer_auth(token)
            .header("host", host)
            .send()
    };
    assert_eq!(
        at("acme.example.com", acme.access.clone())
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        at("ACME.example.com:8443", acme.access.clone())
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN,
        "slugs are lower case: an upper-case host names no tenant of ours"
    );
    let res = at("acme.example.com", beta.access.clone()).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "tenancy.subdomain_mismatch"
    );
    assert_eq!(
        at("beta.example.com:443", beta.access.clone())
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // The bare domain and other hosts carry no tenant.
    assert_eq!(
        at("example.com", beta.access.clone())
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        at("api.other.test", acme.access.clone())
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

crate::both_servers!(
    changing_settings_needs_a_recent_password,
    subdomain_must_agree_with_the_token,
    settings_read_change_and_audit,
    settings_need_settings_manage,
    ip_allowlist_is_enforced_on_every_request,
);

async fn changing_settings_needs_a_recent_password(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    s.clock.advance(chrono::Duration::minutes(6));
    let patch = || {
        s.client
            .patch(s.url("/v1/tenant/settings"))
            .bearer_auth(&owner.access)
            .json(&json!({"session_idle_secs": 3600}))
            .send()
    };
    let res = patch().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "auth.step_up_required"
    );
    let res = s
        .client
        .post(s.url("/v1/auth/reauth"))
        .bearer_auth(&owner.access)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(patch().await.unwrap().status(), StatusCode::OK);
}
