//! Session and refresh-token queries: creating a session with its first
//! refresh token, revoking and listing sessions. The rotation of a refresh
//! token with its reuse detection is `store/rotation.rs`; the per-request
//! check that a session is live is `store/check.rs`. Queries only: the HTTP
//! side (cookies, tokens, status codes) is `routes.rs`, the caching of the
//! check `cache.rs`.

use chrono::{DateTime, Duration, Utc};

use super::model::{RefreshToken, Session, SessionPolicy, SessionStatus};
use crate::audit::RequestContext;
use crate::clock::Clock;
use crate::db::{DbError, TenantTx, UserTx};
use crate::ids::{SessionId, TenantId, UserId};
use stockade_core::mfa::amr::{self, Amr};

mod check;
mod rotation;

pub use check::{Live, Refusal, check};
pub use rotation::{Sighting, look_up, rotate, rotate_seen};
pub(crate) use rotation::{keeps_writes, rotate_in};

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Unknown, expired, or its session is no longer live.
    #[error("invalid refresh token")]
    Invalid,
    /// A rotated token was presented again: the session is now revoked.
    #[error("refresh token reused")]
    Reused,
    /// The tenant's IP allowlist refuses the client (its recorded address,
    /// `RequestContext::ip`): nothing was rotated or issued.
    #[error("the tenant's IP allowlist refuses this client")]
    AddressRefused {
        tenant: TenantId,
        user: UserId,
        impersonator: Option<UserId>,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("{0}")]
    Internal(String),
}

/// The outcome of a successful refresh.
#[derive(Debug)]
pub struct Rotated {
    pub session: Session,
    pub token: RefreshToken,
}

/// Creates a session and its first refresh token inside `tx`, for a user
/// who has just proved their password (and, when `amr` says so, a second
/// factor).
pub async fn create(
    tx: &mut TenantTx,
    clock: &dyn Clock,
    user: UserId,
    policy: &SessionPolicy,
    context: &RequestContext,
    amr: &[Amr],
) -> Result<(Session, RefreshToken), RefreshError> {
    let (session, token) = insert(tx, clock, user, true, None, context, amr).await?;
    let token = match token {
        Some(t) => t,
        None => issue_refresh(tx, session.id, clock.now(), policy).await?,
    };
    Ok((session, token))
}

/// Creates a session without a fresh password proof (switching tenant,
/// a sign-in link): sensitive actions in it need a re-authentication
/// first. `amr` says how the user signed in (a switch carries the current
/// session's).
pub async fn create_unproven(
    tx: &mut TenantTx,
    clock: &dyn Clock,
    user: UserId,
    policy: &SessionPolicy,
    context: &RequestContext,
    amr: &[Amr],
) -> Result<(Session, RefreshToken), RefreshError> {
    let (session, _) = insert(tx, clock, user, false, None, context, amr).await?;
    let token = issue_refresh(tx, session.id, clock.now(), policy).await?;
    Ok((session, token))
}

/// Creates a 15-minute session of `user` driven by platform owner
/// `impersonator`: no refresh token, so it cannot be extended.
pub async fn create_impersonation(
    tx: &mut TenantTx,
    clock: &dyn Clock,
    user: UserId,
    impersonator: UserId,
    context: &RequestContext,
) -> Result<Session, RefreshError> {
    let (session, _) = insert(tx, clock, user, false, Some(impersonator), context, &[]).await?;
    Ok(session)
}

/// Impersonation sessions end after this, whatever the tenant's settings.
pub const IMPERSONATION_TTL: Duration = Duration::minutes(15);

async fn insert(
    tx: &mut TenantTx,
    clock: &dyn Clock,
    user: UserId,
    proved_password: bool,
    impersonator: Option<UserId>,
    context: &RequestContext,
    amr: &[Amr],
) -> Result<(Session, Option<RefreshToken>), RefreshError> {
    let now = clock.now();
    let settings = crate::tenancy::settings::load(tx).await?;
    let (idle, absolute_end) = match impersonator {
        Some(_) => (IMPERSONATION_TTL.num_seconds(), now + IMPERSONATION_TTL),
        None => (settings.session_idle_secs, now + settings.absolute()),
    };
    let session: Session = tx
        .fetch_one(
            "INSERT INTO sessions (tenant_id, id, user_id, created_at, last_seen_at, ip, user_agent, \
             idle_timeout_secs, absolute_expires_at, authenticated_at, impersonator_id, amr) \
             VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *",
            vec![
                SessionId::new().into(),
                user.into(),
                now.into(),
                context.ip.clone().into(),
                context.user_agent.clone().into(),
                idle.into(),
                absolute_end.into(),
                proved_password.then_some(now).into(),
                impersonator.into(),
                (!amr.is_empty()).then(|| amr::encode(amr)).into(),
            ],
        )
        .await?;
    Ok((session, None))
}

/// Records a fresh password proof for a session (step-up).
pub async fn mark_authenticated(
    tx: &mut TenantTx,
    session: SessionId,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE sessions SET authenticated_at = $3 WHERE tenant_id = $1 AND id = $2",
        vec![session.into(), now.into()],
    )
    .await?;
    Ok(())
}

/// Records how the user has now proved themselves in this session (a
/// second factor at step-up joins the methods of the sign-in).
pub async fn set_amr(
    tx: &mut TenantTx,
    session: SessionId,
    methods: &[Amr],
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE sessions SET amr = $3 WHERE tenant_id = $1 AND id = $2",
        vec![session.into(), amr::encode(methods).into()],
    )
    .await?;
    Ok(())
}

async fn issue_refresh(
    tx: &mut TenantTx,
    session: SessionId,
    now: DateTime<Utc>,
    policy: &SessionPolicy,
) -> Result<RefreshToken, RefreshError> {
    let token =
        RefreshToken::generate(tx.tenant()).map_err(|e| RefreshError::Internal(e.to_string()))?;
    tx.execute(
        "INSERT INTO refresh_tokens (tenant_id, token_hash, session_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
        vec![
            token.hash().into(),
            session.into(),
            now.into(),
            (now + policy.refresh_ttl).into(),
        ],
    )
    .await?;
    Ok(token)
}

async fn load(tx: &mut TenantTx, id: SessionId) -> Result<Option<Session>, DbError> {
    tx.fetch_optional(
        "SELECT * FROM sessions WHERE tenant_id = $1 AND id = $2",
        vec![id.into()],
    )
    .await
}

/// Revokes one session of the transaction's tenant (its refresh tokens die
/// with it). Returns whether a live session was revoked.
pub async fn revoke(
    tx: &mut TenantTx,
    id: SessionId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let n = tx
        .execute(
            "UPDATE sessions SET revoked_at = $3, revoked_reason = $4 \
             WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
            vec![id.into(), now.into(), reason.into()],
        )
        .await?;
    tx.execute(
        "DELETE FROM refresh_tokens WHERE tenant_id = $1 AND session_id = $2",
        vec![id.into()],
    )
    .await?;
    Ok(n > 0)
}

/// Revokes every live session of the transaction's user in every tenant,
/// except `keep`. Returns how many were revoked.
pub async fn revoke_all_for_user(
    tx: &mut UserTx,
    keep: Option<SessionId>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<u64, DbError> {
    let keep = keep.map(|k| k.0).unwrap_or_default();
    tx.execute(
        "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 \
         WHERE user_id = $1 AND revoked_at IS NULL AND id <> $4",
        vec![now.into(), reason.into(), keep.into()],
    )
    .await
}

/// The live sessions of `user` in the transaction's tenant, newest first.
pub async fn list_for_user(
    tx: &mut TenantTx,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<Vec<Session>, DbError> {
    let all: Vec<Session> = tx
        .fetch_all(
            "SELECT * FROM sessions WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL \
             ORDER BY created_at DESC, id DESC",
            vec![user.into()],
        )
        .await?;
    Ok(all
        .into_iter()
        .filter(|s| s.status(now) == SessionStatus::Active)
        .collect())
}
