//! Verifying an access token: size, header, `kid`, algorithm, signature,
//! issuer and audience on first sight (cached by signature, see
//! `token_cache`), then expiry and `iat` against the caller's `now` on every
//! use. Pure: this file must not read the system clock, and no error it
//! returns carries the token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;

use super::{Claims, Keyring, MAX_IAT_SKEW_SECONDS, MAX_TOKEN_BYTES, TokenError};
use crate::crypto::token_cache::{TokenCache, Verified};

/// The header fields `verify` looks at, parsed by hand so that an unknown
/// `alg` (`none`, `RS256`…) is a clear mismatch rather than a parse error.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
}

impl Keyring {
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
    use chrono::Duration;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    use super::super::fixtures::*;
    use super::super::{ACCESS_TOKEN_TTL, KeyEntry, KeySecret};
    use super::*;

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
