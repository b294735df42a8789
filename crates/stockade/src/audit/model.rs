//! The audit log's events: who acted, on what, with which outcome
//! ([`NewEvent`]); an event fixed into its stored row with its personal data
//! sealed ([`NewEvent::seal`], [`StoredEvent`]); the verdict on a chain. The
//! canonical encoding and the hash are a pure rule of
//! `stockade_core::audit::chain` ([`StoredEvent::hashed`] hands it the row);
//! this file must not change how an event is hashed, and does no I/O.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stockade_core::audit::chain::{Hashed, valid_action};

use super::pii::{self, Pii, SubjectState};
use crate::ids::{EventId, TenantId, UserId};

pub use stockade_core::audit::chain::GENESIS_HASH;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("invalid audit action `{0}`: expected area.object.verb in lower case")]
    InvalidAction(String),
    #[error("audit details must be a JSON object")]
    InvalidDetails,
    #[error("the audit head key is not installed (audit::install_head_key at startup)")]
    HeadKeyMissing,
    #[error(
        "the audit chain head of tenant {0} is not validly signed: run `stockade audit verify`"
    )]
    HeadBroken(TenantId),
    #[error("an audit subject key cannot be made, opened or used")]
    SubjectKey,
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    ServerKey(#[from] crate::crypto::server_keys::ServerKeyError),
}

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User {
        id: UserId,
        /// The platform owner acting as this user, when impersonated.
        impersonator: Option<UserId>,
    },
    /// An API key (its id), acting for the user who created it: the
    /// creator is recorded in the event's details as `api_key_creator`.
    ApiKey {
        id: String,
        creator: UserId,
    },
    PlatformOwner {
        id: UserId,
    },
    System,
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::User { .. } => "user",
            Self::ApiKey { .. } => "api_key",
            Self::PlatformOwner { .. } => "platform_owner",
            Self::System => "system",
        }
    }

    fn id(&self) -> Option<String> {
        match self {
            Self::User { id, .. } | Self::PlatformOwner { id } => Some(id.to_string()),
            Self::ApiKey { id, .. } => Some(id.clone()),
            Self::System => None,
        }
    }

    fn impersonator(&self) -> Option<String> {
        match self {
            Self::User {
                impersonator: Some(by),
                ..
            } => Some(by.to_string()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: String,
    pub id: String,
}

impl Target {
    pub fn new(kind: &str, id: impl ToString) -> Self {
        Self {
            kind: kind.to_owned(),
            id: id.to_string(),
        }
    }
}

/// Where a request came from (all optional: CLI and jobs have none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// An event to append. `details` must be a JSON object and never hold secrets.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub actor: Actor,
    pub action: String,
    pub target: Option<Target>,
    pub outcome: Outcome,
    pub details: serde_json::Value,
    pub context: RequestContext,
}

impl NewEvent {
    pub fn new(actor: Actor, action: &str) -> Self {
        Self {
            actor,
            action: action.to_owned(),
            target: None,
            outcome: Outcome::Success,
            details: serde_json::json!({}),
            context: RequestContext::default(),
        }
    }

    pub fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    pub fn context(mut self, context: RequestContext) -> Self {
        self.context = context;
        self
    }

    /// The user whose personal data the event carries (see `pii`): the
    /// user who acted (for an API key, its creator), else a `user` target.
    pub fn subject(&self) -> Option<UserId> {
        match &self.actor {
            Actor::User { id, .. } | Actor::PlatformOwner { id } => return Some(*id),
            Actor::ApiKey { creator, .. } => return Some(*creator),
            Actor::System => {}
        }
        self.target
            .as_ref()
            .filter(|t| t.kind == "user")
            .and_then(|t| t.id.parse().ok())
    }

    /// Fixes the event into the row that will be stored, at `seq` after
    /// `prev_hash`, and computes its hash. `subject` is the state of the
    /// key of [`NewEvent::subject`] (`None` when the event has no subject):
    /// with a live key the personal fields are sealed under it (form v2);
    /// for an erased subject they are dropped.
    pub(crate) fn seal(
        self,
        tenant_id: TenantId,
        seq: i64,
        id: EventId,
        occurred_at: DateTime<Utc>,
        prev_hash: String,
        subject: Option<&SubjectState>,
    ) -> Result<StoredEvent, AuditError> {
        validate_action(&self.action)?;
        let subject_id = subject.and(self.subject()).map(|u| u.to_string());
        let mut details = self.details;
        let Some(fields) = details.as_object_mut() else {
            return Err(AuditError::InvalidDetails);
        };
        if let Actor::ApiKey { creator, .. } = &self.actor {
            fields.insert(
                "api_key_creator".to_owned(),
                serde_json::Value::String(creator.to_string()),
            );
        }
        let (mut ip, mut user_agent) = (self.context.ip, self.context.user_agent);
        let (mut sealed_pii, mut pii_digest) = (None, None);
        if let Some(state) = subject {
            let pii = Pii::split(fields, ip.take(), user_agent.take());
            if let SubjectState::Live(key) = state {
                let aad = pii::pii_aad(tenant_id, seq, &id.to_string());
                let (sealed, digest) =
                    pii::seal_pii(key, &aad, &pii).map_err(|_| AuditError::SubjectKey)?;
                sealed_pii = Some(sealed);
                pii_digest = Some(digest);
            }
        }
        let mut event = StoredEvent {
            tenant_id,
            seq,
            id,
            occurred_at,
            actor_type: self.actor.kind().to_owned(),
            actor_id: self.actor.id(),
            impersonator_id: self.actor.impersonator(),
            ip,
            user_agent,
            request_id: self.context.request_id,
            action: self.action,
            target_type: self.target.as_ref().map(|t| t.kind.clone()),
            target_id: self.target.map(|t| t.id),
            outcome: self.outcome.as_str().to_owned(),
            // serde_json's map is ordered by key, so this text is canonical.
            details: details.to_string(),
            subject_id,
            pii_digest,
            pii: sealed_pii,
            prev_hash,
            hash: String::new(),
        };
        event.hash = event.compute_hash();
        Ok(event)
    }
}

/// Action names are `area.object.verb` (see `chain::valid_action`).
fn validate_action(action: &str) -> Result<(), AuditError> {
    if valid_action(action) {
        Ok(())
    } else {
        Err(AuditError::InvalidAction(action.to_owned()))
    }
}

/// One stored event, as read back from the database.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub tenant_id: TenantId,
    pub seq: i64,
    pub id: EventId,
    pub occurred_at: DateTime<Utc>,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub impersonator_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub outcome: String,
    /// The canonical text of the details object, as hashed; presented (and
    /// read back) as the object itself, see `audit::details`.
    #[serde(
        serialize_with = "super::details::serialize",
        deserialize_with = "super::details::deserialize"
    )]
    #[schema(value_type = Object)]
    pub details: String,
    /// The user whose personal data the event carries (form v2 only).
    pub subject_id: Option<String>,
    /// HMAC-SHA256 of the sealed personal data under the subject's key
    /// (form v2 only; absent when the subject was already erased).
    pub pii_digest: Option<String>,
    /// The sealed personal data (never serialised: readers open it).
    #[serde(skip)]
    pub pii: Option<Vec<u8>>,
    pub prev_hash: String,
    pub hash: String,
}

impl StoredEvent {
    /// What the hash covers: every column but `hash` and the sealed `pii`
    /// (see `stockade_core::audit::chain`).
    pub fn hashed(&self) -> Hashed<'_> {
        Hashed {
            tenant_id: self.tenant_id.0,
            seq: self.seq,
            id: self.id.0,
            occurred_at: self.occurred_at,
            actor_type: &self.actor_type,
            actor_id: self.actor_id.as_deref(),
            impersonator_id: self.impersonator_id.as_deref(),
            ip: self.ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
            request_id: self.request_id.as_deref(),
            action: &self.action,
            target_type: self.target_type.as_deref(),
            target_id: self.target_id.as_deref(),
            outcome: &self.outcome,
            details: &self.details,
            subject_id: self.subject_id.as_deref(),
            pii_digest: self.pii_digest.as_deref(),
            prev_hash: &self.prev_hash,
        }
    }

    /// The canonical encoding that is hashed (form v1, or v2 with a subject).
    pub fn canonical(&self) -> Vec<u8> {
        self.hashed().canonical()
    }

    /// A stored v2 row keeps `ip` and `user_agent` only sealed; in clear
    /// they would not be covered by its hash, so verify rejects them.
    pub fn clear_fields_in_v2(&self) -> bool {
        self.subject_id.is_some() && (self.ip.is_some() || self.user_agent.is_some())
    }

    /// SHA-256 over the previous hash and the canonical encoding, hex.
    pub fn compute_hash(&self) -> String {
        self.hashed().compute_hash()
    }

    /// Whether the stored `hash` is exactly (lower-case hex) the hash of
    /// this event's content; no allocation.
    pub fn hash_matches(&self) -> bool {
        self.hashed().hash_matches(&self.hash)
    }
}

/// The verdict on one tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    #[schema(value_type = String, format = Uuid)]
    pub tenant_id: TenantId,
    pub ok: bool,
    pub events_checked: u64,
    pub head_seq: i64,
    pub head_hash: String,
    /// The first sequence number at which the chain does not hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    fn sealed(prev: &str, seq: i64) -> StoredEvent {
        NewEvent::new(Actor::System, "tenancy.tenant.created")
            .target(Target::new("tenant", "t1"))
            .details(serde_json::json!({"b": 1, "a": "x"}))
            .seal(
                TenantId(uuid::Uuid::nil()),
                seq,
                EventId(uuid::Uuid::nil()),
                DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                prev.to_owned(),
                None,
            )
            .unwrap()
    }

    #[test]
    fn hash_covers_every_field_and_the_previous_hash() {
        let e = sealed(GENESIS_HASH, 1);
        assert_eq!(e.hash, e.compute_hash());
        assert!(e.hash_matches());
        let mut upper = e.clone();
        upper.hash = e.hash.to_uppercase();
        assert!(!upper.hash_matches());
        let mut legacy = Sha256::new();
        legacy.update(e.prev_hash.as_bytes());
        legacy.update(b"\n");
        legacy.update(e.canonical());
        assert_eq!(e.hash, hex::encode(legacy.finalize()));
        assert_eq!(e.details, r#"{"a":"x","b":1}"#);
        let mut other = e.clone();
        other.outcome = "failure".into();
        assert_ne!(other.compute_hash(), e.hash);
        assert!(!other.hash_matches());
        let mut other = e.clone();
        other.ip = Some("10.0.0.1".into());
        assert_ne!(other.compute_hash(), e.hash);
        let next = sealed(&e.hash, 2);
        let mut forged = next.clone();
        forged.prev_hash = GENESIS_HASH.into();
        assert_ne!(forged.compute_hash(), next.hash);
    }

    #[test]
    fn null_and_empty_string_encode_differently() {
        let e = sealed(GENESIS_HASH, 1);
        let mut a = e.clone();
        a.actor_id = None;
        let mut b = e.clone();
        b.actor_id = Some(String::new());
        assert_ne!(a.compute_hash(), b.compute_hash());
    }

    #[test]
    fn details_must_be_an_object() {
        let r = NewEvent::new(Actor::System, "a.b.c")
            .details(serde_json::json!([1]))
            .seal(
                TenantId::new(),
                1,
                EventId::new(),
                DateTime::from_timestamp(0, 0).unwrap(),
                GENESIS_HASH.into(),
                None,
            );
        assert!(matches!(r, Err(AuditError::InvalidDetails)));
    }

    #[test]
    fn events_without_a_subject_keep_form_v1() {
        let e = sealed(GENESIS_HASH, 1);
        let text = String::from_utf8(e.canonical()).unwrap();
        assert!(text.starts_with(r#"{"v":1,"#), "{text}");
        assert!(text.contains(r#""ip":null,"user_agent":null"#), "{text}");
        assert!(!text.contains("subject_id") && !text.contains("pii_digest"));
        // The exact v1 bytes (a chain written before v2 must still verify).
        let nil = "00000000-0000-0000-0000-000000000000";
        assert_eq!(
            text,
            format!(
                r#"{{"v":1,"tenant_id":"{nil}","seq":1,"id":"{nil}","occurred_at":"2023-11-14T22:13:20.000000Z","actor_type":"system","actor_id":null,"impersonator_id":null,"ip":null,"user_agent":null,"request_id":null,"action":"tenancy.tenant.created","target_type":"tenant","target_id":"t1","outcome":"success","details":"{{\"a\":\"x\",\"b\":1}}"}}"#
            )
        );
    }

    fn with_subject(state: &SubjectState) -> StoredEvent {
        let user = UserId(uuid::Uuid::from_u128(0xabcdef));
        NewEvent::new(
            Actor::User {
                id: user,
                impersonator: None,
            },
            "auth.login.failed",
        )
        .details(serde_json::json!({"email": "ann@example.test", "reason": "bad_password"}))
        .context(RequestContext {
            ip: Some("203.0.113.9".into()),
            user_agent: Some("Agent/1".into()),
            request_id: Some("r1".into()),
        })
        .seal(
            TenantId(uuid::Uuid::nil()),
            3,
            EventId(uuid::Uuid::nil()),
            DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            GENESIS_HASH.into(),
            Some(state),
        )
        .unwrap()
    }

    #[test]
    fn a_subject_event_hashes_only_a_digest_of_its_personal_data() {
        let key = zeroize::Zeroizing::new([5u8; 32]);
        let e = with_subject(&SubjectState::Live(key.clone()));
        assert_eq!(
            e.subject_id.as_deref(),
            Some("00000000-0000-0000-0000-000000abcdef")
        );
        assert_eq!((e.ip.as_deref(), e.user_agent.as_deref()), (None, None));
        assert_eq!(e.details, r#"{"reason":"bad_password"}"#);
        assert_eq!(e.request_id.as_deref(), Some("r1"));
        let text = String::from_utf8(e.canonical()).unwrap();
        assert!(text.starts_with(r#"{"v":2,"#), "{text}");
        for needle in [
            "ann@example.test",
            "203.0.113.9",
            "Agent/1",
            "\"ip\"",
            "user_agent",
        ] {
            assert!(!text.contains(needle), "{needle} in {text}");
        }
        assert_eq!(e.hash, e.compute_hash());
        // The sealed part opens with the key and matches the digest.
        let aad = pii::pii_aad(e.tenant_id, e.seq, &e.id.to_string());
        let opened = pii::open_pii(
            &key,
            &aad,
            e.pii.as_ref().unwrap(),
            e.pii_digest.as_ref().unwrap(),
        )
        .unwrap();
        assert_eq!(opened.ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(opened.details["email"], "ann@example.test");
        // Readers put ip and user agent back: the hash still recomputes;
        // changing the subject or the digest does not.
        let mut view = e.clone();
        view.ip = Some("203.0.113.9".into());
        view.user_agent = Some("Agent/1".into());
        assert_eq!(view.compute_hash(), e.hash);
        assert!(view.clear_fields_in_v2() && !e.clear_fields_in_v2());
        let mut forged = e.clone();
        forged.subject_id = None;
        assert_ne!(forged.compute_hash(), e.hash);
        let mut forged = e.clone();
        forged.pii_digest = Some("00".repeat(32));
        assert_ne!(forged.compute_hash(), e.hash);
    }

    #[test]
    fn an_erased_subject_keeps_no_personal_data() {
        let e = with_subject(&SubjectState::Erased);
        assert!(e.subject_id.is_some());
        assert_eq!((e.pii.as_ref(), e.pii_digest.as_ref()), (None, None));
        assert_eq!((e.ip.as_ref(), e.user_agent.as_ref()), (None, None));
        assert_eq!(e.details, r#"{"reason":"bad_password"}"#);
        assert_eq!(e.hash, e.compute_hash());
    }

    #[test]
    fn the_subject_is_the_user_actor_else_a_user_target() {
        let u = UserId::new();
        let api = NewEvent::new(
            Actor::ApiKey {
                id: "k".into(),
                creator: u,
            },
            "a.b.c",
        );
        assert_eq!(api.subject(), Some(u));
        let sys = NewEvent::new(Actor::System, "a.b.c").target(Target::new("user", u));
        assert_eq!(sys.subject(), Some(u));
        let other = NewEvent::new(Actor::System, "a.b.c").target(Target::new("tenant", u));
        assert_eq!(other.subject(), None);
    }
}
