//! Starting a session once a user has signed in, whichever way they did
//! (password, password and second factor, passkey, sign-in link, tenant
//! switch): the tenant's IP allowlist must admit the client coming in
//! through that pathway (403 `tenancy.ip_not_allowed`, nothing issued),
//! then the session is created with how the user signed in (`amr`), the
//! sign-in is audited, and the answer carries the access token and the
//! refresh cookie. One definition, so no pathway can skip a step.

use axum::http::StatusCode;
use axum::response::Response;
use stockade_core::mfa::amr::Amr;

use super::SessionPolicy;
use crate::audit::{self, Actor, NewEvent, RequestContext, Target};
use crate::http::client_ip::ClientAddr;
use crate::http::{ApiError, AuthState};
use crate::ids::{TenantId, UserId};
use crate::tenancy::allowlist::{self, Pathway};

/// What a sign-in established.
pub(crate) struct SignIn<'a> {
    pub user: UserId,
    pub tenant: TenantId,
    /// The audit action of the sign-in (`auth.login.succeeded`, …).
    pub action: &'a str,
    pub context: &'a RequestContext,
    /// The password (or a second factor) was proved just now: the session
    /// starts stepped up.
    pub proved: bool,
    pub amr: &'a [Amr],
    pub entry: (Pathway, ClientAddr),
}

/// Creates the session of `sign_in`, appends its audit event after
/// `before` (events of the same sign-in, e.g. `auth.mfa.succeeded`), and
/// answers 200 with tokens and the refresh cookie.
pub(crate) async fn start(
    state: &AuthState,
    policy: &SessionPolicy,
    sign_in: SignIn<'_>,
    before: Vec<NewEvent>,
) -> Result<Response, ApiError> {
    let clock = state.clock.as_ref();
    let actor = Actor::User {
        id: sign_in.user,
        impersonator: None,
    };
    let (pathway, client) = sign_in.entry;
    let tx = state.db.tenant_tx(sign_in.tenant).await?;
    let mut tx =
        allowlist::admit_in(state, tx, actor.clone(), client, pathway, sign_in.context).await?;
    let created = if sign_in.proved {
        super::create(
            &mut tx,
            clock,
            sign_in.user,
            policy,
            sign_in.context,
            sign_in.amr,
        )
        .await
    } else {
        super::create_unproven(
            &mut tx,
            clock,
            sign_in.user,
            policy,
            sign_in.context,
            sign_in.amr,
        )
        .await
    };
    let (session, refresh) = created.map_err(ApiError::internal)?;
    let mut events = before;
    events.push(
        NewEvent::new(actor, sign_in.action)
            .target(Target::new("session", session.id))
            .details(serde_json::json!({
                "amr": stockade_core::mfa::amr::encode(sign_in.amr),
            })),
    );
    let events = events
        .into_iter()
        .map(|e| e.context(sign_in.context.clone()))
        .collect();
    audit::append_many(&mut tx, clock, events)
        .await
        .map_err(ApiError::internal)?;
    tx.commit().await?;
    let tokens = super::access_token(state, &session)?;
    Ok(super::with_cookie(
        StatusCode::OK,
        tokens,
        super::refresh_cookie(&refresh, policy.refresh_ttl),
    ))
}
