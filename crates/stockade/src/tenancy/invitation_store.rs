//! Invitations at rest: the token (its tenant and 256 secret bits, only the
//! SHA-256 stored), the states an invitation goes through and the refusal
//! each answers, its row, and the queries the routes and the new-account
//! path share — finding a pending invitation by token or id, claiming it
//! once (after checking its inviter may still grant its role), inserting
//! one. No HTTP handling and no audit: `invitations.rs` answers requests,
//! `invitation_accounts.rs` creates accounts.

use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::db::{DbError, TenantTx};
use crate::http::ApiError;
use crate::ids::{TenantId, UserId};
use crate::sessions::RefreshToken;

/// How long an invitation stays valid.
pub const INVITATION_TTL: Duration = Duration::days(7);

/// An invitation token: its tenant and 256 secret bits, in the refresh-token
/// encoding (`<tenant id, 32 hex>.<secret, 43 base64url>`). Only the SHA-256
/// of the secret is stored.
pub struct InvitationToken(RefreshToken);

impl std::fmt::Debug for InvitationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InvitationToken(tenant={}, ***)", self.0.tenant())
    }
}

impl InvitationToken {
    pub fn generate(tenant: TenantId) -> anyhow::Result<Self> {
        RefreshToken::generate(tenant).map(Self)
    }

    /// Anything not exactly in the format is `None`.
    pub fn parse(value: &str) -> Option<Self> {
        RefreshToken::parse(value.trim()).map(Self)
    }

    /// The token as sent. Secret.
    pub fn encode(&self) -> Zeroizing<String> {
        self.0.encode()
    }

    pub fn tenant(&self) -> TenantId {
        self.0.tenant()
    }

    /// What is stored: SHA-256 of the secret.
    pub fn hash(&self) -> [u8; 32] {
        self.0.hash()
    }
}

/// Where an invitation stands at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationState {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

impl InvitationState {
    /// Accepted wins over revoked, which wins over expired.
    pub fn of(
        accepted_at: Option<DateTime<Utc>>,
        revoked_at: Option<DateTime<Utc>>,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Self {
        if accepted_at.is_some() {
            Self::Accepted
        } else if revoked_at.is_some() {
            Self::Revoked
        } else if now >= expires_at {
            Self::Expired
        } else {
            Self::Pending
        }
    }

    /// The refusal for a token in this state (`None` while pending).
    fn refusal(self) -> Option<ApiError> {
        let (code, detail) = match self {
            Self::Pending => return None,
            Self::Accepted => (
                "tenancy.invitation_used",
                "this invitation has already been accepted",
            ),
            Self::Revoked => (
                "tenancy.invitation_revoked",
                "this invitation has been revoked: ask for a new one",
            ),
            Self::Expired => (
                "tenancy.invitation_expired",
                "this invitation has expired: ask for a new one",
            ),
        };
        Some(ApiError::new(StatusCode::GONE, code).with_detail(detail))
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct Row {
    pub(super) id: Uuid,
    pub(super) email: String,
    pub(super) email_key: String,
    pub(super) role: String,
    pub(super) invited_by: UserId,
    pub(super) created_at: DateTime<Utc>,
    pub(super) expires_at: DateTime<Utc>,
    pub(super) accepted_at: Option<DateTime<Utc>>,
    pub(super) revoked_at: Option<DateTime<Utc>>,
}

impl Row {
    pub(super) fn state(&self, now: DateTime<Utc>) -> InvitationState {
        InvitationState::of(self.accepted_at, self.revoked_at, self.expires_at, now)
    }
}

pub(super) const COLUMNS: &str =
    "id, email, email_key, role, invited_by, created_at, expires_at, accepted_at, revoked_at";

/// An invitation whose inviter may no longer grant it.
pub(super) fn revoked() -> ApiError {
    ApiError::new(StatusCode::GONE, "tenancy.invitation_revoked")
        .with_detail("this invitation is no longer valid: ask for a new one")
}

pub(super) fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "tenancy.invitation_not_found")
        .with_detail("no such invitation")
}

/// The invitation `token` names, if it is still pending.
pub(super) async fn load_pending(
    tx: &mut TenantTx,
    token: &InvitationToken,
    now: DateTime<Utc>,
) -> Result<Row, ApiError> {
    let row = find_by_token(tx, token).await?.ok_or_else(not_found)?;
    match row.state(now).refusal() {
        Some(refused) => Err(refused),
        None => Ok(row),
    }
}

/// The invitation `id` (a verified new account accepting it), if it is
/// still pending.
pub(super) async fn load_pending_by_id(
    tx: &mut TenantTx,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Row, ApiError> {
    let row = find_by_id(tx, id).await?.ok_or_else(not_found)?;
    match row.state(now).refusal() {
        Some(refused) => Err(refused),
        None => Ok(row),
    }
}

/// The invitation `id` of this tenant, whatever its state.
pub(super) async fn find_by_id(tx: &mut TenantTx, id: Uuid) -> Result<Option<Row>, DbError> {
    tx.fetch_optional(
        &format!("SELECT {COLUMNS} FROM invitations WHERE tenant_id = $1 AND id = $2"),
        vec![id.into()],
    )
    .await
}

async fn find_by_token(tx: &mut TenantTx, token: &InvitationToken) -> Result<Option<Row>, DbError> {
    tx.fetch_optional(
        &format!("SELECT {COLUMNS} FROM invitations WHERE tenant_id = $1 AND token_hash = $2"),
        vec![token.hash().into()],
    )
    .await
}

/// Marks `inv` accepted by `user`, after checking the inviter may still
/// grant its role. Of two concurrent acceptances exactly one claims it.
pub(super) async fn claim(
    tx: &mut TenantTx,
    inv: &Row,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    if !inviter_may_still_grant(tx, inv).await? {
        return Err(revoked());
    }
    let n = tx
        .execute(
            "UPDATE invitations SET accepted_at = $3, accepted_by = $4 \
             WHERE tenant_id = $1 AND id = $2 AND accepted_at IS NULL AND revoked_at IS NULL",
            vec![inv.id.into(), now.into(), user.into()],
        )
        .await?;
    if n == 0 {
        // Accepted or revoked since it was read: say which.
        let state = tx
            .fetch_optional::<Row>(
                &format!("SELECT {COLUMNS} FROM invitations WHERE tenant_id = $1 AND id = $2"),
                vec![inv.id.into()],
            )
            .await?
            .map_or(InvitationState::Revoked, |r| r.state(now));
        return Err(state.refusal().unwrap_or_else(not_found));
    }
    Ok(())
}

/// Whether the inviter is still an active member who may manage members
/// and holds every permission of the invited role (which must still exist).
pub(super) async fn inviter_may_still_grant(tx: &mut TenantTx, inv: &Row) -> Result<bool, DbError> {
    let inviter: Option<(String,)> = tx
        .fetch_optional(
            "SELECT m.role FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.tenant_id = $1 AND m.user_id = $2 AND m.status = 'active' \
             AND u.status = 'active'",
            vec![inv.invited_by.into()],
        )
        .await?;
    let Some((inviter_role,)) = inviter else {
        return Ok(false);
    };
    let Some(held) = crate::rbac::role_permissions(tx, &inviter_role).await? else {
        return Ok(false);
    };
    let Some(granted) = crate::rbac::role_permissions(tx, &inv.role).await? else {
        return Ok(false);
    };
    Ok(held.allows("members:manage", None) && held.covers(&granted))
}

/// Whether an address already belongs to a member (active or not).
pub(super) async fn is_member(tx: &mut TenantTx, email_key: &str) -> Result<bool, DbError> {
    let row: Option<(UserId,)> = tx
        .fetch_optional(
            "SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.tenant_id = $1 AND u.email_key = $2",
            vec![email_key.into()],
        )
        .await?;
    Ok(row.is_some())
}

pub(super) async fn insert(
    tx: &mut TenantTx,
    row: &Row,
    token: &InvitationToken,
) -> Result<(), ApiError> {
    tx.execute(
        "INSERT INTO invitations (tenant_id, id, token_hash, email, email_key, role, invited_by, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        vec![
            row.id.into(),
            token.hash().into(),
            row.email.as_str().into(),
            row.email_key.as_str().into(),
            row.role.as_str().into(),
            row.invited_by.into(),
            row.created_at.into(),
            row.expires_at.into(),
        ],
    )
    .await
    .map_err(|e| match e {
        // Another invitation for the address was created concurrently.
        DbError::Unique(_) => ApiError::new(StatusCode::CONFLICT, "tenancy.invitation_pending")
            .with_detail("an invitation for this address was just created"),
        other => other.into(),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_tenant_and_hide_their_secret() {
        let tenant = TenantId::new();
        let t = InvitationToken::generate(tenant).unwrap();
        let encoded = t.encode();
        let back = InvitationToken::parse(&encoded).unwrap();
        assert_eq!(back.tenant(), tenant);
        assert_eq!(back.hash(), t.hash());
        assert_ne!(InvitationToken::generate(tenant).unwrap().hash(), t.hash());
        assert!(InvitationToken::parse("").is_none());
        assert!(InvitationToken::parse(&encoded[1..]).is_none());
        assert!(!format!("{t:?}").contains(&encoded[33..]));
    }

    #[test]
    fn states() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let later = now + INVITATION_TTL;
        let s = InvitationState::of;
        assert_eq!(s(None, None, later, now), InvitationState::Pending);
        assert_eq!(s(None, None, now, now), InvitationState::Expired);
        assert_eq!(s(None, Some(now), later, now), InvitationState::Revoked);
        assert_eq!(s(Some(now), Some(now), now, now), InvitationState::Accepted);
        assert!(InvitationState::Pending.refusal().is_none());
        for (state, code) in [
            (InvitationState::Accepted, "tenancy.invitation_used"),
            (InvitationState::Revoked, "tenancy.invitation_revoked"),
            (InvitationState::Expired, "tenancy.invitation_expired"),
        ] {
            let e = state.refusal().unwrap();
            assert_eq!((e.status_code(), e.code()), (StatusCode::GONE, code));
        }
    }
}
