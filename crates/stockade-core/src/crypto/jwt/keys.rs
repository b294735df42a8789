//! The keys of the access-token keyring: the configured signing material
//! (an Ed25519 key or an HS256 secret, with its kid) and each key as the
//! keyring holds it, parsed once — signing, verifying only, or retired.
//! Pure: this file must not read key files or rows (that is
//! `stockade::crypto::keys` and `stockade::crypto::keyring`), and no `Debug`
//! here shows key material.

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{DecodingKey, EncodingKey};
use zeroize::Zeroizing;

use super::{RETIRED_KEY_GRACE, SigningAlg, TokenError};

/// The configured token signing key, with its key id.
pub enum SigningMaterial {
    Ed25519 {
        key: SigningKey,
        kid: String,
    },
    Hs256 {
        secret: Zeroizing<Vec<u8>>,
        kid: String,
    },
}

impl std::fmt::Debug for SigningMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ed25519 { kid, .. } => write!(f, "Ed25519(kid={kid}, ***)"),
            Self::Hs256 { kid, .. } => write!(f, "Hs256(kid={kid}, ***)"),
        }
    }
}

impl SigningMaterial {
    pub fn kid(&self) -> &str {
        match self {
            Self::Ed25519 { kid, .. } | Self::Hs256 { kid, .. } => kid,
        }
    }
}

/// The secret half of a key, to build a [`KeyEntry`] from.
pub enum KeySecret<'a> {
    Ed25519(&'a SigningKey),
    Hs256(&'a [u8]),
}

/// One key of the keyring, parsed once.
pub struct KeyEntry {
    pub(super) kid: String,
    pub(super) alg: SigningAlg,
    /// Only the current key signs; `None` for every other key.
    pub(super) encoding: Option<EncodingKey>,
    pub(super) decoding: DecodingKey,
    /// The JWK to publish (Ed25519 only; an HMAC secret is never published).
    pub(super) public_jwk: Option<serde_json::Value>,
    pub(super) retired_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("signs", &self.encoding.is_some())
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

impl KeyEntry {
    /// A key that can sign (and verify).
    pub fn signing(kid: impl Into<String>, secret: KeySecret<'_>) -> Result<Self, TokenError> {
        let kid = kid.into();
        Ok(match secret {
            KeySecret::Ed25519(key) => {
                // jsonwebtoken (ring) signs with a PKCS#8 document and
                // verifies with the raw 32-byte public key.
                let der = key
                    .to_pkcs8_der()
                    .map_err(|_| TokenError::InvalidKey("cannot encode the Ed25519 key"))?;
                let mut entry = Self::ed25519_public(kid, key.verifying_key().as_bytes());
                entry.encoding = Some(EncodingKey::from_ed_der(der.as_bytes()));
                entry
            }
            KeySecret::Hs256(secret) => {
                let mut entry = Self::hs256_verifying(kid, secret)?;
                entry.encoding = Some(EncodingKey::from_secret(secret));
                entry
            }
        })
    }

    /// A key that only verifies (a retired key, from its secret half).
    pub fn verifying(
        kid: impl Into<String>,
        secret: KeySecret<'_>,
        retired_at: DateTime<Utc>,
    ) -> Result<Self, TokenError> {
        let entry = match secret {
            KeySecret::Ed25519(key) => {
                Self::ed25519_public(kid.into(), key.verifying_key().as_bytes())
            }
            KeySecret::Hs256(secret) => Self::hs256_verifying(kid.into(), secret)?,
        };
        Ok(entry.retired(retired_at))
    }

    /// An Ed25519 key that only verifies, from its raw 32-byte public key.
    pub fn ed25519_public(kid: impl Into<String>, public: &[u8; 32]) -> Self {
        let kid = kid.into();
        let jwk = super::jwks::ed25519_jwk(&kid, public);
        Self {
            kid,
            alg: SigningAlg::EdDsa,
            encoding: None,
            decoding: DecodingKey::from_ed_der(public),
            public_jwk: Some(jwk),
            retired_at: None,
        }
    }

    fn hs256_verifying(kid: String, secret: &[u8]) -> Result<Self, TokenError> {
        if secret.len() < crate::crypto::hs256::MIN_SECRET_BYTES {
            return Err(TokenError::InvalidKey(
                "the HS256 secret is shorter than 512 bits",
            ));
        }
        Ok(Self {
            kid,
            alg: SigningAlg::Hs256,
            encoding: None,
            decoding: DecodingKey::from_secret(secret),
            public_jwk: None,
            retired_at: None,
        })
    }

    /// Marks the key retired at `at`: it stops signing and verifies until
    /// `at + RETIRED_KEY_GRACE`.
    pub fn retired(mut self, at: DateTime<Utc>) -> Self {
        self.encoding = None;
        self.retired_at = Some(at);
        self
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    pub fn retired_at(&self) -> Option<DateTime<Utc>> {
        self.retired_at
    }

    /// Whether tokens of this key are still accepted at `now`.
    pub fn verifies_at(&self, now: DateTime<Utc>) -> bool {
        self.retired_at
            .is_none_or(|retired| now < retired + RETIRED_KEY_GRACE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_hs256_secrets_are_refused() {
        let err = KeyEntry::signing("hs", KeySecret::Hs256(&[1u8; 63])).unwrap_err();
        assert!(matches!(err, TokenError::InvalidKey(_)));
    }
}
