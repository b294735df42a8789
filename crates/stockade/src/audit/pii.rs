//! Personal data in audit events, stored part (SPEC §2.7, §2.15): subject
//! keys in `audit_subject_keys` — made on first need, erased for good — and
//! reading events back with their personal data opened. This file must not
//! change how personal data is sealed or digested: that is a pure rule of
//! `stockade_core::audit::pii`, re-exported here.
//!
//! An event that carries a user's personal data names that user as its
//! *subject*: the user who acted (a user, the platform owner, or the creator
//! of the API key), else the user acted on (a `user` target). Its personal
//! fields are sealed under the subject's own key (see the core module).
//!
//! **Subject keys.** One row per user in `audit_subject_keys`, created on the
//! first event that needs it: the key sealed under the subject
//! key-encryption key, which is derived (HMAC-SHA256 with its own label) from
//! the audit head server key — sealed under the master key, so `keys rotate`
//! re-wraps it and, through it, every subject key.
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
use serde::Serialize;
use zeroize::Zeroizing;

pub use stockade_core::audit::pii::{
    PERSONAL_DETAIL_KEYS, Pii, SubjectKey, SubjectState, deleted_label, key_aad, open_pii, pii_aad,
    seal_pii, subject_kek,
};

use super::model::{AuditError, StoredEvent};
use crate::crypto::{random, seal};
use crate::db::{DbError, GlobalTx, TenantTx};
use crate::ids::UserId;

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
