//! Sessions' types bound to ids: the refresh token (its tenant id and
//! secret, its cookie format) and the session row. The rules that need no
//! id — the refresh policy, the step-up window, liveness — are pure rules of
//! `stockade_core::sessions::model`, re-exported here. This file does no
//! I/O and must never print a refresh token's secret.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::crypto::random;
use crate::ids::{SessionId, TenantId, UserId};

pub(crate) use stockade_core::sessions::model::session_status;
pub use stockade_core::sessions::model::{
    REFRESH_COOKIE, STEP_UP_MINUTES_RANGE, STEP_UP_WINDOW, SessionPolicy, SessionStatus,
    step_up_fresh, step_up_window,
};

/// A refresh token: the tenant it belongs to (so its lookup is tenant-scoped)
/// and 256 random bits. Encoded `<tenant id, 32 hex>.<secret, 43 base64url>`.
pub struct RefreshToken {
    tenant: TenantId,
    secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RefreshToken(tenant={}, ***)", self.tenant)
    }
}

impl RefreshToken {
    pub fn generate(tenant: TenantId) -> anyhow::Result<Self> {
        Ok(Self {
            tenant,
            secret: random::secret_bytes::<32>()?,
        })
    }

    /// Parses a cookie value; anything not exactly in the format is `None`.
    pub fn parse(value: &str) -> Option<Self> {
        if value.len() != 32 + 1 + 43 {
            return None;
        }
        let (tenant, secret) = value.split_once('.')?;
        if tenant.len() != 32
            || !tenant
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let tenant = uuid::Uuid::try_parse(tenant).ok()?;
        let bytes = Zeroizing::new(B64URL.decode(secret).ok()?);
        let secret: [u8; 32] = bytes.as_slice().try_into().ok()?;
        Some(Self {
            tenant: TenantId(tenant),
            secret: Zeroizing::new(secret),
        })
    }

    /// The cookie value. Secret: goes only into the `Set-Cookie` header.
    pub fn encode(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{}.{}",
            self.tenant.0.simple(),
            B64URL.encode(self.secret.as_slice())
        ))
    }

    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// What is stored: SHA-256 of the secret.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_slice()).into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Session {
    pub tenant_id: TenantId,
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub idle_timeout_secs: i64,
    pub absolute_expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    /// When the user last proved their password in this session.
    pub authenticated_at: Option<DateTime<Utc>>,
    /// The platform owner acting through this session (impersonation).
    pub impersonator_id: Option<UserId>,
    /// How the user signed in (RFC 8176 values, space-separated:
    /// `stockade_core::mfa::amr`); copied into each access token.
    pub amr: Option<String>,
}

impl Session {
    pub fn status(&self, now: DateTime<Utc>) -> SessionStatus {
        session_status(
            self.revoked_at,
            self.last_seen_at,
            self.idle_timeout_secs,
            self.absolute_expires_at,
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_round_trip_and_reject_anything_else() {
        let t = RefreshToken::generate(TenantId::new()).unwrap();
        let encoded = t.encode();
        let back = RefreshToken::parse(&encoded).unwrap();
        assert_eq!(back.tenant(), t.tenant());
        assert_eq!(back.hash(), t.hash());
        assert_ne!(RefreshToken::generate(t.tenant()).unwrap().hash(), t.hash());
        let s = encoded.as_str();
        for bad in [
            "",
            "x",
            &s[1..],
            &format!("{s}A"),
            &s.replace('.', "_"),
            &s.to_uppercase(),
            &format!("{}.{}", &s[..32], "!".repeat(43)),
        ] {
            assert!(RefreshToken::parse(bad).is_none(), "{bad}");
        }
        assert!(!format!("{t:?}").contains(&s[33..]));
    }
}
