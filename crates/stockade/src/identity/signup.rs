//! `POST /v1/auth/signup`: a new tenant and its owner, created once the
//! owner's address is verified (issue #17 item 8; see `verify.rs`).
//!
//! The answer is 202 with the same body whether or not the address already
//! has an account: for a new address the verification link is queued and
//! the ids in the answer are the ones the account and tenant will get; for
//! a registered one its owner is emailed instead and the ids are random.
//! Both cases hash the password (the same work, the same time), so neither
//! status, body nor timing tells an address apart.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::IdentityState;
use super::model::validate_name;
use super::password::PasswordPolicy;
use super::password_gate::{check_policy, limit_ip};
use super::store::{self as users};
use super::verify::{self, NewPending, Pending, Purpose};
use super::{Email, IdentityError, User};
use crate::audit::{self, Actor, NewEvent, RequestContext, Target};
use crate::config::SignupMode;
use crate::http::client_ip::ClientIp;
use crate::http::{ApiError, ApiJson, AuditContext};
use crate::ids::{TenantId, UserId};
use crate::sessions::{self, TokenResponse};
use crate::tenancy::{self, NewTenant, Slug, TenancyError, Tenant, TenantName};
use stockade_core::mfa::amr::Amr;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    pub tenant_name: String,
    pub tenant_slug: String,
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    pub name: String,
}

/// A sign-up waiting for its verification link. The same shape whether or
/// not the address has an account (the ids are then random).
#[derive(Serialize, utoipa::ToSchema)]
pub struct SignupAccepted {
    /// Always `verification_sent`: open the link in the email to finish.
    pub status: &'static str,
    pub user: PendingUser,
    pub tenant: PendingTenant,
    /// When the verification link expires (30 minutes).
    pub verification_expires_at: DateTime<Utc>,
}

/// The account a verification link will create.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PendingUser {
    #[schema(value_type = String, format = Uuid)]
    pub id: UserId,
    pub email: String,
    pub name: String,
}

/// The tenant a sign-up's verification link will create.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PendingTenant {
    #[schema(value_type = String, format = Uuid)]
    pub id: TenantId,
    pub slug: String,
    pub name: String,
}

/// The verified sign-up: its tenant and owner, signed in.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SignupResponse {
    #[schema(value_type = Object)]
    pub tenant: Tenant,
    #[schema(value_type = Object)]
    pub user: User,
    #[serde(flatten)]
    pub tokens: TokenResponse,
}

/// Starts a sign-up (when signup is open): queues a verification link to
/// the address; `POST /v1/auth/verify-email` with its token creates the
/// tenant and its owner and signs in. The answer does not say whether the
/// address already has an account (its owner is emailed instead).
#[utoipa::path(post, path = "/v1/auth/signup", tag = "auth", request_body = SignupRequest,
    responses((status = 202, body = SignupAccepted), (status = 400, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem),
        (status = 409, body = crate::http::Problem, description = "`tenancy.slug_taken`"),
        (status = 429, body = crate::http::Problem)))]
pub(crate) async fn signup(
    State(state): State<IdentityState>,
    ip: ClientIp,
    AuditContext(context): AuditContext,
    ApiJson(req): ApiJson<SignupRequest>,
) -> Result<(StatusCode, Json<SignupAccepted>), ApiError> {
    if state.config.signup != SignupMode::Open {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "auth.signup_closed"));
    }
    limit_ip(&state, &state.login_limiter, ip, &context).await?;
    let email = Email::parse(&req.email)
        .map_err(|e| ApiError::bad_request("identity.invalid_email", e.to_string()))?;
    let slug = Slug::parse(&req.tenant_slug)
        .map_err(|e| ApiError::bad_request("tenancy.invalid_slug", e.to_string()))?;
    let tenant_name = TenantName::parse(&req.tenant_name)
        .map_err(|e| ApiError::bad_request("tenancy.invalid_name", e.to_string()))?;
    let name = validate_name(&req.name).map_err(identity_error)?;
    check_policy(
        &[PasswordPolicy::default()],
        &req.password,
        &[email.as_str(), &name, slug.as_str()],
    )?;
    // A tenant's slug is public (its subdomain); whether an address has an
    // account is not. Checked again when the link is used.
    if tenancy::find_by_slug(&state.db, slug.as_str())
        .await?
        .is_some()
    {
        return Err(slug_taken());
    }
    // Hashed in both cases: the registered address costs the same time.
    let hash = state
        .hasher
        .hash(req.password)
        .await
        .map_err(ApiError::internal)?;
    let existing = users::find_auth_user(&state.db, email.key()).await?;
    let (user_id, tenant_id) = (UserId::new(), TenantId::new());
    let mut tx = state.db.global_tx().await?;
    let expires_at = match existing {
        None => {
            let pending = NewPending {
                purpose: Purpose::Signup {
                    slug: slug.as_str(),
                    name: tenant_name.as_str(),
                },
                email: &email,
                name: &name,
                password_hash: &hash,
                user_id,
                tenant_id,
                tenant_label: tenant_name.as_str(),
            };
            verify::issue(&mut tx, &state, &pending).await?
        }
        Some(user) => {
            verify::notify_existing(&mut tx, &state, &user.email, "sign up").await?;
            state.clock.now() + verify::VERIFICATION_TTL
        }
    };
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(SignupAccepted {
            status: "verification_sent",
            user: PendingUser {
                id: user_id,
                email: email.as_str().to_owned(),
                name,
            },
            tenant: PendingTenant {
                id: tenant_id,
                slug: slug.as_str().to_owned(),
                name: tenant_name.as_str().to_owned(),
            },
            verification_expires_at: expires_at,
        }),
    ))
}

/// The verification link of a sign-up was used: creates the tenant, its
/// keys and its owner (address verified), audits, signs in (201).
pub(crate) async fn complete(
    state: &IdentityState,
    pending: &Pending,
    context: &RequestContext,
) -> Result<Response, ApiError> {
    let stored = |field: &str| ApiError::internal(format!("pending sign-up: bad {field}"));
    let email = Email::parse(&pending.email).map_err(|_| stored("email"))?;
    let new = NewTenant {
        slug: Slug::parse(pending.tenant_slug.as_deref().unwrap_or_default())
            .map_err(|_| stored("slug"))?,
        name: TenantName::parse(pending.tenant_name.as_deref().unwrap_or_default())
            .map_err(|_| stored("tenant name"))?,
    };
    let clock = state.clock.as_ref();
    let mut tx = state.db.global_tx().await?;
    if !verify::claim(&mut tx, pending, clock.now()).await? {
        return Err(verify::invalid_token());
    }
    let tenant = tenancy::insert_tenant_with_id(&mut tx, clock, pending.target_tenant_id, &new)
        .await
        .map_err(tenancy_error)?;
    let user = users::insert_user(
        &mut tx,
        clock,
        pending.user_id,
        &email,
        &pending.name,
        Some(&pending.password_hash),
        true,
    )
    .await
    .map_err(identity_error)?;
    let mut tx = tx.scoped(tenant.id).await?;
    tenancy::provision_keys(&mut tx, clock, &state.master())
        .await
        .map_err(tenancy_error)?;
    tenancy::add_member(&mut tx, clock, user.id, "owner")
        .await
        .map_err(tenancy_error)?;
    let actor = Actor::User {
        id: user.id,
        impersonator: None,
    };
    for event in [
        NewEvent::new(actor.clone(), "tenancy.tenant.created")
            .target(Target::new("tenant", tenant.id))
            .details(serde_json::json!({ "slug": tenant.slug, "name": tenant.name })),
        NewEvent::new(actor.clone(), "auth.user.signed_up")
            .target(Target::new("user", user.id))
            .details(serde_json::json!({ "role": "owner", "email_verified": true })),
    ] {
        audit::append(&mut tx, clock, event.context(context.clone()))
            .await
            .map_err(ApiError::internal)?;
    }
    let (session, refresh) = sessions::create(
        &mut tx,
        clock,
        user.id,
        &state.session_policy,
        context,
        &[Amr::Pwd],
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    let tokens = sessions::access_token(state, &session)?;
    Ok(sessions::with_cookie(
        StatusCode::CREATED,
        SignupResponse {
            tenant,
            user,
            tokens,
        },
        sessions::refresh_cookie(&refresh, state.session_policy.refresh_ttl),
    ))
}

fn slug_taken() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "tenancy.slug_taken")
        .with_detail("this tenant slug is taken")
}

fn tenancy_error(e: TenancyError) -> ApiError {
    match e {
        TenancyError::SlugTaken(_) => slug_taken(),
        other => ApiError::internal(other),
    }
}

fn identity_error(e: IdentityError) -> ApiError {
    match e {
        IdentityError::EmailTaken => verify::email_taken(),
        IdentityError::InvalidName => ApiError::bad_request("identity.invalid_name", e.to_string()),
        IdentityError::InvalidEmail(_) => {
            ApiError::bad_request("identity.invalid_email", e.to_string())
        }
        other => ApiError::internal(other),
    }
}
