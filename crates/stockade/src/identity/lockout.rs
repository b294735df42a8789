//! The per-account lockout (SPEC §2.3) wherever a user's password is proved:
//! sign-in (`routes::login`), step-up (`routes::reauth`) and password change
//! (`routes::change_password`). Each counts a wrong password under the
//! account's canonical email key (`throttle::record_failure`), refuses a
//! locked account before any hashing with one answer (429
//! `auth.account_locked`, [`account_locked`]), clears the count on a right
//! password, and writes the lockout event (`auth.account.locked`) from one
//! place, [`audit_account`]. So a stolen bearer token cannot keep guessing
//! the password at step-up once sign-in would have locked, and failures on
//! the three routes add up to one lock.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::IdentityState;
use super::password::Verification;
use super::store::{self as users, AuthUser};
use super::throttle;
use crate::audit::{self, Actor, NewEvent, Outcome, RequestContext, Target};
use crate::http::{ApiError, AuthState, Principal};
use crate::ids::{TenantId, UserId};

/// 429 `auth.account_locked` with `Retry-After`: the one answer of every
/// route while the account is locked.
pub(super) fn account_locked(until: DateTime<Utc>, now: DateTime<Utc>) -> ApiError {
    let secs = u64::try_from((until - now).num_seconds())
        .unwrap_or(1)
        .max(1);
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "auth.account_locked")
        .with_detail("too many failed password attempts: try again later")
        .retry_after(secs)
}

/// Counts a failed sign-in and audits it: in each tenant of a known user, in
/// the platform log for an unknown address. The reason stays in the log.
pub(super) async fn failed_login(
    state: &AuthState,
    email_key: &str,
    user: Option<&AuthUser>,
    reason: &str,
    context: &RequestContext,
) -> Result<(), ApiError> {
    let now = state.clock.now();
    let locked = throttle::record_failure(&state.db, email_key, now).await?;
    audit_failed_login(state, email_key, user, Some((reason, locked)), context).await
}

/// Writes `auth.login.failed` (and `auth.account.locked` when this failure
/// locked the account) where [`audit_account`] writes. `failure` is
/// `(reason, locked_until)` for a counted failure (outcome `failure`);
/// `None` for an attempt refused because the account is locked (reason
/// `account_locked`, outcome `denied`).
pub(super) async fn audit_failed_login(
    state: &AuthState,
    email_key: &str,
    user: Option<&AuthUser>,
    failure: Option<(&str, Option<DateTime<Utc>>)>,
    context: &RequestContext,
) -> Result<(), ApiError> {
    let (reason, outcome, locked) = match failure {
        Some((reason, locked)) => (reason, Outcome::Failure, locked),
        None => ("account_locked", Outcome::Denied, None),
    };
    let attempt = |actor: Actor| {
        NewEvent::new(actor, "auth.login.failed")
            .outcome(outcome)
            .details(serde_json::json!({ "reason": reason, "email": email_key }))
    };
    audit_account(state, email_key, user, Some(&attempt), locked, context).await
}

/// Writes in every tenant of `user` (the platform's chain for an unknown
/// address) the attempt's event (`attempt`, given the actor), followed by
/// `auth.account.locked` when `locked` is the end of a lock this attempt
/// caused. One transaction per tenant, after the failure counter commits.
async fn audit_account(
    state: &AuthState,
    email_key: &str,
    user: Option<&AuthUser>,
    attempt: Option<&(dyn Fn(Actor) -> NewEvent + Sync)>,
    locked: Option<DateTime<Utc>>,
    context: &RequestContext,
) -> Result<(), ApiError> {
    let (tenants, actor) = match user {
        Some(u) => (
            users::memberships_of(&state.db, u.id)
                .await?
                .into_iter()
                .map(|m| m.tenant_id)
                .collect::<Vec<_>>(),
            Actor::User {
                id: u.id,
                impersonator: None,
            },
        ),
        None => (vec![TenantId::PLATFORM], Actor::System),
    };
    if locked.is_some() {
        crate::ops::metrics::account_locked();
    }
    if let (Some(u), Some(until)) = (user, locked) {
        lockout_notice(state, u, until, context).await?;
    }
    for tenant in tenants {
        let mut events: Vec<NewEvent> = attempt.map(|f| f(actor.clone())).into_iter().collect();
        if let Some(until) = locked {
            let mut event = NewEvent::new(Actor::System, "auth.account.locked")
                .outcome(Outcome::Denied)
                .details(serde_json::json!({ "email": email_key, "locked_until": until }));
            // The locked account is the event's subject (its personal data
            // is sealed under that user's key: `audit::pii`).
            if let Some(u) = user {
                event = event.target(Target::new("user", u.id));
            }
            events.push(event);
        }
        if events.is_empty() {
            continue;
        }
        let events = events
            .into_iter()
            .map(|e| e.context(context.clone()))
            .collect();
        let mut tx = state.db.tenant_tx(tenant).await?;
        audit::append_many(&mut tx, state.clock.as_ref(), events)
            .await
            .map_err(ApiError::internal)?;
        tx.commit().await?;
    }
    Ok(())
}

/// Proves the signed-in user's current password (step-up, password change)
/// under the same lockout as sign-in:
/// - account locked: refused before any hashing (429 `auth.account_locked`,
///   [`account_locked`]), `refused` audited with outcome `denied` and
///   reason `account_locked`; not counted, so the lock does not extend
///   itself;
/// - wrong password: counted on the account's key as a failed sign-in is,
///   `refused` audited with outcome `failure` and reason `wrong_password`
///   and, when this failure locked the account, `auth.account.locked` as
///   sign-in writes it; answers `Ok(false)`;
/// - right password: the failure count cleared (written only when there is
///   one); answers `Ok(true)` and the caller audits its success.
///
/// `refused` is the route's own event (actor, action, target), written in
/// the caller's tenant.
pub(super) async fn prove_password(
    state: &IdentityState,
    p: &Principal,
    user: &AuthUser,
    password: SecretString,
    refused: NewEvent,
) -> Result<bool, ApiError> {
    let now = state.clock.now();
    let standing = throttle::standing(&mut state.db.global_read().await?, &user.email_key).await?;
    if let Some(until) = standing.locked_until(now) {
        let event = refused
            .outcome(Outcome::Denied)
            .details(serde_json::json!({ "reason": "account_locked" }));
        audit_here(state, p, event).await?;
        return Err(account_locked(until, now));
    }
    let verdict = state
        .hasher
        .verify(password, user.password_hash.clone())
        .await
        .map_err(ApiError::internal)?;
    if verdict == Verification::Mismatch {
        let locked = throttle::record_failure(&state.db, &user.email_key, now).await?;
        let event = refused
            .outcome(Outcome::Failure)
            .details(serde_json::json!({ "reason": "wrong_password" }));
        audit_here(state, p, event).await?;
        if locked.is_some() {
            audit_account(state, &user.email_key, Some(user), None, locked, &p.context).await?;
        }
        return Ok(false);
    }
    if standing.has_failures() {
        throttle::record_success(&state.db, &user.email_key).await?;
    }
    Ok(true)
}

/// Appends `event` to the caller's tenant, in a transaction of its own.
async fn audit_here(state: &AuthState, p: &Principal, event: NewEvent) -> Result<(), ApiError> {
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    audit::append(
        &mut tx,
        state.clock.as_ref(),
        event.context(p.context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(())
}

/// Queues the `lockout_notice` email of the lock ending at `until`: when,
/// from which address, and how to get back in. Once per lock (the outbox's
/// de-duplication key names the account and the lock's end), however many
/// failures race to cause it.
async fn lockout_notice(
    state: &AuthState,
    user: &AuthUser,
    until: DateTime<Utc>,
    context: &RequestContext,
) -> Result<(), ApiError> {
    let now = state.clock.now();
    let from = context.ip.as_deref().unwrap_or("unknown");
    let body = format!(
        "Your account was locked at {now} after too many failed sign-in attempts \
         (the last from the address {from}).\n\n\
         It unlocks by itself at {until}. If these attempts were not yours, reset your \
         password now (POST /v1/auth/password-reset/request, or \"Forgot password\" \
         on the sign-in page): that ends every session and sign-in link.\n",
        now = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        until = until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let key = format!("lockout:{}:{}", user.id, until.timestamp());
    let mut tx = state.db.global_tx().await?;
    crate::email::enqueue_once(
        &mut tx,
        state.clock.as_ref(),
        &state.master(),
        &crate::email::Message {
            to: &user.email,
            kind: "lockout_notice",
            subject: "Your account was locked",
            body: &body,
        },
        &key,
        state.config.is_production(),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(())
}

/// 429 `auth.account_locked` while `user`'s account is locked: a second
/// factor is not even checked then.
pub(crate) async fn refuse_if_locked(state: &AuthState, user: UserId) -> Result<(), ApiError> {
    let Some(u) = users::find_auth_user_by_id(&state.db, user).await? else {
        return Err(ApiError::unauthenticated());
    };
    let now = state.clock.now();
    let standing = throttle::standing(&mut state.db.global_read().await?, &u.email_key).await?;
    match standing.locked_until(now) {
        Some(until) => Err(account_locked(until, now)),
        None => Ok(()),
    }
}

/// Counts a wrong second factor of `user` toward the account's lockout as a
/// wrong password counts, writes `event` (its `auth.mfa.failed`) in
/// `tenant`, and, when this failure locked the account, the lock as
/// sign-in writes it (and the lockout notice).
pub(crate) async fn count_factor_failure(
    state: &AuthState,
    user: UserId,
    tenant: TenantId,
    event: NewEvent,
    context: &RequestContext,
) -> Result<(), ApiError> {
    let Some(u) = users::find_auth_user_by_id(&state.db, user).await? else {
        return Err(ApiError::unauthenticated());
    };
    let locked = throttle::record_failure(&state.db, &u.email_key, state.clock.now()).await?;
    let mut tx = state.db.tenant_tx(tenant).await?;
    audit::append(
        &mut tx,
        state.clock.as_ref(),
        event.context(context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    if locked.is_some() {
        audit_account(state, &u.email_key, Some(&u), None, locked, context).await?;
    }
    Ok(())
}

/// Clears the account's failure count after a complete sign-in.
pub(crate) async fn clear_failures(state: &AuthState, user: UserId) -> Result<(), ApiError> {
    if let Some(u) = users::find_auth_user_by_id(&state.db, user).await? {
        throttle::record_success(&state.db, &u.email_key).await?;
    }
    Ok(())
}
