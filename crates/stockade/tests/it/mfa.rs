//! Shared MFA helpers: enrol a TOTP as an authenticator app would (from the
//! setup's base32 secret), compute the current code on the server's
//! injected clock, step up with it, and finish a sign-in's second step.
//! Each code use first moves the clock to the next 30-second step, since a
//! code (and its step) is accepted once.

use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade::clock::Clock;

use crate::auth::{Login, login_from};
use crate::testkit::TestServer;

/// An enrolled TOTP: the secret the app holds, and the recovery codes.
pub struct Totp {
    pub secret: Vec<u8>,
    pub base32: String,
    pub recovery: Vec<String>,
}

/// The code of `totp` at the server's current time.
pub fn code_now(s: &TestServer, totp: &Totp) -> String {
    let now = u64::try_from(s.clock.now().timestamp()).unwrap();
    stockade_core::mfa::totp::code_at(&totp.secret, now).unwrap()
}

/// Moves to the next step and answers its code.
pub fn next_code(s: &TestServer, totp: &Totp) -> String {
    s.clock.advance(chrono::Duration::seconds(30));
    code_now(s, totp)
}

pub async fn post(s: &TestServer, access: &str, path: &str, body: Value) -> (StatusCode, Value) {
    crate::roles::call(s, reqwest::Method::POST, path, access, Some(body)).await
}

/// `setup` then `confirm` (the session must be freshly stepped up).
pub async fn enrol_totp(s: &TestServer, access: &str) -> Totp {
    let (status, setup) = post(s, access, "/v1/auth/mfa/totp/setup", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{setup}");
    let base32 = setup["secret"].as_str().unwrap().to_owned();
    let secret = stockade_core::mfa::totp::decode_base32(&base32)
        .unwrap()
        .to_vec();
    let mut totp = Totp {
        secret,
        base32,
        recovery: Vec::new(),
    };
    let code = code_now(s, &totp);
    let (status, done) = post(
        s,
        access,
        "/v1/auth/mfa/totp/confirm",
        json!({"code": code}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    totp.recovery = done["recovery_codes"]
        .as_array()
        .map(|a| a.iter().map(|c| c.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    totp
}

/// Steps up with the next TOTP code (the session's `amr` gains `otp`).
/// The clock moves 90 s first: a later step for the code, and the one unit
/// of the per-address sign-in limit (10 per 15 minutes) the step-up spends
/// comes back, so a test's other sign-ins are not refused because of it.
pub async fn step_up_totp(s: &TestServer, access: &str, totp: &Totp) {
    s.clock.advance(chrono::Duration::seconds(90));
    let code = code_now(s, totp);
    let (status, body) = post(s, access, "/v1/auth/reauth", json!({"totp": code})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

/// The `mfa_token` of a sign-in that asked for a second factor.
pub async fn mfa_token(res: reqwest::Response) -> String {
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers().get("set-cookie").is_none(),
        "a cookie before the second factor"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(body.get("access_token").is_none(), "{body}");
    body["mfa_token"].as_str().unwrap().to_owned()
}

/// `POST /v1/auth/mfa` from the default address.
pub async fn complete(s: &TestServer, body: Value) -> reqwest::Response {
    s.client
        .post(s.url("/v1/auth/mfa"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Password, then the next TOTP code: a full sign-in.
pub async fn login_mfa(s: &TestServer, email: &str, totp: &Totp) -> Login {
    let token = mfa_token(crate::auth::login(s, email, crate::auth::PASSWORD, None).await).await;
    let code = next_code(s, totp);
    let res = complete(s, json!({"mfa_token": token, "totp": code})).await;
    assert_eq!(res.status(), StatusCode::OK);
    login_from(res).await
}

/// The `amr` claim of an access token.
pub fn amr(access: &str) -> Vec<String> {
    let payload = access.split('.').nth(1).unwrap();
    let claims = crate::auth::b64json(payload);
    claims["amr"]
        .as_array()
        .map(|a| a.iter().map(|m| m.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// Makes a platform owner's session usable on the platform API: a TOTP
/// enrolled and proved in this session.
pub async fn owner_factor(s: &TestServer, access: &str) -> Totp {
    let totp = enrol_totp(s, access).await;
    step_up_totp(s, access, &totp).await;
    totp
}

/// A sign-in's first step from a fresh client address (so a test making
/// many is not stopped by the per-address limit): the address and the
/// `mfa_token`, which only that address may use.
pub async fn start(s: &TestServer, email: &str) -> (String, String) {
    let ip = crate::mailbox::fresh_ip();
    let res = s
        .client
        .post(s.url("/v1/auth/login"))
        .header("x-forwarded-for", &ip)
        .json(&json!({"email": email, "password": crate::auth::PASSWORD}))
        .send()
        .await
        .unwrap();
    let token = mfa_token(res).await;
    (ip, token)
}

/// `POST /v1/auth/mfa` from `ip`.
pub async fn finish(s: &TestServer, ip: &str, body: Value) -> reqwest::Response {
    s.client
        .post(s.url("/v1/auth/mfa"))
        .header("x-forwarded-for", ip)
        .json(&body)
        .send()
        .await
        .unwrap()
}
