//! Personal data in audit events, and its erasure (SPEC §2.7, §2.15).
//!
//! An event that carries a user's personal data names that user as its
//! *subject*: the user who acted (a user, the platform owner, or the creator
//! of the API key), else the user acted on (a `user` target). Its personal
//! fields — `ip`, `user_agent`, and the [`PERSONAL_DETAIL_KEYS`] of its
//! details — are not stored in clear: they are sealed (AES-256-GCM) into the
//! `pii` column under the subject's own 256-bit key, with associated data
//! binding the tenant, sequence number and event id, so sealed data moved to
//! another event does not open. The hashed content (canonical form v2, see
//! `model`) holds `subject_id` and `pii_digest` = HMAC-SHA256 of the personal
//! data under the same key, never the data itself.
//!
//! **Subject keys.** One row per user in `audit_subject_keys`, created on the
//! first event that needs it: the key sealed under the subject
//! key-encryption key, which is derived (HMAC-SHA256 with its own label) from
//! the audit head server key — sealed under the master key, so `keys rotate`
//! re-wraps it and, through it, every subject key. The encryption and digest
//! keys of an event are derived from the subject key with distinct labels.
//! Unwrapped keys live only for the append or read that needed them: no
//! cache, so nothing decrypts a user's data after their erasure.
//!
//! **Erasure** ([`erase_subject_key`]) sets `sealed` to NULL and keeps the
//! row as a marker: no key is ever made again for that user, events appended
//! afterwards about them drop their personal data, and readers show them as
//! `deleted-user-<last 8 hex digits of the id>`. Verifying a chain never
//! needs a subject key.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::model::{AuditError, StoredEvent};
use crate::crypto::{random, seal};
use crate::db::{DbError, GlobalTx, TenantTx};
use crate::ids::{TenantId, UserId};

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
pub(crate) fn subject_kek(head_key: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    derive(head_key, "stockade:audit_subject_kek:v1")
}

fn key_aad(user: UserId) -> Vec<u8> {
    format!("stockade:audit_subject_key:v1:{user}").into_bytes()
}

/// Associated data of an event's sealed personal data.
pub fn pii_aad(tenant: TenantId, seq: i64, id: &str) -> Vec<u8> {
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
pub fn seal_pii(key: &[u8; 32], aad: &[u8], pii: &Pii) -> Result<(Vec<u8>, String), AuditError> {
    let plain = Zeroizing::new(pii.canonical());
    let digest = hex::encode(digest_mac(key, &plain).finalize().into_bytes());
    let enc = derive(key, "stockade:audit_pii_seal:v1");
    let sealed = seal::seal(&enc, aad, &plain).map_err(|_| AuditError::SubjectKey)?;
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

type KeyRow = (Option<Vec<u8>>,);

/// `audit_subject_keys` is global: the tenant (`$1`, bound to every statement
/// of a tenant transaction) plays no part in these statements.
const SELECT_KEY: &str =
    "SELECT sealed FROM audit_subject_keys WHERE user_id = $2 AND $1 IS NOT NULL";

fn unwrap_row(kek: &[u8; 32], user: UserId, row: KeyRow) -> Result<SubjectState, AuditError> {
    match row.0 {
        None => Ok(SubjectState::Erased),
        Some(sealed) => {
            let plain =
                seal::open(kek, &key_aad(user), &sealed).map_err(|_| AuditError::SubjectKey)?;
            let key: [u8; 32] = plain
                .as_slice()
                .try_into()
                .map_err(|_| AuditError::SubjectKey)?;
            Ok(SubjectState::Live(Zeroizing::new(key)))
        }
    }
}

fn kek_of(tx: &TenantTx) -> Result<Zeroizing<[u8; 32]>, AuditError> {
    let head = tx.audit_head_key().ok_or(AuditError::HeadKeyMissing)?;
    Ok(subject_kek(&head))
}

/// The subject's key for an append, created on first need: one point read
/// in the append's transaction when it exists.
pub(crate) async fn for_append(
    tx: &mut TenantTx,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<SubjectState, AuditError> {
    let kek = kek_of(tx)?;
    if let Some(row) = tx
        .fetch_optional::<KeyRow>(SELECT_KEY, vec![user.into()])
        .await?
    {
        return unwrap_row(&kek, user, row);
    }
    let key = random::secret_bytes::<32>().map_err(|_| AuditError::SubjectKey)?;
    let sealed =
        seal::seal(&kek, &key_aad(user), key.as_slice()).map_err(|_| AuditError::SubjectKey)?;
    // Two first events at once agree on one key: the first insert wins and
    // both read it back (an erasure marker wins too).
    tx.execute(
        "INSERT INTO audit_subject_keys (user_id, sealed, created_at) \
         SELECT $2, $3, $4 WHERE $1 IS NOT NULL ON CONFLICT (user_id) DO NOTHING",
        vec![user.into(), sealed.into(), now.into()],
    )
    .await?;
    let row: KeyRow = tx.fetch_one(SELECT_KEY, vec![user.into()]).await?;
    unwrap_row(&kek, user, row)
}

/// Destroys `user`'s subject key and leaves the erasure marker (whether or
/// not a key existed). Idempotent.
pub async fn erase_subject_key(
    tx: &mut GlobalTx,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO audit_subject_keys (user_id, sealed, created_at, erased_at) \
         VALUES ($1, NULL, $2, $2) \
         ON CONFLICT (user_id) DO UPDATE SET sealed = NULL, erased_at = $2",
        vec![user.into(), now.into()],
    )
    .await?;
    Ok(())
}

/// An event as readers see it: the stored event with its personal data
/// opened (`ip`, `user_agent`, and `personal_details`), or, once its
/// subject was erased, `anonymised` and none of it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventView {
    #[serde(flatten)]
    pub event: StoredEvent,
    /// The personal detail fields (`email`, `user_name`) of an event whose
    /// subject's key still exists; not part of the hashed `details`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub personal_details: Option<serde_json::Map<String, serde_json::Value>>,
    /// True when the event's subject was erased: its personal data is
    /// unreadable for good.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub anonymised: bool,
}

/// How erased subjects' ids are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    /// As stored and hashed (the NDJSON export: lines still recompute).
    Stored,
    /// `deleted-user-…` in place of the erased user's actor and target id.
    Labelled,
}

/// Opens the personal data of a page of events, reading each distinct
/// subject's key once (one point read each, in the reader's transaction).
pub async fn reveal(
    tx: &mut TenantTx,
    events: Vec<StoredEvent>,
    ids: Ids,
) -> Result<Vec<EventView>, AuditError> {
    let kek = kek_of(tx)?;
    let mut keys: HashMap<String, Option<SubjectKey>> = HashMap::new();
    let mut out = Vec::with_capacity(events.len());
    let tenant = tx.tenant();
    for mut event in events {
        let Some(subject) = event.subject_id.clone() else {
            out.push(EventView {
                event,
                personal_details: None,
                anonymised: false,
            });
            continue;
        };
        if !keys.contains_key(&subject) {
            let key = match subject.parse::<UserId>() {
                Ok(user) => {
                    let row: Option<KeyRow> =
                        tx.fetch_optional(SELECT_KEY, vec![user.into()]).await?;
                    match row.map(|r| unwrap_row(&kek, user, r)).transpose()? {
                        Some(SubjectState::Live(k)) => Some(k),
                        _ => None,
                    }
                }
                Err(_) => None,
            };
            keys.insert(subject.clone(), key);
        }
        let key = keys.get(&subject).and_then(Option::as_ref);
        let opened = match (key, &event.pii, &event.pii_digest) {
            (Some(k), Some(sealed), Some(digest)) => {
                let aad = pii_aad(tenant, event.seq, &event.id.to_string());
                let pii = open_pii(k, &aad, sealed, digest);
                if pii.is_none() {
                    tracing::error!(%tenant, seq = event.seq,
                        "audit event personal data does not open or match its digest");
                }
                pii
            }
            _ => None,
        };
        let anonymised = key.is_none();
        let personal_details = match opened {
            Some(pii) => {
                event.ip = pii.ip;
                event.user_agent = pii.user_agent;
                (!pii.details.is_empty()).then_some(pii.details)
            }
            None => None,
        };
        if anonymised && ids == Ids::Labelled {
            for id in [&mut event.actor_id, &mut event.target_id] {
                if id.as_deref() == Some(subject.as_str()) {
                    *id = Some(deleted_label(&subject));
                }
            }
        }
        out.push(EventView {
            event,
            personal_details,
            anonymised,
        });
    }
    Ok(out)
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
        let aad = pii_aad(TenantId(uuid::Uuid::nil()), 4, "e1");
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
        let other = pii_aad(TenantId(uuid::Uuid::nil()), 5, "e1");
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
