//! The audit hash chain's construction: the canonical encoding of an event
//! (form v1, or v2 for an event with a subject) and its hash, SHA-256 over
//! the previous event's hash and that encoding; also what an action name may
//! be. Pure: this file must not read, append or verify stored events (that is
//! `stockade::audit`), and it never sees an event's sealed personal data,
//! only its digest.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// `prev_hash` of the first event of every chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Whether `action` is an action name: `area.object.verb`, two to four
/// lower-case ASCII words (digits and `_` allowed) of 1 to 40 characters
/// joined by dots.
pub fn valid_action(action: &str) -> bool {
    let parts: Vec<&str> = action.split('.').collect();
    (2..=4).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 40
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// What the hash of one event covers, borrowed from the stored row: every
/// column but `hash` itself and the sealed personal data (`pii`), which the
/// hash covers through `pii_digest`.
#[derive(Debug, Clone, Copy)]
pub struct Hashed<'a> {
    pub tenant_id: Uuid,
    pub seq: i64,
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor_type: &'a str,
    pub actor_id: Option<&'a str>,
    pub impersonator_id: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub action: &'a str,
    pub target_type: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub outcome: &'a str,
    pub details: &'a str,
    pub subject_id: Option<&'a str>,
    pub pii_digest: Option<&'a str>,
    pub prev_hash: &'a str,
}

/// The canonical encoding that is hashed: every field but `hash`, in a fixed
/// order, as JSON (strings escaped unambiguously, nulls explicit).
///
/// Form v1 (no subject): exactly the fields below but `subject_id` and
/// `pii_digest`, `ip` and `user_agent` included. Form v2 (an event with a
/// subject, see `pii`): `ip` and `user_agent` left out (they live in the
/// sealed part, and must be NULL in the row: see
/// `StoredEvent::clear_fields_in_v2`), `subject_id` and `pii_digest`
/// (null once erased) appended. Events written before v2 hash as before.
#[derive(Serialize)]
struct Canonical<'a> {
    v: u8,
    tenant_id: String,
    seq: i64,
    id: String,
    occurred_at: String,
    actor_type: &'a str,
    actor_id: Option<&'a str>,
    impersonator_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<Option<&'a str>>,
    request_id: Option<&'a str>,
    action: &'a str,
    target_type: Option<&'a str>,
    target_id: Option<&'a str>,
    outcome: &'a str,
    details: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pii_digest: Option<Option<&'a str>>,
}

impl<'a> Hashed<'a> {
    fn canonical_form(&self) -> Canonical<'a> {
        let v1 = self.subject_id.is_none();
        Canonical {
            v: if v1 { 1 } else { 2 },
            tenant_id: self.tenant_id.to_string(),
            seq: self.seq,
            id: self.id.to_string(),
            occurred_at: self
                .occurred_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
            actor_type: self.actor_type,
            actor_id: self.actor_id,
            impersonator_id: self.impersonator_id,
            ip: v1.then_some(self.ip),
            user_agent: v1.then_some(self.user_agent),
            request_id: self.request_id,
            action: self.action,
            target_type: self.target_type,
            target_id: self.target_id,
            outcome: self.outcome,
            details: self.details,
            subject_id: self.subject_id,
            pii_digest: (!v1).then_some(self.pii_digest),
        }
    }

    /// The canonical encoding (see `Canonical`).
    pub fn canonical(&self) -> Vec<u8> {
        // Serialising plain strings and integers cannot fail.
        serde_json::to_vec(&self.canonical_form()).unwrap_or_default()
    }

    /// SHA-256 over the previous hash, a newline and the canonical encoding;
    /// the encoding is written straight into the hasher (no buffer).
    pub fn hash_bytes(&self) -> [u8; 32] {
        let mut w = HashWriter(Sha256::new());
        w.0.update(self.prev_hash.as_bytes());
        w.0.update(b"\n");
        // Writing into a hasher cannot fail.
        let _ = serde_json::to_writer(&mut w, &self.canonical_form());
        w.0.finalize().into()
    }

    /// SHA-256 over the previous hash and the canonical encoding, hex.
    pub fn compute_hash(&self) -> String {
        hex::encode(self.hash_bytes())
    }

    /// Whether `hash` is exactly (lower-case hex) the hash of this content;
    /// no allocation.
    pub fn hash_matches(&self, hash: &str) -> bool {
        let mut hex_buf = [0u8; 64];
        hex::encode_to_slice(self.hash_bytes(), &mut hex_buf).is_ok()
            && hex_buf.as_slice() == hash.as_bytes()
    }
}

/// Feeds `serde_json::to_writer` output into SHA-256.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(prev_hash: &str) -> Hashed<'_> {
        Hashed {
            tenant_id: Uuid::nil(),
            seq: 1,
            id: Uuid::nil(),
            occurred_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            actor_type: "system",
            actor_id: None,
            impersonator_id: None,
            ip: None,
            user_agent: None,
            request_id: None,
            action: "tenancy.tenant.created",
            target_type: Some("tenant"),
            target_id: Some("t1"),
            outcome: "success",
            details: r#"{"a":"x","b":1}"#,
            subject_id: None,
            pii_digest: None,
            prev_hash,
        }
    }

    #[test]
    fn action_names_are_validated() {
        for ok in [
            "auth.login.failed",
            "tenancy.tenant.created",
            "audit.purged",
        ] {
            assert!(valid_action(ok), "{ok}");
        }
        for bad in [
            "",
            "login",
            "Auth.login.failed",
            "a..b",
            "a.b c",
            "a.b.c.d.e",
        ] {
            assert!(!valid_action(bad), "{bad}");
        }
    }

    #[test]
    fn form_v1_is_byte_for_byte_stable() {
        let text = String::from_utf8(event(GENESIS_HASH).canonical()).unwrap();
        let nil = "00000000-0000-0000-0000-000000000000";
        assert_eq!(
            text,
            format!(
                r#"{{"v":1,"tenant_id":"{nil}","seq":1,"id":"{nil}","occurred_at":"2023-11-14T22:13:20.000000Z","actor_type":"system","actor_id":null,"impersonator_id":null,"ip":null,"user_agent":null,"request_id":null,"action":"tenancy.tenant.created","target_type":"tenant","target_id":"t1","outcome":"success","details":"{{\"a\":\"x\",\"b\":1}}"}}"#
            )
        );
    }

    #[test]
    fn the_hash_covers_the_previous_hash_and_every_field() {
        let e = event(GENESIS_HASH);
        let mut plain = Sha256::new();
        plain.update(GENESIS_HASH.as_bytes());
        plain.update(b"\n");
        plain.update(e.canonical());
        let hash = e.compute_hash();
        assert_eq!(hash, hex::encode(plain.finalize()));
        assert!(e.hash_matches(&hash));
        assert!(!e.hash_matches(&hash.to_uppercase()));
        let other_prev = "1".repeat(64);
        assert_ne!(event(&other_prev).compute_hash(), hash);
        let changed = [
            Hashed { seq: 2, ..e },
            Hashed {
                actor_id: Some(""),
                ..e
            },
            Hashed {
                ip: Some("10.0.0.1"),
                ..e
            },
            Hashed {
                outcome: "failure",
                ..e
            },
            Hashed { details: "{}", ..e },
        ];
        for c in changed {
            assert_ne!(c.compute_hash(), hash, "{c:?}");
        }
    }

    #[test]
    fn form_v2_leaves_out_ip_and_user_agent_and_adds_the_digest() {
        let e = Hashed {
            subject_id: Some("00000000-0000-0000-0000-000000abcdef"),
            pii_digest: Some("ab"),
            ip: Some("203.0.113.9"),
            user_agent: Some("Agent/1"),
            ..event(GENESIS_HASH)
        };
        let text = String::from_utf8(e.canonical()).unwrap();
        assert!(text.starts_with(r#"{"v":2,"#), "{text}");
        assert!(!text.contains("203.0.113.9") && !text.contains("user_agent"));
        assert!(text.ends_with(
            r#""subject_id":"00000000-0000-0000-0000-000000abcdef","pii_digest":"ab"}"#
        ));
        // An erased subject's digest is null, and still hashed.
        let erased = Hashed {
            pii_digest: None,
            ..e
        };
        assert!(
            String::from_utf8(erased.canonical())
                .unwrap()
                .ends_with(r#""pii_digest":null}"#)
        );
        assert_ne!(erased.compute_hash(), e.compute_hash());
    }
}
