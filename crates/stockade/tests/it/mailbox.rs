//! Reading the sealed email outbox as the mail sender would (with the
//! server's master key), and finishing a sign-up or an invited account with
//! the verification link it holds.

use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade::db::Db;
use stockade::email::outbox_aad;

use crate::testkit::TestServer;

/// One queued message, unsealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub kind: String,
    pub subject: String,
    pub body: String,
}

/// Every queued message, oldest first.
pub async fn outbox(s: &TestServer) -> Vec<Mail> {
    outbox_of(&s.db, &s.state.keys.master).await
}

/// [`outbox`] of any database, with its master key.
pub async fn outbox_of(db: &Db, master: &stockade::crypto::keys::MasterKey) -> Vec<Mail> {
    let rows: Vec<(uuid::Uuid, Vec<u8>, String, String, i64)> = db
        .global_read()
        .await
        .unwrap()
        .fetch_all(
            "SELECT id, sealed_body, kind, to_address, CAST(master_version AS BIGINT) \
             FROM email_outbox ORDER BY created_at, id",
            vec![],
        )
        .await
        .unwrap();
    rows.into_iter()
        .map(|(id, sealed, kind, to, version)| {
            let opened = master
                .open(u32::try_from(version).unwrap(), &outbox_aad(id), &sealed)
                .unwrap();
            let payload: Value = serde_json::from_slice(&opened).unwrap();
            Mail {
                to,
                kind,
                subject: payload["subject"].as_str().unwrap().to_owned(),
                body: payload["body"].as_str().unwrap().to_owned(),
            }
        })
        .collect()
}

/// The token of a `#token=` link in `body`.
pub fn link_token(body: &str, path: &str) -> Option<String> {
    let (_, rest) = body.split_once(&format!("{path}#token="))?;
    rest.split_whitespace().next().map(str::to_owned)
}

/// The token of the `/sign-in#link=` link in `body` (a platform owner's
/// one-time sign-in link).
pub fn sign_in_link_token(body: &str) -> Option<String> {
    let (_, rest) = body.split_once("/sign-in#link=")?;
    rest.split_whitespace().next().map(str::to_owned)
}

/// The tokens of every one-time sign-in link emailed to `to`, oldest first.
pub async fn sign_in_links(s: &TestServer, to: &str) -> Vec<String> {
    outbox(s)
        .await
        .into_iter()
        .filter(|m| m.kind == "sign_in_link" && m.to == to)
        .map(|m| sign_in_link_token(&m.body).unwrap())
        .collect()
}

/// The token of the newest sign-in link emailed to `to`.
pub async fn sign_in_link(s: &TestServer, to: &str) -> String {
    sign_in_links(s, to)
        .await
        .pop()
        .unwrap_or_else(|| panic!("no sign-in link emailed to {to}"))
}

/// The token of the newest verification link sent to `to`.
pub async fn verification_token(s: &TestServer, to: &str) -> String {
    let mail = outbox(s)
        .await
        .into_iter()
        .rev()
        .find(|m| m.kind == "verification" && m.to == to)
        .unwrap_or_else(|| panic!("no verification email to {to}"));
    link_token(&mail.body, "/verify-email").unwrap()
}

/// A client address of its own for each call (192.0.2.0/24 and on), sent
/// as `X-Forwarded-For`: a server that trusts 127.0.0.1 as its proxy then
/// counts each request under its own address, so a test that makes many
/// is not stopped by the per-address sign-in limit (others ignore it).
pub fn fresh_ip() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::net::Ipv4Addr::from(0xC000_0200_u32.wrapping_add(n)).to_string()
}

/// `POST path` with `body` from a [`fresh_ip`].
pub async fn post_fresh(s: &TestServer, path: &str, body: &Value) -> reqwest::Response {
    s.client
        .post(s.url(path))
        .header("x-forwarded-for", fresh_ip())
        .json(body)
        .send()
        .await
        .unwrap()
}

/// `POST /v1/auth/login` from a [`fresh_ip`].
pub async fn login_fresh(s: &TestServer, email: &str, password: &str) -> reqwest::Response {
    post_fresh(
        s,
        "/v1/auth/login",
        &json!({"email": email, "password": password}),
    )
    .await
}

/// `POST /v1/auth/verify-email` with the password chosen at sign-up.
pub async fn verify_email(s: &TestServer, token: &str, password: &str) -> reqwest::Response {
    s.client
        .post(s.url("/v1/auth/verify-email"))
        .json(&json!({ "token": token, "password": password }))
        .send()
        .await
        .unwrap()
}

/// Uses the newest verification link sent to `to`, with the password chosen
/// at sign-up: the account is created and signed in (201, tokens and
/// refresh cookie).
pub async fn verify_ok(s: &TestServer, to: &str, password: &str) -> reqwest::Response {
    let token = verification_token(s, to).await;
    let res = verify_email(s, &token, password).await;
    assert_eq!(res.status(), StatusCode::CREATED, "{:?}", res.text().await);
    res
}

/// Finishes a 202 answer of sign-up or invitation acceptance: uses the
/// verification link sent to the address it names (201, signed in).
pub async fn verify_accepted(
    s: &TestServer,
    res: reqwest::Response,
    password: &str,
) -> reqwest::Response {
    assert_eq!(res.status(), StatusCode::ACCEPTED, "{:?}", res.text().await);
    let body: Value = res.json().await.unwrap();
    verify_ok(s, body["user"]["email"].as_str().unwrap(), password).await
}

/// The newest verification token sent to `to` by a server running as
/// another process on the SQLite database in `data_dir`, unsealed with the
/// master key the configuration `extra` names (development keys of the
/// data dir by default).
pub async fn token_in_data_dir(
    data_dir: &std::path::Path,
    extra: &[(&str, &str)],
    to: &str,
) -> String {
    let config = crate::testkit::test_config(data_dir, extra);
    let keys = stockade::crypto::keys::load(&config).unwrap();
    let db = Db::open_sqlite_file(&data_dir.join("stockade.db"))
        .await
        .unwrap();
    let mail = outbox_of(&db, &keys.master)
        .await
        .into_iter()
        .rev()
        .find(|m| m.kind == "verification" && m.to == to)
        .unwrap_or_else(|| panic!("no verification email to {to}"));
    db.close().await;
    link_token(&mail.body, "/verify-email").unwrap()
}
