//! Reset links die when they should (issue #17 item 5), attacked on both
//! backends: an old link after a newer one was used, a link after the
//! password was changed, a link after another link's reset, two links
//! confirmed at once; and a reset (account recovery) revokes the API keys
//! the user created, in every tenant, unless the tenant keeps them.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::auth::{PASSWORD, login, login_ok, server, signup};
use crate::roles::call;
use crate::testkit::{Backend, TestServer};

const EMAIL: &str = "owner@acme.test";

/// The messages of `kind` in the outbox, oldest first, unsealed as the mail
/// sender would.
async fn outbox(s: &TestServer, kind: &str) -> Vec<String> {
    let rows: Vec<(uuid::Uuid, Vec<u8>)> =
        s.db.global_read()
            .await
            .unwrap()
            .fetch_all(
                "SELECT id, sealed_body FROM email_outbox WHERE kind = $1 ORDER BY created_at, id",
                vec![kind.into()],
            )
            .await
            .unwrap();
    rows.iter()
        .map(|(id, sealed)| {
            let body = s
                .state
                .keys
                .master
                .open(1, &stockade::email::outbox_aad(*id), sealed)
                .unwrap();
            let body: Value = serde_json::from_slice(&body).unwrap();
            body["body"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Asks for a reset link; its token.
async fn reset_link(s: &TestServer) -> String {
    let res = s
        .client
        .post(s.url("/v1/auth/password-reset/request"))
        .json(&json!({ "email": EMAIL }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let last = outbox(s, "password_reset").await.pop().unwrap();
    let token = last.split("#token=").nth(1).unwrap();
    token.split_whitespace().next().unwrap().to_owned()
}

async fn confirm(s: &TestServer, token: &str, password: &str) -> (StatusCode, Value) {
    let res = s
        .client
        .post(s.url("/v1/auth/password-reset/confirm"))
        .json(&json!({ "token": token, "new_password": password }))
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The link was refused, and `password` does not sign in.
async fn refused(s: &TestServer, token: &str, password: &str) {
    let (status, body) = confirm(s, token, password).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "auth.invalid_reset_token");
    assert_eq!(
        login(s, EMAIL, password, None).await.status(),
        StatusCode::UNAUTHORIZED,
        "the refused link set the password"
    );
}

async fn an_older_link_dies_when_a_newer_one_is_used(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    signup(&s, "acme", EMAIL).await;
    let older = reset_link(&s).await;
    let newer = reset_link(&s).await;
    assert_ne!(older, newer);
    let (status, _) = confirm(&s, &newer, "Newer-Strong-Passw0rd").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The attacker who kept the older mail cannot take the account back.
    refused(&s, &older, "Attacker-Strong-Passw0rd").await;
    login_ok_with(&s, "Newer-Strong-Passw0rd").await;
}

async fn a_newer_link_dies_when_an_older_one_is_used(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    signup(&s, "acme", EMAIL).await;
    let older = reset_link(&s).await;
    let newer = reset_link(&s).await;
    let (status, _) = confirm(&s, &older, "Older-Strong-Passw0rd").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    refused(&s, &newer, "Attacker-Strong-Passw0rd").await;
    login_ok_with(&s, "Older-Strong-Passw0rd").await;
}

async fn a_link_dies_when_the_password_is_changed(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    signup(&s, "acme", EMAIL).await;
    let link = reset_link(&s).await;
    // The owner notices and changes the password while signed in.
    let owner = login_ok(&s, EMAIL).await;
    let (status, body) = call(
        &s,
        Method::POST,
        "/v1/auth/password",
        &owner.access,
        Some(json!({"current_password": PASSWORD, "new_password": "Changed-Strong-Passw0rd"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    refused(&s, &link, "Attacker-Strong-Passw0rd").await;
    login_ok_with(&s, "Changed-Strong-Passw0rd").await;
}

async fn two_links_confirmed_at_once_one_wins(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    signup(&s, "acme", EMAIL).await;
    for round in 0..4 {
        // A fresh per-address sign-in quota (10 per 15 minutes) each round.
        s.clock.advance(chrono::Duration::minutes(16));
        let a = reset_link(&s).await;
        let b = reset_link(&s).await;
        let pa = format!("Round{round}-Alpha-Passw0rd");
        let pb = format!("Round{round}-Bravo-Passw0rd");
        let ((sa, _), (sb, _)) = tokio::join!(confirm(&s, &a, &pa), confirm(&s, &b, &pb));
        let wins = [sa, sb]
            .iter()
            .filter(|st| **st == StatusCode::NO_CONTENT)
            .count();
        assert_eq!(wins, 1, "round {round}: {sa} and {sb}");
        assert!([sa, sb].contains(&StatusCode::BAD_REQUEST));
        let (winner, loser) = match sa == StatusCode::NO_CONTENT {
            true => (&pa, &pb),
            false => (&pb, &pa),
        };
        login_ok_with(&s, winner).await;
        assert_eq!(
            login(&s, EMAIL, loser, None).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
}

async fn login_ok_with(s: &TestServer, password: &str) {
    let res = login(s, EMAIL, password, None).await;
    assert_eq!(res.status(), StatusCode::OK, "{password}");
}

/// Creates an API key named `name` (scope `settings:manage`); (key, prefix).
async fn key(s: &TestServer, access: &str, name: &str) -> (String, String) {
    let (status, body) = call(
        s,
        Method::POST,
        "/v1/api-keys",
        access,
        Some(json!({"name": name, "scopes": ["settings:manage"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["key"].as_str().unwrap().to_owned(),
        body["prefix"].as_str().unwrap().to_owned(),
    )
}

async fn uses(s: &TestServer, key: &str) -> StatusCode {
    call(s, Method::GET, "/v1/tenant/settings", key, None)
        .await
        .0
}

/// `EMAIL` owns acme and is an admin of beta (owned by someone else).
async fn two_tenants(s: &TestServer) -> (String, String) {
    let acme = signup(s, "acme", EMAIL).await;
    signup(s, "beta", "owner@beta.test").await;
    let (_, me) = call(s, Method::GET, "/v1/me", &acme.access, None).await;
    let user: stockade::ids::UserId = me["user"]["id"].as_str().unwrap().parse().unwrap();
    let beta = stockade::tenancy::find_by_slug(&s.db, "beta")
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_tx(beta.id).await.unwrap();
    stockade::tenancy::add_member(&mut tx, s.clock.as_ref(), user, "admin")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let res = login(s, EMAIL, PASSWORD, Some("beta")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let beta: Value = res.json().await.unwrap();
    (
        acme.access,
        beta["access_token"].as_str().unwrap().to_owned(),
    )
}

/// The details of every `action` event in tenant `slug`.
async fn events(s: &TestServer, slug: &str, action: &str) -> Vec<Value> {
    let tenant = stockade::tenancy::find_by_slug(&s.db, slug)
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_read(tenant.id).await.unwrap();
    let rows: Vec<(String,)> = tx
        .fetch_all(
            "SELECT details FROM audit_events WHERE tenant_id = $1 AND action = $2 ORDER BY seq",
            vec![action.into()],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| serde_json::from_str(&r.0).unwrap())
        .collect()
}

async fn a_reset_revokes_the_users_api_keys_in_every_tenant(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let (acme, beta) = two_tenants(&s).await;
    let (acme_key, acme_prefix) = key(&s, &acme, "ci deploy").await;
    let (beta_key, beta_prefix) = key(&s, &beta, "nightly export").await;
    // Both work (and their checks are cached).
    assert_eq!(uses(&s, &acme_key).await, StatusCode::OK);
    assert_eq!(uses(&s, &beta_key).await, StatusCode::OK);

    let link = reset_link(&s).await;
    let (status, _) = confirm(&s, &link, "Recovered-Strong-Passw0rd").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Whoever planted the keys loses them on the very next request.
    assert_eq!(uses(&s, &acme_key).await, StatusCode::UNAUTHORIZED);
    assert_eq!(uses(&s, &beta_key).await, StatusCode::UNAUTHORIZED);

    // Each tenant's reset event names the keys it revoked.
    for (slug, name, prefix) in [
        ("acme", "ci deploy", &acme_prefix),
        ("beta", "nightly export", &beta_prefix),
    ] {
        let reset = events(&s, slug, "auth.password.reset_completed").await;
        assert_eq!(reset.len(), 1, "{slug}");
        assert_eq!(reset[0]["api_keys_revoked"], 1);
        assert_eq!(reset[0]["api_keys_kept"], 0);
        let named = &reset[0]["revoked_api_keys"][0];
        assert_eq!(
            (&named["name"], &named["prefix"]),
            (&json!(name), &json!(prefix))
        );
        assert!(named["id"].is_string());
    }
    // The owner is told, key by key, without any secret.
    let notices = outbox(&s, "password_reset_notice").await;
    assert_eq!(notices.len(), 1);
    let notice = &notices[0];
    assert!(
        notice.contains(&format!("- acme: \"ci deploy\" ({acme_prefix})")),
        "{notice}"
    );
    assert!(
        notice.contains(&format!("- beta: \"nightly export\" ({beta_prefix})")),
        "{notice}"
    );
    for secret in [&acme_key, &beta_key] {
        assert!(
            !notice.contains(&secret[26..]),
            "a key secret in the notice"
        );
    }
    // The listing shows them revoked.
    let fresh = login_ok_as(&s, "Recovered-Strong-Passw0rd").await;
    let (_, list) = call(&s, Method::GET, "/v1/api-keys", &fresh, None).await;
    assert!(list[0]["revoked_at"].is_string(), "{list}");
}

async fn login_ok_as(s: &TestServer, password: &str) -> String {
    let res = login(s, EMAIL, password, Some("acme")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn a_tenant_can_keep_api_keys_through_a_reset(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let (acme, beta) = two_tenants(&s).await;
    // Off by default, described, changed like any setting and audited.
    let (_, got) = call(&s, Method::GET, "/v1/tenant/settings", &acme, None).await;
    assert_eq!(got["keep_api_keys_on_password_reset"], false);
    let doc = s.openapi().await;
    let schemas = &doc["components"]["schemas"];
    for schema in ["TenantSettings", "SettingsPatch"] {
        assert!(
            schemas[schema]["properties"]["keep_api_keys_on_password_reset"].is_object(),
            "{schema}"
        );
    }
    let (status, got) = call(
        &s,
        Method::PATCH,
        "/v1/tenant/settings",
        &acme,
        Some(json!({"keep_api_keys_on_password_reset": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["keep_api_keys_on_password_reset"], true);
    let changes = events(&s, "acme", "tenancy.settings.updated").await;
    assert_eq!(
        changes[0]["changes"]["keep_api_keys_on_password_reset"],
        json!({"old": false, "new": true})
    );
    let (kept, kept_prefix) = key(&s, &acme, "ci deploy").await;
    let (gone, _) = key(&s, &beta, "nightly export").await;
    let link = reset_link(&s).await;
    let (status, _) = confirm(&s, &link, "Recovered-Strong-Passw0rd").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // acme keeps its key; beta (default) revokes its own.
    assert_eq!(uses(&s, &kept).await, StatusCode::OK);
    assert_eq!(uses(&s, &gone).await, StatusCode::UNAUTHORIZED);
    let reset = events(&s, "acme", "auth.password.reset_completed").await;
    assert_eq!(reset[0]["api_keys_revoked"], 0);
    assert_eq!(reset[0]["revoked_api_keys"], json!([]));
    assert_eq!(reset[0]["api_keys_kept"], 1);
    let notice = outbox(&s, "password_reset_notice").await.pop().unwrap();
    let (revoked_part, kept_part) = notice.split_once("keep working").unwrap();
    assert!(
        revoked_part.contains("- beta: \"nightly export\""),
        "{notice}"
    );
    assert!(
        kept_part.contains(&format!("- acme: \"ci deploy\" ({kept_prefix})")),
        "{notice}"
    );
}

crate::both_servers!(
    an_older_link_dies_when_a_newer_one_is_used,
    a_newer_link_dies_when_an_older_one_is_used,
    a_link_dies_when_the_password_is_changed,
    two_links_confirmed_at_once_one_wins,
    a_reset_revokes_the_users_api_keys_in_every_tenant,
    a_tenant_can_keep_api_keys_through_a_reset,
);
