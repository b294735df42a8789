//! TOTP as a factor: enrolment (`setup` → `confirm`), removal, and the one
//! check every route that takes a code shares ([`check`]: sign-in's second
//! step and step-up). The secret is stored sealed under the master key with
//! associated data naming the user, so a row copied to another user does
//! not open; the last accepted step is stored and advanced atomically, so a
//! code — or an earlier one — is accepted once, even by two requests at
//! the same moment. The RFC 6238 rules are `stockade_core::mfa::totp`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use serde::{Deserialize, Serialize};
use stockade_core::mfa::totp;
use zeroize::Zeroizing;

use super::MfaState;
use super::store;
use crate::audit::{self, NewEvent, Target};
use crate::http::{ApiError, ApiJson, AuthState, Principal};
use crate::ids::UserId;
use crate::platform::operation;

/// The associated data a user's TOTP secret is sealed with.
pub fn aad(user: UserId) -> Vec<u8> {
    format!("stockade:mfa_totp:{user}").into_bytes()
}

/// What the app needs to enrol: the secret (for manual entry), the
/// `otpauth://` URI and the same URI as a QR code.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TotpSetup {
    /// Base32 (RFC 4648), for typing into an authenticator app.
    pub secret: String,
    pub otpauth_uri: String,
    /// `data:image/svg+xml;base64,…`
    pub qr_code: String,
}

/// The issuer label apps show: the public host, or `Stockade`.
fn issuer(state: &AuthState) -> String {
    state
        .config
        .public_url
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "Stockade".to_owned())
}

/// Starts TOTP enrolment: a new secret, stored sealed and unconfirmed (it
/// is no factor until `POST /v1/auth/mfa/totp/confirm`). Needs a recent
/// step-up; refused under impersonation and to API keys. A second setup
/// before confirming replaces the first secret.
#[utoipa::path(post, path = "/v1/auth/mfa/totp/setup", tag = "mfa", security(("bearer" = [])),
    responses((status = 200, body = TotpSetup),
        (status = 403, body = crate::http::Problem,
            description = "`auth.step_up_required` or `platform.impersonation_forbidden`"),
        (status = 409, body = crate::http::Problem,
            description = "`mfa.totp_already_enabled`: remove it first")))]
pub async fn setup(
    State(state): State<MfaState>,
    p: Principal,
) -> Result<
    (
        StatusCode,
        [(axum::http::HeaderName, &'static str); 1],
        Json<TotpSetup>,
    ),
    ApiError,
> {
    p.forbid_impersonation(&state, operation::MFA_CHANGE)
        .await?;
    p.require_step_up(state.clock.now())?;
    let user = crate::identity::find_user(&state.db, p.user_id)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let secret = totp::new_secret().map_err(ApiError::internal)?;
    let (sealed, version) = state
        .master()
        .seal(&aad(p.user_id), secret.as_slice())
        .map_err(ApiError::internal)?;
    let mut tx = state.db.global_tx().await?;
    if !store::put_pending_totp(&mut tx, p.user_id, sealed, version, state.clock.now()).await? {
        return Err(
            ApiError::new(StatusCode::CONFLICT, "mfa.totp_already_enabled")
                .with_detail("a TOTP is already enabled: DELETE /v1/auth/mfa/totp first"),
        );
    }
    tx.commit().await?;
    let uri = totp::otpauth_uri(secret.as_slice(), &issuer(&state), &user.email)
        .map_err(ApiError::internal)?;
    let qr = qrcode::QrCode::new(uri.as_bytes()).map_err(ApiError::internal)?;
    let svg = qr
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    let body = TotpSetup {
        secret: totp::secret_base32(secret.as_slice()).to_string(),
        qr_code: format!(
            "data:image/svg+xml;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(svg)
        ),
        otpauth_uri: uri,
    };
    Ok((
        StatusCode::OK,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(body),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmTotp {
    /// The app's current 6-digit code.
    pub code: String,
}

/// The answer of a confirmed TOTP.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TotpConfirmed {
    pub enabled: bool,
    /// Ten single-use recovery codes, shown this once, when this is the
    /// user's first factor; otherwise absent (regenerate them with
    /// `POST /v1/auth/mfa/recovery-codes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
}

/// 400 `auth.mfa_code_malformed`: not six digits. Not counted: nothing was
/// guessed.
pub fn malformed() -> ApiError {
    ApiError::bad_request("auth.mfa_code_malformed", "a code is 6 digits")
}

/// 400 `auth.mfa_invalid_code`: wrong, replayed or for no factor.
pub fn invalid_code() -> ApiError {
    ApiError::bad_request(
        "auth.mfa_invalid_code",
        "the code is incorrect or was already used",
    )
}

/// Activates the pending TOTP with the app's current code. The first factor
/// of a user also creates their recovery codes (returned once). A wrong
/// code counts toward the account's lockout.
#[utoipa::path(post, path = "/v1/auth/mfa/totp/confirm", tag = "mfa", security(("bearer" = [])),
    request_body = ConfirmTotp,
    responses((status = 200, body = TotpConfirmed),
        (status = 400, body = crate::http::Problem,
            description = "`auth.mfa_code_malformed`, `auth.mfa_invalid_code`"),
        (status = 403, body = crate::http::Problem, description = "`platform.impersonation_forbidden`"),
        (status = 409, body = crate::http::Problem, description = "`mfa.no_pending_totp`"),
        (status = 429, body = crate::http::Problem, description = "`auth.account_locked`")))]
pub async fn confirm(
    State(state): State<MfaState>,
    p: Principal,
    ApiJson(req): ApiJson<ConfirmTotp>,
) -> Result<
    (
        StatusCode,
        [(axum::http::HeaderName, &'static str); 1],
        Json<TotpConfirmed>,
    ),
    ApiError,
> {
    p.forbid_impersonation(&state, operation::MFA_CHANGE)
        .await?;
    let code = totp::parse_code(&req.code).map_err(|_| malformed())?;
    crate::identity::refuse_if_locked(&state, p.user_id).await?;
    // Before the transaction: the key may be created in one of its own.
    let recovery_key = super::recovery::key(&state).await?;
    let now = state.clock.now();
    let mut tx = state.db.global_tx().await?;
    let row = store::totp_of(&mut tx, p.user_id).await?;
    let Some(row) = row.filter(|r| r.confirmed_at.is_none()) else {
        return Err(ApiError::new(StatusCode::CONFLICT, "mfa.no_pending_totp")
            .with_detail("start with POST /v1/auth/mfa/totp/setup"));
    };
    let secret = open_secret(&state, p.user_id, &row)?;
    let Some(step) = totp::verify(secret.as_slice(), &code, now.timestamp(), None) else {
        drop(tx);
        let event = NewEvent::new(p.actor(), "auth.mfa.failed")
            .outcome(audit::Outcome::Failure)
            .details(serde_json::json!({ "method": "totp", "reason": "enrolment_code" }));
        crate::identity::count_factor_failure(&state, p.user_id, p.tenant_id, event, &p.context)
            .await?;
        return Err(invalid_code());
    };
    if !store::confirm_totp(&mut tx, p.user_id, step, now).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, "mfa.no_pending_totp")
            .with_detail("start with POST /v1/auth/mfa/totp/setup"));
    }
    let first = store::recovery_codes_left(&mut tx, p.user_id).await? == 0
        && !store::has_webauthn(&mut tx, p.user_id).await?;
    store::refresh_enrolled(&mut tx, p.user_id).await?;
    let recovery_codes = match first {
        true => Some(super::recovery::replace(&state, &mut tx, &recovery_key, p.user_id).await?),
        false => None,
    };
    tx.commit().await?;
    let mut events = vec![
        NewEvent::new(p.actor(), "auth.mfa.totp.enabled").target(Target::new("user", p.user_id)),
    ];
    if first {
        events.push(
            NewEvent::new(p.actor(), "auth.mfa.recovery_codes.regenerated")
                .target(Target::new("user", p.user_id))
                .details(serde_json::json!({ "count": stockade_core::mfa::recovery::COUNT })),
        );
    }
    super::audit_here(&state, &p, events).await?;
    Ok((
        StatusCode::OK,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(TotpConfirmed {
            enabled: true,
            recovery_codes: recovery_codes
                .map(|codes| codes.iter().map(|c| c.to_string()).collect()),
        }),
    ))
}

/// Removes the TOTP. Needs a recent step-up. With no factor left, the
/// recovery codes go too, and sign-in asks for no second step.
#[utoipa::path(delete, path = "/v1/auth/mfa/totp", tag = "mfa", security(("bearer" = [])),
    responses((status = 204),
        (status = 403, body = crate::http::Problem,
            description = "`auth.step_up_required` or `platform.impersonation_forbidden`"),
        (status = 404, body = crate::http::Problem, description = "no TOTP")))]
pub async fn remove(State(state): State<MfaState>, p: Principal) -> Result<StatusCode, ApiError> {
    p.forbid_impersonation(&state, operation::MFA_CHANGE)
        .await?;
    p.require_step_up(state.clock.now())?;
    let mut tx = state.db.global_tx().await?;
    if store::totp_of(&mut tx, p.user_id).await?.is_none() {
        return Err(ApiError::not_found());
    }
    let was_active = store::delete_totp(&mut tx, p.user_id).await?;
    store::refresh_enrolled(&mut tx, p.user_id).await?;
    tx.commit().await?;
    if was_active {
        let event = NewEvent::new(p.actor(), "auth.mfa.totp.disabled")
            .target(Target::new("user", p.user_id));
        super::audit_here(&state, &p, vec![event]).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

fn open_secret(
    state: &AuthState,
    user: UserId,
    row: &store::TotpRow,
) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let version = u32::try_from(row.master_version).map_err(ApiError::internal)?;
    state
        .master()
        .open(version, &aad(user), &row.sealed_secret)
        .map_err(ApiError::internal)
}

/// Checks `code` against `user`'s confirmed TOTP and, when it is right and
/// fresh, records its step (spending it). `Ok(false)`: wrong, replayed, or
/// no confirmed TOTP. The caller counts the failure.
pub(crate) async fn check(
    state: &AuthState,
    user: UserId,
    code: &[u8; totp::DIGITS],
) -> Result<bool, ApiError> {
    let mut tx = state.db.global_tx().await?;
    let Some(row) = store::totp_of(&mut tx, user)
        .await?
        .filter(|r| r.confirmed_at.is_some())
    else {
        return Ok(false);
    };
    let secret = open_secret(state, user, &row)?;
    let last = row.last_step.and_then(|s| u64::try_from(s).ok());
    let Some(step) = totp::verify(secret.as_slice(), code, state.clock.now().timestamp(), last)
    else {
        return Ok(false);
    };
    if !store::advance_step(&mut tx, user, step).await? {
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}
