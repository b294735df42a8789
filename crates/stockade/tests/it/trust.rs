//! The live trust page (issue #20 item 8): generated from the running
//! configuration and state, so changing a setting changes the page; a
//! scheduled chain verification shows, and a tampered chain shows as
//! failed; and nothing on it names a tenant, a user, a secret or an
//! internal address.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::audit::tenant_id;
use crate::auth::{server, signup};
use crate::mfa::{enrol_totp, step_up_totp};
use crate::roles::call;
use crate::testkit::{Backend, TestServer, raw_execute};

async fn posture(s: &TestServer) -> Value {
    let res = s.client.get(s.url("/trust.json")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn page(s: &TestServer) -> String {
    let res = s.client.get(s.url("/trust")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let headers = res.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        headers["content-security-policy"],
        stockade::trust::TRUST_CSP
    );
    assert!(headers.contains_key("strict-transport-security"));
    let html = res.text().await.unwrap();
    let lower = html.to_ascii_lowercase();
    for banned in [
        "<script",
        "style=",
        " onload",
        " onclick",
        "javascript:",
        "<style",
    ] {
        assert!(!lower.contains(banned), "{banned} in the page");
    }
    html
}

/// Moves past the page's refresh interval (by the injected clock).
fn next_refresh(s: &TestServer) {
    s.clock
        .advance(stockade::trust::REFRESH + chrono::Duration::seconds(1));
}

async fn the_page_follows_settings_and_state(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let before = posture(&s).await;
    assert_eq!(before["tokens"]["access_token_seconds"], 900);
    assert_eq!(before["tokens"]["algorithm"], "EdDSA");
    assert_eq!(before["passwords"]["hash"], "argon2id");
    assert_eq!(before["passwords"]["memory_kib"], 19_456);
    assert_eq!(before["login_protection"]["attempts_per_address"], 10);
    assert_eq!(before["login_protection"]["lockout_after_failures"], 10);
    assert_eq!(before["mfa"]["tenants_requiring"], 0);
    assert_eq!(before["browser"]["cors_allowed_origins"], 0);
    assert_eq!(before["audit"]["retention_floor_days"], 90);
    assert!(before["audit"].get("last_verification").is_none());
    assert_eq!(before["backups"]["status"], "not available");
    assert!(page(&s).await.contains("not run yet"));

    // A tenant starts requiring MFA: the count moves (after the refresh).
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let totp = enrol_totp(&s, &owner.access).await;
    step_up_totp(&s, &owner.access, &totp).await;
    assert_eq!(posture(&s).await["mfa"]["tenants_requiring"], 0);
    let (status, body) = call(
        &s,
        Method::PATCH,
        "/v1/tenant/settings",
        &owner.access,
        Some(json!({"mfa_required": "admins"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(posture(&s).await["mfa"]["tenants_requiring"], 0, "cached");
    next_refresh(&s);
    assert_eq!(posture(&s).await["mfa"]["tenants_requiring"], 1);
    assert!(
        page(&s)
            .await
            .contains("<dt>Tenants requiring it</dt>\n<dd>1</dd>")
    );

    // The scheduled verification of every chain shows, then a tampered
    // chain shows as failed.
    let v = stockade::audit::verification::scheduled_verification(&s.db, s.clock.as_ref())
        .await
        .unwrap();
    assert!(v.ok && v.chains >= 2, "{v:?}");
    next_refresh(&s);
    let now = posture(&s).await;
    assert_eq!(now["audit"]["last_verification"]["ok"], true, "{now}");
    assert!(page(&s).await.contains("every chain holds"));
    let acme = tenant_id(&s, "acme").await;
    raw_execute(
        &s.db,
        "UPDATE audit_events SET outcome = 'denied' WHERE tenant_id = $1 AND seq = 1",
        acme.as_uuid(),
    )
    .await;
    s.clock.advance(chrono::Duration::minutes(1));
    let v = stockade::audit::verification::scheduled_verification(&s.db, s.clock.as_ref())
        .await
        .unwrap();
    assert_eq!((v.ok, v.broken), (false, 1), "{v:?}");
    next_refresh(&s);
    assert_eq!(posture(&s).await["audit"]["last_verification"]["ok"], false);
    assert!(page(&s).await.contains("FAILED: a chain does not hold"));
}

/// Settings given at start show as they are.
#[tokio::test]
async fn the_page_shows_the_configuration_it_runs_with() {
    let s = TestServer::start_with(
        &[
            ("STOCKADE_REFRESH_REUSE_GRACE", "10"),
            (
                "STOCKADE_CORS_ORIGINS",
                "https://app.example.com,https://admin.example.com",
            ),
            (
                "STOCKADE_REDIRECT_ALLOWLIST",
                "https://app.example.com/auth/",
            ),
            ("STOCKADE_AUDIT_RETENTION_MIN_DAYS", "120"),
        ],
        true,
    )
    .await;
    let p = posture(&s).await;
    assert_eq!(p["tokens"]["refresh_reuse_grace_seconds"], 10);
    assert_eq!(p["browser"]["cors_allowed_origins"], 2);
    assert_eq!(p["browser"]["redirect_allowlist_entries"], 1);
    assert_eq!(p["audit"]["retention_floor_days"], 120);
    let html = page(&s).await;
    assert!(html.contains("<dd>120 days</dd>"), "{html}");
    // The origins themselves are not listed: counts only.
    let text = serde_json::to_string(&p).unwrap() + &html;
    assert!(!text.contains("admin.example.com"), "{text}");
}

async fn nothing_on_the_page_names_a_tenant_user_secret_or_address(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme-secret-corp", "pat.secret@acme.test").await;
    let me: Value = crate::auth::me(&s, &owner.access)
        .await
        .json()
        .await
        .unwrap();
    let tenant = tenant_id(&s, "acme-secret-corp").await;
    stockade::audit::verification::scheduled_verification(&s.db, s.clock.as_ref())
        .await
        .unwrap();
    let text = serde_json::to_string(&posture(&s).await).unwrap() + &page(&s).await;
    let cfg = &s.state.config;
    let mut needles = vec![
        "acme-secret-corp".to_owned(),
        "pat.secret".to_owned(),
        tenant.to_string(),
        s.addr.to_string(),
        "127.0.0.1".to_owned(),
        cfg.data_dir.display().to_string(),
        "postgres://".to_owned(),
        "stockade_login".to_owned(),
    ];
    if let Some(id) = me["user"]["id"].as_str() {
        needles.push(id.to_owned());
    }
    for needle in &needles {
        assert!(
            !text.contains(needle.as_str()),
            "{needle} on the trust page"
        );
    }
}

crate::both_servers!(
    the_page_follows_settings_and_state,
    nothing_on_the_page_names_a_tenant_user_secret_or_address
);
