//! `/v1/invitations`: invite someone into the tenant by email, list and
//! revoke pending invitations, accept one (SPEC §2.5, §2.13).
//!
//! An invitation carries a single-use token: 256 random bits, valid 7 days,
//! stored only as SHA-256, sent through the sealed email outbox (and returned
//! once to the inviter). The token names its tenant (`<tenant hex>.<secret>`,
//! the refresh-token encoding), so acceptance — which knows no tenant yet —
//! still looks it up tenant-scoped.
//!
//! Accepting:
//! - `{token, name, password}` without credentials: a new account, once its
//!   address is verified (`invitation_accounts.rs`): 202 and a verification
//!   link to the invited address — or, when the address already has an
//!   account, the same 202 and an email to its owner, so the answer never
//!   tells (holding the token does not prove the mailbox: the inviter saw
//!   it). The link creates the account, which joins the inviting tenant and
//!   is signed in there (`POST /v1/auth/verify-email`: 201, tokens + cookie).
//! - `{token}` with `Authorization: Bearer` of an existing user of any tenant
//!   (a partner joining a vendor's portal): the user's email must be the
//!   invited one (403 otherwise); they gain a membership in the inviting
//!   tenant only (200, the membership). They then use
//!   `POST /v1/auth/switch-tenant`.
//!
//! Refusals: unknown or malformed token 404 `tenancy.invitation_not_found`;
//! accepted 410 `tenancy.invitation_used`; revoked 410
//! `tenancy.invitation_revoked`; expired 410 `tenancy.invitation_expired`.
//! An invitation is only as good as its inviter's standing: if, by the time
//! it is accepted, the inviter may no longer manage members or grant its role
//! (or the role is gone), it is refused as revoked.
//!
//! The token, the states and the queries are in `invitation_store.rs`; this
//! file answers the requests and audits them.

use axum::Json;
use axum::extract::{FromRef, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::TenancyState;
use super::invitation_store::{
    COLUMNS, INVITATION_TTL, InvitationState, InvitationToken, Row, claim, find_by_id, insert,
    is_member, load_pending, not_found,
};
use super::members::grantable_role;
use crate::audit::{self, Actor, NewEvent, Target};
use crate::email::{self, Message};
use crate::http::AuthState;
use crate::http::client_ip::ClientIp;
use crate::http::{ApiError, ApiJson, AuditContext, Principal};
use crate::identity::password_gate::limit_ip;
use crate::identity::{self, Email};
use crate::ids::{TenantId, UserId};
use crate::tenancy::{self, TenancyError, Tenant};

impl Row {
    fn view(&self) -> Invitation {
        Invitation {
            id: self.id,
            email: self.email.clone(),
            role: self.role.clone(),
            invited_by: self.invited_by,
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }
}

/// A pending invitation (never its token).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Invitation {
    pub id: Uuid,
    pub email: String,
    pub role: String,
    pub invited_by: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    pub email: String,
    /// A built-in or custom role of the tenant, within the inviter's own
    /// permissions.
    pub role: String,
}

/// The invitation just created, with its token — shown this once (it is
/// also emailed to the invitee).
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedInvitation {
    #[serde(flatten)]
    pub invitation: Invitation,
    pub token: String,
}

/// Invites `email` into the tenant with `role`. A pending invitation for the
/// same address is revoked and replaced (a "resend").
#[utoipa::path(post, path = "/v1/invitations", tag = "tenancy", security(("bearer" = [])),
    request_body = NewInvitation,
    responses((status = 201, body = CreatedInvitation), (status = 400, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem,
            description = "`rbac.forbidden`, `rbac.escalation`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)"),
        (status = 409, body = crate::http::Problem)))]
pub(crate) async fn create(
    State(state): State<TenancyState>,
    p: Principal,
    ApiJson(req): ApiJson<NewInvitation>,
) -> Result<(StatusCode, Json<CreatedInvitation>), ApiError> {
    p.require("members:manage")?;
    p.require_step_up(state.clock.now())?;
    let email = Email::parse(&req.email)
        .map_err(|e| ApiError::bad_request("identity.invalid_email", e.to_string()))?;
    {
        let mut read = state.db.tenant_read(p.tenant_id).await?;
        grantable_role(&mut read, &p, &req.role).await?;
        if is_member(&mut read, email.key()).await? {
            return Err(already_member());
        }
    }
    let tenant = tenancy::find_by_id(&state.db, p.tenant_id)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let token = InvitationToken::generate(p.tenant_id).map_err(ApiError::internal)?;
    let encoded = token.encode();
    let clock = state.clock.as_ref();
    let now = clock.now();
    let row = Row {
        id: Uuid::now_v7(),
        email: email.as_str().to_owned(),
        email_key: email.key().to_owned(),
        role: req.role,
        invited_by: p.user_id,
        created_at: now,
        expires_at: now + INVITATION_TTL,
        accepted_at: None,
        revoked_at: None,
    };
    let body = Zeroizing::new(format!(
        "You have been invited to join {} as {}.\n\n\
         To accept, open this link within 7 days:\n{}/accept-invitation#token={}\n\n\
         If you did not expect this invitation, ignore this message.",
        tenant.name,
        row.role,
        state.issuer,
        encoded.as_str()
    ));
    let subject = format!("You are invited to join {}", tenant.name);
    let mut tx = state.db.global_tx().await?;
    email::enqueue(
        &mut tx,
        clock,
        &state.master(),
        &Message {
            to: email.as_str(),
            kind: "invitation",
            subject: &subject,
            body: &body,
        },
        state.config.is_production(),
    )
    .await
    .map_err(ApiError::internal)?;
    let mut tx = tx.scoped(p.tenant_id).await?;
    let replaced: Vec<(Uuid,)> = tx
        .fetch_all(
            "UPDATE invitations SET revoked_at = $3 WHERE tenant_id = $1 AND email_key = $2 \
             AND accepted_at IS NULL AND revoked_at IS NULL RETURNING id",
            vec![email.key().into(), now.into()],
        )
        .await?;
    insert(&mut tx, &row, &token).await?;
    let mut events: Vec<NewEvent> = replaced
        .iter()
        .map(|(old,)| {
            NewEvent::new(p.actor(), "tenancy.invitation.revoked")
                .target(Target::new("invitation", old))
                .details(serde_json::json!({ "reason": "replaced" }))
        })
        .collect();
    events.push(
        NewEvent::new(p.actor(), "tenancy.invitation.created")
            .target(Target::new("invitation", row.id))
            // No invited address: it is another person's data under the
            // inviter's subject key, which their erasure could not reach
            // (see docs/audit-events.md, "Personal data").
            .details(serde_json::json!({
                "role": row.role,
                "expires_at": row.expires_at,
                "replaced": replaced.iter().map(|(id,)| id.to_string()).collect::<Vec<_>>(),
            })),
    );
    let events = events
        .into_iter()
        .map(|e| e.context(p.context.clone()))
        .collect();
    audit::append_many(&mut tx, clock, events)
        .await
        .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedInvitation {
            invitation: row.view(),
            token: encoded.as_str().to_owned(),
        }),
    ))
}

/// The tenant's pending invitations (not accepted, revoked or expired).
#[utoipa::path(get, path = "/v1/invitations", tag = "tenancy", security(("bearer" = [])),
    responses((status = 200, body = [Invitation]), (status = 403, body = crate::http::Problem)))]
pub(crate) async fn list(
    State(state): State<TenancyState>,
    p: Principal,
) -> Result<Json<Vec<Invitation>>, ApiError> {
    p.require("members:manage")?;
    let now = state.clock.now();
    let mut tx = state.db.tenant_read(p.tenant_id).await?;
    let rows: Vec<Row> = tx
        .fetch_all(
            &format!(
                "SELECT {COLUMNS} FROM invitations WHERE tenant_id = $1 \
                 AND accepted_at IS NULL AND revoked_at IS NULL ORDER BY created_at, id"
            ),
            vec![],
        )
        .await?;
    Ok(Json(
        rows.iter()
            .filter(|r| r.state(now) == InvitationState::Pending)
            .map(Row::view)
            .collect(),
    ))
}

/// Revokes an invitation: its token stops working at once. Revoking a
/// revoked invitation is a no-op (204); an accepted one is 409.
#[utoipa::path(delete, path = "/v1/invitations/{id}", tag = "tenancy", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 403, body = crate::http::Problem,
            description = "`rbac.forbidden`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)"),
        (status = 404, body = crate::http::Problem), (status = 409, body = crate::http::Problem)))]
pub(crate) async fn revoke(
    State(state): State<TenancyState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require("members:manage")?;
    p.require_step_up(state.clock.now())?;
    let id = id.parse::<Uuid>().map_err(|_| not_found())?;
    let now = state.clock.now();
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    let row = find_by_id(&mut tx, id).await?.ok_or_else(not_found)?;
    match row.state(now) {
        InvitationState::Revoked => return Ok(StatusCode::NO_CONTENT),
        InvitationState::Accepted => {
            return Err(
                ApiError::new(StatusCode::CONFLICT, "tenancy.invitation_used")
                    .with_detail("this invitation has been accepted: remove the member instead"),
            );
        }
        InvitationState::Pending | InvitationState::Expired => {}
    }
    let n = tx
        .execute(
            "UPDATE invitations SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2 \
             AND accepted_at IS NULL AND revoked_at IS NULL",
            vec![id.into(), now.into()],
        )
        .await?;
    if n == 0 {
        // Accepted or revoked concurrently.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "tenancy.invitation_used",
        ));
    }
    audit::append(
        &mut tx,
        state.clock.as_ref(),
        NewEvent::new(p.actor(), "tenancy.invitation.revoked")
            .target(Target::new("invitation", id))
            .details(serde_json::json!({ "reason": "revoked" }))
            .context(p.context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    #[schema(value_type = String, format = Password)]
    pub token: SecretString,
    /// New account only (no bearer token): the user's name.
    #[serde(default)]
    pub name: Option<String>,
    /// New account only (no bearer token): checked against the inviting
    /// tenant's password policy.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
}

/// The tenant an invitation admits to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvitedTenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
}

impl InvitedTenant {
    pub(super) fn of(t: &Tenant) -> Self {
        Self {
            id: t.id,
            slug: t.slug.clone(),
            name: t.name.clone(),
        }
    }
}

/// An existing user's new membership.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AcceptedMembership {
    pub tenant: InvitedTenant,
    pub user_id: UserId,
    pub role: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// Accepts an invitation: as a new account (`name` and `password`, no
/// bearer token; 202, and the verification link emailed to the invited
/// address creates the account: `POST /v1/auth/verify-email`), or as the signed-in
/// user the invitation was sent to (`Authorization: Bearer`, token only;
/// 200 with the new membership; never through an impersonation session:
/// 403 `platform.impersonation_forbidden`). A new account from outside the
/// inviting tenant's IP allowlist: 403 `tenancy.ip_not_allowed`, nothing
/// sent or created (and its verification link is refused from outside too).
#[utoipa::path(post, path = "/v1/invitations/accept", tag = "tenancy",
    security((), ("bearer" = [])), request_body = AcceptInvitation,
    responses((status = 200, body = AcceptedMembership), (status = 202, body = super::invitation_accounts::InvitationAccepted),
        (status = 400, body = crate::http::Problem), (status = 401, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem), (status = 404, body = crate::http::Problem),
        (status = 409, body = crate::http::Problem), (status = 410, body = crate::http::Problem),
        (status = 429, body = crate::http::Problem)))]
pub(crate) async fn accept(
    State(state): State<TenancyState>,
    ip: ClientIp,
    AuditContext(context): AuditContext,
    MaybePrincipal(principal): MaybePrincipal,
    ApiJson(req): ApiJson<AcceptInvitation>,
) -> Result<Response, ApiError> {
    let AcceptInvitation {
        token,
        name,
        password,
    } = req;
    let invalid = |detail: &str| ApiError::bad_request("tenancy.invalid_accept", detail);
    match (principal, name, password) {
        (Some(p), None, None) => {
            let token = parse_token(&token)?;
            accept_as_member(&state, &p, &token).await
        }
        (Some(_), _, _) => Err(invalid(
            "signed in: send only the token (name and password are for a new account)",
        )),
        (None, Some(name), Some(password)) => {
            limit_ip(&state, &state.login_limiter, ip, &context).await?;
            let token = parse_token(&token)?;
            let signing_in = (&context, ip.0);
            super::invitation_accounts::accept_as_new_user(
                &state, signing_in, &token, &name, password,
            )
            .await
        }
        (None, _, _) => Err(invalid(
            "send `name` and `password` to create an account, or sign in and send the token \
             with your bearer token",
        )),
    }
}

/// An existing user joins the inviting tenant.
async fn accept_as_member(
    state: &AuthState,
    p: &Principal,
    token: &InvitationToken,
) -> Result<Response, ApiError> {
    p.forbid_impersonation(state, crate::platform::operation::INVITATION_ACCEPT)
        .await?;
    let user = identity::find_user(&state.db, p.user_id)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let tenant = active_tenant(state, token.tenant()).await?;
    let clock = state.clock.as_ref();
    let now = clock.now();
    let mut tx = state.db.tenant_tx(token.tenant()).await?;
    let inv = load_pending(&mut tx, token, now).await?;
    if invited_key(&inv) != user.email_key {
        return Err(
            ApiError::new(StatusCode::FORBIDDEN, "tenancy.invitation_email_mismatch")
                .with_detail("this invitation was sent to another email address"),
        );
    }
    claim(&mut tx, &inv, user.id, now).await?;
    let membership = tenancy::add_member(&mut tx, clock, user.id, &inv.role)
        .await
        .map_err(tenancy_error)?;
    audit::append(
        &mut tx,
        clock,
        accepted_event(p.actor(), &inv, user.id, false).context(p.context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok((
        StatusCode::OK,
        Json(AcceptedMembership {
            tenant: InvitedTenant::of(&tenant),
            user_id: membership.user_id,
            role: membership.role,
            status: membership.status,
            created_at: membership.created_at,
        }),
    )
        .into_response())
}

/// The canonical key of the invited address (the stored key of an
/// invitation made before canonical keys, if its address is now refused).
fn invited_key(inv: &Row) -> String {
    Email::parse(&inv.email).map_or_else(|_| inv.email_key.clone(), |e| e.key().to_owned())
}

pub(super) fn accepted_event(actor: Actor, inv: &Row, user: UserId, new_account: bool) -> NewEvent {
    NewEvent::new(actor, "tenancy.invitation.accepted")
        .target(Target::new("invitation", inv.id))
        .details(serde_json::json!({
            "email": inv.email,
            "role": inv.role,
            "user_id": user,
            "invited_by": inv.invited_by,
            "new_account": new_account,
        }))
}

/// The bearer token's principal when an `Authorization` header is sent
/// (and 401 if it does not authenticate); `None` without one.
pub(crate) struct MaybePrincipal(Option<Principal>);

impl<S> FromRequestParts<S> for MaybePrincipal
where
    AuthState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok(Self(None));
        }
        Principal::from_request_parts(parts, state)
            .await
            .map(|p| Self(Some(p)))
    }
}

fn parse_token(token: &SecretString) -> Result<InvitationToken, ApiError> {
    use secrecy::ExposeSecret;
    InvitationToken::parse(token.expose_secret()).ok_or_else(not_found)
}

fn already_member() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "tenancy.already_member")
        .with_detail("this address already belongs to a member of this tenant")
}

pub(super) fn tenancy_error(e: TenancyError) -> ApiError {
    match e {
        TenancyError::AlreadyMember => already_member(),
        other => ApiError::internal(other),
    }
}

/// The inviting tenant, which must be active to be joined.
pub(super) async fn active_tenant(state: &AuthState, id: TenantId) -> Result<Tenant, ApiError> {
    let tenant = tenancy::find_by_id(&state.db, id)
        .await?
        .ok_or_else(not_found)?;
    if tenant.status() != Some(tenancy::TenantStatus::Active) {
        return Err(
            ApiError::new(StatusCode::CONFLICT, "tenancy.tenant_inactive")
                .with_detail("this tenant is not active"),
        );
    }
    Ok(tenant)
}
