//! `/v1/members` and `/v1/invitations`.
//!
//! Status codes: 200/201/204 on success; 400 bad input (unknown fields,
//! unknown role `tenancy.unknown_role`, malformed email); 401 no or dead
//! credentials; 403 missing `members:manage` (`rbac.forbidden`), escalation
//! (`rbac.escalation`), or an invitation accepted by a user of another email;
//! 404 a member or invitation not in the caller's tenant; 409 the last owner
//! (`tenancy.last_owner`), already a member, an account that exists already;
//! 410 an invitation that was used, revoked or has expired.

use axum::Router;
use axum::routing::{get, patch, post};

use super::TenancyState;
use super::{invitations, members};

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        members::list,
        members::update,
        members::remove,
        invitations::create,
        invitations::list,
        invitations::revoke,
        invitations::accept
    ),
    components(schemas(
        members::Member,
        members::UpdateMember,
        invitations::Invitation,
        invitations::NewInvitation,
        invitations::CreatedInvitation,
        invitations::AcceptInvitation,
        invitations::InvitedTenant,
        invitations::AcceptedMembership,
        super::invitation_accounts::AcceptedAccount,
        super::invitation_accounts::InvitationAccepted,
        crate::identity::signup::PendingUser
    ))
)]
pub struct TenancyApi;

pub fn routes() -> Router<TenancyState> {
    Router::new()
        .route("/v1/members", get(members::list))
        .route(
            "/v1/members/{user_id}",
            patch(members::update).delete(members::remove),
        )
        .route(
            "/v1/invitations",
            get(invitations::list).post(invitations::create),
        )
        .route("/v1/invitations/accept", post(invitations::accept))
        .route(
            "/v1/invitations/{id}",
            axum::routing::delete(invitations::revoke),
        )
}
