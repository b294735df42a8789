//! What keeps a session and its access tokens valid and what ends them
//! (SPEC §2.2–2.3), on SQLite and PostgreSQL: revocation, deactivation and
//! suspension take effect on the next request, expired, forged and foreign
//! tokens are refused, a rotated signing key still verifies old tokens,
//! idle and absolute timeouts (the tenant's own settings too), and cached
//! session checks are invalidated. Refresh rotation is `auth_refresh.rs`;
//! this file defines no fixture other files use.

use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade::clock::Clock;
use stockade::http::Problem;

use crate::auth::{
    PASSWORD, audit_actions, b64json, login, login_from, login_ok, me, refresh, server, signup,
};
use crate::testkit::{Backend, TestServer};

async fn revocation_takes_effect_on_the_next_request(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let b = login_ok(&s, "owner@acme.test").await;
    let c = login_ok(&s, "owner@acme.test").await;
    // Each sign-in is audited with its client address.
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_read(tenant.id).await.unwrap();
    let rows: Vec<stockade::audit::StoredEvent> = tx
        .fetch_all(
            "SELECT * FROM audit_events WHERE tenant_id = $1 \
             AND action = 'auth.login.succeeded'",
            vec![],
        )
        .await
        .unwrap();
    // The address is sealed under the user's key (`audit::pii`): opened here.
    assert!(rows.iter().all(|e| e.ip.is_none() && e.pii.is_some()));
    let logins = stockade::audit::pii::reveal(&mut tx, rows, stockade::audit::pii::Ids::Stored)
        .await
        .unwrap();
    drop(tx);
    assert_eq!(logins.len(), 2);
    assert!(logins.iter().all(|l| l.event.outcome == "success"
        && l.event.ip.as_deref() == Some("127.0.0.1")
        && l.event.actor_type == "user"));
    // Sessions list marks the current one.
    let list: Value = s
        .client
        .get(s.url("/v1/auth/sessions"))
        .bearer_auth(&a.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list.iter().filter(|x| x["current"] == true).count(), 1);
    // Remote sign-out of b from a.
    let sid_b = b64json(b.access.split('.').nth(1).unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = s
        .client
        .delete(s.url(&format!("/v1/auth/sessions/{sid_b}")))
        .bearer_auth(&a.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(&s, &b.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        refresh(&s, &b.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Logout of c.
    let res = s
        .client
        .post(s.url("/v1/auth/logout"))
        .bearer_auth(&c.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(&s, &c.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(me(&s, &a.access).await.status(), StatusCode::OK);
    // Another tenant's session id is "not found".
    let other = signup(&s, "other", "other@other.test").await;
    let sid_a = b64json(a.access.split('.').nth(1).unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = s
        .client
        .delete(s.url(&format!("/v1/auth/sessions/{sid_a}")))
        .bearer_auth(&other.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Logout everywhere.
    let d = login_ok(&s, "owner@acme.test").await;
    let res = s
        .client
        .post(s.url("/v1/auth/logout-all"))
        .bearer_auth(&a.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(&s, &a.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(me(&s, &d.access).await.status(), StatusCode::UNAUTHORIZED);
    let actions = audit_actions(&s, "acme").await;
    for a in [
        "sessions.session.revoked",
        "auth.session.logged_out",
        "auth.session.logged_out_all",
    ] {
        assert!(actions.contains(&a.to_owned()), "{a}");
    }
}

async fn deactivation_and_suspension_revoke_at_once(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let b = signup(&s, "beta", "owner@beta.test").await;
    let mut tx = s.db.global_tx().await.unwrap();
    tx.execute(
        "UPDATE tenants SET status = 'suspended' WHERE slug = $1",
        vec!["acme".into()],
    )
    .await
    .unwrap();
    tx.execute(
        "UPDATE users SET status = 'deactivated' WHERE email_key = $1",
        vec!["owner@beta.test".into()],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // A suspended tenant's credentials are refused and say why.
    let res = me(&s, &a.access).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "tenancy.suspended"
    );
    assert_eq!(me(&s, &b.access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        login(&s, "owner@beta.test", PASSWORD, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A suspended tenant says so, but only to someone who knows the password.
    let res = login(&s, "owner@acme.test", PASSWORD, None).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "tenancy.suspended"
    );
    assert_eq!(
        login(&s, "owner@acme.test", "Wrong-Passw0rd-77", None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn expired_and_forged_tokens_are_refused(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let parts: Vec<&str> = a.access.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims = b64json(parts[1]);
    claims["sub"] = json!(uuid::Uuid::now_v7().to_string());
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let mut header = b64json(parts[0]);
    header["alg"] = json!("HS256");
    let confused = format!(
        "{}.{}.{}",
        b64.encode(header.to_string()),
        parts[1],
        parts[2]
    );
    for bad in [
        tampered.as_str(),
        none.as_str(),
        confused.as_str(),
        "garbage",
        "",
    ] {
        assert_eq!(
            me(&s, bad).await.status(),
            StatusCode::UNAUTHORIZED,
            "{bad}"
        );
    }
    let res = me(&s, "garbage").await;
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let res = s
        .client
        .get(s.url("/v1/me"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(me(&s, &a.access).await.status(), StatusCode::OK);
    s.clock.advance(chrono::Duration::minutes(15));
    assert_eq!(
        me(&s, &a.access).await.status(),
        StatusCode::UNAUTHORIZED,
        "expired"
    );
    // The refresh cookie still works, and gives a fresh access token.
    let res = refresh(&s, &a.refresh).await;
    assert_eq!(res.status(), StatusCode::OK);
    let fresh = login_from(res).await;
    assert_eq!(me(&s, &fresh.access).await.status(), StatusCode::OK);
}

async fn idle_and_absolute_timeouts(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    // Idle (8 h): a refresh one second inside it works; one 8 h after the
    // last use does not, although the session is far from its 30 days.
    let a = signup(&s, "acme", "owner@acme.test").await;
    s.clock
        .advance(chrono::Duration::hours(8) - chrono::Duration::seconds(1));
    let res = refresh(&s, &a.refresh).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "alive 1 s inside the idle timeout"
    );
    let a = login_from(res).await;
    s.clock.advance(chrono::Duration::hours(8));
    assert_eq!(
        refresh(&s, &a.refresh).await.status(),
        StatusCode::UNAUTHORIZED,
        "idle 8 h (only the idle timeout can end this session: it is 16 h old)"
    );
    // Absolute (30 days): refreshed every 7 h, the session is never idle for
    // 8 h; it stays alive up to its 30 days and ends at them, 7 h after its
    // last refresh, so only the absolute timeout can end it.
    let mut l = login_ok(&s, "owner@acme.test").await;
    let started = s.clock.now();
    let end = started + chrono::Duration::days(30);
    let mut refreshes = 0;
    loop {
        s.clock.advance(chrono::Duration::hours(7));
        let res = refresh(&s, &l.refresh).await;
        if s.clock.now() < end {
            assert_eq!(
                res.status(),
                StatusCode::OK,
                "alive {} h after sign-in",
                (s.clock.now() - started).num_hours()
            );
            l = login_from(res).await;
            refreshes += 1;
        } else {
            assert_eq!(
                res.status(),
                StatusCode::UNAUTHORIZED,
                "absolute 30 days ({} h after sign-in, 7 h after the last refresh)",
                (s.clock.now() - started).num_hours()
            );
            break;
        }
    }
    assert_eq!(refreshes, 102, "kept alive right up to the end");
}

async fn tenant_settings_drive_timeouts_and_password_policy(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let first = signup(&s, "acme", "owner@acme.test").await;
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let mut settings = stockade::tenancy::TenantSettings {
        session_idle_secs: 600,
        ..Default::default()
    };
    settings.password_policy.min_length = 16;
    let mut tx = s.db.tenant_tx(tenant.id).await.unwrap();
    stockade::tenancy::settings::save(&mut tx, s.clock.as_ref(), &settings)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let l = login_ok(&s, "owner@acme.test").await;
    s.clock.advance(chrono::Duration::minutes(11));
    assert_eq!(
        refresh(&s, &l.refresh).await.status(),
        StatusCode::UNAUTHORIZED,
        "tenant idle timeout"
    );
    // The session made before the change keeps the timeout it was made with.
    let first = refresh(&s, &first.refresh).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first = login_from(first).await;
    // Its password proof is 11 minutes old: a step-up first.
    let res = s
        .client
        .post(s.url("/v1/auth/reauth"))
        .bearer_auth(&first.access)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = s
        .client
        .post(s.url("/v1/auth/password"))
        .bearer_auth(&first.access)
        .json(&json!({"current_password": PASSWORD, "new_password": "Strong-Pw-12a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let p: Problem = res.json().await.unwrap();
    assert!(p.errors.unwrap().to_string().contains("password.too_short"));
    let res = s
        .client
        .post(s.url("/v1/auth/password"))
        .bearer_auth(&first.access)
        .json(&json!({"current_password": PASSWORD, "new_password": "Much-Longer-Strong-Pw-12a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // Out-of-range settings are refused.
    settings.session_idle_secs = 10;
    let mut tx = s.db.tenant_tx(tenant.id).await.unwrap();
    assert!(
        stockade::tenancy::settings::save(&mut tx, s.clock.as_ref(), &settings)
            .await
            .is_err()
    );
}

async fn session_checks_are_cached_and_invalidated(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    assert_eq!(me(&s, &a.access).await.status(), StatusCode::OK);
    assert_eq!(me(&s, &a.access).await.status(), StatusCode::OK);
    // A second handle on the same database, as another process would have.
    let other = match backend {
        Backend::Sqlite => {
            stockade::db::Db::open_sqlite_file(&s.state.config.data_dir.join("stockade.db"))
                .await
                .unwrap()
        }
        Backend::Postgres => {
            let url = secrecy::ExposeSecret::expose_secret(
                &s.state.config.database_url.as_ref().unwrap().value,
            )
            .to_owned();
            stockade::db::Db::open_postgres(&url).await.unwrap()
        }
    };
    let sid: uuid::Uuid = b64json(a.access.split('.').nth(1).unwrap())["sid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let mut tx = other.tenant_tx(tenant.id).await.unwrap();
    tx.execute(
        "UPDATE sessions SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2",
        vec![sid.into(), s.clock.now().into()],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    match backend {
        Backend::Sqlite => {
            assert_eq!(s.state.session_cache.len(), 1);
            // Cached: another process's change is seen within the bound.
            assert_eq!(me(&s, &a.access).await.status(), StatusCode::OK);
            s.clock
                .advance(stockade::sessions::cache::CROSS_PROCESS_TTL);
            assert_eq!(me(&s, &a.access).await.status(), StatusCode::UNAUTHORIZED);
        }
        Backend::Postgres => {
            // Cluster mode does not cache: seen at once.
            assert!(s.state.session_cache.is_empty());
            assert_eq!(me(&s, &a.access).await.status(), StatusCode::UNAUTHORIZED);
        }
    }
}

crate::both_servers!(
    tenant_settings_drive_timeouts_and_password_policy,
    session_checks_are_cached_and_invalidated,
    revocation_takes_effect_on_the_next_request,
    deactivation_and_suspension_revoke_at_once,
    expired_and_forged_tokens_are_refused,
    idle_and_absolute_timeouts,
);

#[tokio::test]
async fn a_rotated_signing_key_is_picked_up_and_old_tokens_still_verify() {
    let s = TestServer::start().await;
    let a = signup(&s, "acme", "owner@acme.test").await;
    let old_kid = b64json(a.access.split('.').next().unwrap())["kid"].clone();
    let new_kid = stockade::crypto::keyring::rotate(&s.db, &s.state.keys, s.clock.as_ref())
        .await
        .unwrap();
    stockade::app::reload_keyring(&s.state).await;
    let b = login_ok(&s, "owner@acme.test").await;
    let header = b64json(b.access.split('.').next().unwrap());
    assert_eq!(header["kid"], json!(new_kid));
    assert_ne!(header["kid"], old_kid);
    // Both verify during the overlap; the JWKS lists both.
    assert_eq!(me(&s, &a.access).await.status(), StatusCode::OK);
    assert_eq!(me(&s, &b.access).await.status(), StatusCode::OK);
    let jwks: Value = s
        .client
        .get(s.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn wrong_audience_issuer_and_key_are_refused() {
    let s = TestServer::start().await;
    let a = signup(&s, "acme", "owner@acme.test").await;
    let claims: stockade::crypto::jwt::Claims =
        serde_json::from_value(b64json(a.access.split('.').nth(1).unwrap())).unwrap();
    let keyring = s.state.keyring();
    let reissue = |c: &stockade::crypto::jwt::Claims| keyring.issue(c).unwrap();
    // The same claims re-signed by the server verify (the baseline).
    assert_eq!(me(&s, &reissue(&claims)).await.status(), StatusCode::OK);
    let mut wrong_aud = claims.clone();
    wrong_aud.aud = "another-service".into();
    let mut wrong_iss = claims.clone();
    wrong_iss.iss = "https://evil.example".into();
    for token in [reissue(&wrong_aud), reissue(&wrong_iss)] {
        assert_eq!(me(&s, &token).await.status(), StatusCode::UNAUTHORIZED);
    }
    // A key the server never had, even under the server's own kid.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let kid = keyring.current_kid().to_owned();
    let foreign = stockade::crypto::jwt::Keyring::new(
        stockade::crypto::jwt::KeyEntry::signing(
            kid,
            stockade::crypto::jwt::KeySecret::Ed25519(&stranger),
        )
        .unwrap(),
        [],
    )
    .unwrap();
    assert_eq!(
        me(&s, &foreign.issue(&claims).unwrap()).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
