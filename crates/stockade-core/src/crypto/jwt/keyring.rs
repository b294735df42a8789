//! The keyring: the one current key that signs and every retired key that
//! still verifies, with the rules of rotation (a retired key verifies for
//! [`RETIRED_KEY_GRACE`](super::RETIRED_KEY_GRACE) after its retirement,
//! kids are unique, only the current key signs), and signing itself.
//! Pure: this file must not load keys from files or rows (the caller hands
//! them in) nor read the clock.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use jsonwebtoken::{EncodingKey, Header};

use super::keys::{KeyEntry, KeySecret, SigningMaterial};
use super::{Claims, SigningAlg, TokenError};
use crate::crypto::token_cache::TokenCache;

/// The signing key and every key that still verifies.
pub struct Keyring {
    pub(super) signer: EncodingKey,
    pub(super) signer_kid: String,
    pub(super) signer_alg: SigningAlg,
    /// The current key first, then the retired ones.
    pub(super) keys: Vec<KeyEntry>,
    /// Signatures already checked (see `token_cache`).
    pub(super) verified: TokenCache,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.signer_kid)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// A keyring whose `current` key signs; `previous` keys only verify and
    /// must each be retired. Kids must be unique.
    pub fn new(
        mut current: KeyEntry,
        previous: impl IntoIterator<Item = KeyEntry>,
    ) -> Result<Self, TokenError> {
        if current.retired_at.is_some() {
            return Err(TokenError::InvalidKey("the current key is retired"));
        }
        let signer = current
            .encoding
            .take()
            .ok_or(TokenError::InvalidKey("the current key cannot sign"))?;
        let signer_kid = current.kid.clone();
        let signer_alg = current.alg;
        let mut keys = vec![current];
        let mut seen: HashSet<String> = HashSet::from([signer_kid.clone()]);
        for mut key in previous {
            if key.retired_at.is_none() {
                return Err(TokenError::InvalidKey("a previous key is not retired"));
            }
            if !seen.insert(key.kid.clone()) {
                return Err(TokenError::InvalidKey("two keys share a kid"));
            }
            key.encoding = None;
            keys.push(key);
        }
        Ok(Self {
            signer,
            signer_kid,
            signer_alg,
            keys,
            verified: TokenCache::default(),
        })
    }

    /// A keyring of just the configured key (no rotation history).
    pub fn from_material(material: &SigningMaterial) -> Result<Self, TokenError> {
        let entry = match material {
            SigningMaterial::Ed25519 { key, kid } => {
                KeyEntry::signing(kid.as_str(), KeySecret::Ed25519(key))?
            }
            SigningMaterial::Hs256 { secret, kid } => {
                KeyEntry::signing(kid.as_str(), KeySecret::Hs256(secret))?
            }
        };
        Self::new(entry, [])
    }

    /// The kid of the key that signs.
    pub fn current_kid(&self) -> &str {
        &self.signer_kid
    }

    pub fn current_alg(&self) -> SigningAlg {
        self.signer_alg
    }

    /// Every key held, the current one first (some may no longer verify).
    pub fn keys(&self) -> &[KeyEntry] {
        &self.keys
    }

    /// Signs `claims` with the current key; the header carries its `kid` and
    /// `typ: JWT`.
    pub fn issue(&self, claims: &Claims) -> Result<String, TokenError> {
        let mut header = Header::new(self.signer_alg.jwt());
        header.typ = Some("JWT".to_owned());
        header.kid = Some(self.signer_kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signer).map_err(|_| TokenError::Signing)
    }

    /// Whether `other` holds the same keys in the same states (same current
    /// kid; same kids, algorithms and retirement times), so a reload that
    /// found nothing new can keep this keyring and its verified tokens.
    pub fn same_keys(&self, other: &Keyring) -> bool {
        let states = |r: &Keyring| -> Vec<(String, &'static str, Option<DateTime<Utc>>)> {
            r.keys
                .iter()
                .map(|k| (k.kid.clone(), k.alg.as_str(), k.retired_at))
                .collect()
        };
        self.signer_kid == other.signer_kid && states(self) == states(other)
    }

    /// Drops cached verdicts of tokens expired at `now`.
    pub fn sweep_verified(&self, now: DateTime<Utc>) {
        self.verified.sweep(now.timestamp());
    }

    /// How many verified tokens are cached.
    pub fn verified_len(&self) -> usize {
        self.verified.len()
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use chrono::Duration;
    use jsonwebtoken::Algorithm;

    use super::super::fixtures::*;
    use super::super::{ActClaim, RETIRED_KEY_GRACE};
    use super::*;

    #[test]
    fn eddsa_round_trip() {
        let ring = ed_ring(1);
        let mut claims = claims_at(t0());
        claims.act = Some(ActClaim {
            sub: "operator-7".into(),
        });
        let token = ring.issue(&claims).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some("ed-1"));
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(ring.verify(&token, t0(), ISS, AUD).unwrap(), claims);
    }

    #[test]
    fn hs256_round_trip_and_act_omitted_when_absent() {
        let ring = hs_ring(9);
        let claims = claims_at(t0());
        let token = ring.issue(&claims).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&token).unwrap().alg,
            Algorithm::HS256
        );
        let payload = URL_SAFE_NO_PAD.decode(&segments(&token)[1]).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert!(json.get("act").is_none());
        assert_eq!(ring.verify(&token, t0(), ISS, AUD).unwrap(), claims);
    }

    #[test]
    fn rotated_keyring_overlaps_for_the_token_lifetime() {
        let old_key = ed_key(1);
        let new_key = ed_key(2);
        let before = Keyring::new(
            KeyEntry::signing("old", KeySecret::Ed25519(&old_key)).unwrap(),
            [],
        )
        .unwrap();
        let issued_at = t0();
        let old_token = before.issue(&claims_at(issued_at)).unwrap();

        let rotated_at = t0() + Duration::minutes(5);
        let after = Keyring::new(
            KeyEntry::signing("new", KeySecret::Ed25519(&new_key)).unwrap(),
            [KeyEntry::verifying("old", KeySecret::Ed25519(&old_key), rotated_at).unwrap()],
        )
        .unwrap();
        assert_eq!(after.current_kid(), "new");
        let new_token = after.issue(&claims_at(rotated_at)).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&new_token)
                .unwrap()
                .kid
                .as_deref(),
            Some("new")
        );

        let during = rotated_at + Duration::minutes(1);
        assert!(after.verify(&old_token, during, ISS, AUD).is_ok());
        assert!(after.verify(&new_token, during, ISS, AUD).is_ok());

        // A token of the old key carrying a long exp still dies with the key.
        let mut long = claims_at(issued_at);
        long.exp = (issued_at + Duration::hours(2)).timestamp();
        let long_token = before.issue(&long).unwrap();
        let edge = rotated_at + RETIRED_KEY_GRACE;
        assert!(
            after
                .verify(&long_token, edge - Duration::seconds(1), ISS, AUD)
                .is_ok()
        );
        assert_eq!(
            after.verify(&long_token, edge, ISS, AUD),
            Err(TokenError::UnknownKey)
        );
        assert!(
            after
                .verify(&new_token, edge - Duration::seconds(1), ISS, AUD)
                .is_ok()
        );
    }

    #[test]
    fn keyring_construction_rules() {
        let current = || KeyEntry::signing("a", KeySecret::Ed25519(&ed_key(1))).unwrap();
        let verify_only = KeyEntry::ed25519_public("a", ed_key(1).verifying_key().as_bytes());
        assert!(Keyring::new(verify_only, []).is_err());
        let dup = KeyEntry::verifying("a", KeySecret::Ed25519(&ed_key(2)), t0()).unwrap();
        assert!(Keyring::new(current(), [dup]).is_err());
        let unretired = KeyEntry::signing("b", KeySecret::Ed25519(&ed_key(2))).unwrap();
        assert!(Keyring::new(current(), [unretired]).is_err());
        let debug = format!("{:?}", Keyring::new(current(), []).unwrap());
        assert!(debug.contains("\"a\""));
        assert!(!debug.contains(&b64(ed_key(1).as_bytes())));
    }

    #[test]
    fn from_material_uses_the_configured_kid() {
        let key = ed_key(4);
        let material = SigningMaterial::Ed25519 {
            key: key.clone(),
            kid: "configured".into(),
        };
        let ring = Keyring::from_material(&material).unwrap();
        assert_eq!(ring.current_kid(), "configured");
        assert_eq!(ring.current_alg(), SigningAlg::EdDsa);
        let token = ring.issue(&claims_at(t0())).unwrap();
        assert!(ring.verify(&token, t0(), ISS, AUD).is_ok());
    }
}
