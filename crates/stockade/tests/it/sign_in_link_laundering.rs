//! A platform owner cannot launder a one-time sign-in link into an unmarked
//! session of the user (issue #17 item 1, its second road): the link is
//! emailed to the user only, never returned to the owner, who holds nothing
//! redeemable. Written as the owner would attack it, on SQLite and
//! PostgreSQL.

use std::os::unix::fs::PermissionsExt;

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use stockade::clock::Clock;
use stockade::http::Problem;
use stockade::ids::TenantId;

use crate::audit_webhook_more::{capture_logs, captured};
use crate::auth::{Login, me, server, signup};
use crate::mailbox::{
    link_token, outbox, post_fresh, sign_in_link, sign_in_link_token, sign_in_links,
};
use crate::testkit::{Backend, TestServer};

const ROOT: &str = "root@platform.test";
const PAT: &str = "pat@acme.test";

/// A platform owner `root` (signed in moments ago: step-up holds) and pat,
/// who owns the tenant `acme`; both proved their address at sign-up.
struct World {
    s: TestServer,
    root: Login,
    root_id: String,
    pat_id: String,
    acme: TenantId,
}

async fn world(backend: Backend) -> Option<World> {
    let s = server(backend, &[("STOCKADE_PLATFORM_OWNERS", ROOT)]).await?;
    let root = signup(&s, "root-ops", ROOT).await;
    let _root_totp = crate::mfa::owner_factor(&s, &root.access).await;
    let pat = signup(&s, "acme", PAT).await;
    let root_id = user_id(&s, &root.access).await;
    let pat_id = user_id(&s, &pat.access).await;
    let acme = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap()
        .id;
    Some(World {
        s,
        root,
        root_id,
        pat_id,
        acme,
    })
}

async fn user_id(s: &TestServer, access: &str) -> String {
    let body: Value = me(s, access).await.json().await.unwrap();
    body["user"]["id"].as_str().unwrap().to_owned()
}

/// The owner asks for a sign-in link for `user`.
async fn ask(w: &World, user: &str) -> reqwest::Response {
    w.s.client
        .post(w.s.url("/v1/platform/sign-in-links"))
        .bearer_auth(&w.root.access)
        .json(&json!({"user_id": user, "confirm": true, "reason": "support ticket #42"}))
        .send()
        .await
        .unwrap()
}

async fn redeem(s: &TestServer, token: &str) -> reqwest::Response {
    s.client
        .post(s.url("/v1/auth/sign-in-link"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap()
}

async fn refused(res: reqwest::Response) {
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "platform.link_invalid"
    );
}

/// `(action, details)` of every audit event of `tenant`, oldest first.
async fn events(s: &TestServer, tenant: TenantId) -> Vec<(String, Value)> {
    let rows: Vec<(String, String)> =
        s.db.tenant_read(tenant)
            .await
            .unwrap()
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

async fn details_of(s: &TestServer, tenant: TenantId, action: &str) -> Vec<Value> {
    events(s, tenant)
        .await
        .into_iter()
        .filter(|(a, _)| a == action)
        .map(|(_, d)| d)
        .collect()
}

/// Every run of base64url/hex characters in `text` long enough to be a
/// secret (a 256-bit token is 43 base64url or 64 hex characters; the
/// link id is 16).
fn token_shaped(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|run| run.len() >= 24)
        .collect()
}

/// The owner's answer holds no token, no URL, nothing redeemable: every
/// string in it, and the whole of it, is refused at redemption, and the
/// emailed link is still unspent afterwards.
async fn the_owner_is_given_nothing_redeemable(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let s = &w.s;
    let res = ask(&w, &w.pat_id).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let raw = res.text().await.unwrap();
    assert!(token_shaped(&raw).is_empty(), "token-shaped: {raw}");
    assert!(
        !raw.contains("#link=") && !raw.contains("/sign-in"),
        "{raw}"
    );
    let body: Value = serde_json::from_str(&raw).unwrap();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["expires_at", "link_id", "sent_to"], "{raw}");
    assert_eq!(body["sent_to"], "p***@acme.test");
    let expires: chrono::DateTime<chrono::Utc> =
        body["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires, s.clock.now() + Duration::minutes(15));

    // The real token is in pat's mailbox only; the link id is a one-way
    // handle of it (a prefix of its hash), not the token.
    let token = sign_in_link(s, PAT).await;
    assert_eq!(token.len(), 43);
    assert!(!raw.contains(&token));
    let link_id = body["link_id"].as_str().unwrap();
    assert_ne!(link_id, token);
    assert_eq!(
        link_id,
        &hex::encode(Sha256::digest(token.as_bytes()))[..16]
    );

    // Everything the owner was given, tried as a link: refused, no session.
    let mut tries: Vec<String> = body
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    tries.push(raw.clone());
    tries.push(format!("{link_id}{link_id}{}", &link_id[..11]));
    for attempt in &tries {
        refused(redeem(s, attempt).await).await;
    }
    assert!(
        details_of(s, w.acme, "auth.sign_in_link.used")
            .await
            .is_empty()
    );

    // The user's link was not spent by any of it.
    let res = redeem(s, &token).await;
    assert_eq!(res.status(), StatusCode::OK);

    // The API description promises the same shape.
    let doc = s.openapi().await;
    let op = &doc["paths"]["/v1/platform/sign-in-links"]["post"];
    let schema = op["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let mut props: Vec<String> = doc["components"]["schemas"][&schema]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    props.sort_unstable();
    assert_eq!(props, ["expires_at", "link_id", "sent_to"]);
}

/// The link reaches the user, sealed in the outbox, and opens one session
/// of theirs, once.
async fn only_the_user_redeems_the_emailed_link_once(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let s = &w.s;
    let res = ask(&w, &w.pat_id).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let answer: Value = res.json().await.unwrap();
    let mails: Vec<_> = outbox(s)
        .await
        .into_iter()
        .filter(|m| m.kind == "sign_in_link")
        .collect();
    assert_eq!(mails.len(), 1, "exactly one message, to pat");
    assert_eq!(mails[0].to, PAT);
    assert_eq!(mails[0].subject, "Your one-time sign-in link");
    let token = sign_in_link_token(&mails[0].body).unwrap();
    assert!(
        mails[0]
            .body
            .contains(&format!("{}/sign-in#link={token}", s.state.issuer))
    );
    // Sealed like every message: the stored row does not hold the token.
    let rows: Vec<(Vec<u8>, String)> =
        s.db.global_read()
            .await
            .unwrap()
            .fetch_all(
                "SELECT sealed_body, to_address FROM email_outbox WHERE kind = 'sign_in_link'",
                vec![],
            )
            .await
            .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, PAT);
    assert!(!crate::cli::contains(&rows[0].0, &token));
    assert!(!crate::cli::contains(&rows[0].0, "sign-in#link"));

    let res = redeem(s, &token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(crate::auth::set_cookie(&res).is_some(), "a refresh cookie");
    let body: Value = res.json().await.unwrap();
    let who: Value = me(s, body["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(who["user"]["id"], w.pat_id);
    assert_eq!(who["tenant"]["slug"], "acme");
    assert!(who["authenticated_at"].is_null(), "no password was proved");
    let used = details_of(s, w.acme, "auth.sign_in_link.used").await;
    assert_eq!(used.len(), 1);
    assert_eq!(used[0]["created_by"], w.root_id);
    assert_eq!(used[0]["link_id"], answer["link_id"]);

    // Once.
    refused(redeem(s, &token).await).await;
    let rejected = details_of(s, w.acme, "auth.sign_in_link.rejected").await;
    assert_eq!(rejected.last().unwrap()["reason"], "used");
    // The token is in no audit event, in either chain.
    for tenant in [w.acme, TenantId::PLATFORM] {
        for (action, details) in events(s, tenant).await {
            assert!(!details.to_string().contains(&token), "{action}");
        }
    }
}

/// At most one live link per user: a new one voids the older unused ones.
async fn a_new_link_voids_the_older_unused_ones(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let s = &w.s;
    for _ in 0..2 {
        assert_eq!(ask(&w, &w.pat_id).await.status(), StatusCode::CREATED);
        s.clock.advance(Duration::seconds(5));
    }
    let links = sign_in_links(s, PAT).await;
    assert_eq!(links.len(), 2);
    assert_ne!(links[0], links[1]);
    let created = details_of(s, w.acme, "platform.sign_in_link.created").await;
    assert_eq!(created[0]["links_voided"], 0);
    assert_eq!(created[1]["links_voided"], 1);
    let platform = details_of(s, TenantId::PLATFORM, "platform.sign_in_link.created").await;
    assert_eq!(platform, created, "both chains");

    refused(redeem(s, &links[0]).await).await;
    let rejected = details_of(s, w.acme, "auth.sign_in_link.rejected").await;
    assert_eq!(rejected.last().unwrap()["reason"], "expired");
    assert_eq!(redeem(s, &links[1]).await.status(), StatusCode::OK);
    // A used link is not counted as voided by the next.
    assert_eq!(ask(&w, &w.pat_id).await.status(), StatusCode::CREATED);
    let created = details_of(s, w.acme, "platform.sign_in_link.created").await;
    assert_eq!(created[2]["links_voided"], 0);
}

/// A user who never proved their address is sent no link: it could hand
/// the account to whoever holds that mailbox.
async fn an_unverified_address_is_sent_nothing(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let s = &w.s;
    // An account that never verified its address (imported, or older than
    // verification), member of acme.
    let mut tx = s.db.global_tx().await.unwrap();
    let sam = stockade::identity::create_user(
        &mut tx,
        s.clock.as_ref(),
        &stockade::identity::Email::parse("sam@acme.test").unwrap(),
        "Sam Imported",
    )
    .await
    .unwrap();
    let mut tx = tx.scoped(w.acme).await.unwrap();
    stockade::tenancy::add_member(&mut tx, s.clock.as_ref(), sam.id, "viewer")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(sam.email_verified_at.is_none());

    let res = ask(&w, &sam.id.to_string()).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "platform.email_unverified"
    );
    // Nothing changed: no message, no link, no event.
    assert!(outbox(s).await.iter().all(|m| m.kind != "sign_in_link"));
    let stored: Vec<(Vec<u8>,)> =
        s.db.global_read()
            .await
            .unwrap()
            .fetch_all("SELECT token_hash FROM sign_in_links", vec![])
            .await
            .unwrap();
    assert!(stored.is_empty());
    for tenant in [w.acme, TenantId::PLATFORM] {
        assert!(
            details_of(s, tenant, "platform.sign_in_link.created")
                .await
                .is_empty()
        );
    }
}

/// A completed password reset proves the address (its link was only ever
/// emailed there): the unverified user above becomes verified by it, and
/// only by it — a reset merely requested proves nothing.
async fn a_completed_reset_proves_the_address(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let s = &w.s;
    let mut tx = s.db.global_tx().await.unwrap();
    let sam = stockade::identity::create_user_with_password(
        &mut tx,
        s.clock.as_ref(),
        &stockade::identity::Email::parse("sam@acme.test").unwrap(),
        "Sam Imported",
        None,
    )
    .await
    .unwrap();
    let mut tx = tx.scoped(w.acme).await.unwrap();
    stockade::tenancy::add_member(&mut tx, s.clock.as_ref(), sam.id, "viewer")
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // Requested, not completed: still unverified, still refused.
    let res = post_fresh(
        s,
        "/v1/auth/password-reset/request",
        &json!({"email": "sam@acme.test"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(
        ask(&w, &sam.id.to_string()).await.status(),
        StatusCode::CONFLICT
    );
    let mail = outbox(s)
        .await
        .into_iter()
        .rev()
        .find(|m| m.kind == "password_reset")
        .unwrap();
    let token = link_token(&mail.body, "/reset-password").unwrap();
    // A wrong token proves nothing either.
    let res = post_fresh(
        s,
        "/v1/auth/password-reset/confirm",
        &json!({"token": "x".repeat(43), "new_password": "Reset-Strong-Passw0rd-19"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        ask(&w, &sam.id.to_string()).await.status(),
        StatusCode::CONFLICT
    );

    let res = post_fresh(
        s,
        "/v1/auth/password-reset/confirm",
        &json!({"token": token, "new_password": "Reset-Strong-Passw0rd-19"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let user = stockade::identity::find_user(&s.db, sam.id)
        .await
        .unwrap()
        .unwrap();
    assert!(user.email_verified_at.is_some());
    let completed = details_of(s, w.acme, "auth.password.reset_completed").await;
    assert_eq!(completed.last().unwrap()["email_verified"], true);
    assert_eq!(
        ask(&w, &sam.id.to_string()).await.status(),
        StatusCode::CREATED
    );
}

/// Everything the server logs, at every level, from the request to the
/// development sender's delivery and the redemption, holds neither the
/// token nor the link; the message is in a private file of the sink.
async fn the_emailed_link_is_in_no_log(backend: Backend) {
    capture_logs();
    let Some(w) = world(backend).await else {
        let _ = captured();
        return;
    };
    let s = &w.s;
    assert_eq!(ask(&w, &w.pat_id).await.status(), StatusCode::CREATED);
    stockade::app::deliver_mail(&s.state).await;
    let sink = stockade::email::dev_sender::sink_dir(&s.state.config.data_dir);
    let file = crate::cli::files_under(&sink)
        .into_iter()
        .find(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .contains("\nKind: sign_in_link\n")
        })
        .expect("the sign-in link delivered into the sink");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with(&format!("To: {PAT}\n")), "{text}");
    let token = sign_in_link_token(&text).unwrap();
    assert_eq!(token, sign_in_link(s, PAT).await);
    assert_eq!(redeem(s, &token).await.status(), StatusCode::OK);

    let logs = captured();
    // The capture is real: the requests, the queued message by kind and
    // masked recipient, and its delivery.
    assert!(logs.contains("/v1/platform/sign-in-links"), "{logs}");
    assert!(logs.contains("/v1/auth/sign-in-link"), "{logs}");
    assert!(logs.contains("email queued") && logs.contains("sign_in_link"));
    assert!(logs.contains("p***@acme.test"), "{logs}");
    assert!(logs.contains("email written by the development sender"));
    assert!(!logs.contains(&token), "the sign-in token reached the log");
    assert!(!logs.contains("#link="), "a sign-in link reached the log");
}

crate::both_servers!(
    the_owner_is_given_nothing_redeemable,
    only_the_user_redeems_the_emailed_link_once,
    a_new_link_voids_the_older_unused_ones,
    an_unverified_address_is_sent_nothing,
    a_completed_reset_proves_the_address,
    the_emailed_link_is_in_no_log,
);
