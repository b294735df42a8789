//! Access tokens (JWTs over `jsonwebtoken`): this file owns what a token
//! says — its claims, the reasons it is refused, the algorithms it is signed
//! with — and the lifetimes; the keys (`keys`), the keyring that signs and
//! rotates (`keyring`), verification (`verify`) and the published key set
//! (`jwks`) each have their file below. Pure logic: nothing under `jwt` may
//! read a key file, a database row or the system clock (time is always the
//! caller's `now`), and no log line or error carries a token.
//!
//! A [`Keyring`] holds every key that may verify a token, parsed once when it
//! is built (never per request), and the one current key that signs. Retired
//! keys keep verifying for [`RETIRED_KEY_GRACE`] (the access-token lifetime)
//! after `retired_at`, so rotation never cuts off a token that is still valid,
//! and then stop entirely.
//!
//! [`Keyring::verify`] is strict: the header must name a known `kid`, its
//! `alg` must be exactly that key's algorithm (so `alg: none`, HS256 signed
//! with a public key, RS*, … are refused before any signature check), `iss`
//! and `aud` must match exactly, and time is checked against the injected
//! `now` (jsonwebtoken's own expiry check reads the system clock, so it is
//! off).

#[cfg(test)]
mod fixtures;
mod jwks;
mod keyring;
mod keys;
mod verify;

use chrono::Duration;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

pub use keyring::Keyring;
pub use keys::{KeyEntry, KeySecret, SigningMaterial};

/// Lifetime of an access token (SPEC §2.2).
pub const ACCESS_TOKEN_TTL: Duration = Duration::minutes(15);
/// How long a retired key still verifies: until every token it signed has
/// expired.
pub const RETIRED_KEY_GRACE: Duration = ACCESS_TOKEN_TTL;
/// How far in the future `iat` may be (clock skew between instances).
pub const MAX_IAT_SKEW_SECONDS: i64 = 60;
/// Longer tokens are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The tenant id.
    pub tid: String,
    /// The session id.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// Present when a platform operator acts as the user (impersonation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<ActClaim>,
    /// How the user signed in (RFC 8176: `pwd`, `otp`, `hwk`, `swk`,
    /// `email`, and `mfa` when a second factor was used).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
}

/// The actor behind an impersonated token (RFC 8693 `act`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActClaim {
    pub sub: String,
}

/// Why a token was refused. Every variant but [`TokenError::Signing`] and
/// [`TokenError::InvalidKey`] is the client's problem (HTTP 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token names no known signing key")]
    UnknownKey,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token is from another issuer")]
    WrongIssuer,
    #[error("the token algorithm does not match its key")]
    AlgorithmMismatch,
    /// Server side: the current key could not sign.
    #[error("the token could not be signed")]
    Signing,
    /// Server side: a key could not be loaded into the keyring.
    #[error("invalid signing key: {0}")]
    InvalidKey(&'static str),
}

impl TokenError {
    /// Whether the request's token is at fault (401) rather than the server.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, Self::Signing | Self::InvalidKey(_))
    }
}

/// The algorithms Stockade signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    EdDsa,
    Hs256,
}

impl SigningAlg {
    /// The JOSE name (`alg` header, and the `signing_keys.alg` column).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Hs256 => "HS256",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(Self::EdDsa),
            "HS256" => Some(Self::Hs256),
            _ => None,
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            Self::EdDsa => Algorithm::EdDSA,
            Self::Hs256 => Algorithm::HS256,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_and_server_errors_are_told_apart() {
        assert!(TokenError::Expired.is_client_error());
        assert!(TokenError::AlgorithmMismatch.is_client_error());
        assert!(!TokenError::Signing.is_client_error());
        assert!(!TokenError::InvalidKey("x").is_client_error());
    }
}
