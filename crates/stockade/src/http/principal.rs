//! Who is calling: the `Principal` extractor authenticates the bearer token
//! and checks, on every request, that its session is still live (so logout,
//! remote sign-out, password change, deactivation and suspension take effect
//! on the next request, not at token expiry).
//!
//! A bearer token starting `stk_` is an API key instead (`apikeys::auth`):
//! it acts for its creator in one tenant with the key's scopes that the
//! creator still holds; it has no session, never passes step-up, and is
//! refused on the sign-in, session, `/v1/me`, invitation-acceptance and
//! platform routes (`API_KEY_REFUSED`).

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;

use super::auth_state::{AUDIENCE, AuthState};
use super::client_ip::{ClientAddr, ClientIp};
use super::error::ApiError;
use super::layers::REQUEST_ID;
use crate::audit::{Actor, RequestContext};
use crate::ids::{SessionId, TenantId, UserId};
use crate::tenancy::allowlist::{self, Pathway};

/// An authenticated user acting in one tenant through one session.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: UserId,
    pub tenant_id: TenantId,
    pub session_id: SessionId,
    pub role: String,
    pub permissions: std::sync::Arc<crate::rbac::PermissionSet>,
    /// The platform owner acting as this user, when impersonated.
    pub impersonator: Option<UserId>,
    /// When the user last proved their password in this session.
    pub authenticated_at: Option<chrono::DateTime<chrono::Utc>>,
    /// How the user signed in (RFC 8176; empty for an API key or an
    /// impersonation).
    pub amr: Vec<stockade_core::mfa::amr::Amr>,
    /// The user has a confirmed second factor.
    pub mfa_enabled: bool,
    /// How recent that proof must be for a sensitive action: the tenant's
    /// `step_up_minutes`, read with the session on every request.
    pub step_up_window: chrono::Duration,
    pub context: RequestContext,
    /// Set when an API key authenticated the request (then `user_id` is
    /// the key's creator and `session_id` is nil).
    pub api_key: Option<ApiKeyRef>,
}

/// The API key behind a request.
#[derive(Clone)]
pub struct ApiKeyRef {
    pub id: uuid::Uuid,
    /// `stk_<env>_<public id>`.
    pub prefix: String,
    state: AuthState,
}

impl std::fmt::Debug for ApiKeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyRef")
            .field("id", &self.id)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Principal {
    pub fn actor(&self) -> Actor {
        match &self.api_key {
            Some(key) => Actor::ApiKey {
                id: key.id.to_string(),
                creator: self.user_id,
            },
            None => Actor::User {
                id: self.user_id,
                impersonator: self.impersonator,
            },
        }
    }
}

/// Routes an API key may never call: signing in and sessions, the
/// caller's own account, accepting invitations, the platform.
pub const API_KEY_REFUSED: &[&str] = &[
    "/v1/auth",
    "/v1/me",
    "/v1/invitations/accept",
    "/v1/platform",
];

fn refused_for_api_keys(path: &str) -> bool {
    API_KEY_REFUSED.iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

impl Principal {
    /// 403 `auth.step_up_required` unless the password or a second factor
    /// was proved in this session (`authenticated_at`) within the tenant's
    /// step-up window (`step_up_minutes`, 5 by default); the problem names
    /// the window as `max_age_seconds`. A proof dated after `now` does not
    /// count, and an API key (no session) never passes. Call it after the
    /// permission checks and before any change, so a refused call changes
    /// nothing.
    pub fn require_step_up(&self, now: chrono::DateTime<chrono::Utc>) -> Result<(), ApiError> {
        let refused = ApiError::new(axum::http::StatusCode::FORBIDDEN, "auth.step_up_required");
        if self.api_key.is_some() {
            return Err(refused.with_detail(
                "an API key never passes step-up: a signed-in user must do this, \
                 after confirming their password or a second factor (POST /v1/auth/reauth)",
            ));
        }
        if crate::sessions::step_up_fresh(self.authenticated_at, self.step_up_window, now) {
            return Ok(());
        }
        let secs = self.step_up_window.num_seconds();
        Err(refused
            .with_detail(format!(
                "confirm your password or a second factor first: POST /v1/auth/reauth \
                 (a confirmation counts for {secs} seconds)"
            ))
            .with_max_age_seconds(secs))
    }

    /// 403 `rbac.forbidden` naming `permission` unless the role grants it.
    pub fn require(&self, permission: &str) -> Result<(), ApiError> {
        self.require_in(permission, None)
    }

    /// Like [`Principal::require`], for one collection (per-collection grants).
    pub fn require_in(&self, permission: &str, collection: Option<&str>) -> Result<(), ApiError> {
        if self.permissions.allows(permission, collection) {
            return Ok(());
        }
        let named = match collection {
            Some(c) => format!("{permission}:{c}"),
            None => permission.to_owned(),
        };
        if let Some(key) = &self.api_key {
            crate::apikeys::record_later(
                &key.state,
                crate::apikeys::DeniedKey {
                    tenant: self.tenant_id,
                    id: key.id,
                    prefix: key.prefix.clone(),
                    creator: self.user_id,
                },
                "out_of_scope",
                serde_json::json!({ "permission": named }),
                self.context.clone(),
            );
        }
        Err(ApiError::forbidden_permission(&named))
    }
}

impl<S> FromRequestParts<S> for Principal
where
    AuthState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        authenticate(parts, &AuthState::from_ref(state)).await
    }
}

/// The principal of the request behind `parts` (see [`Principal`]).
async fn authenticate(parts: &mut Parts, state: &AuthState) -> Result<Principal, ApiError> {
    let ClientIp(ip) = ClientIp::of(parts, &state.config.trusted_proxies);
    let context = request_context(parts, ip);
    let token = bearer(parts).ok_or_else(ApiError::unauthenticated)?;
    if crate::apikeys::looks_like_key(token) {
        return api_key_principal(parts, state, token, ip, context).await;
    }
    let now = state.clock.now();
    let claims = state
        .keyring()
        .verify(token, now, &state.issuer, AUDIENCE)
        .map_err(|_| ApiError::unauthenticated())?;
    let parse = |s: &str| {
        s.parse::<uuid::Uuid>()
            .map_err(|_| ApiError::unauthenticated())
    };
    let user_id = UserId(parse(&claims.sub)?);
    let tenant_id = TenantId(parse(&claims.tid)?);
    let session_id = SessionId(parse(&claims.sid)?);
    let claimed_impersonator = match &claims.act {
        Some(act) => Some(UserId(parse(&act.sub)?)),
        None => None,
    };
    let live = state
        .session_cache
        .check(&state.db, tenant_id, session_id, user_id, now)
        .await?
        .map_err(|refusal| match refusal {
            crate::sessions::Refusal::TenantSuspended => {
                ApiError::new(axum::http::StatusCode::FORBIDDEN, "tenancy.suspended")
                    .with_detail("this tenant is suspended")
            }
            crate::sessions::Refusal::NotLive => ApiError::unauthenticated(),
        })?;
    // The session, not the token, says who impersonates: the two agree.
    if live.impersonator != claimed_impersonator {
        return Err(ApiError::unauthenticated());
    }
    check_subdomain(parts, state, &live.tenant_slug)?;
    let actor = Actor::User {
        id: user_id,
        impersonator: live.impersonator,
    };
    allowlist::check(
        state,
        tenant_id,
        actor.clone(),
        &live.ip_allowlist,
        ip,
        Pathway::Request,
        &context,
    )
    .await?;
    let actor = Actor::User {
        id: user_id,
        impersonator: live.impersonator,
    };
    super::refusals::Witness::saw(parts, tenant_id, &actor, &context);
    // A member the tenant's MFA policy covers, without a factor, may only
    // enrol one (an impersonator acts under the platform's own rule).
    if live.impersonator.is_none()
        && !live.mfa_enabled
        && stockade_core::mfa::policy::covers(live.mfa_required, &live.role, &live.permissions)
    {
        crate::mfa::gate::enrolment_only(parts)?;
    }
    Ok(Principal {
        user_id,
        tenant_id,
        session_id,
        role: live.role,
        permissions: live.permissions,
        impersonator: live.impersonator,
        authenticated_at: live.authenticated_at,
        amr: live.amr,
        mfa_enabled: live.mfa_enabled,
        step_up_window: live.step_up_window,
        context,
        api_key: None,
    })
}

/// The principal of a request carrying an API key.
async fn api_key_principal(
    parts: &Parts,
    state: &AuthState,
    token: &str,
    ip: ClientAddr,
    context: RequestContext,
) -> Result<Principal, ApiError> {
    if refused_for_api_keys(parts.uri.path()) {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "auth.api_key_not_allowed",
        )
        .with_detail("this endpoint needs a signed-in user, not an API key"));
    }
    let key = crate::apikeys::authenticate(state, token, ip, &context).await?;
    check_subdomain(parts, state, &key.tenant_slug)?;
    let actor = Actor::ApiKey {
        id: key.key_id.to_string(),
        creator: key.creator,
    };
    allowlist::check(
        state,
        key.tenant_id,
        actor.clone(),
        &key.ip_allowlist,
        ip,
        Pathway::Request,
        &context,
    )
    .await?;
    crate::apikeys::admit(state, &key, ip).await?;
    super::refusals::Witness::saw(parts, key.tenant_id, &actor, &context);
    Ok(Principal {
        user_id: key.creator,
        tenant_id: key.tenant_id,
        session_id: SessionId(uuid::Uuid::nil()),
        role: key.role,
        permissions: key.permissions,
        impersonator: None,
        authenticated_at: None,
        amr: Vec::new(),
        mfa_enabled: false,
        step_up_window: crate::sessions::STEP_UP_WINDOW,
        context,
        api_key: Some(ApiKeyRef {
            id: key.key_id,
            prefix: key.prefix,
            state: state.clone(),
        }),
    })
}

/// 403 `tenancy.subdomain_mismatch` when the host names another tenant.
fn check_subdomain(parts: &Parts, state: &AuthState, tenant_slug: &str) -> Result<(), ApiError> {
    match subdomain_tenant(parts, state.config.tenant_domain.as_deref()) {
        Some(slug) if slug != tenant_slug => Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "tenancy.subdomain_mismatch",
        )
        .with_detail("this credential belongs to another tenant than this address")),
        _ => Ok(()),
    }
}

/// The tenant slug named by the request's host under the tenant domain
/// (`acme.example.com` → `acme`), if any.
pub fn subdomain_tenant<'a>(parts: &'a Parts, domain: Option<&str>) -> Option<&'a str> {
    let domain = domain?;
    let host = parts.headers.get(header::HOST)?.to_str().ok()?;
    let host = host.split(':').next().unwrap_or(host);
    let label = host.len().checked_sub(domain.len() + 1).and_then(|cut| {
        let (label, rest) = host.split_at_checked(cut)?;
        (rest.get(1..)?.eq_ignore_ascii_case(domain) && rest.starts_with('.')).then_some(label)
    })?;
    (!label.is_empty() && !label.contains('.')).then_some(label)
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Where the request came from, for audit events: client IP (trusted-proxy
/// aware), user agent (bounded), request id.
#[derive(Debug, Clone)]
pub struct AuditContext(pub RequestContext);

impl<S> FromRequestParts<S> for AuditContext
where
    AuthState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Ok(ClientIp(ip)) = ClientIp::from_request_parts(parts, state).await;
        Ok(Self(request_context(parts, ip)))
    }
}

/// The audit context of a request whose client address is known.
fn request_context(parts: &Parts, ip: ClientAddr) -> RequestContext {
    let text = |name: &str, max: usize| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(max).collect::<String>())
    };
    RequestContext {
        ip: Some(ip.to_string()),
        user_agent: text(header::USER_AGENT.as_str(), 256),
        request_id: text(REQUEST_ID, 64),
    }
}
