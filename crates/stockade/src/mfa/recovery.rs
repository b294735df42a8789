//! Recovery codes as a factor: a set of ten is created with the user's
//! first factor and replaced on request (step-up); each is spent once.
//! Stored as HMAC-SHA-256 under the server key `mfa_recovery_hmac` (sealed
//! under the master key), bound to the user. Spending one is audited
//! (`auth.mfa.recovery_codes.used`) and the user is told by email, with
//! how many are left. The code format is `stockade_core::mfa::recovery`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use stockade_core::mfa::recovery;
use zeroize::Zeroizing;

use super::MfaState;
use super::store;
use crate::audit::{NewEvent, RequestContext, Target};
use crate::db::GlobalTx;
use crate::http::{ApiError, AuthState, Principal};
use crate::ids::{TenantId, UserId};
use crate::platform::operation;

/// The server key's purpose.
pub const KEY_PURPOSE: &str = "mfa_recovery_hmac";

/// The HMAC key of recovery codes. Call it before opening a transaction.
pub(crate) async fn key(state: &AuthState) -> Result<Zeroizing<[u8; 32]>, ApiError> {
    crate::crypto::server_keys::get_or_create(
        &state.db,
        &state.master(),
        state.clock.as_ref(),
        KEY_PURPOSE,
    )
    .await
    .map_err(ApiError::internal)
}

/// Replaces `user`'s codes with a fresh set inside `tx`; answers the set
/// (to show once).
pub(crate) async fn replace(
    state: &AuthState,
    tx: &mut GlobalTx,
    key: &[u8; 32],
    user: UserId,
) -> Result<Vec<Zeroizing<String>>, ApiError> {
    let codes = recovery::generate().map_err(ApiError::internal)?;
    let hashes: Vec<[u8; 32]> = codes
        .iter()
        .filter_map(|c| recovery::normalize(c))
        .map(|n| recovery::hash(key, user, &n))
        .collect();
    if hashes.len() != recovery::COUNT {
        return Err(ApiError::internal(
            "a generated recovery code does not normalize",
        ));
    }
    store::replace_recovery_codes(tx, user, &hashes, state.clock.now()).await?;
    Ok(codes)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RecoveryCodes {
    /// Ten single-use codes, shown this once. The previous set no longer
    /// works.
    pub recovery_codes: Vec<String>,
}

/// Replaces every recovery code with a new set of ten. Needs a recent
/// step-up and a confirmed factor.
#[utoipa::path(post, path = "/v1/auth/mfa/recovery-codes", tag = "mfa", security(("bearer" = [])),
    responses((status = 200, body = RecoveryCodes),
        (status = 403, body = crate::http::Problem,
            description = "`auth.step_up_required` or `platform.impersonation_forbidden`"),
        (status = 409, body = crate::http::Problem, description = "`mfa.not_enrolled`")))]
pub async fn regenerate(
    State(state): State<MfaState>,
    p: Principal,
) -> Result<
    (
        StatusCode,
        [(axum::http::HeaderName, &'static str); 1],
        Json<RecoveryCodes>,
    ),
    ApiError,
> {
    p.forbid_impersonation(&state, operation::MFA_CHANGE)
        .await?;
    p.require_step_up(state.clock.now())?;
    let key = key(&state).await?;
    let mut tx = state.db.global_tx().await?;
    if !store::refresh_enrolled(&mut tx, p.user_id).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, "mfa.not_enrolled")
            .with_detail("recovery codes recover a factor: enrol one first"));
    }
    let codes = replace(&state, &mut tx, &key, p.user_id).await?;
    tx.commit().await?;
    let event = NewEvent::new(p.actor(), "auth.mfa.recovery_codes.regenerated")
        .target(Target::new("user", p.user_id))
        .details(serde_json::json!({ "count": recovery::COUNT }));
    super::audit_here(&state, &p, vec![event]).await?;
    Ok((
        StatusCode::OK,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(RecoveryCodes {
            recovery_codes: codes.iter().map(|c| c.to_string()).collect(),
        }),
    ))
}

/// 400 `auth.mfa_code_malformed` for a recovery code that is not 12
/// characters of its alphabet.
fn malformed() -> ApiError {
    ApiError::bad_request(
        "auth.mfa_code_malformed",
        "a recovery code is 12 letters and digits (XXXX-XXXX-XXXX)",
    )
}

/// Spends `typed` as one of `user`'s recovery codes. `Ok(false)`: unknown
/// or spent (the caller counts the failure). On success writes
/// `auth.mfa.recovery_codes.used` in `tenant` and emails the user.
pub(crate) async fn spend(
    state: &AuthState,
    user: UserId,
    tenant: TenantId,
    typed: &str,
    context: &RequestContext,
) -> Result<bool, ApiError> {
    let normalized = recovery::normalize(typed).ok_or_else(malformed)?;
    let key = key(state).await?;
    let hash = recovery::hash(&key, user, &normalized);
    let now = state.clock.now();
    let mut tx = state.db.global_tx().await?;
    if !store::spend_recovery_code(&mut tx, user, hash, now).await? {
        return Ok(false);
    }
    let left = store::recovery_codes_left(&mut tx, user).await?;
    if let Some(u) = crate::identity::find_user(&state.db, user).await? {
        let body = format!(
            "A recovery code of your account was used at {} from the address {}.\n\
             {left} recovery codes are left. If this was not you, reset your password and \
             replace your recovery codes now.\n",
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            context.ip.as_deref().unwrap_or("unknown"),
        );
        crate::email::enqueue(
            &mut tx,
            state.clock.as_ref(),
            &state.master(),
            &crate::email::Message {
                to: &u.email,
                kind: "recovery_code_used",
                subject: "A recovery code was used",
                body: &body,
            },
            state.config.is_production(),
        )
        .await
        .map_err(ApiError::internal)?;
    }
    tx.commit().await?;
    let event = NewEvent::new(
        crate::audit::Actor::User {
            id: user,
            impersonator: None,
        },
        "auth.mfa.recovery_codes.used",
    )
    .target(Target::new("user", user))
    .details(serde_json::json!({ "left": left }))
    .context(context.clone());
    let mut ttx = state.db.tenant_tx(tenant).await?;
    crate::audit::append(&mut ttx, state.clock.as_ref(), event)
        .await
        .map_err(ApiError::internal)?;
    ttx.commit().await?;
    Ok(true)
}
