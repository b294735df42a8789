//! Access tokens: JWTs over `jsonwebtoken`, pure logic, no I/O.
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
//! off). Tokens are never logged, and no error carries one.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::crypto::keys::SigningMaterial;
use crate::crypto::token_cache::{TokenCache, Verified};

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

/// The secret half of a key, to build a [`KeyEntry`] from.
pub enum KeySecret<'a> {
    Ed25519(&'a SigningKey),
    Hs256(&'a [u8]),
}

/// One key of the keyring, parsed once.
pub struct KeyEntry {
    kid: String,
    alg: SigningAlg,
    /// Only the current key signs; `None` for every other key.
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    /// The JWK to publish (Ed25519 only; an HMAC secret is never published).
    public_jwk: Option<serde_json::Value>,
    retired_at: Option<DateTime<Utc>>,
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
        let jwk = serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(public),
            "kid": kid,
            "alg": SigningAlg::EdDsa.as_str(),
            "use": "sig",
        });
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
        if secret.len() < crate::config::MIN_HS256_SECRET_BYTES {
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

/// The signing key and every key that still verifies.
pub struct Keyring {
    signer: EncodingKey,
    signer_kid: String,
    signer_alg: SigningAlg,
    /// The current key first, then the retired ones.
    keys: Vec<KeyEntry>,
    /// Signatures already checked (see `token_cache`).
    verified: TokenCache,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.signer_kid)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// The header fields `verify` looks at, parsed by hand so that an unknown
/// `alg` (`none`, `RS256`…) is a clear mismatch rather than a parse error.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
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

    /// Verifies `token` at `now` for `issuer` and `audience`.
    pub fn verify(
        &self,
        token: &str,
        now: DateTime<Utc>,
        issuer: &str,
        audience: &str,
    ) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let digest = TokenCache::digest(token);
        let claims = match self.verified.get(&digest) {
            // The signature of these exact bytes was checked by this key for
            // this issuer and audience; the key must still verify now.
            Some(hit)
                if hit.issuer == issuer
                    && hit.audience == audience
                    && self
                        .keys
                        .iter()
                        .any(|k| k.kid == hit.kid && k.verifies_at(now)) =>
            {
                hit.claims
            }
            _ => {
                let (kid, claims) = self.verify_signature(token, now, issuer, audience)?;
                self.verified.insert(
                    digest,
                    Verified {
                        kid,
                        issuer: issuer.to_owned(),
                        audience: audience.to_owned(),
                        claims: claims.clone(),
                    },
                );
                claims
            }
        };
        // Checked on every use, cached or not.
        let now = now.timestamp();
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.iat > now.saturating_add(MAX_IAT_SKEW_SECONDS) {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
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

    /// The full check of a token not seen before: header, key, algorithm,
    /// signature, issuer and audience. Returns the verifying key's kid.
    fn verify_signature(
        &self,
        token: &str,
        now: DateTime<Utc>,
        issuer: &str,
        audience: &str,
    ) -> Result<(String, Claims), TokenError> {
        let header = parse_header(token)?;
        if header.typ.as_deref().is_some_and(|typ| typ != "JWT") {
            return Err(TokenError::Malformed);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid && k.verifies_at(now))
            .ok_or(TokenError::UnknownKey)?;
        if header.alg != key.alg.as_str() {
            return Err(TokenError::AlgorithmMismatch);
        }

        let mut validation = Validation::new(key.alg.jwt());
        // Time is checked below against the injected clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|e| map_error(e.kind()))?
            .claims;

        // jsonwebtoken checked these; repeat them exactly, cheaply.
        if claims.iss != issuer {
            return Err(TokenError::WrongIssuer);
        }
        if claims.aud != audience {
            return Err(TokenError::WrongAudience);
        }
        Ok((kid, claims))
    }

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

fn parse_header(token: &str) -> Result<RawHeader, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)
}

fn map_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm => TokenError::AlgorithmMismatch,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        // A key ring fails to use a key it accepted: a malformed signature
        // can land here too, and is refused the same way.
        ErrorKind::Crypto(_) => TokenError::BadSignature,
        _ => TokenError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    const ISS: &str = "https://auth.example.com";
    const AUD: &str = "stockade";

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
    }

    fn ed_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn hs_secret(fill: u8) -> Vec<u8> {
        vec![fill; 64]
    }

    fn claims_at(now: DateTime<Utc>) -> Claims {
        Claims {
            iss: ISS.into(),
            aud: AUD.into(),
            sub: "0190a8f2-0000-7000-8000-000000000001".into(),
            tid: "0190a8f2-0000-7000-8000-000000000002".into(),
            sid: "0190a8f2-0000-7000-8000-000000000003".into(),
            iat: now.timestamp(),
            exp: (now + ACCESS_TOKEN_TTL).timestamp(),
            jti: "jti-1".into(),
            act: None,
        }
    }

    fn ed_ring(seed: u8) -> Keyring {
        Keyring::new(
            KeyEntry::signing(format!("ed-{seed}"), KeySecret::Ed25519(&ed_key(seed))).unwrap(),
            [],
        )
        .unwrap()
    }

    fn hs_ring(fill: u8) -> Keyring {
        Keyring::new(
            KeyEntry::signing(format!("hs-{fill}"), KeySecret::Hs256(&hs_secret(fill))).unwrap(),
            [],
        )
        .unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn segments(token: &str) -> Vec<String> {
        token.split('.').map(str::to_owned).collect()
    }

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
    fn short_hs256_secrets_are_refused() {
        let err = KeyEntry::signing("hs", KeySecret::Hs256(&[1u8; 63])).unwrap_err();
        assert!(matches!(err, TokenError::InvalidKey(_)));
    }

    #[test]
    fn expiry_uses_the_injected_clock_with_zero_leeway() {
        let ring = ed_ring(1);
        let token = ring.issue(&claims_at(t0())).unwrap();
        let almost = t0() + ACCESS_TOKEN_TTL - Duration::seconds(1);
        assert!(ring.verify(&token, almost, ISS, AUD).is_ok());
        let at_exp = t0() + ACCESS_TOKEN_TTL;
        assert_eq!(
            ring.verify(&token, at_exp, ISS, AUD),
            Err(TokenError::Expired)
        );
        // A token that the system clock (2020s) would still accept is
        // refused when the injected clock says it has expired, and vice versa.
        let old = ring.issue(&claims_at(t0() - Duration::days(3650))).unwrap();
        assert_eq!(ring.verify(&old, t0(), ISS, AUD), Err(TokenError::Expired));
        let old_now = t0() - Duration::days(3650);
        assert!(ring.verify(&old, old_now, ISS, AUD).is_ok());
    }

    #[test]
    fn tokens_from_the_future_are_refused() {
        let ring = ed_ring(1);
        let skewed = ring
            .issue(&claims_at(t0() + Duration::seconds(60)))
            .unwrap();
        assert!(ring.verify(&skewed, t0(), ISS, AUD).is_ok());
        let future = ring.issue(&claims_at(t0() + Duration::hours(1))).unwrap();
        assert_eq!(
            ring.verify(&future, t0(), ISS, AUD),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn wrong_audience_and_issuer_are_refused() {
        let ring = ed_ring(1);
        let token = ring.issue(&claims_at(t0())).unwrap();
        assert_eq!(
            ring.verify(&token, t0(), ISS, "other-app"),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            ring.verify(&token, t0(), "https://evil.example.com", AUD),
            Err(TokenError::WrongIssuer)
        );
        // Exactly, not by prefix or case.
        assert_eq!(
            ring.verify(&token, t0(), ISS, "Stockade"),
            Err(TokenError::WrongAudience)
        );
    }

    #[test]
    fn audience_arrays_are_refused() {
        let ring = hs_ring(9);
        let mut json = serde_json::to_value(claims_at(t0())).unwrap();
        json["aud"] = serde_json::json!([AUD, "other"]);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("hs-9".into());
        let token =
            jsonwebtoken::encode(&header, &json, &EncodingKey::from_secret(&hs_secret(9))).unwrap();
        assert!(ring.verify(&token, t0(), ISS, AUD).is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        let ring = ed_ring(1);
        let payload = b64(&serde_json::to_vec(&claims_at(t0())).unwrap());
        for alg in ["none", "None", "NONE"] {
            let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"ed-1"}}"#).as_bytes());
            let token = format!("{header}.{payload}.");
            assert_eq!(
                ring.verify(&token, t0(), ISS, AUD),
                Err(TokenError::AlgorithmMismatch),
                "{alg}"
            );
        }
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(
            ring.verify(&format!("{header}.{payload}."), t0(), ISS, AUD)
                .is_err()
        );
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_refused() {
        let key = ed_key(1);
        let ring = ed_ring(1);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("ed-1".into());
        let public = key.verifying_key().to_bytes();
        // Both the raw public key and its published (base64url) form.
        for secret in [public.to_vec(), b64(&public).into_bytes()] {
            let token = jsonwebtoken::encode(
                &header,
                &claims_at(t0()),
                &EncodingKey::from_secret(&secret),
            )
            .unwrap();
            assert_eq!(
                ring.verify(&token, t0(), ISS, AUD),
                Err(TokenError::AlgorithmMismatch)
            );
        }
    }

    #[test]
    fn other_algorithms_are_refused() {
        let ring = hs_ring(9);
        let payload = b64(&serde_json::to_vec(&claims_at(t0())).unwrap());
        for alg in ["RS256", "HS512", "ES256", "PS256", "EdDSA"] {
            let header = b64(format!(r#"{{"alg":"{alg}","kid":"hs-9"}}"#).as_bytes());
            let token = format!("{header}.{payload}.c2lnbmF0dXJl");
            assert_eq!(
                ring.verify(&token, t0(), ISS, AUD),
                Err(TokenError::AlgorithmMismatch),
                "{alg}"
            );
        }
    }

    #[test]
    fn unknown_signers_and_kids_are_refused() {
        let ring = ed_ring(1);
        // Same kid, different key: the signature does not verify.
        let impostor = Keyring::new(
            KeyEntry::signing("ed-1", KeySecret::Ed25519(&ed_key(2))).unwrap(),
            [],
        )
        .unwrap();
        let forged = impostor.issue(&claims_at(t0())).unwrap();
        assert_eq!(
            ring.verify(&forged, t0(), ISS, AUD),
            Err(TokenError::BadSignature)
        );
        // A kid the ring does not hold.
        let stranger = ed_ring(3).issue(&claims_at(t0())).unwrap();
        assert_eq!(
            ring.verify(&stranger, t0(), ISS, AUD),
            Err(TokenError::UnknownKey)
        );
        // No kid at all.
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = None;
        let der = ed_key(1).to_pkcs8_der().unwrap();
        let no_kid = jsonwebtoken::encode(
            &header,
            &claims_at(t0()),
            &EncodingKey::from_ed_der(der.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            ring.verify(&no_kid, t0(), ISS, AUD),
            Err(TokenError::UnknownKey)
        );
        // HS256: a different secret under the right kid.
        let hs = hs_ring(9);
        let other = Keyring::new(
            KeyEntry::signing("hs-9", KeySecret::Hs256(&hs_secret(8))).unwrap(),
            [],
        )
        .unwrap();
        let token = other.issue(&claims_at(t0())).unwrap();
        assert_eq!(
            hs.verify(&token, t0(), ISS, AUD),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tampered_tokens_are_refused() {
        for ring in [ed_ring(1), hs_ring(9)] {
            let token = ring.issue(&claims_at(t0())).unwrap();
            let parts = segments(&token);
            let mut claims = claims_at(t0());
            claims.tid = "another-tenant".into();
            let payload = b64(&serde_json::to_vec(&claims).unwrap());
            let swapped = format!("{}.{payload}.{}", parts[0], parts[2]);
            assert_eq!(
                ring.verify(&swapped, t0(), ISS, AUD),
                Err(TokenError::BadSignature)
            );
            // Flip one character of the signature.
            let mut sig = parts[2].clone().into_bytes();
            sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
            let flipped = format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                String::from_utf8(sig).unwrap()
            );
            assert!(ring.verify(&flipped, t0(), ISS, AUD).is_err());
            // Stripped signature.
            let stripped = format!("{}.{}.", parts[0], parts[1]);
            assert!(ring.verify(&stripped, t0(), ISS, AUD).is_err());
        }
    }

    #[test]
    fn malformed_and_oversized_tokens_are_refused_before_parsing() {
        let ring = ed_ring(1);
        for bad in ["", ".", "..", "a.b", "a.b.c.d", "!!!.e30.", "e30.e30.e30"] {
            assert!(ring.verify(bad, t0(), ISS, AUD).is_err(), "{bad}");
        }
        let token = ring.issue(&claims_at(t0())).unwrap();
        let huge = format!("{token}{}", "A".repeat(MAX_TOKEN_BYTES));
        assert_eq!(
            ring.verify(&huge, t0(), ISS, AUD),
            Err(TokenError::Malformed)
        );
        // A header with a foreign `typ` is not an access token.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("hs-9".into());
        header.typ = Some("at+jwt+other".into());
        let token = jsonwebtoken::encode(
            &header,
            &claims_at(t0()),
            &EncodingKey::from_secret(&hs_secret(9)),
        )
        .unwrap();
        assert_eq!(
            hs_ring(9).verify(&token, t0(), ISS, AUD),
            Err(TokenError::Malformed)
        );
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

    #[test]
    fn client_and_server_errors_are_told_apart() {
        assert!(TokenError::Expired.is_client_error());
        assert!(TokenError::AlgorithmMismatch.is_client_error());
        assert!(!TokenError::Signing.is_client_error());
        assert!(!TokenError::InvalidKey("x").is_client_error());
    }

    #[test]
    fn verified_tokens_are_cached_but_every_use_is_still_checked() {
        let ring = ed_ring(1);
        let token = ring.issue(&claims_at(t0())).unwrap();
        assert_eq!(ring.verified_len(), 0);
        assert!(ring.verify(&token, t0(), ISS, AUD).is_ok());
        assert_eq!(ring.verified_len(), 1);
        // A hit gives the same claims and adds nothing.
        assert_eq!(
            ring.verify(&token, t0(), ISS, AUD).unwrap(),
            claims_at(t0())
        );
        assert_eq!(ring.verified_len(), 1);
        // Another issuer or audience is refused even though the bytes are cached.
        assert_eq!(
            ring.verify(&token, t0(), "https://other.example", AUD),
            Err(TokenError::WrongIssuer)
        );
        assert_eq!(
            ring.verify(&token, t0(), ISS, "other"),
            Err(TokenError::WrongAudience)
        );
        // One changed byte anywhere is a different token, verified in full.
        let mut parts = segments(&token);
        let sig = parts[2].clone();
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        parts[2] = format!("{flipped}{}", &sig[1..]);
        let tampered = parts.join(".");
        assert!(ring.verify(&tampered, t0(), ISS, AUD).is_err());
        // A forged token never enters the cache.
        assert_eq!(ring.verified_len(), 1);
        // Expired entries are swept.
        ring.sweep_verified(t0() + ACCESS_TOKEN_TTL);
        assert_eq!(ring.verified_len(), 0);
        // A keyring of other keys does not accept the cached token's bytes.
        let other = ed_ring(2);
        assert!(other.verify(&token, t0(), ISS, AUD).is_err());
        assert!(ring.same_keys(&ed_ring(1)));
        assert!(!ring.same_keys(&other));
    }
}
