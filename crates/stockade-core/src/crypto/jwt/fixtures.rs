//! Shared test fixtures of the `jwt` tests: a fixed instant, keys, claims
//! and keyrings. Test-only (`#[cfg(test)]`); must hold no rule of its own.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone, Utc};
use ed25519_dalek::SigningKey;

use super::{ACCESS_TOKEN_TTL, Claims, KeyEntry, KeySecret, Keyring};

pub(super) const ISS: &str = "https://auth.example.com";
pub(super) const AUD: &str = "stockade";

pub(super) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
}

pub(super) fn ed_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub(super) fn hs_secret(fill: u8) -> Vec<u8> {
    vec![fill; 64]
}

pub(super) fn claims_at(now: DateTime<Utc>) -> Claims {
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
        amr: Vec::new(),
    }
}

pub(super) fn ed_ring(seed: u8) -> Keyring {
    Keyring::new(
        KeyEntry::signing(format!("ed-{seed}"), KeySecret::Ed25519(&ed_key(seed))).unwrap(),
        [],
    )
    .unwrap()
}

pub(super) fn hs_ring(fill: u8) -> Keyring {
    Keyring::new(
        KeyEntry::signing(format!("hs-{fill}"), KeySecret::Hs256(&hs_secret(fill))).unwrap(),
        [],
    )
    .unwrap()
}

pub(super) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(super) fn segments(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}
