//! The rotation of a refresh token (SPEC §2.2): the presented token dies
//! and a successor is issued, exactly once among concurrent presenters; a
//! token presented after its rotation revokes the session and writes
//! `sessions.refresh.reused` (or, inside the optional grace window, gets a
//! sibling). The tenant's IP allowlist is checked before anything rotates.
//! Queries and their order only: no HTTP, and no session is created here
//! (`store.rs`).

use chrono::{DateTime, Duration, Utc};

use super::{RefreshError, Rotated, issue_refresh, load, revoke};
use crate::audit::{self, Actor, NewEvent, Outcome, RequestContext, Target};
use crate::clock::Clock;
use crate::db::{Db, TenantTx};
use crate::http::client_ip::ClientAddr;
use crate::ids::SessionId;
use crate::sessions::model::{RefreshToken, Session, SessionPolicy, SessionStatus};

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
