//! The WebAuthn tests' fixtures: a server whose relying party is
//! `https://id.example.com`, and a software authenticator that behaves as a
//! browser with a discoverable-capable authenticator would.
//!
//! [`Device`] wraps `webauthn-authenticator-rs`'s `SoftToken` (a real
//! CTAP2-style authenticator in software: P-256 keys, a signature counter,
//! packed attestation), driven through its `WebauthnAuthenticator` client
//! (which builds and hashes the clientDataJSON for an origin). `SoftToken`
//! rather than `SoftPasskey` because its state can be serialised: that is
//! how a cloned authenticator is made (`Device::clone_device`). Two things
//! the soft token does not do, the wrapper does as a platform would: it
//! remembers the user handle of a credential registered with a resident
//! key asked for (and reports `credProps.rk`), and given options naming no
//! credential (passwordless) it offers the credential it holds and returns
//! the user handle. The user handle is not signed by any authenticator, so
//! this changes nothing the server verifies.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::Url;
use webauthn_authenticator_rs::softtoken::SoftToken;
use webauthn_rs_proto::{
    AllowCredentials, CreationChallengeResponse, CredProps, RequestChallengeResponse,
    ResidentKeyRequirement,
};

use crate::testkit::{Backend, TestServer};

pub const ORIGIN: &str = "https://id.example.com";

/// A server whose public URL (the relying party) is [`ORIGIN`], behind a
/// trusted proxy on 127.0.0.1, so each sign-in can come from its own
/// address (the per-address sign-in limit is not what these tests test).
pub async fn server(backend: Backend) -> Option<TestServer> {
    crate::auth::server(
        backend,
        &[
            ("STOCKADE_PUBLIC_URL", ORIGIN),
            ("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await
}

/// A client address not used before in this process.
pub fn fresh_ip() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

pub fn origin() -> Url {
    Url::parse(ORIGIN).unwrap()
}

/// A software authenticator (see the module documentation).
pub struct Device {
    token: SoftToken,
    handles: HashMap<Vec<u8>, Vec<u8>>,
    /// What the browser reports as `authenticatorAttachment`.
    attachment: &'static str,
}

impl Device {
    /// A security key (`cross-platform`: registers as `hwk`).
    pub fn security_key() -> Self {
        Self::new("cross-platform")
    }

    /// A platform passkey (`platform`: registers as `swk`).
    pub fn platform() -> Self {
        Self::new("platform")
    }

    fn new(attachment: &'static str) -> Self {
        let (token, _ca) = SoftToken::new(true).unwrap();
        Self {
            token,
            handles: HashMap::new(),
            attachment,
        }
    }

    /// An exact copy of this authenticator: same keys, same counter.
    pub fn clone_device(&self) -> Self {
        Self {
            token: SoftToken::from_cbor(&self.token.to_cbor().unwrap()).unwrap(),
            handles: self.handles.clone(),
            attachment: self.attachment,
        }
    }

    /// The `PublicKeyCredential` JSON answering creation `options`.
    pub fn register(&mut self, origin: &Url, options: &Value) -> Value {
        let mut ccr: CreationChallengeResponse = serde_json::from_value(options.clone()).unwrap();
        let resident = ccr
            .public_key
            .authenticator_selection
            .as_ref()
            .is_some_and(|s| {
                matches!(
                    s.resident_key,
                    Some(ResidentKeyRequirement::Preferred | ResidentKeyRequirement::Required)
                )
            });
        // The soft token refuses the legacy flag; the resident key is ours.
        if let Some(sel) = ccr.public_key.authenticator_selection.as_mut() {
            sel.require_resident_key = false;
        }
        let user = ccr.public_key.user.id.to_vec();
        let mut reg = self.token.do_registration(origin.clone(), ccr).unwrap();
        if resident {
            self.handles.insert(reg.raw_id.to_vec(), user);
            reg.extensions.cred_props = Some(CredProps { rk: Some(true) });
        }
        let mut v = serde_json::to_value(&reg).unwrap();
        v["authenticatorAttachment"] = json!(self.attachment);
        v
    }

    /// The assertion JSON answering request `options`, from `origin`.
    pub fn assert(&mut self, origin: &Url, options: &Value) -> Value {
        self.try_assert(origin, options).unwrap()
    }

    pub fn try_assert(&mut self, origin: &Url, options: &Value) -> Option<Value> {
        let mut rcr: RequestChallengeResponse = serde_json::from_value(options.clone()).unwrap();
        let discoverable = rcr.public_key.allow_credentials.is_empty();
        if discoverable {
            rcr.public_key.allow_credentials = self
                .handles
                .keys()
                .map(|id| AllowCredentials {
                    type_: "public-key".to_owned(),
                    id: id.clone(),
                    transports: None,
                })
                .collect();
        }
        let mut cred = self.token.do_authentication(origin.clone(), rcr).ok()?;
        if discoverable {
            let handle = self.handles.get(cred.raw_id.as_slice())?.clone();
            cred.response.user_handle = Some(handle);
        }
        Some(serde_json::to_value(&cred).unwrap())
    }
}

/// `POST path` with `body`, as `bearer` when given, from a fresh address;
/// `(status, body)`.
pub async fn post(
    s: &TestServer,
    bearer: Option<&str>,
    path: &str,
    body: &Value,
) -> (StatusCode, Value) {
    post_from(s, &fresh_ip(), bearer, path, body).await
}

/// [`post`] from client address `ip`.
pub async fn post_from(
    s: &TestServer,
    ip: &str,
    bearer: Option<&str>,
    path: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let mut req = s
        .client
        .post(s.url(path))
        .header("x-forwarded-for", ip)
        .json(body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Registers `device` for the user of `access`; answers the finish body.
pub async fn register(s: &TestServer, access: &str, device: &mut Device, name: &str) -> Value {
    let (status, begun) = post(
        s,
        Some(access),
        "/v1/auth/webauthn/register/begin",
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{begun}");
    let credential = device.register(&origin(), &begun["options"]);
    let (status, body) = post(
        s,
        Some(access),
        "/v1/auth/webauthn/register/finish",
        &json!({"ceremony_id": begun["ceremony_id"], "name": name, "credential": credential}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// The second step of a password sign-in, and the address it came from
/// (an `mfa_token` is bound to it).
#[derive(Clone)]
pub struct Step {
    pub token: String,
    pub ip: String,
}

/// Signs in with the password from a fresh address: the second step.
pub async fn password_step(s: &TestServer, email: &str) -> Step {
    let ip = fresh_ip();
    let (status, body) = post_from(
        s,
        &ip,
        None,
        "/v1/auth/login",
        &json!({"email": email, "password": crate::auth::PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mfa_required"], true, "{body}");
    Step {
        token: body["mfa_token"].as_str().unwrap().to_owned(),
        ip,
    }
}

/// `login/begin` for `step`: the options.
pub async fn second_factor_options(s: &TestServer, step: &Step) -> Value {
    let (status, begun) = post_from(
        s,
        &step.ip,
        None,
        "/v1/auth/webauthn/login/begin",
        &json!({"mfa_token": step.token}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{begun}");
    begun["options"].clone()
}

/// Answers `step` with `assertion` at `POST /v1/auth/mfa`.
pub async fn complete(s: &TestServer, step: &Step, assertion: &Value) -> (StatusCode, Value) {
    post_from(
        s,
        &step.ip,
        None,
        "/v1/auth/mfa",
        &json!({"mfa_token": step.token, "webauthn": assertion}),
    )
    .await
}

/// The `amr` claim of an access token.
pub fn amr_of(access: &str) -> Vec<String> {
    let payload = access.split('.').nth(1).unwrap();
    let claims = crate::auth::b64json(payload);
    claims["amr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// `(passkey JSON, last_used_at)` of every stored credential, in order.
pub async fn credential_rows(s: &TestServer) -> Vec<(String, Option<String>)> {
    let mut tx = s.db.global_read().await.unwrap();
    let rows: Vec<(String, Option<chrono::DateTime<chrono::Utc>>)> = tx
        .fetch_all(
            "SELECT passkey, last_used_at FROM webauthn_credentials ORDER BY created_at, id",
            vec![],
        )
        .await
        .unwrap();
    rows.into_iter()
        .map(|(p, t)| (p, t.map(|t| t.to_rfc3339())))
        .collect()
}
