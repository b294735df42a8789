//! `POST /v1/auth/reauth`: step-up with the password (under the account
//! lockout, `lockout::prove_password`) or with one second factor
//! (`mfa::step_up`); a factor also joins the session's `amr`.

use axum::extract::State;
use axum::http::StatusCode;
use secrecy::SecretString;
use serde::Deserialize;
use stockade_core::mfa::amr::Amr;

use super::IdentityState;
use super::lockout;
use super::password_gate::limit_ip;
use super::store as users;
use crate::audit::{self, NewEvent, Outcome, Target};
use crate::http::client_ip::ClientIp;
use crate::http::{ApiError, ApiJson, Principal};
use crate::platform::operation;
use crate::sessions;

/// Exactly one proof: the password, or a second factor of the user.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReauthRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
    /// A 6-digit TOTP code.
    #[serde(default)]
    pub totp: Option<String>,
    /// A recovery code (spent by this use).
    #[serde(default)]
    pub recovery_code: Option<String>,
    /// A WebAuthn assertion answering `POST /v1/auth/webauthn/reauth/begin`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub webauthn: Option<serde_json::Value>,
}

/// Step-up: re-confirms the password **or** a second factor, so sensitive
/// actions accept the session for the tenant's step-up window (5 minutes
/// by default). A second factor also joins the session's `amr` (a
/// platform owner's session needs one). Refused to an impersonation session
/// (403 `platform.impersonation_forbidden`): an impersonator holds neither.
/// A wrong password or code counts toward the account's lockout as a
/// failed sign-in does, and a locked account is refused (429
/// `auth.account_locked`) even with the right proof (`lockout`).
#[utoipa::path(post, path = "/v1/auth/reauth", tag = "auth", security(("bearer" = [])),
    request_body = ReauthRequest,
    responses((status = 204), (status = 400, body = crate::http::Problem,
            description = "`auth.wrong_password` or `auth.mfa_invalid_code` (counted toward the \
                account lockout), `auth.mfa_code_malformed`, `auth.mfa_factor_required`"),
        (status = 403, body = crate::http::Problem,
            description = "`platform.impersonation_forbidden`"),
        (status = 429, body = crate::http::Problem,
            description = "`auth.rate_limited` (the client address) or `auth.account_locked` \
                (the account, whichever route counted its failures); with `Retry-After`")))]
pub(super) async fn reauth(
    State(state): State<IdentityState>,
    ip: ClientIp,
    p: Principal,
    ApiJson(req): ApiJson<ReauthRequest>,
) -> Result<StatusCode, ApiError> {
    p.forbid_impersonation(&state, operation::STEP_UP).await?;
    limit_ip(&state, &state.login_limiter, ip, &p.context).await?;
    let user = users::find_auth_user_by_id(&state.db, p.user_id)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let factor = match req.password {
        Some(password) => {
            if req.totp.is_some() || req.recovery_code.is_some() || req.webauthn.is_some() {
                return Err(ApiError::bad_request(
                    "auth.mfa_factor_required",
                    "send exactly one of `password`, `totp`, `recovery_code` or `webauthn`",
                ));
            }
            let refused = NewEvent::new(p.actor(), "auth.step_up.failed")
                .target(Target::new("session", p.session_id))
                .details(serde_json::json!({ "method": "password" }));
            if !lockout::prove_password(&state, &p, &user, password, refused).await? {
                return Err(ApiError::bad_request(
                    "auth.wrong_password",
                    "the password is incorrect",
                ));
            }
            None
        }
        None => Some(
            crate::mfa::step_up::prove(&state, &p, &req.totp, &req.recovery_code, &req.webauthn)
                .await?,
        ),
    };
    let method = factor.map_or("password", |m: Amr| m.as_str());
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    sessions::mark_authenticated(&mut tx, p.session_id, state.clock.now()).await?;
    if let Some(m) = factor {
        let mut amr = p.amr.clone();
        amr.push(m);
        sessions::set_amr(&mut tx, p.session_id, &amr).await?;
    }
    audit::append(
        &mut tx,
        state.clock.as_ref(),
        NewEvent::new(p.actor(), "auth.step_up.succeeded")
            .target(Target::new("session", p.session_id))
            .details(serde_json::json!({ "method": method }))
            .outcome(Outcome::Success)
            .context(p.context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
