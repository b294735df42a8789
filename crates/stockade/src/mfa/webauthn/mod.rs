//! WebAuthn (passkeys and security keys) with `webauthn-rs`, see
//! `docs/webauthn.md`: registration (`register.rs`, after a step-up), the
//! list and removal of credentials (`credentials.rs`), the authentication
//! ceremonies (`login.rs`: second factor, step-up, passwordless), the one
//! verification every assertion goes through (`verify.rs`: the stored
//! credential, its signature counter, the clone signal), the ceremonies'
//! sealed state (`ceremony.rs`) and the credential rows (`store.rs`).
//!
//! The relying party is `STOCKADE_PUBLIC_URL`: its host is the RP id and
//! its origin the only origin accepted (no other port, no subdomain).
//! Without a public URL (development only: production refuses to start
//! without an https one) the RP is `localhost`, any port of
//! `http://localhost`.

pub(crate) mod ceremony;
pub mod credentials;
pub mod login;
pub mod register;
pub(crate) mod store;
mod verify;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use serde::de::DeserializeOwned;
use stockade_core::mfa::webauthn::MAX_RESPONSE_BYTES;
use url::Url;
use webauthn_rs::prelude::{Webauthn, WebauthnBuilder};

use super::MfaState;
use crate::config::Config;
use crate::http::ApiError;
pub(crate) use verify::check_assertion;

/// Ceremonies a client address may open (`login/begin`, `reauth/begin`):
/// 30 a minute. Opening one proves and guesses nothing, so it does not
/// spend the sign-in quota; this bounds the rows an unauthenticated client
/// can create. Verifying (`login/finish`, `POST /v1/auth/mfa`,
/// `POST /v1/auth/reauth`) spends the sign-in quota like a password.
pub const CEREMONY_QUOTA: crate::ratelimit::Quota = crate::ratelimit::Quota {
    burst: 30,
    period: chrono::Duration::minutes(1),
};

/// 400 `auth.webauthn_invalid`: the response does not verify (another
/// challenge, origin or relying party, a bad signature, an unknown or
/// another user's credential, a signature counter that went backwards).
pub fn invalid() -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "auth.webauthn_invalid")
        .with_detail("the WebAuthn response does not verify")
}

/// 400 `auth.webauthn_malformed`: not a `PublicKeyCredential` JSON.
fn malformed(detail: &str) -> ApiError {
    let detail: String = detail.chars().take(200).collect();
    ApiError::bad_request("auth.webauthn_malformed", detail)
}

/// 413 `auth.webauthn_too_large`: a response over [`MAX_RESPONSE_BYTES`].
fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "auth.webauthn_too_large").with_detail(format!(
        "a WebAuthn response is at most {MAX_RESPONSE_BYTES} bytes"
    ))
}

/// The client's response read as `T` (a `webauthn-rs` type); 413 above
/// [`MAX_RESPONSE_BYTES`], 400 `auth.webauthn_malformed` when it does not
/// have the shape. Changes nothing.
pub fn parse<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ApiError> {
    let bytes = serde_json::to_vec(value).map_err(ApiError::internal)?;
    if bytes.len() > MAX_RESPONSE_BYTES {
        return Err(too_large());
    }
    serde_json::from_slice(&bytes).map_err(|e| malformed(&e.to_string()))
}

/// 503 `auth.webauthn_unavailable`: the public URL cannot be a relying
/// party (an IP address, not a domain name).
fn unavailable() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "auth.webauthn_unavailable")
        .with_detail("WebAuthn needs STOCKADE_PUBLIC_URL to name a domain (not an IP address)")
}

/// The relying party of `config` (see the module documentation).
pub fn relying_party(config: &Config) -> Result<Webauthn, ApiError> {
    let timeout =
        std::time::Duration::from_secs(stockade_core::mfa::webauthn::CEREMONY_TTL_SECS as u64);
    let built = match &config.public_url {
        Some(url) => {
            let host = url.host_str().ok_or_else(unavailable)?;
            let origin =
                Url::parse(&url.origin().ascii_serialization()).map_err(|_| unavailable())?;
            WebauthnBuilder::new(host, &origin)
                .map_err(|_| unavailable())?
                .rp_name(host)
                .timeout(timeout)
                .build()
        }
        None => {
            let origin = Url::parse("http://localhost").map_err(ApiError::internal)?;
            WebauthnBuilder::new("localhost", &origin)
                .map_err(|_| unavailable())?
                .allow_any_port(true)
                .rp_name("Stockade (development)")
                .timeout(timeout)
                .build()
        }
    };
    built.map_err(|_| unavailable())
}

/// The routes, with bodies capped at [`MAX_RESPONSE_BYTES`] (413 above).
pub fn routes() -> Router<MfaState> {
    Router::new()
        .route("/v1/auth/webauthn/register/begin", post(register::begin))
        .route("/v1/auth/webauthn/register/finish", post(register::finish))
        .route("/v1/auth/webauthn/credentials", get(credentials::list))
        .route(
            "/v1/auth/webauthn/credentials/{id}",
            delete(credentials::remove),
        )
        .route("/v1/auth/webauthn/login/begin", post(login::begin))
        .route("/v1/auth/webauthn/login/finish", post(login::finish))
        .route("/v1/auth/webauthn/reauth/begin", post(login::reauth_begin))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_RESPONSE_BYTES))
}
