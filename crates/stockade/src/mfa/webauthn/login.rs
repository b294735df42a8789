//! Signing in with a credential. Three ceremonies, one verification
//! (`verify.rs`):
//!
//! - **second factor**: `login/begin {mfa_token}` answers options listing
//!   the user's credentials, in a ceremony bound to that sign-in; the
//!   assertion goes to `POST /v1/auth/mfa {mfa_token, webauthn}` or to
//!   `login/finish {mfa_token, credential}` (the same handler);
//! - **passwordless**: `login/begin {}` answers options naming no
//!   credential (the authenticator offers its discoverable ones);
//!   `login/finish {ceremony_id, credential, tenant?}` finds the user from
//!   the credential (the user handle must agree), verifies, and starts a
//!   session whose `amr` is the credential's method alone;
//! - **step-up**: `reauth/begin` (signed in) answers options for the
//!   caller's credentials; the assertion goes to `POST /v1/auth/reauth
//!   {webauthn}`.
//!
//! Finishing is limited per client address like sign-in (beginning, which
//! verifies nothing, by `CEREMONY_QUOTA`); a locked account is refused
//! before anything is verified, and a wrong assertion counts toward the
//! lockout.

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use stockade_core::mfa::webauthn::CEREMONY_TTL_SECS;
use uuid::Uuid;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, PublicKeyCredential, RequestChallengeResponse,
};
use webauthn_rs_proto::AllowCredentials;

use super::ceremony::{self, Find, Kind};
use super::store;
use super::verify::{self, AuditIn};
use crate::audit::{Actor, NewEvent, Outcome};
use crate::http::client_ip::ClientIp;
use crate::http::{ApiError, ApiJson, AuditContext, AuthState, Principal};
use crate::identity::password_gate::{limit_ip, limit_ip_as};
use crate::ids::UserId;
use crate::mfa::signin::{self, CompleteMfa};
use crate::mfa::{MfaState, challenge};
use crate::platform::operation;
use crate::tenancy::allowlist::Pathway;

/// The `limiter` label of the ceremony limit's refusals.
const CEREMONY_LIMITER: &str = "webauthn_ceremony_address";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BeginLogin {
    /// The second step of a sign-in to answer; absent for a passwordless
    /// sign-in.
    #[serde(default)]
    pub mfa_token: Option<String>,
}

/// The options for `navigator.credentials.get()`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LoginBegun {
    /// Send it back to `login/finish` (passwordless); the second factor and
    /// step-up find their ceremony themselves.
    pub ceremony_id: Uuid,
    /// `{publicKey: PublicKeyCredentialRequestOptions, mediation?}`,
    /// binary fields in base64url.
    #[schema(value_type = Object)]
    pub options: RequestChallengeResponse,
    pub expires_in: i64,
}

/// 400 `auth.webauthn_no_credential`: the user has no credential to ask for.
fn no_credential() -> ApiError {
    ApiError::bad_request(
        "auth.webauthn_no_credential",
        "this account has no WebAuthn credential",
    )
}

/// Options listing `user`'s credentials, and the state to verify with.
async fn options_for(
    state: &AuthState,
    user: UserId,
) -> Result<(RequestChallengeResponse, DiscoverableAuthentication), ApiError> {
    let rows = {
        let mut tx = state.db.global_read().await?;
        store::of_user(&mut tx, user).await?
    };
    if rows.is_empty() {
        return Err(no_credential());
    }
    let allow = rows
        .iter()
        .map(|r| {
            r.passkey().map(|k| AllowCredentials {
                type_: "public-key".to_owned(),
                id: k.cred_id().to_vec(),
                transports: None,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (mut options, st) = super::relying_party(&state.config)?
        .start_discoverable_authentication()
        .map_err(ApiError::internal)?;
    // The user is known: ask for their credentials, in the ordinary (not
    // autofill) way. The verification takes the stored credential itself.
    options.public_key.allow_credentials = allow;
    options.mediation = None;
    Ok((options, st))
}

fn begun(ceremony_id: Uuid, options: RequestChallengeResponse) -> Json<LoginBegun> {
    Json(LoginBegun {
        ceremony_id,
        options,
        expires_in: CEREMONY_TTL_SECS,
    })
}

/// Starts a WebAuthn sign-in: the second factor of `mfa_token`, or a
/// passwordless one.
#[utoipa::path(post, path = "/v1/auth/webauthn/login/begin", tag = "mfa",
    request_body = BeginLogin,
    responses((status = 200, body = LoginBegun),
        (status = 400, body = crate::http::Problem,
            description = "`auth.webauthn_no_credential`"),
        (status = 401, body = crate::http::Problem, description = "`auth.mfa_token_invalid`"),
        (status = 429, body = crate::http::Problem, description = "`auth.rate_limited`")))]
pub async fn begin(
    State(state): State<MfaState>,
    ip: ClientIp,
    AuditContext(context): AuditContext,
    ApiJson(req): ApiJson<BeginLogin>,
) -> Result<Json<LoginBegun>, ApiError> {
    limit_ip_as(
        CEREMONY_LIMITER,
        &state,
        &state.ceremony_limiter,
        ip,
        &context,
    )
    .await?;
    match req.mfa_token {
        Some(token) => {
            let pending = challenge::open(&state, &token, ip.0).await?;
            let (options, st) = options_for(&state, pending.user).await?;
            let id = ceremony::open(
                &state,
                Kind::SecondFactor,
                Some(pending.user),
                Some(pending.token_hash()),
                &st,
            )
            .await?;
            Ok(begun(id, options))
        }
        None => {
            let (options, st) = super::relying_party(&state.config)?
                .start_discoverable_authentication()
                .map_err(ApiError::internal)?;
            let id = ceremony::open(&state, Kind::Passwordless, None, None, &st).await?;
            Ok(begun(id, options))
        }
    }
}

/// Starts a step-up with a credential; answer with
/// `POST /v1/auth/reauth {webauthn}`.
#[utoipa::path(post, path = "/v1/auth/webauthn/reauth/begin", tag = "mfa",
    security(("bearer" = [])),
    responses((status = 200, body = LoginBegun),
        (status = 400, body = crate::http::Problem,
            description = "`auth.webauthn_no_credential`"),
        (status = 403, body = crate::http::Problem,
            description = "`platform.impersonation_forbidden`")))]
pub async fn reauth_begin(
    State(state): State<MfaState>,
    ip: ClientIp,
    p: Principal,
) -> Result<Json<LoginBegun>, ApiError> {
    p.forbid_impersonation(&state, operation::STEP_UP).await?;
    limit_ip_as(
        CEREMONY_LIMITER,
        &state,
        &state.ceremony_limiter,
        ip,
        &p.context,
    )
    .await?;
    let (options, st) = options_for(&state, p.user_id).await?;
    let id = ceremony::open(&state, Kind::StepUp, Some(p.user_id), None, &st).await?;
    Ok(begun(id, options))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishLogin {
    /// Second factor: the sign-in's token (no `ceremony_id`, no `tenant`).
    #[serde(default)]
    pub mfa_token: Option<String>,
    /// Passwordless: the id `login/begin` answered.
    #[serde(default)]
    pub ceremony_id: Option<Uuid>,
    /// The `PublicKeyCredential` from `navigator.credentials.get()`.
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
    /// Passwordless: the tenant slug, needed only when the user belongs to
    /// several tenants.
    #[serde(default)]
    pub tenant: Option<String>,
}

fn shape() -> ApiError {
    ApiError::bad_request(
        "request.invalid_body",
        "send `mfa_token` (second factor) or `ceremony_id` (passwordless), not both",
    )
}

/// Completes a WebAuthn sign-in: tokens and the refresh cookie.
#[utoipa::path(post, path = "/v1/auth/webauthn/login/finish", tag = "mfa",
    request_body = FinishLogin,
    responses((status = 200, body = crate::sessions::TokenResponse),
        (status = 400, body = crate::http::Problem,
            description = "`auth.webauthn_malformed`, `auth.webauthn_ceremony_invalid`, \
                `auth.webauthn_invalid` (counted toward the lockout), `auth.tenant_required`"),
        (status = 401, body = crate::http::Problem,
            description = "`auth.invalid_credentials` (no usable account or membership), \
                `auth.mfa_token_invalid`"),
        (status = 403, body = crate::http::Problem,
            description = "`tenancy.ip_not_allowed`, `tenancy.suspended`"),
        (status = 413, body = crate::http::Problem, description = "`auth.webauthn_too_large`"),
        (status = 429, body = crate::http::Problem,
            description = "`auth.rate_limited` or `auth.account_locked`")))]
pub async fn finish(
    state: State<MfaState>,
    ip: ClientIp,
    context: AuditContext,
    ApiJson(req): ApiJson<FinishLogin>,
) -> Result<Response, ApiError> {
    match (req.mfa_token, req.ceremony_id) {
        (Some(mfa_token), None) if req.tenant.is_none() => {
            let body = CompleteMfa {
                mfa_token,
                totp: None,
                recovery_code: None,
                webauthn: Some(req.credential),
            };
            signin::complete(state, ip, context, ApiJson(body)).await
        }
        (None, Some(id)) => {
            let answer =
                passwordless(&state, ip, &context.0, id, &req.credential, req.tenant).await;
            crate::ops::metrics::sign_in("passkey", &answer);
            answer
        }
        _ => Err(shape()),
    }
}

async fn passwordless(
    state: &MfaState,
    ip: ClientIp,
    context: &crate::audit::RequestContext,
    ceremony_id: Uuid,
    credential: &serde_json::Value,
    tenant: Option<String>,
) -> Result<Response, ApiError> {
    limit_ip(state, &state.login_limiter, ip, context).await?;
    let cred: PublicKeyCredential = super::parse(credential)?;
    let owner = {
        let mut tx = state.db.global_read().await?;
        store::by_credential_id(&mut tx, cred.get_credential_id())
            .await?
            .map(|r| r.user_id)
    };
    let st: DiscoverableAuthentication =
        ceremony::take(state, Kind::Passwordless, Find::Id(ceremony_id, None)).await?;
    let Some(owner) = owner else {
        // Nobody to count against: the per-address limit bounds guessing.
        return Err(super::invalid());
    };
    crate::identity::refuse_if_locked(state, owner).await?;
    let verified = verify::verify(state, st, &cred, None, AuditIn::Memberships, context).await?;
    let verified = match verified {
        Ok(v) => v,
        Err(reason) => {
            failed(state, owner, reason, context).await?;
            return Err(super::invalid());
        }
    };
    let user = crate::identity::find_auth_user_by_id(&state.db, verified.user)
        .await?
        .filter(|u| u.status == "active")
        .ok_or_else(crate::identity::routes::invalid_credentials)?;
    let memberships = crate::identity::memberships_of(&state.db, user.id).await?;
    let Some(membership) = crate::identity::routes::choose_tenant(&memberships, tenant.as_deref())?
    else {
        return Err(crate::identity::routes::invalid_credentials());
    };
    crate::identity::clear_failures(state, user.id).await?;
    let amr = [verified.method];
    let sign_in = crate::sessions::SignIn {
        user: user.id,
        tenant: membership.tenant_id,
        action: "auth.login.succeeded",
        context,
        proved: true,
        amr: &amr,
        entry: (Pathway::Login, ip.0),
    };
    crate::sessions::start(state, &state.session_policy, sign_in, vec![]).await
}

/// Counts a wrong passwordless assertion toward `user`'s lockout, audited
/// as `auth.login.failed` in the tenant the user is an active member of
/// first (a user with none has nothing to audit into, and cannot sign in).
async fn failed(
    state: &AuthState,
    user: UserId,
    reason: &str,
    context: &crate::audit::RequestContext,
) -> Result<(), ApiError> {
    let memberships = crate::identity::memberships_of(&state.db, user).await?;
    let Some(tenant) = memberships
        .iter()
        .find(|m| m.status == "active")
        .map(|m| m.tenant_id)
    else {
        return Ok(());
    };
    let event = NewEvent::new(
        Actor::User {
            id: user,
            impersonator: None,
        },
        "auth.login.failed",
    )
    .outcome(Outcome::Failure)
    .details(serde_json::json!({ "method": "webauthn", "reason": reason }));
    crate::identity::count_factor_failure(state, user, tenant, event, context).await
}
