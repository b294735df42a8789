//! Issue #17 item 8, as the attacker: sign-up and invitation acceptance must
//! not tell whether an address has an account, and must never hand a
//! registered address tokens. The attacker compares the answers for a
//! registered and a new address; the mailboxes show who was told what.
//! On SQLite and PostgreSQL.

use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade::clock::Clock;

use crate::auth::{PASSWORD, server, signup};
use crate::mailbox::{Mail, outbox, verification_token, verify_email};
use crate::testkit::{Backend, TestServer};

/// Status, headers (but the date and request id) and body of an answer,
/// with every id and the echoed address replaced by placeholders.
async fn shape(res: reqwest::Response, email: &str) -> (u16, Vec<(String, String)>, String) {
    let status = res.status().as_u16();
    let mut headers: Vec<(String, String)> = res
        .headers()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "x-request-id" | "date" | "content-length"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    let mut body: Value = res.json().await.unwrap();
    for path in ["/user/id", "/tenant/id"] {
        if let Some(v) = body.pointer_mut(path) {
            assert!(uuid::Uuid::parse_str(v.as_str().unwrap()).is_ok());
            *v = json!("<id>");
        }
    }
    let text = body.to_string().replace(email, "<email>");
    (status, headers, text)
}

async fn post(s: &TestServer, path: &str, body: Value) -> reqwest::Response {
    crate::mailbox::post_fresh(s, path, &body).await
}

async fn login(s: &TestServer, email: &str, password: &str) -> reqwest::Response {
    crate::mailbox::login_fresh(s, email, password).await
}

fn signup_body(email: &str) -> Value {
    json!({"tenant_name": "Probe Ltd", "tenant_slug": "probe", "email": email,
        "password": "Probe-Passw0rd-7731", "name": "Probe"})
}

/// The messages queued since `before` messages were.
async fn new_mail(s: &TestServer, before: usize) -> Vec<Mail> {
    outbox(s).await.split_off(before)
}

async fn signup_answers_alike_for_registered_and_new_addresses(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")]).await else {
        return;
    };
    signup(&s, "acme", "alice@acme.test").await;
    let mut answers = Vec::new();
    let mut mails = Vec::new();
    // The same tenant slug for both: a pending sign-up reserves nothing, so
    // the slug cannot tell them apart either.
    for email in ["alice@acme.test", "carol@acme.test"] {
        let before = outbox(&s).await.len();
        let hashes = s.state.hasher.operations();
        let res = post(&s, "/v1/auth/signup", signup_body(email)).await;
        assert_eq!(
            s.state.hasher.operations(),
            hashes + 1,
            "one hash for {email}"
        );
        assert!(
            res.headers().get("set-cookie").is_none(),
            "{email}: a cookie"
        );
        answers.push(shape(res, email).await);
        mails.push(new_mail(&s, before).await);
    }
    assert_eq!(answers[0], answers[1], "the two answers differ");
    assert_eq!(answers[0].0, 202);
    assert!(!answers[0].2.contains("access_token"), "{}", answers[0].2);
    // Who was told what: the registered address's owner is warned, the new
    // address gets its link.
    let kinds: Vec<Vec<(&str, &str)>> = mails
        .iter()
        .map(|m| m.iter().map(|m| (m.kind.as_str(), m.to.as_str())).collect())
        .collect();
    assert_eq!(
        kinds,
        [
            vec![("account_exists", "alice@acme.test")],
            vec![("verification", "carol@acme.test")]
        ]
    );
    assert!(
        !mails[0][0].body.contains("#token="),
        "no link for a registered address"
    );
    // Nothing exists before the link is used: no tenant, no sign-in.
    assert!(
        stockade::tenancy::find_by_slug(&s.db, "probe")
            .await
            .unwrap()
            .is_none()
    );
    let res = login(&s, "carol@acme.test", "Probe-Passw0rd-7731").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Alice's account is untouched: her password still signs in, the probe's
    // does not.
    assert_eq!(
        login(&s, "alice@acme.test", PASSWORD).await.status(),
        StatusCode::OK
    );
    let res = login(&s, "alice@acme.test", "Probe-Passw0rd-7731").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // The link is stored only as its SHA-256.
    let token = verification_token(&s, "carol@acme.test").await;
    let rows: Vec<(Vec<u8>,)> =
        s.db.global_read()
            .await
            .unwrap()
            .fetch_all("SELECT token_hash FROM email_verifications", vec![])
            .await
            .unwrap();
    let expected: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()).into();
    assert_eq!(rows, vec![(expected.to_vec(),)]);
    // The link alone does not finish it: the password chosen is asked too.
    let res = verify_email(&s, &token, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "auth.wrong_password"
    );
    // The link makes the account, verified, signed in to its new tenant.
    let res = verify_email(&s, &token, "Probe-Passw0rd-7731").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(res.headers().get("set-cookie").is_some());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["tenant"]["slug"], "probe");
    assert!(body["user"]["email_verified_at"].is_string(), "{body}");
    assert!(body["access_token"].is_string());
    assert_eq!(
        login(&s, "carol@acme.test", "Probe-Passw0rd-7731")
            .await
            .status(),
        StatusCode::OK
    );
    // Single use; a forged or truncated token is the same refusal.
    for t in [token.as_str(), &token[1..], "A".repeat(43).as_str()] {
        let res = verify_email(&s, t, "Probe-Passw0rd-7731").await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let p: stockade::http::Problem = res.json().await.unwrap();
        assert_eq!(p.code, "identity.invalid_verification_token");
    }
    // Used up: its row (address, name, password hash) is gone.
    let left: Vec<(Vec<u8>,)> =
        s.db.global_read()
            .await
            .unwrap()
            .fetch_all("SELECT token_hash FROM email_verifications", vec![])
            .await
            .unwrap();
    assert!(left.is_empty());
}

async fn verification_links_expire_after_30_minutes(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")]).await else {
        return;
    };
    let res = post(&s, "/v1/auth/signup", signup_body("late@acme.test")).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let body: Value = res.json().await.unwrap();
    let expires = body["verification_expires_at"].as_str().unwrap();
    let expires: chrono::DateTime<chrono::Utc> = expires.parse().unwrap();
    assert_eq!(expires - s.clock.now(), chrono::Duration::minutes(30));
    let token = verification_token(&s, "late@acme.test").await;
    s.clock.advance(chrono::Duration::minutes(30));
    let res = verify_email(&s, &token, "Probe-Passw0rd-7731").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(
        stockade::tenancy::find_by_slug(&s.db, "probe")
            .await
            .unwrap()
            .is_none()
    );
}

async fn invitation_acceptance_answers_alike_for_registered_and_new_addresses(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")]).await else {
        return;
    };
    // Alice has an account (in another tenant). The inviter (the attacker)
    // invites her and a new address, and accepts both as "new users" with
    // the tokens they saw.
    signup(&s, "other", "alice@acme.test").await;
    let inviter = signup(&s, "vendor", "owner@vendor.test").await;
    let mut answers = Vec::new();
    let mut mails = Vec::new();
    for email in ["alice@acme.test", "dave@acme.test"] {
        let token = crate::members::invite_ok(&s, &inviter.access, email, "viewer").await;
        let before = outbox(&s).await.len();
        let hashes = s.state.hasher.operations();
        let res = post(
            &s,
            "/v1/invitations/accept",
            json!({"token": token, "name": "Probe", "password": "Probe-Passw0rd-7731"}),
        )
        .await;
        assert_eq!(
            s.state.hasher.operations(),
            hashes + 1,
            "one hash for {email}"
        );
        assert!(
            res.headers().get("set-cookie").is_none(),
            "{email}: a cookie"
        );
        answers.push(shape(res, email).await);
        mails.push(new_mail(&s, before).await);
    }
    assert_eq!(answers[0], answers[1], "the two answers differ");
    assert_eq!(answers[0].0, 202);
    let kinds: Vec<Vec<(&str, &str)>> = mails
        .iter()
        .map(|m| m.iter().map(|m| (m.kind.as_str(), m.to.as_str())).collect())
        .collect();
    assert_eq!(
        kinds,
        [
            vec![("account_exists", "alice@acme.test")],
            vec![("verification", "dave@acme.test")]
        ]
    );
    // Neither is a member yet; the new one becomes one with the link.
    let members: Vec<Value> = s
        .client
        .get(s.url("/v1/members"))
        .bearer_auth(&inviter.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(members.len(), 1);
    let res = crate::mailbox::verify_ok(&s, "dave@acme.test", "Probe-Passw0rd-7731").await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["tenant"]["slug"].as_str(), body["role"].as_str()),
        (Some("vendor"), Some("viewer"))
    );
    assert!(body["user"]["email_verified_at"].is_string());
}

crate::both_servers!(
    signup_answers_alike_for_registered_and_new_addresses,
    verification_links_expire_after_30_minutes,
    invitation_acceptance_answers_alike_for_registered_and_new_addresses,
);

#[tokio::test]
async fn openapi_describes_verification_before_sign_in() {
    let s = TestServer::start().await;
    let doc = s.openapi().await;
    let signup = &doc["paths"]["/v1/auth/signup"]["post"]["responses"];
    assert!(
        signup["202"].is_object() && signup["201"].is_null(),
        "{signup}"
    );
    let verify = &doc["paths"]["/v1/auth/verify-email"]["post"]["responses"];
    for status in ["201", "400", "409", "410", "429"] {
        assert!(verify[status].is_object(), "{status}");
    }
    let accept = &doc["paths"]["/v1/invitations/accept"]["post"]["responses"];
    assert!(
        accept["202"].is_object() && accept["201"].is_null(),
        "{accept}"
    );
    for schema in ["SignupAccepted", "InvitationAccepted", "VerifyEmailRequest"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    s.stop().await;
}
