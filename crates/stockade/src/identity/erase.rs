//! User deletion (SPEC §2.15): `DELETE /v1/me` and `stockade users delete`
//! both call [`erase_user`]. In one transaction it:
//!
//! - refuses (409 `identity.last_owner`, nothing changed) when the user is
//!   the last active owner of any tenant: a tenant always keeps an owner, so
//!   they hand ownership over (or the tenant is closed) first;
//! - destroys the user's audit subject key, keeping the erasure marker
//!   (`audit::pii`): their personal data in every past event becomes
//!   unreadable, while every chain still verifies;
//! - in each tenant they belong to: deletes their sessions (and refresh
//!   tokens), marks the API keys they created revoked and forgets the keys'
//!   last-used address, deletes the invitations that name them, deletes the
//!   membership, and appends `identity.user.deleted`;
//! - forgets their address in the login throttle and in the email outbox,
//!   deletes the user row (password hash, reset tokens and sign-in links go
//!   with it), and appends `identity.user.deleted` to the platform's chain.
//!
//! The commit bumps the liveness generation, so cached session checks end at
//! the next request. The events carry no personal data beyond the user id:
//! they are appended after the key is destroyed, so their address and user
//! agent are dropped.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::audit::{self, Actor, AuditError, NewEvent, RequestContext, Target};
use crate::clock::Clock;
use crate::db::{Db, DbError, TenantTx};
use crate::ids::{TenantId, UserId};
use crate::tenancy::members;

#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("no such user")]
    NotFound,
    #[error("the user is the last active owner of tenant `{0}`: make another member owner first")]
    LastOwner(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// What an erasure removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Erasure {
    pub user_id: UserId,
    /// The tenants whose membership was removed (each has the event).
    pub tenants: Vec<TenantId>,
    pub sessions_deleted: u64,
    pub api_keys_revoked: u64,
}

/// Erases `user` (see the module documentation). `by` is who asked (the
/// user themself, or `Actor::System` for the CLI).
pub async fn erase_user(
    db: &Db,
    clock: &dyn Clock,
    user: UserId,
    by: Actor,
    context: RequestContext,
) -> Result<Erasure, EraseError> {
    let now = clock.now();
    let mut tx = db.global_tx().await?;
    let found: Option<(String, String)> = tx
        .fetch_optional(
            "SELECT email_key, email FROM users WHERE id = $1",
            vec![user.into()],
        )
        .await?;
    let (email_key, email) = found.ok_or(EraseError::NotFound)?;
    audit::pii::erase_subject_key(&mut tx, user, now).await?;
    tx.execute(
        "DELETE FROM login_throttle WHERE email_key = $1",
        vec![email_key.clone().into()],
    )
    .await?;
    // The outbox keeps no message body in clear; its address goes too, and
    // a message still queued to it is not sent.
    tx.execute(
        "UPDATE email_outbox SET to_address = '', \
         status = CASE WHEN status = 'queued' THEN 'failed' ELSE status END \
         WHERE lower(to_address) = $1 OR to_address = $2",
        vec![email_key.clone().into(), email.into()],
    )
    .await?;
    // A sign-up waiting for its link under the same address goes too.
    tx.execute(
        "DELETE FROM email_verifications WHERE email_key = $1",
        vec![email_key.clone().into()],
    )
    .await?;
    let mut utx = tx.for_user(user).await?;
    let memberships = crate::identity::memberships_in(&mut utx).await?;
    let mut tx = utx.scoped(TenantId::PLATFORM).await?;
    let mut report = Erasure {
        user_id: user,
        tenants: Vec::new(),
        sessions_deleted: 0,
        api_keys_revoked: 0,
    };
    for m in &memberships {
        tx = tx.rescope(m.tenant_id).await?;
        members::lock_members(&mut tx).await?;
        let active_owner = m.role == "owner" && m.status == "active";
        if active_owner && members::other_active_owners(&mut tx, user).await? <= 0 {
            return Err(EraseError::LastOwner(m.slug.clone()));
        }
        let (sessions, keys) = leave_tenant(&mut tx, user, &email_key, now).await?;
        report.sessions_deleted += sessions;
        report.api_keys_revoked += keys;
        report.tenants.push(m.tenant_id);
        let event = deleted_event(&by, user, &context).details(serde_json::json!({
            "role": m.role,
            "sessions_deleted": sessions,
            "api_keys_revoked": keys,
        }));
        audit::append(&mut tx, clock, event).await?;
    }
    tx = tx.rescope(TenantId::PLATFORM).await?;
    // `users` is global: the tenant (`$1`) plays no part here.
    tx.execute(
        "DELETE FROM users WHERE id = $2 AND $1 IS NOT NULL",
        vec![user.into()],
    )
    .await?;
    let event = deleted_event(&by, user, &context).details(serde_json::json!({
        "tenants": report.tenants.len(),
        "sessions_deleted": report.sessions_deleted,
        "api_keys_revoked": report.api_keys_revoked,
    }));
    audit::append(&mut tx, clock, event).await?;
    tx.commit().await?;
    Ok(report)
}

fn deleted_event(by: &Actor, user: UserId, context: &RequestContext) -> NewEvent {
    NewEvent::new(by.clone(), "identity.user.deleted")
        .target(Target::new("user", user))
        .context(context.clone())
}

/// Removes `user` from the transaction's tenant: sessions and their refresh
/// tokens deleted, API keys revoked (their last-used address forgotten),
/// invitations naming them deleted, membership deleted. Returns (sessions
/// deleted, API keys revoked).
async fn leave_tenant(
    tx: &mut TenantTx,
    user: UserId,
    email_key: &str,
    now: DateTime<Utc>,
) -> Result<(u64, u64), DbError> {
    tx.execute(
        "DELETE FROM refresh_tokens WHERE tenant_id = $1 AND session_id IN \
         (SELECT id FROM sessions WHERE tenant_id = $1 AND user_id = $2)",
        vec![user.into()],
    )
    .await?;
    let sessions = tx
        .execute(
            "DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2",
            vec![user.into()],
        )
        .await?;
    let keys = crate::apikeys::revoke_created_by(tx, user, now).await?;
    tx.execute(
        "UPDATE api_keys SET last_used_ip = NULL WHERE tenant_id = $1 AND created_by = $2",
        vec![user.into()],
    )
    .await?;
    tx.execute(
        "DELETE FROM invitations WHERE tenant_id = $1 AND (accepted_by = $2 OR email_key = $3)",
        vec![user.into(), email_key.into()],
    )
    .await?;
    tx.execute(
        "DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2",
        vec![user.into()],
    )
    .await?;
    Ok((sessions, keys))
}
