//! Invitations end to end (SPEC §2.5–2.6), on SQLite and PostgreSQL: a new
//! user accepts, expired, revoked and replaced invitations are refused, a
//! partner joins with their bearer token, an invitation dies with its
//! inviter's standing, and concurrent acceptances have one winner. Its
//! fixtures come from `members.rs`; it defines none other files use. Each
//! test stays within the per-IP quota of 10 password attempts.

use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade::clock::Clock;

use crate::auth::{PASSWORD, audit_actions, login, server, set_cookie, signup};
use crate::members::{
    NEW_PASSWORD, accept_bearer, accept_new, audit_details, invitation_token_from_outbox, invite,
    invite_ok, join, me_json, members_ok, owner, patch, refused, switch,
};
use crate::testkit::Backend;

async fn invitation_for_a_new_user(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = owner(&s, "acme", "owner@acme.test").await;
    let now = s.clock.now();
    let res = invite(&s, &o.access, "New.Person@Example.test", "editor").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    assert_eq!(created["email"], "New.Person@Example.test");
    assert_eq!(created["role"], "editor");
    assert_eq!(created["invited_by"], o.id.as_str());
    let expires: chrono::DateTime<chrono::Utc> =
        created["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires - now, chrono::Duration::days(7));
    // The token is 256 bits after the tenant, and only its hash is stored.
    let (_, secret) = token.split_once('.').unwrap();
    assert_eq!(secret.len(), 43);
    assert_eq!(
        invitation_token_from_outbox(&s, "New.Person@Example.test").await,
        token
    );
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let mut tx = s.db.tenant_read(tenant.id).await.unwrap();
    let stored: Vec<(Vec<u8>,)> = tx
        .fetch_all(
            "SELECT token_hash FROM invitations WHERE tenant_id = $1",
            vec![],
        )
        .await
        .unwrap();
    drop(tx);
    let secret = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(secret)
            .unwrap()
    };
    assert_eq!(secret.len(), 32);
    let expected: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&secret).into();
    assert_eq!(stored, vec![(expected.to_vec(),)]);
    // Listed while pending, never with its token.
    let pending: Vec<Value> = s
        .client
        .get(s.url("/v1/invitations"))
        .bearer_auth(&o.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["id"], created["id"]);
    assert!(pending[0].get("token").is_none());
    // Unknown or malformed tokens; incomplete bodies; a weak password.
    let unknown = format!("{}.{}", tenant.id.0.simple(), "A".repeat(43));
    for t in [unknown.as_str(), "garbage"] {
        refused(
            accept_new(&s, t, "Someone", NEW_PASSWORD).await,
            StatusCode::NOT_FOUND,
            "tenancy.invitation_not_found",
        )
        .await;
    }
    let res = s
        .client
        .post(s.url("/v1/invitations/accept"))
        .json(&json!({"token": token, "name": "New Person"}))
        .send()
        .await
        .unwrap();
    refused(res, StatusCode::BAD_REQUEST, "tenancy.invalid_accept").await;
    refused(
        accept_new(&s, &token, "New Person", "weak").await,
        StatusCode::BAD_REQUEST,
        "auth.weak_password",
    )
    .await;
    // Accepted: a new account once its address is verified, signed in to
    // acme with the invited role.
    let res = accept_new(&s, &token, "New Person", NEW_PASSWORD).await;
    let res = crate::mailbox::verify_accepted(&s, res, NEW_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let cookie = set_cookie(&res).unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("Secure"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["tenant"]["slug"], "acme");
    assert_eq!(body["role"], "editor");
    let m = me_json(&s, body["access_token"].as_str().unwrap()).await;
    assert_eq!(
        (
            m["tenant"]["slug"].as_str(),
            m["role"].as_str(),
            m["user"]["email"].as_str()
        ),
        (
            Some("acme"),
            Some("editor"),
            Some("New.Person@Example.test")
        )
    );
    // Single use.
    refused(
        accept_new(&s, &token, "Other Person", NEW_PASSWORD).await,
        StatusCode::GONE,
        "tenancy.invitation_used",
    )
    .await;
    let pending: Vec<Value> = s
        .client
        .get(s.url("/v1/invitations"))
        .bearer_auth(&o.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(pending.is_empty());
    // Now a member: inviting the address again is a conflict.
    refused(
        invite(&s, &o.access, "new.person@example.test", "viewer").await,
        StatusCode::CONFLICT,
        "tenancy.already_member",
    )
    .await;
    let actions = audit_actions(&s, "acme").await;
    for a in ["tenancy.invitation.created", "tenancy.invitation.accepted"] {
        assert!(actions.contains(&a.to_owned()), "{a}");
    }
    let d = audit_details(&s, "acme", "tenancy.invitation.accepted").await;
    assert_eq!(
        (d["role"].as_str(), d["new_account"].as_bool()),
        (Some("editor"), Some(true))
    );
}

async fn expired_revoked_and_replaced_invitations_are_refused(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = owner(&s, "acme", "owner@acme.test").await;
    // Revoked.
    let res = invite(&s, &o.access, "x@acme.test", "viewer").await;
    let created: Value = res.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let revoke = |id: String| {
        s.client
            .delete(s.url(&format!("/v1/invitations/{id}")))
            .bearer_auth(&o.access)
            .send()
    };
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        revoke(id.clone()).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(revoke(id).await.unwrap().status(), StatusCode::NO_CONTENT);
    refused(
        accept_new(&s, &token, "X", NEW_PASSWORD).await,
        StatusCode::GONE,
        "tenancy.invitation_revoked",
    )
    .await;
    // Re-inviting revokes the pending invitation it replaces.
    let first = invite_ok(&s, &o.access, "z@acme.test", "viewer").await;
    let second = invite_ok(&s, &o.access, "Z@acme.test", "editor").await;
    refused(
        accept_new(&s, &first, "Z", NEW_PASSWORD).await,
        StatusCode::GONE,
        "tenancy.invitation_revoked",
    )
    .await;
    let d = audit_details(&s, "acme", "tenancy.invitation.revoked").await;
    assert_eq!(d["reason"], "replaced");
    // Expired after 7 days.
    let late = invite_ok(&s, &o.access, "late@acme.test", "viewer").await;
    s.clock.advance(chrono::Duration::days(7));
    refused(
        accept_new(&s, &late, "Late", NEW_PASSWORD).await,
        StatusCode::GONE,
        "tenancy.invitation_expired",
    )
    .await;
    refused(
        accept_new(&s, &second, "Z", NEW_PASSWORD).await,
        StatusCode::GONE,
        "tenancy.invitation_expired",
    )
    .await;
    // Expired ones are no longer listed (the owner signs in again: 7 days on).
    let res = login(&s, "owner@acme.test", PASSWORD, None).await;
    let body: Value = res.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap();
    let pending: Vec<Value> = s
        .client
        .get(s.url("/v1/invitations"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(pending.is_empty());
    let actions = audit_actions(&s, "acme").await;
    assert!(actions.contains(&"tenancy.invitation.revoked".to_owned()));
    assert!(!actions.contains(&"tenancy.invitation.accepted".to_owned()));
}

async fn a_partner_joins_with_their_bearer_token(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let vendor = owner(&s, "vendor", "owner@vendor.test").await;
    let partner = owner(&s, "partner-co", "boss@partner.test").await;
    // The invited address differs only in case.
    let token = invite_ok(&s, &vendor.access, "Boss@Partner.test", "viewer").await;
    // Name and password do not go with a bearer token; a bad bearer is 401.
    let res = s
        .client
        .post(s.url("/v1/invitations/accept"))
        .bearer_auth(&partner.access)
        .json(&json!({"token": token, "name": "Boss", "password": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    refused(res, StatusCode::BAD_REQUEST, "tenancy.invalid_accept").await;
    refused(
        accept_bearer(&s, "not-a-jwt", &token).await,
        StatusCode::UNAUTHORIZED,
        "auth.unauthenticated",
    )
    .await;
    let res = accept_bearer(&s, &partner.access, &token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let joined: Value = res.json().await.unwrap();
    assert_eq!(
        (
            joined["tenant"]["slug"].as_str(),
            joined["role"].as_str(),
            joined["user_id"].as_str()
        ),
        (Some("vendor"), Some("viewer"), Some(partner.id.as_str()))
    );
    refused(
        accept_bearer(&s, &partner.access, &token).await,
        StatusCode::GONE,
        "tenancy.invitation_used",
    )
    .await;
    // Nothing changed in the partner's own tenant.
    let m = me_json(&s, &partner.access).await;
    assert_eq!(
        (m["tenant"]["slug"].as_str(), m["role"].as_str()),
        (Some("partner-co"), Some("owner"))
    );
    let own = members_ok(&s, &partner.access).await;
    assert_eq!(own.len(), 1);
    assert!(
        !audit_actions(&s, "partner-co")
            .await
            .iter()
            .any(|a| a.starts_with("tenancy.invitation"))
    );
    // The vendor sees a new viewer.
    let vendor_members = members_ok(&s, &vendor.access).await;
    assert!(
        vendor_members
            .iter()
            .any(|m| m["user_id"] == partner.id.as_str() && m["role"] == "viewer")
    );
    // Sign in to the vendor by slug, and switch to it.
    let res = login(&s, "boss@partner.test", PASSWORD, Some("vendor")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let m = me_json(&s, body["access_token"].as_str().unwrap()).await;
    assert_eq!(
        (m["tenant"]["slug"].as_str(), m["role"].as_str()),
        (Some("vendor"), Some("viewer"))
    );
    let res = switch(&s, &partner.access, "vendor").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let m = me_json(&s, body["access_token"].as_str().unwrap()).await;
    assert_eq!(m["tenant"]["slug"], "vendor");
    let d = audit_details(&s, "vendor", "tenancy.invitation.accepted").await;
    assert_eq!(
        (d["new_account"].as_bool(), d["user_id"].as_str()),
        (Some(false), Some(partner.id.as_str()))
    );

    // A bearer with another email: 403, and the invitation stays pending.
    let other = invite_ok(&s, &vendor.access, "someone@else.test", "viewer").await;
    refused(
        accept_bearer(&s, &partner.access, &other).await,
        StatusCode::FORBIDDEN,
        "tenancy.invitation_email_mismatch",
    )
    .await;
    let pending: Vec<Value> = s
        .client
        .get(s.url("/v1/invitations"))
        .bearer_auth(&vendor.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    // An address with an account cannot accept as a new user: the answer
    // does not say so (issue #17 item 8), its owner is emailed instead.
    signup(&s, "third", "x@third.test").await;
    let t = invite_ok(&s, &vendor.access, "x@third.test", "viewer").await;
    let res = accept_new(&s, &t, "X", NEW_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let last = crate::mailbox::outbox(&s).await.pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.to.as_str()),
        ("account_exists", "x@third.test")
    );
}

async fn an_invitation_dies_with_its_inviters_standing(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = owner(&s, "acme", "owner@acme.test").await;
    let admin = join(&s, &o.access, "admin@acme.test", "admin").await;
    let token = invite_ok(&s, &admin.access, "guest@acme.test", "editor").await;
    // The admin is demoted before the invitation is accepted.
    let res = patch(&s, &o.access, &admin.id, json!({"role": "viewer"})).await;
    assert_eq!(res.status(), StatusCode::OK);
    refused(
        accept_new(&s, &token, "Guest", NEW_PASSWORD).await,
        StatusCode::GONE,
        "tenancy.invitation_revoked",
    )
    .await;
    // Nothing was created.
    assert_eq!(
        login(&s, "guest@acme.test", NEW_PASSWORD, None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn concurrent_acceptances_exactly_one_wins(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let o = owner(&s, "acme", "owner@acme.test").await;
    let token = invite_ok(&s, &o.access, "twice@acme.test", "viewer").await;
    // Two acceptances each get a verification link; the two links race.
    for name in ["First", "Second"] {
        let res = accept_new(&s, &token, name, NEW_PASSWORD).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
    let links: Vec<String> = crate::mailbox::outbox(&s)
        .await
        .iter()
        .filter(|m| m.kind == "verification" && m.to == "twice@acme.test")
        .filter_map(|m| crate::mailbox::link_token(&m.body, "/verify-email"))
        .collect();
    assert_eq!(links.len(), 2);
    let (r1, r2) = tokio::join!(
        crate::mailbox::verify_email(&s, &links[0], NEW_PASSWORD),
        crate::mailbox::verify_email(&s, &links[1], NEW_PASSWORD),
    );
    let statuses = [r1.status(), r2.status()];
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    // The loser finds the invitation used, or the account already made.
    assert!(
        statuses
            .iter()
            .all(|s| [StatusCode::CREATED, StatusCode::GONE, StatusCode::CONFLICT].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(members_ok(&s, &o.access).await.len(), 2);
}

crate::both_servers!(
    concurrent_acceptances_exactly_one_wins,
    invitation_for_a_new_user,
    expired_revoked_and_replaced_invitations_are_refused,
    a_partner_joins_with_their_bearer_token,
    an_invitation_dies_with_its_inviters_standing,
);
