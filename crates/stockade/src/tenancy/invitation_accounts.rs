//! A new account accepting an invitation (issue #17 item 8): created only
//! once its address is verified, and answered alike whether or not the
//! address already has an account.
//!
//! `POST /v1/invitations/accept {token, name, password}` (no bearer token)
//! checks the invitation and the inviting tenant's password policy, hashes
//! the password in every case, then queues either a verification link to
//! the invited address (nothing is created yet) or, when the address has an
//! account, an email to its owner; the answer (202) is the same. The link
//! (`POST /v1/auth/verify-email`) creates the account with its address
//! verified, claims the invitation and signs in ([`complete`]).
//!
//! Both steps are pathways into the tenant for its IP allowlist
//! (`tenancy::allowlist`, pathway `invitation`): from outside the list the
//! acceptance is refused before any hashing (nothing stored or sent), and
//! the link is refused before anything is created (nor is it used up).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;

use super::TenancyState;
use super::invitation_store::{
    InvitationToken, claim, inviter_may_still_grant, load_pending, load_pending_by_id, not_found,
    revoked,
};
use super::invitations::{InvitedTenant, accepted_event, active_tenant, tenancy_error};
use crate::audit::{self, Actor, RequestContext};
use crate::http::ApiError;
use crate::http::AuthState;
use crate::http::client_ip::ClientAddr;
use crate::identity::password_gate::check_policy;
use crate::identity::signup::PendingUser;
use crate::identity::verify::{self, NewPending, Pending, Purpose};
use crate::identity::{self, Email, IdentityError, User, validate_name};
use crate::ids::UserId;
use crate::sessions::{self, SessionPolicy, TokenResponse};
use crate::tenancy;
use crate::tenancy::allowlist::{self, Pathway};
use stockade_core::mfa::amr::Amr;

/// An invitation accepted by a new account, waiting for its verification
/// link. The same shape whether or not the address has an account (the
/// user id is then random).
#[derive(Serialize, utoipa::ToSchema)]
pub struct InvitationAccepted {
    /// Always `verification_sent`: open the link in the email to finish.
    pub status: &'static str,
    pub user: PendingUser,
    pub tenant: InvitedTenant,
    pub role: String,
    /// When the verification link expires (30 minutes).
    pub verification_expires_at: DateTime<Utc>,
}

/// A new account, signed in to the inviting tenant (the answer of
/// `POST /v1/auth/verify-email` for an invitation).
#[derive(Serialize, utoipa::ToSchema)]
pub struct AcceptedAccount {
    #[schema(value_type = Object)]
    pub user: User,
    pub tenant: InvitedTenant,
    pub role: String,
    #[serde(flatten)]
    pub tokens: TokenResponse,
}

/// Queues the verification link (or the existing owner's email); 202. A
/// client outside the inviting tenant's IP allowlist: 403
/// `tenancy.ip_not_allowed`, before any hashing, nothing stored or sent.
pub(super) async fn accept_as_new_user(
    state: &TenancyState,
    (context, client): (&RequestContext, ClientAddr),
    token: &InvitationToken,
    name: &str,
    password: SecretString,
) -> Result<Response, ApiError> {
    let clock = state.clock.as_ref();
    // Cheap refusals first, before any password hashing.
    let (inv, settings) = {
        let mut read = state.db.tenant_read(token.tenant()).await?;
        let inv = load_pending(&mut read, token, clock.now()).await?;
        if !inviter_may_still_grant(&mut read, &inv).await? {
            return Err(revoked());
        }
        (inv, tenancy::settings::load(&mut read).await?)
    };
    let (policy, list) = (settings.password_policy, settings.ip_allowlist);
    let pathway = Pathway::Invitation;
    let tenant_id = token.tenant();
    allowlist::check(
        state,
        tenant_id,
        Actor::System,
        &list,
        client,
        pathway,
        context,
    )
    .await?;
    let tenant = active_tenant(state, token.tenant()).await?;
    let email = Email::parse(&inv.email).map_err(|e| {
        ApiError::bad_request(
            "identity.invalid_email",
            format!("the invited address is no longer accepted ({e}): ask for a new invitation"),
        )
    })?;
    let name = validate_name(name)
        .map_err(|e| ApiError::bad_request("identity.invalid_name", e.to_string()))?;
    check_policy(&[policy], &password, &[email.as_str(), &name, &tenant.slug])?;
    // Hashed in both cases: the registered address costs the same time.
    let hash = state
        .hasher
        .hash(password)
        .await
        .map_err(ApiError::internal)?;
    let existing = identity::find_auth_user(&state.db, email.key()).await?;
    let user_id = UserId::new();
    let mut tx = state.db.global_tx().await?;
    let expires_at = match existing {
        None => {
            let pending = NewPending {
                purpose: Purpose::Invitation { invitation: inv.id },
                email: &email,
                name: &name,
                password_hash: &hash,
                user_id,
                tenant_id: tenant.id,
                tenant_label: &tenant.name,
            };
            verify::issue(&mut tx, state, &pending).await?
        }
        Some(user) => {
            let attempt = format!(
                "create an account to accept an invitation to {} (sign in, then open the \
                 invitation link again to join with your account)",
                tenant.name
            );
            verify::notify_existing(&mut tx, state, &user.email, &attempt).await?;
            clock.now() + verify::VERIFICATION_TTL
        }
    };
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(InvitationAccepted {
            status: "verification_sent",
            user: PendingUser {
                id: user_id,
                email: email.as_str().to_owned(),
                name,
            },
            tenant: InvitedTenant::of(&tenant),
            role: inv.role,
            verification_expires_at: expires_at,
        }),
    )
        .into_response())
}

/// The verification link of an invited new account was used: creates the
/// account (address verified), claims the invitation, joins the tenant,
/// audits and signs in there (201). From a `client` outside the tenant's IP
/// allowlist: 403 `tenancy.ip_not_allowed`, everything rolled back (no
/// account, the link and the invitation still unused).
pub(crate) async fn complete(
    state: &AuthState,
    session_policy: &SessionPolicy,
    pending: &Pending,
    (context, client): (&RequestContext, ClientAddr),
) -> Result<Response, ApiError> {
    let email = Email::parse(&pending.email)
        .map_err(|_| ApiError::internal("pending invitation: bad email"))?;
    let invitation = pending.invitation_id.ok_or_else(not_found)?;
    let tenant = active_tenant(state, pending.target_tenant_id).await?;
    let clock = state.clock.as_ref();
    let now = clock.now();
    let mut tx = state.db.global_tx().await?;
    if !verify::claim(&mut tx, pending, now).await? {
        return Err(verify::invalid_token());
    }
    let user = identity::insert_user(
        &mut tx,
        clock,
        pending.user_id,
        &email,
        &pending.name,
        Some(&pending.password_hash),
        true,
    )
    .await
    .map_err(|e| match e {
        IdentityError::EmailTaken => verify::email_taken(),
        other => ApiError::internal(other),
    })?;
    let tx = tx.scoped(tenant.id).await?;
    let mut tx = allowlist::admit_in(
        state,
        tx,
        Actor::System,
        client,
        Pathway::Invitation,
        context,
    )
    .await?;
    let inv = load_pending_by_id(&mut tx, invitation, now).await?;
    claim(&mut tx, &inv, user.id, now).await?;
    let membership = tenancy::add_member(&mut tx, clock, user.id, &inv.role)
        .await
        .map_err(tenancy_error)?;
    let actor = Actor::User {
        id: user.id,
        impersonator: None,
    };
    audit::append(
        &mut tx,
        clock,
        accepted_event(actor, &inv, user.id, true).context(context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    let (session, refresh) = sessions::create(
        &mut tx,
        clock,
        user.id,
        session_policy,
        context,
        &[Amr::Pwd],
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    let tokens = sessions::access_token(state, &session)?;
    Ok(sessions::with_cookie(
        StatusCode::CREATED,
        AcceptedAccount {
            user,
            tenant: InvitedTenant::of(&tenant),
            role: membership.role,
            tokens,
        },
        sessions::refresh_cookie(&refresh, session_policy.refresh_ttl),
    ))
}
