//! The JSON Web Key Set the server publishes: the public half of every
//! Ed25519 key that still verifies. It must never publish an HMAC secret or
//! a private key field, and it reads nothing but the keyring it is given.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::{Keyring, SigningAlg};

/// The JWK of an Ed25519 public key: `kty`, `crv`, `x`, `kid`, `alg`, `use`
/// (six fields, no private one).
pub(super) fn ed25519_jwk(kid: &str, public: &[u8; 32]) -> serde_json::Value {
    serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(public),
        "kid": kid,
        "alg": SigningAlg::EdDsa.as_str(),
        "use": "sig",
    })
}

impl Keyring {
    /// The JSON Web Key Set: every Ed25519 key that still verifies at `now`.
    /// HMAC secrets are never published.
    pub fn jwks(&self, now: DateTime<Utc>) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .filter(|k| k.verifies_at(now))
            .filter_map(|k| k.public_jwk.clone())
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::super::fixtures::*;
    use super::super::{KeyEntry, KeySecret, RETIRED_KEY_GRACE};
    use super::*;

    #[test]
    fn jwks_lists_ed25519_keys_still_verifying_and_no_secrets() {
        let old_key = ed_key(1);
        let new_key = ed_key(2);
        let hs = hs_secret(9);
        let rotated_at = t0();
        let ring = Keyring::new(
            KeyEntry::signing("new", KeySecret::Ed25519(&new_key)).unwrap(),
            [
                KeyEntry::verifying("old", KeySecret::Ed25519(&old_key), rotated_at).unwrap(),
                KeyEntry::verifying("hs", KeySecret::Hs256(&hs), rotated_at).unwrap(),
            ],
        )
        .unwrap();

        let jwks = ring.jwks(rotated_at + Duration::minutes(1));
        let keys = jwks["keys"].as_array().unwrap();
        let kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert_eq!(kids, ["new", "old"]);
        for (jwk, key) in keys.iter().zip([&new_key, &old_key]) {
            assert_eq!(jwk["kty"], "OKP");
            assert_eq!(jwk["crv"], "Ed25519");
            assert_eq!(jwk["alg"], "EdDSA");
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["x"], b64(key.verifying_key().as_bytes()));
            let fields: Vec<&String> = jwk.as_object().unwrap().keys().collect();
            assert_eq!(fields.len(), 6, "no private field such as `d`: {fields:?}");
        }
        let text = jwks.to_string();
        for secret in [
            b64(old_key.as_bytes()),
            b64(new_key.as_bytes()),
            b64(&hs),
            String::from_utf8(hs.clone()).unwrap(),
        ] {
            assert!(!text.contains(&secret));
        }

        let later = ring.jwks(rotated_at + RETIRED_KEY_GRACE);
        let kids: Vec<&str> = later["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, ["new"]);

        assert_eq!(hs_ring(9).jwks(t0()), serde_json::json!({ "keys": [] }));
    }
}
