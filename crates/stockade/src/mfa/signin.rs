//! `POST /v1/auth/mfa`: the second step of a sign-in, and the same factors
//! proving a step-up (`POST /v1/auth/reauth` with a code instead of the
//! password). Exactly one factor per request: a TOTP code, a recovery code,
//! or a WebAuthn assertion. The per-address sign-in limit applies, a locked
//! account is refused before any check, a malformed code is refused without
//! counting (nothing was guessed), and a wrong or replayed one counts
//! toward the account lockout and the token's own limit.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use stockade_core::mfa::amr::Amr;
use stockade_core::mfa::totp as rules;

use super::MfaState;
use super::challenge::{self, Pending};
use crate::http::client_ip::ClientIp;
use crate::http::{ApiError, ApiJson, AuditContext, AuthState};
use crate::identity::password_gate::limit_ip;

/// One factor.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteMfa {
    /// From the sign-in's `{mfa_required: true, mfa_token}`.
    pub mfa_token: String,
    /// A 6-digit TOTP code.
    #[serde(default)]
    pub totp: Option<String>,
    /// A recovery code (`XXXX-XXXX-XXXX`); spent by this use.
    #[serde(default)]
    pub recovery_code: Option<String>,
    /// A WebAuthn assertion (`PublicKeyCredential` JSON) answering
    /// `POST /v1/auth/webauthn/login/begin` with this `mfa_token`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub webauthn: Option<serde_json::Value>,
}

/// The factor a request carries.
pub(crate) enum Factor<'a> {
    Totp(&'a str),
    RecoveryCode(&'a str),
    WebAuthn(&'a serde_json::Value),
}

impl Factor<'_> {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Totp(_) => "totp",
            Self::RecoveryCode(_) => "recovery_code",
            Self::WebAuthn(_) => "webauthn",
        }
    }
}

/// Exactly one of the three, or 400 `auth.mfa_factor_required`.
pub(crate) fn one_factor<'a>(
    totp: Option<&'a str>,
    recovery: Option<&'a str>,
    webauthn: Option<&'a serde_json::Value>,
) -> Result<Factor<'a>, ApiError> {
    match (totp, recovery, webauthn) {
        (Some(c), None, None) => Ok(Factor::Totp(c)),
        (None, Some(c), None) => Ok(Factor::RecoveryCode(c)),
        (None, None, Some(a)) => Ok(Factor::WebAuthn(a)),
        _ => Err(ApiError::bad_request(
            "auth.mfa_factor_required",
            "send exactly one of `totp`, `recovery_code` or `webauthn`",
        )),
    }
}

/// The outcome of checking a factor.
pub(crate) enum Checked {
    /// Right: the method to record.
    Proved(Amr),
    /// Wrong, replayed or unknown (`reason` for the log).
    Refused(&'static str),
}

/// Checks `factor` for `user`. Malformed input is an `Err` (400, nothing
/// counted); a wrong factor is `Refused` (the caller counts it).
pub(crate) async fn check(
    state: &AuthState,
    user: crate::ids::UserId,
    tenant: crate::ids::TenantId,
    factor: &Factor<'_>,
    webauthn: Option<&Pending>,
    context: &crate::audit::RequestContext,
) -> Result<Checked, ApiError> {
    match factor {
        Factor::Totp(code) => {
            let code = rules::parse_code(code).map_err(|_| super::totp::malformed())?;
            Ok(match super::totp::check(state, user, &code).await? {
                true => Checked::Proved(Amr::Otp),
                false => Checked::Refused("wrong_or_replayed_code"),
            })
        }
        Factor::RecoveryCode(code) => Ok(
            match super::recovery::spend(state, user, tenant, code, context).await? {
                true => Checked::Proved(Amr::Otp),
                false => Checked::Refused("unknown_or_spent_recovery_code"),
            },
        ),
        Factor::WebAuthn(assertion) => {
            super::webauthn::check_assertion(state, user, tenant, webauthn, assertion, context)
                .await
        }
    }
}

/// Completes a sign-in with a second factor: tokens and the refresh cookie,
/// as `POST /v1/auth/login` answers without MFA; the access token's `amr`
/// names both factors.
#[utoipa::path(post, path = "/v1/auth/mfa", tag = "mfa", request_body = CompleteMfa,
    responses((status = 200, body = crate::sessions::TokenResponse),
        (status = 400, body = crate::http::Problem,
            description = "`auth.mfa_factor_required`, `auth.mfa_code_malformed`, \
                `auth.mfa_invalid_code` (counted toward the lockout), `auth.webauthn_invalid`"),
        (status = 401, body = crate::http::Problem,
            description = "`auth.mfa_token_invalid`: unknown, expired (5 minutes), used, \
                burned after 5 wrong factors, or from another address"),
        (status = 403, body = crate::http::Problem, description = "`tenancy.ip_not_allowed`"),
        (status = 429, body = crate::http::Problem,
            description = "`auth.rate_limited` or `auth.account_locked`")))]
pub async fn complete(
    state: State<MfaState>,
    ip: ClientIp,
    context: AuditContext,
    req: ApiJson<CompleteMfa>,
) -> Result<Response, ApiError> {
    let answer = second_step(state, ip, context, req).await;
    crate::ops::metrics::sign_in("mfa", &answer);
    answer
}

/// [`complete`]'s work; its answer is counted by outcome.
async fn second_step(
    State(state): State<MfaState>,
    ip: ClientIp,
    AuditContext(context): AuditContext,
    ApiJson(req): ApiJson<CompleteMfa>,
) -> Result<Response, ApiError> {
    limit_ip(&state, &state.login_limiter, ip, &context).await?;
    let factor = one_factor(
        req.totp.as_deref(),
        req.recovery_code.as_deref(),
        req.webauthn.as_ref(),
    )?;
    let pending = challenge::open(&state, &req.mfa_token, ip.0).await?;
    crate::identity::refuse_if_locked(&state, pending.user).await?;
    let checked = check(
        &state,
        pending.user,
        pending.tenant,
        &factor,
        Some(&pending),
        &context,
    )
    .await?;
    match checked {
        Checked::Proved(method) => {
            challenge::complete(&state, pending, method, ip.0, &context).await
        }
        Checked::Refused(reason) => {
            challenge::fail(&state, &pending, factor.name(), reason, &context).await?;
            Err(match factor {
                Factor::WebAuthn(_) => super::webauthn::invalid(),
                _ => super::totp::invalid_code(),
            })
        }
    }
}
