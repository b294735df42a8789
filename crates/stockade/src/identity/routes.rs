//! `/v1/auth/*` sign-up, sign-in and password endpoints, `/v1/me`, JWKS.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::IdentityState;
use super::User;
use super::lockout::{self, audit_failed_login, failed_login};
use super::password::Verification;
use super::password_gate::{check_policy, limit_ip, policies_for};
use super::store::{self as users, AuthUser, UserMembership};
use super::throttle;
use crate::audit::{self, NewEvent, RequestContext, Target};
use crate::http::client_ip::{ClientAddr, ClientIp};
use crate::http::{ApiError, ApiJson, AuditContext, Principal};
use crate::ids::{TenantId, UserId};
use crate::platform::operation;
use crate::sessions::{self, TokenResponse};
use crate::tenancy;
use crate::tenancy::allowlist::Pathway;
use stockade_core::mfa::amr::Amr;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        super::signup::signup,
        super::verify::confirm,
        login,
        switch_tenant,
        change_password,
        super::reauth::reauth,
        me,
        delete_me,
        jwks,
        super::reset::request,
        super::reset::confirm
    ),
    components(schemas(
        super::signup::SignupRequest,
        super::signup::SignupAccepted,
        super::signup::PendingUser,
        super::signup::PendingTenant,
        super::signup::SignupResponse,
        super::verify::VerifyEmailRequest,
        LoginRequest,
        SwitchTenantRequest,
        MeResponse,
        MeTenant,
        ChangePasswordRequest,
        super::reset::ResetRequest,
        super::reset::ResetConfirm
    ))
)]
pub struct IdentityApi;

pub fn routes() -> Router<IdentityState> {
    Router::new()
        .route("/v1/auth/signup", post(super::signup::signup))
        .route("/v1/auth/verify-email", post(super::verify::confirm))
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/switch-tenant", post(switch_tenant))
        .route("/v1/auth/password", post(change_password))
        .route("/v1/auth/reauth", post(super::reauth::reauth))
        .route(
            "/v1/auth/password-reset/request",
            post(super::reset::request),
        )
        .route(
            "/v1/auth/password-reset/confirm",
            post(super::reset::confirm),
        )
        .route("/v1/me", get(me).delete(delete_me))
        .route("/.well-known/jwks.json", get(jwks))
}

/// 401 for every sign-in failure: unknown email, wrong password, no usable
/// membership. One body, so the answers cannot be told apart.
pub(crate) fn invalid_credentials() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "auth.invalid_credentials")
        .with_detail("email or password is incorrect")
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// Tenant slug; needed only when the user belongs to several tenants.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// Signs in with email and password. A user with a confirmed second factor
/// gets `{mfa_required: true, mfa_token, methods, expires_in}` instead, and
/// no session or cookie: `POST /v1/auth/mfa` completes the sign-in (the
/// account's failure count is cleared only then).
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, description = "tokens and the refresh cookie, or the second step",
            content(
                (TokenResponse = "application/json"),
                (crate::mfa::challenge::MfaRequiredResponse = "application/json")
            )),
        (status = 401, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem,
            description = "`tenancy.ip_not_allowed` (the tenant's IP allowlist) or `tenancy.suspended`"),
        (status = 429, body = crate::http::Problem)))]
async fn login(
    State(state): State<IdentityState>,
    ip: ClientIp,
    context: AuditContext,
    req: ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let answer = password_sign_in(state, ip, context, req).await;
    crate::ops::metrics::sign_in("password", &answer);
    answer
}

/// [`login`]'s work; its answer is counted by outcome.
async fn password_sign_in(
    state: IdentityState,
    ip: ClientIp,
    AuditContext(context): AuditContext,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    limit_ip(&state, &state.login_limiter, ip, &context).await?;
    let now = state.clock.now();
    // The canonical key, so look-alike spellings are one account and one
    // lockout; a refused address is handled exactly like an unknown one.
    let email_key = super::email::sign_in_key(&req.email);
    // The throttle and the user, in one read.
    let (throttled, user) = {
        let mut read = state.db.global_read().await?;
        let throttled = throttle::standing(&mut read, &email_key).await?;
        (
            throttled,
            users::find_auth_user_in(&mut read, &email_key).await?,
        )
    };
    if let Some(until) = throttled.locked_until(now) {
        // Audited like any attempt (SPEC §2.3), without hashing and without
        // counting as a failure: the lockout does not extend itself.
        audit_failed_login(&state, &email_key, user.as_ref(), None, &context).await?;
        return Err(lockout::account_locked(until, now));
    }
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let verdict = state
        .hasher
        .verify(req.password.clone(), stored)
        .await
        .map_err(ApiError::internal)?;
    let user = match (verdict, user) {
        (Verification::Match { needs_rehash }, Some(user)) if user.status == "active" => {
            if needs_rehash {
                rehash(&state, &user, req.password).await?;
            }
            user
        }
        (_, user) => {
            let reason = match (&user, verdict) {
                (None, _) => "unknown_email",
                (Some(u), _) if u.status != "active" => "user_deactivated",
                _ => "wrong_password",
            };
            failed_login(&state, &email_key, user.as_ref(), reason, &context).await?;
            return Err(invalid_credentials());
        }
    };
    let memberships = users::memberships_of(&state.db, user.id).await?;
    let Some(membership) = choose_tenant(&memberships, req.tenant.as_deref())? else {
        failed_login(&state, &email_key, Some(&user), "no_membership", &context).await?;
        return Err(invalid_credentials());
    };
    if user.mfa_enabled {
        // The password alone proves nothing yet: the failure count stays
        // until the second factor, so wrong codes and fresh sign-ins keep
        // adding up to the lockout.
        let mut answer = crate::mfa::challenge::issue(
            &state,
            user.id,
            membership.tenant_id,
            Amr::Pwd,
            ip.0,
            &context,
        )
        .await?;
        answer
            .extensions_mut()
            .insert(crate::ops::metrics::MfaRequired);
        return Ok(answer);
    }
    if throttled.has_failures() {
        throttle::record_success(&state.db, &email_key).await?;
    }
    let entry = (Pathway::Login, ip.0);
    start_session(
        &state,
        &user,
        membership.tenant_id,
        "auth.login.succeeded",
        &context,
        true,
        &[Amr::Pwd],
        entry,
    )
    .await
}

/// Picks the tenant to sign into: the named one, or the only one (also
/// for a passwordless sign-in, `mfa::webauthn::login`).
pub(crate) fn choose_tenant<'a>(
    memberships: &'a [UserMembership],
    requested: Option<&str>,
) -> Result<Option<&'a UserMembership>, ApiError> {
    let mine: Vec<&UserMembership> = memberships
        .iter()
        .filter(|m| m.status == "active" && m.tenant_status != "pending_deletion")
        .collect();
    let chosen = match requested {
        Some(slug) => mine.into_iter().find(|m| m.slug == slug),
        None => {
            let open: Vec<&UserMembership> = mine
                .iter()
                .copied()
                .filter(|m| m.tenant_status == "active")
                .collect();
            match (open.as_slice(), mine.as_slice()) {
                ([only], _) => Some(*only),
                ([], [only]) => Some(*only),
                ([], _) => None,
                _ => {
                    return Err(ApiError::bad_request(
                        "auth.tenant_required",
                        "this account belongs to several tenants: name one in `tenant`",
                    )
                    .with_errors(serde_json::json!(
                        open.iter().map(|m| m.slug.clone()).collect::<Vec<_>>()
                    )));
                }
            }
        }
    };
    // Said only after the password was verified: the user may know.
    if chosen.is_some_and(|m| m.tenant_status == "suspended") {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "tenancy.suspended")
            .with_detail("this tenant is suspended"));
    }
    Ok(chosen)
}

/// Creates a session in `tenant`, audits `action`, answers with tokens;
/// first the tenant's IP allowlist must admit the client coming in through
/// `entry` (403 `tenancy.ip_not_allowed` otherwise, nothing issued).
#[allow(clippy::too_many_arguments)]
async fn start_session(
    state: &IdentityState,
    user: &AuthUser,
    tenant: TenantId,
    action: &str,
    context: &RequestContext,
    proved_password: bool,
    amr: &[Amr],
    entry: (Pathway, ClientAddr),
) -> Result<Response, ApiError> {
    let sign_in = sessions::SignIn {
        user: user.id,
        tenant,
        action,
        context,
        proved: proved_password,
        amr,
        entry,
    };
    sessions::start(state, &state.session_policy, sign_in, Vec::new()).await
}

/// Upgrades an imported bcrypt (or outdated argon2) hash to the current one.
async fn rehash(
    state: &IdentityState,
    user: &AuthUser,
    password: SecretString,
) -> Result<(), ApiError> {
    let hash = state
        .hasher
        .hash(password)
        .await
        .map_err(ApiError::internal)?;
    let mut tx = state.db.global_tx().await?;
    users::set_password_hash(&mut tx, user.id, &hash, state.clock.now()).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, "password hash upgraded to argon2id");
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchTenantRequest {
    /// Slug of the tenant to switch to.
    pub tenant: String,
}

/// Issues tokens for another tenant the user belongs to (a new session).
/// Refused to an impersonation session (403
/// `platform.impersonation_forbidden`): it would become a normal session of
/// the user, unmarked and refreshable.
#[utoipa::path(post, path = "/v1/auth/switch-tenant", tag = "auth", security(("bearer" = [])),
    request_body = SwitchTenantRequest,
    responses((status = 200, body = TokenResponse),
        (status = 403, body = crate::http::Problem,
            description = "`platform.impersonation_forbidden`, or `tenancy.ip_not_allowed`: the target tenant's IP allowlist refuses the client"),
        (status = 404, body = crate::http::Problem)))]
async fn switch_tenant(
    State(state): State<IdentityState>,
    ClientIp(client): ClientIp,
    p: Principal,
    ApiJson(req): ApiJson<SwitchTenantRequest>,
) -> Result<Response, ApiError> {
    p.forbid_impersonation(&state, operation::TENANT_SWITCH)
        .await?;
    let memberships = users::memberships_of(&state.db, p.user_id).await?;
    let target = memberships
        .iter()
        .find(|m| m.slug == req.tenant && m.status == "active" && m.tenant_status == "active")
        .ok_or_else(ApiError::not_found)?;
    let user = users::find_auth_user_by_id(&state.db, p.user_id)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    start_session(
        &state,
        &user,
        target.tenant_id,
        "auth.tenant.switched",
        &p.context,
        false,
        &p.amr,
        (Pathway::SwitchTenant, client),
    )
    .await
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MeResponse {
    #[schema(value_type = Object)]
    pub user: User,
    pub tenant: MeTenant,
    pub role: String,
    pub permissions: Vec<String>,
    #[schema(value_type = String, format = Uuid)]
    pub session_id: crate::ids::SessionId,
    /// The platform owner acting as this user, when impersonated.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub impersonated_by: Option<UserId>,
    /// When the password was last proved in this session; sensitive actions
    /// need it within the tenant's step-up window (`step_up_minutes`, 5 by
    /// default; `POST /v1/auth/reauth`).
    pub authenticated_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The user has a confirmed second factor.
    pub mfa_enabled: bool,
    /// How this session was signed in (RFC 8176, as in the access token).
    pub amr: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MeTenant {
    #[schema(value_type = String, format = Uuid)]
    pub id: TenantId,
    pub slug: String,
    pub name: String,
}

/// The caller: user, tenant, role, permissions.
#[utoipa::path(get, path = "/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = crate::http::Problem)))]
async fn me(
    State(state): State<IdentityState>,
    p: Principal,
) -> Result<Json<MeResponse>, ApiError> {
    let user = users::find_user(&state.db, p.user_id)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let tenant = tenancy::find_by_id(&state.db, p.tenant_id)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    Ok(Json(MeResponse {
        user,
        tenant: MeTenant {
            id: tenant.id,
            slug: tenant.slug,
            name: tenant.name,
        },
        permissions: p.permissions.grants().to_vec(),
        role: p.role,
        session_id: p.session_id,
        impersonated_by: p.impersonator,
        authenticated_at: p.authenticated_at,
        mfa_enabled: p.mfa_enabled,
        amr: stockade_core::mfa::amr::claim(&p.amr),
    }))
}

/// Deletes the caller's account at once (SPEC §2.15): every membership,
/// session and API key ends, the account and its credentials are removed,
/// and the personal data in past audit events becomes unreadable (the
/// chains still verify; readers show `deleted-user-…`). Needs a recent
/// step-up (`POST /v1/auth/reauth`); refused for API keys and under
/// impersonation (`platform.impersonation_forbidden`). The last active
/// owner of a tenant cannot delete their account (409
/// `identity.last_owner`): make another member owner first.
#[utoipa::path(delete, path = "/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "the account is deleted"),
        (status = 401, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem,
            description = "`platform.impersonation_forbidden`, `auth.api_key_not_allowed`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)"),
        (status = 409, body = crate::http::Problem, description = "`identity.last_owner`")))]
async fn delete_me(
    State(state): State<IdentityState>,
    p: Principal,
) -> Result<StatusCode, ApiError> {
    p.forbid_impersonation(&state, operation::ACCOUNT_DELETION)
        .await?;
    p.require_step_up(state.clock.now())?;
    match super::erase_user(
        &state.db,
        state.clock.as_ref(),
        p.user_id,
        p.actor(),
        p.context.clone(),
    )
    .await
    {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(super::EraseError::NotFound) => Err(ApiError::unauthenticated()),
        Err(e @ super::EraseError::LastOwner(_)) => {
            Err(ApiError::new(StatusCode::CONFLICT, "identity.last_owner")
                .with_detail(e.to_string()))
        }
        Err(super::EraseError::Db(e)) => Err(e.into()),
        Err(e) => Err(ApiError::internal(e)),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
    #[schema(value_type = String, format = Password)]
    pub new_password: SecretString,
}

/// Changes the caller's password; every other session is signed out and
/// every outstanding reset link dies. Needs a recent step-up (`POST
/// /v1/auth/reauth`) besides the current password. Refused to an
/// impersonation session (403 `platform.impersonation_forbidden`). A wrong current password counts
/// toward the account's lockout as a failed sign-in does, and a locked
/// account is refused (429 `auth.account_locked`) before any hashing
/// (`lockout`).
#[utoipa::path(post, path = "/v1/auth/password", tag = "auth", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses((status = 204), (status = 400, body = crate::http::Problem,
            description = "`auth.wrong_password` (counted toward the account lockout) or \
                `auth.weak_password`"),
        (status = 401, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem,
            description = "`platform.impersonation_forbidden`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)"),
        (status = 429, body = crate::http::Problem,
            description = "`auth.rate_limited` (the client address) or `auth.account_locked` \
                (the account, whichever route counted its failures); with `Retry-After`")))]
async fn change_password(
    State(state): State<IdentityState>,
    ip: ClientIp,
    p: Principal,
    ApiJson(req): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    p.forbid_impersonation(&state, operation::PASSWORD_CHANGE)
        .await?;
    // A recent step-up as well as the current password (issue #19 item 6).
    p.require_step_up(state.clock.now())?;
    limit_ip(&state, &state.login_limiter, ip, &p.context).await?;
    let user = users::find_auth_user_by_id(&state.db, p.user_id)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let refused = NewEvent::new(p.actor(), "auth.password.change_failed")
        .target(Target::new("user", p.user_id));
    if !lockout::prove_password(&state, &p, &user, req.current_password, refused).await? {
        return Err(ApiError::bad_request(
            "auth.wrong_password",
            "the current password is incorrect",
        ));
    }
    let policies = policies_for(&state.db, p.user_id).await?;
    check_policy(&policies, &req.new_password, &[&user.email, &user.name])?;
    let hash = state
        .hasher
        .hash(req.new_password)
        .await
        .map_err(ApiError::internal)?;
    let now = state.clock.now();
    // One transaction: the new hash, the other sessions' end, the event.
    let mut tx = state.db.global_tx().await?;
    users::set_password_hash(&mut tx, p.user_id, &hash, now).await?;
    // A reset link sent before the change cannot undo it.
    super::reset_effects::invalidate_reset_links(&mut tx, p.user_id, now).await?;
    let mut tx = tx.for_user(p.user_id).await?;
    let revoked =
        sessions::revoke_all_for_user(&mut tx, Some(p.session_id), "password_changed", now).await?;
    let mut tx = tx.scoped(p.tenant_id).await?;
    audit::append(
        &mut tx,
        state.clock.as_ref(),
        NewEvent::new(p.actor(), "auth.password.changed")
            .target(Target::new("user", p.user_id))
            .details(serde_json::json!({ "other_sessions_revoked": revoked }))
            .context(p.context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The public keys that verify access tokens (HS256 secrets never appear).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "JSON Web Key Set")))]
async fn jwks(State(state): State<IdentityState>) -> impl IntoResponse {
    Json(state.keyring().jwks(state.clock.now()))
}
