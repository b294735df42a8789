//! Who is calling: the `Principal` extractor authenticates the bearer token
//! and checks, on every request, that its session is still live (so logout,
//! remote sign-out, password change, deactivation and suspension take effect
//! on the next request, not at token expiry).

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::client_ip::ClientIp;
use super::error::ApiError;
use super::layers::REQUEST_ID;
use crate::app::AppState;
use crate::audit::{Actor, RequestContext};
use crate::ids::{SessionId, TenantId, UserId};

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
    pub context: RequestContext,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor::User {
            id: self.user_id,
            impersonator: self.impersonator,
        }
    }
}

impl Principal {
    /// 403 `auth.step_up_required` unless the password was proved in this
    /// session within the step-up window (5 minutes).
    pub fn require_step_up(&self, now: chrono::DateTime<chrono::Utc>) -> Result<(), ApiError> {
        let recent = self
            .authenticated_at
            .is_some_and(|at| now - at <= crate::sessions::STEP_UP_WINDOW && at <= now);
        if recent {
            return Ok(());
        }
        Err(
            ApiError::new(axum::http::StatusCode::FORBIDDEN, "auth.step_up_required")
                .with_detail("confirm your password first: POST /v1/auth/reauth"),
        )
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
        Err(ApiError::forbidden_permission(&named))
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Ok(ClientIp(ip)) = ClientIp::from_request_parts(parts, state).await;
        let context = request_context(parts, ip);
        let token = bearer(parts).ok_or_else(ApiError::unauthenticated)?;
        let now = state.clock.now();
        let claims = state
            .keyring()
            .verify(token, now, &state.issuer, crate::app::AUDIENCE)
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
        if let Some(slug) = subdomain_tenant(parts, state.config.tenant_domain.as_deref())
            && slug != live.tenant_slug
        {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "tenancy.subdomain_mismatch",
            )
            .with_detail("this credential belongs to another tenant than this address"));
        }
        if !crate::tenancy::settings::ip_allowed(&live.ip_allowlist, ip) {
            refuse_address(state, tenant_id, user_id, ip, &context).await?;
            return Err(
                ApiError::new(axum::http::StatusCode::FORBIDDEN, "tenancy.ip_not_allowed")
                    .with_detail("this tenant cannot be reached from your address"),
            );
        }
        Ok(Self {
            user_id,
            tenant_id,
            session_id,
            role: live.role,
            permissions: live.permissions,
            impersonator: live.impersonator,
            authenticated_at: live.authenticated_at,
            context,
        })
    }
}

/// Audits a request refused by the tenant's IP allowlist (once per address
/// per five minutes).
async fn refuse_address(
    state: &AppState,
    tenant: TenantId,
    user: UserId,
    ip: std::net::IpAddr,
    context: &RequestContext,
) -> Result<(), ApiError> {
    let now = state.clock.now();
    if state.allowlist_denials.check(&(tenant, ip), now) != crate::ratelimit::Decision::Allow {
        return Ok(());
    }
    let mut tx = state.db.tenant_tx(tenant).await?;
    crate::audit::append(
        &mut tx,
        state.clock.as_ref(),
        crate::audit::NewEvent::new(
            Actor::User {
                id: user,
                impersonator: None,
            },
            "tenancy.ip.denied",
        )
        .outcome(crate::audit::Outcome::Denied)
        .context(context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(())
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

impl FromRequestParts<AppState> for AuditContext {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Ok(ClientIp(ip)) = ClientIp::from_request_parts(parts, state).await;
        Ok(Self(request_context(parts, ip)))
    }
}

/// The audit context of a request whose client address is known.
fn request_context(parts: &Parts, ip: std::net::IpAddr) -> RequestContext {
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
