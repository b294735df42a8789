//! Personal data in audit events, pure part (SPEC §2.7, §2.15): which
//! fields of an event are personal ([`PERSONAL_DETAIL_KEYS`], `ip`,
//! `user_agent`), how they are taken out of the event ([`Pii::split`]),
//! sealed under the subject's key with a keyed digest for the hash chain
//! ([`seal_pii`], [`open_pii`]), the keys derived from one secret, the
//! associated data that binds sealed bytes to their event or subject, and how
//! an erased user is labelled. This file must not store, load or erase a
//! subject key (that is `stockade::audit::pii`), and nothing it returns in
//! clear holds personal data.
//!
//! An event's personal fields are sealed (AES-256-GCM) under its subject's
//! own 256-bit key, with associated data binding the tenant, sequence number
//! and event id ([`pii_aad`]), so sealed data moved to another event does not
//! open. The hashed content (canonical form v2, see `chain`) holds
//! `subject_id` and `pii_digest` = HMAC-SHA256 of the personal data under the
//! same key, never the data itself. The encryption and digest keys of an
//! event are derived from the subject key with distinct labels; subject keys
//! are sealed under a key-encryption key derived from the audit head key.

use std::fmt::Display;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::crypto::seal::{self, SealError};

/// Detail keys whose values are personal data: sealed with `ip` and
/// `user_agent`, never hashed or stored in clear. The one list. A person's
/// name goes under `user_name`; plain `name` is the name of a tenant, role or
/// API key, which belongs to the tenant and stays readable after erasure.
pub const PERSONAL_DETAIL_KEYS: &[&str] = &["email", "user_name"];

/// A subject's 256-bit key, wiped on drop.
pub type SubjectKey = Zeroizing<[u8; 32]>;

/// What an append or a read found for a subject.
pub enum SubjectState {
    /// The key: personal data is sealed under it / opens with it.
    Live(SubjectKey),
    /// The user was erased: their personal data is dropped / unreadable.
    Erased,
}

/// The sealed part of an event: its personal fields. Serialised with sorted
/// keys (serde_json's map), so the digest input is canonical.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pii {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl Pii {
    /// Takes the personal fields out of an event's details.
    pub fn split(
        details: &mut serde_json::Map<String, serde_json::Value>,
        ip: Option<String>,
        user_agent: Option<String>,
    ) -> Self {
        let mut personal = serde_json::Map::new();
        for key in PERSONAL_DETAIL_KEYS {
            if let Some(v) = details.remove(*key) {
                personal.insert((*key).to_owned(), v);
            }
        }
        Self {
            ip,
            user_agent,
            details: personal,
        }
    }

    fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

fn derive(key: &[u8; 32], label: &str) -> Zeroizing<[u8; 32]> {
    // HMAC-SHA256 as a PRF (HKDF-Expand with one block): independent keys
    // for independent uses of one secret. A 32-byte key is always accepted.
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => <Hmac<Sha256> as Mac>::new(&Default::default()),
    };
    m.update(label.as_bytes());
    Zeroizing::new(m.finalize().into_bytes().into())
}

/// The key that seals subject keys, derived from the audit head key.
pub fn subject_kek(head_key: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    derive(head_key, "stockade:audit_subject_kek:v1")
}

/// Associated data of a subject's sealed key.
pub fn key_aad(user: impl Display) -> Vec<u8> {
    format!("stockade:audit_subject_key:v1:{user}").into_bytes()
}

/// Associated data of an event's sealed personal data.
pub fn pii_aad(tenant: impl Display, seq: i64, id: &str) -> Vec<u8> {
    format!("stockade:audit_pii:v1\n{tenant}\n{seq}\n{id}").into_bytes()
}

fn digest_mac(key: &[u8; 32], pii: &[u8]) -> Hmac<Sha256> {
    let mk = derive(key, "stockade:audit_pii_digest:v1");
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(mk.as_slice()) {
        Ok(m) => m,
        Err(_) => <Hmac<Sha256> as Mac>::new(&Default::default()),
    };
    m.update(pii);
    m
}

/// Seals `pii` under the subject key: `(sealed bytes, digest hex)`.
pub fn seal_pii(key: &[u8; 32], aad: &[u8], pii: &Pii) -> Result<(Vec<u8>, String), SealError> {
    let plain = Zeroizing::new(pii.canonical());
    let digest = hex::encode(digest_mac(key, &plain).finalize().into_bytes());
    let enc = derive(key, "stockade:audit_pii_seal:v1");
    let sealed = seal::seal(&enc, aad, &plain)?;
    Ok((sealed, digest))
}

/// Opens sealed personal data and checks it against the hashed digest
/// (compared in constant time). `None` when either does not hold.
pub fn open_pii(key: &[u8; 32], aad: &[u8], sealed: &[u8], digest: &str) -> Option<Pii> {
    let enc = derive(key, "stockade:audit_pii_seal:v1");
    let plain = seal::open(&enc, aad, sealed).ok()?;
    let raw = hex::decode(digest).ok()?;
    digest_mac(key, &plain).verify_slice(&raw).ok()?;
    serde_json::from_slice(&plain).ok()
}

/// How readers name an erased user.
pub fn deleted_label(id: &str) -> String {
    // The last 8 hex digits: the random end of a UUIDv7 (its start is a
    // timestamp, shared by users created in the same minute).
    let hex: String = id.chars().filter(char::is_ascii_hexdigit).collect();
    let tail = hex.get(hex.len().saturating_sub(8)..).unwrap_or_default();
    format!("deleted-user-{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Pii {
        let mut details = serde_json::json!({"email": "a@b.test", "reason": "x", "user_name": "Ann", "name": "k"});
        let map = details.as_object_mut().unwrap();
        let pii = Pii::split(map, Some("192.0.2.7".into()), Some("curl/8".into()));
        assert_eq!(details, serde_json::json!({"reason": "x", "name": "k"}));
        pii
    }

    #[test]
    fn split_takes_exactly_the_personal_keys() {
        let pii = sample();
        assert_eq!(
            serde_json::Value::Object(pii.details.clone()),
            serde_json::json!({"email": "a@b.test", "user_name": "Ann"})
        );
        assert_eq!(pii.ip.as_deref(), Some("192.0.2.7"));
    }

    #[test]
    fn sealed_pii_opens_only_with_its_key_aad_and_digest() {
        let key = [3u8; 32];
        let pii = sample();
        let aad = pii_aad(uuid::Uuid::nil(), 4, "e1");
        let (sealed, digest) = seal_pii(&key, &aad, &pii).unwrap();
        for needle in ["a@b.test", "192.0.2.7", "curl/8", "Ann"] {
            assert!(
                !sealed.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} in clear"
            );
            assert!(!digest.contains(needle));
        }
        assert_eq!(open_pii(&key, &aad, &sealed, &digest), Some(pii.clone()));
        // Another key, another event, or another digest: nothing.
        assert_eq!(open_pii(&[4u8; 32], &aad, &sealed, &digest), None);
        let other = pii_aad(uuid::Uuid::nil(), 5, "e1");
        assert_eq!(open_pii(&key, &other, &sealed, &digest), None);
        let (_, other_digest) = seal_pii(&key, &aad, &Pii::default()).unwrap();
        assert_eq!(open_pii(&key, &aad, &sealed, &other_digest), None);
    }

    #[test]
    fn the_digest_is_keyed_and_deterministic() {
        let pii = sample();
        let aad = b"aad";
        let (s1, d1) = seal_pii(&[1u8; 32], aad, &pii).unwrap();
        let (s2, d2) = seal_pii(&[1u8; 32], aad, &pii).unwrap();
        assert_eq!(d1, d2, "same key, same data: same digest");
        assert_ne!(s1, s2, "fresh nonce each time");
        let (_, d3) = seal_pii(&[2u8; 32], aad, &pii).unwrap();
        assert_ne!(d1, d3, "the digest depends on the key");
        assert_eq!(d1.len(), 64);
    }

    #[test]
    fn derived_keys_differ_from_their_root() {
        let root = [9u8; 32];
        let kek = subject_kek(&root);
        assert_ne!(*kek, root);
        assert_ne!(*kek, *derive(&root, "stockade:audit_pii_seal:v1"));
    }

    #[test]
    fn deleted_label_uses_the_random_end_of_the_id() {
        assert_eq!(
            deleted_label("0190f3a2-7c4e-7d11-8a9b-1234abcd5678"),
            "deleted-user-abcd5678"
        );
    }
}
