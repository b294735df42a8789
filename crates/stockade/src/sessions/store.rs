//! Session and refresh-token queries.

use chrono::{DateTime, Duration, Utc};

use super::model::{RefreshToken, Session, SessionPolicy, SessionStatus, session_status};
use crate::audit::{self, Actor, NewEvent, Outcome, RequestContext, Target};
use crate::clock::Clock;
use crate::db::{Db, DbError, TenantTx, UserTx};
use crate::http::client_ip::ClientAddr;
use crate::ids::{SessionId, TenantId, UserId};

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
/// who has just proved their password.
pub async fn create(
    tx: &mut TenantTx,
    clock: &dyn Clock,
    user: UserId,
    policy: &SessionPolicy,
    context: &RequestContext,
) -> Result<(Session, RefreshToken), RefreshError> {
    let (session, token) = insert(tx, clock, user, true, None, context).await?;
    let token = match token {
        Some(t) => t,
        None => issue_refresh(tx, session.id, clock.now(), policy).await?,
    };
    Ok((session, token))
}

/// Creates a session without a fresh password proof (switching tenant):
/// sensitive actions in it need a re-authentication first.
pub async fn create_unproven(
    tx: &mut TenantTx,
    clock: &dyn Clock,
    user: UserId,
    policy: &SessionPolicy,
    context: &RequestContext,
) -> Result<(Session, RefreshToken), RefreshError> {
    let (session, _) = insert(tx, clock, user, false, None, context).await?;
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
    let (session, _) = insert(tx, clock, user, false, Some(impersonator), context).await?;
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
             idle_timeout_secs, absolute_expires_at, authenticated_at, impersonator_id) \
             VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
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

/// What [`look_up`] read of a presented refresh token and its session.
#[derive(Debug)]
pub struct Sighting {
    session: Session,
    /// When the token was rotated, if it already was (a reuse).
    used_at: Option<DateTime<Utc>>,
    /// The moment the rotation is judged at, by the read and the writes.
    now: DateTime<Utc>,
    /// The tenant's IP allowlist, read with the token.
    ip_allowlist: Vec<ipnet::IpNet>,
}

/// Whether the tenant's `allowlist` admits the client of `context` to
/// `session`; a context with no (readable) address is an unknown client.
fn admits(
    allowlist: &[ipnet::IpNet],
    session: &Session,
    context: &RequestContext,
) -> Result<(), RefreshError> {
    let client = ClientAddr::from_recorded(context.ip.as_deref());
    if crate::tenancy::settings::ip_allowed(allowlist, client) {
        return Ok(());
    }
    Err(RefreshError::AddressRefused {
        tenant: session.tenant_id,
        user: session.user_id,
        impersonator: session.impersonator_id,
    })
}

/// What a presentation of an already rotated token is judged on.
struct Reuse<'a> {
    hash: [u8; 32],
    session: SessionId,
    now: DateTime<Utc>,
    ip_allowlist: &'a [ipnet::IpNet],
}

#[derive(sqlx::FromRow)]
struct SightingRow {
    #[sqlx(flatten)]
    session: Session,
    token_expires_at: DateTime<Utc>,
    token_used_at: Option<DateTime<Utc>>,
    ip_allowlist: Option<String>,
}

/// Rotates a refresh token: the presented one dies, a new one is issued.
/// Exactly one of several concurrent presentations claims the token; under
/// the strict policy the others revoke the session (indistinguishable from a
/// stolen token being replayed) and write `sessions.refresh.reused`.
///
/// One write transaction of few statements, since on SQLite it holds the
/// single writer: one read of token and session ([`look_up`]), then
/// [`rotate_seen`]: touch the session, claim the token, insert its
/// successor. The writes are conditional (the token only if still unused,
/// the session only if still as read), so they stay right when the read is
/// stale, as it can be on PostgreSQL, where concurrent transactions run and
/// each statement sees what committed before it.
pub async fn rotate(
    db: &Db,
    clock: &dyn Clock,
    presented: &RefreshToken,
    policy: &SessionPolicy,
    context: &RequestContext,
) -> Result<Rotated, RefreshError> {
    let mut tx = db.tenant_tx(presented.tenant()).await?;
    let rotated = rotate_in(&mut tx, clock, presented, policy, context).await;
    finish(tx, rotated).await
}

/// [`rotate`] inside a transaction the caller owns. The caller commits when
/// [`keeps_writes`] says so and rolls back otherwise (the group commit of
/// `sessions::rotation_batch` runs several in one transaction).
pub(crate) async fn rotate_in(
    tx: &mut TenantTx,
    clock: &dyn Clock,
    presented: &RefreshToken,
    policy: &SessionPolicy,
    context: &RequestContext,
) -> Result<Rotated, RefreshError> {
    let seen = look_up(tx, presented, clock.now()).await?;
    rotate_seen_in(tx, clock, presented, seen, policy, context).await
}

/// Whether the writes behind a rotation's outcome must be committed: a new
/// token, or a reuse (the revocation and its audit event). Any other error
/// leaves nothing worth keeping.
pub(crate) fn keeps_writes(outcome: &Result<Rotated, RefreshError>) -> bool {
    matches!(outcome, Ok(_) | Err(RefreshError::Reused))
}

/// Commits `tx` when the outcome keeps its writes, else drops (rolls back).
async fn finish(
    tx: TenantTx,
    outcome: Result<Rotated, RefreshError>,
) -> Result<Rotated, RefreshError> {
    if keeps_writes(&outcome) {
        tx.commit().await?;
    }
    outcome
}

/// The read of [`rotate`]: the presented token's session, refused at once if
/// the token is unknown or expired, or the session is not active or is an
/// impersonation. Public
/// (hidden) so tests can let other writes in before [`rotate_seen`].
#[doc(hidden)]
pub async fn look_up(
    tx: &mut TenantTx,
    presented: &RefreshToken,
    now: DateTime<Utc>,
) -> Result<Sighting, RefreshError> {
    let row: Option<SightingRow> = tx
        .fetch_optional(
            "SELECT s.*, t.expires_at AS token_expires_at, t.used_at AS token_used_at, \
             ts.ip_allowlist \
             FROM refresh_tokens t JOIN sessions s \
             ON s.tenant_id = t.tenant_id AND s.id = t.session_id \
             LEFT JOIN tenant_settings ts ON ts.tenant_id = t.tenant_id \
             WHERE t.tenant_id = $1 AND t.token_hash = $2",
            vec![presented.hash().into()],
        )
        .await?;
    let Some(row) = row else {
        return Err(RefreshError::Invalid);
    };
    if row.token_expires_at <= now || row.session.status(now) != SessionStatus::Active {
        return Err(RefreshError::Invalid);
    }
    // An impersonation session is never extended: it has no refresh token,
    // and one that appeared anyway (a bug, a hand-written row) is refused
    // before anything is rotated.
    if row.session.impersonator_id.is_some() {
        return Err(RefreshError::Invalid);
    }
    Ok(Sighting {
        session: row.session,
        used_at: row.token_used_at,
        now,
        ip_allowlist: row
            .ip_allowlist
            .as_deref()
            .map(crate::tenancy::settings::parse_allowlist)
            .unwrap_or_default(),
    })
}

/// The writes of [`rotate`], in `tx`: touch the session, claim the token,
/// insert its successor, commit; or, for a token already used, [`reused`].
/// Nothing here trusts `seen` to be current.
#[doc(hidden)]
pub async fn rotate_seen(
    mut tx: TenantTx,
    clock: &dyn Clock,
    presented: &RefreshToken,
    seen: Sighting,
    policy: &SessionPolicy,
    context: &RequestContext,
) -> Result<Rotated, RefreshError> {
    let rotated = rotate_seen_in(&mut tx, clock, presented, seen, policy, context).await;
    finish(tx, rotated).await
}

/// [`rotate_seen`] without the commit (see [`rotate_in`]).
async fn rotate_seen_in(
    tx: &mut TenantTx,
    clock: &dyn Clock,
    presented: &RefreshToken,
    seen: Sighting,
    policy: &SessionPolicy,
    context: &RequestContext,
) -> Result<Rotated, RefreshError> {
    let now = seen.now;
    let hash = presented.hash();
    let session_id = seen.session.id;
    if seen.used_at.is_none() {
        // Nothing is rotated for a client the tenant's allowlist refuses
        // (a rotated token presented again is still a reuse, below).
        admits(&seen.ip_allowlist, &seen.session, context)?;
        // The session first, then the token: the order of `revoke` (sessions,
        // then refresh_tokens), so a concurrent sign-out on PostgreSQL waits
        // for us or we for it, and neither deadlocks.
        let Some(session) = touch(tx, seen.session, now, context).await? else {
            return Err(RefreshError::Invalid);
        };
        // The authority on "not used yet": of concurrent claims exactly one
        // updates a row (SQLite: one writer; PostgreSQL: the row lock, and
        // the loser re-evaluates `used_at IS NULL` after the winner commits).
        let claimed = tx
            .execute(
                "UPDATE refresh_tokens SET used_at = $3 WHERE tenant_id = $1 \
                 AND token_hash = $2 AND used_at IS NULL",
                vec![hash.into(), now.into()],
            )
            .await?;
        if claimed == 1 {
            let token = issue_refresh(tx, session.id, now, policy).await?;
            return Ok(Rotated { session, token });
        }
    }
    let reuse = Reuse {
        hash,
        session: session_id,
        now,
        ip_allowlist: &seen.ip_allowlist,
    };
    reused(tx, clock, reuse, policy, context).await
}

/// Records that the session was seen now, from where, if it is still
/// active; returns it, or `None` (nothing written) if it no longer is.
///
/// A usage stamp (`execute_bookkeeping`): a cached session check computed
/// from the older `last_seen_at` can only end *sooner* than the session, so
/// a refresh does not empty every cached check. Revocation never comes this
/// way.
async fn touch(
    tx: &mut TenantTx,
    seen: Session,
    now: DateTime<Utc>,
    context: &RequestContext,
) -> Result<Option<Session>, RefreshError> {
    const TOUCH: &str = "UPDATE sessions SET last_seen_at = $3, ip = $4, user_agent = $5 \
                         WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL";
    const TOUCH_AS_SEEN: &str = "UPDATE sessions SET last_seen_at = $3, ip = $4, user_agent = $5 \
                                 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL \
                                 AND last_seen_at = $6";
    let args = |s: &Session| {
        vec![
            s.id.into(),
            now.into(),
            context.ip.clone().into(),
            context.user_agent.clone().into(),
            s.last_seen_at.into(),
        ]
    };
    // Fast path: the row is exactly as `look_up` read it (not revoked, same
    // last sight; the timeouts never change), so its status at `now` is the
    // one `look_up` computed.
    if tx.execute_bookkeeping(TOUCH_AS_SEEN, args(&seen)).await? == 1 {
        return Ok(Some(seen));
    }
    // It changed since (a sibling rotation, a revocation): judge it afresh.
    // Between this read and the write only a revocation can make it less
    // live (`last_seen_at` only moves forward), which `revoked_at IS NULL`
    // in the write catches.
    let Some(current) = load(tx, seen.id).await? else {
        return Ok(None);
    };
    if current.status(now) != SessionStatus::Active {
        return Ok(None);
    }
    let mut fresh = args(&current);
    fresh.pop();
    Ok((tx.execute_bookkeeping(TOUCH, fresh).await? == 1).then_some(current))
}

/// A token presented after it was rotated. Inside the grace window a second
/// tab gets a sibling token; otherwise the session is revoked and
/// `sessions.refresh.reused` written, in the same transaction (the caller
/// commits: [`keeps_writes`]).
async fn reused(
    tx: &mut TenantTx,
    clock: &dyn Clock,
    reuse: Reuse<'_>,
    policy: &SessionPolicy,
    context: &RequestContext,
) -> Result<Rotated, RefreshError> {
    let Reuse {
        hash,
        session,
        now,
        ip_allowlist,
    } = reuse;
    // Read again: the sighting may predate a concurrent winner (or a
    // revocation that deleted the token).
    let used_at: Option<(Option<DateTime<Utc>>,)> = tx
        .fetch_optional(
            "SELECT used_at FROM refresh_tokens WHERE tenant_id = $1 AND token_hash = $2",
            vec![hash.into()],
        )
        .await?;
    let Some((Some(used_at),)) = used_at else {
        return Err(RefreshError::Invalid);
    };
    let session = load(tx, session).await?.ok_or(RefreshError::Invalid)?;
    if session.status(now) != SessionStatus::Active {
        return Err(RefreshError::Invalid);
    }
    if policy.reuse_grace > Duration::zero() && now - used_at <= policy.reuse_grace {
        // A second tab inside the grace window: a sibling token, if the
        // tenant's allowlist admits it.
        admits(ip_allowlist, &session, context)?;
        let token = issue_refresh(tx, session.id, now, policy).await?;
        return Ok(Rotated { session, token });
    }
    revoke(tx, session.id, "refresh_reused", now).await?;
    audit::append(
        tx,
        clock,
        NewEvent::new(
            Actor::User {
                id: session.user_id,
                impersonator: None,
            },
            "sessions.refresh.reused",
        )
        .target(Target::new("session", session.id))
        .outcome(Outcome::Denied)
        .details(serde_json::json!({ "first_used_at": used_at }))
        .context(context.clone()),
    )
    .await?;
    Err(RefreshError::Reused)
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

/// What the per-request check learns about a live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub role: String,
    /// The tenant's slug (subdomain routing compares it with the host).
    pub tenant_slug: String,
    /// When the user last proved their password in this session.
    pub authenticated_at: Option<DateTime<Utc>>,
    /// The platform owner acting through this session, if any.
    pub impersonator: Option<UserId>,
    /// The tenant's IP allowlist (empty: anywhere).
    pub ip_allowlist: std::sync::Arc<Vec<ipnet::IpNet>>,
    /// What the role allows (built-in, or the tenant's custom role).
    pub permissions: std::sync::Arc<crate::rbac::PermissionSet>,
    /// When the session stops being live on its own (idle or absolute end).
    pub live_until: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct CheckRow {
    user_id: UserId,
    revoked_at: Option<DateTime<Utc>>,
    last_seen_at: DateTime<Utc>,
    idle_timeout_secs: i64,
    absolute_expires_at: DateTime<Utc>,
    role: String,
    role_permissions: Option<String>,
    role_record_rules: Option<String>,
    ip_allowlist: Option<String>,
    tenant_slug: String,
    authenticated_at: Option<DateTime<Utc>>,
    impersonator_id: Option<UserId>,
    membership_status: String,
    user_status: String,
    tenant_status: String,
}

/// Why a credential's session cannot act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, revoked or expired session, or inactive user or membership.
    NotLive,
    /// The tenant is suspended (its sessions were revoked with it); said
    /// plainly to the holder of a genuine credential of that tenant.
    TenantSuspended,
}

/// The per-request check: the session is live, its user and membership are
/// active and its tenant is active. One indexed query.
pub async fn check(
    db: &Db,
    tenant: TenantId,
    session: SessionId,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<Result<Live, Refusal>, DbError> {
    let mut tx = db.tenant_read(tenant).await?;
    let row: Option<CheckRow> = tx
        .fetch_optional(
            "SELECT s.user_id, s.revoked_at, s.last_seen_at, s.idle_timeout_secs, \
             s.absolute_expires_at, m.role, r.permissions AS role_permissions, \
             r.record_rules AS role_record_rules, ts.ip_allowlist, t.slug AS tenant_slug, \
             s.authenticated_at, s.impersonator_id, \
             m.status AS membership_status, \
             u.status AS user_status, t.status AS tenant_status \
             FROM sessions s \
             JOIN memberships m ON m.tenant_id = s.tenant_id AND m.user_id = s.user_id \
             LEFT JOIN roles r ON r.tenant_id = s.tenant_id AND r.name = m.role \
             LEFT JOIN tenant_settings ts ON ts.tenant_id = s.tenant_id \
             JOIN users u ON u.id = s.user_id \
             JOIN tenants t ON t.id = s.tenant_id \
             WHERE s.tenant_id = $1 AND s.id = $2",
            vec![session.into()],
        )
        .await?;
    let Some(r) = row else {
        return Ok(Err(Refusal::NotLive));
    };
    if r.user_id == user && r.tenant_status == "suspended" {
        return Ok(Err(Refusal::TenantSuspended));
    }
    Ok({
        let live = r.user_id == user
            && session_status(
                r.revoked_at,
                r.last_seen_at,
                r.idle_timeout_secs,
                r.absolute_expires_at,
                now,
            ) == SessionStatus::Active
            && r.membership_status == "active"
            && r.user_status == "active"
            && r.tenant_status == "active";
        let live_until =
            (r.last_seen_at + Duration::seconds(r.idle_timeout_secs)).min(r.absolute_expires_at);
        let permissions = role_permissions(
            &r.role,
            r.role_permissions.as_deref(),
            r.role_record_rules.as_deref(),
        );
        let ip_allowlist = r
            .ip_allowlist
            .as_deref()
            .map(crate::tenancy::settings::parse_allowlist)
            .unwrap_or_default();
        match live {
            true => Ok(Live {
                ip_allowlist: std::sync::Arc::new(ip_allowlist),
                tenant_slug: r.tenant_slug,
                authenticated_at: r.authenticated_at,
                impersonator: r.impersonator_id,
                role: r.role,
                permissions: std::sync::Arc::new(permissions),
                live_until,
            }),
            false => Err(Refusal::NotLive),
        }
    })
}

/// A membership's permissions: the built-in role's, or the custom role's as
/// stored. A custom role that is missing or unreadable grants nothing.
fn role_permissions(
    role: &str,
    stored: Option<&str>,
    record_rules: Option<&str>,
) -> crate::rbac::PermissionSet {
    if let Some(builtin) = crate::rbac::PermissionSet::builtin(role) {
        return builtin;
    }
    let grants: Vec<String> = stored
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let rules: Vec<crate::rbac::RecordRule> = record_rules
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    crate::rbac::PermissionSet::new(grants, rules)
}
