//! The one verification of a WebAuthn assertion, whichever ceremony it
//! answers: the stored credential it names (of the expected user; the
//! user handle, when sent, must name the same user), `webauthn-rs`
//! verifying challenge, origin, RP id, user verification, signature and
//! signature counter against the credential **as stored now** (not as it
//! was when the ceremony began), then the use recorded (counter,
//! `last_used_at`) only if the row did not change meanwhile. A counter that
//! did not go up is the sign of a cloned authenticator: refused, and
//! audited as `auth.mfa.webauthn.counter_regression`.

use stockade_core::mfa::amr::Amr;
use uuid::Uuid;
use webauthn_rs::prelude::{DiscoverableAuthentication, PublicKeyCredential, WebauthnError};

use super::ceremony::{self, Find, Kind};
use super::store;
use crate::audit::{self, Actor, NewEvent, Outcome, RequestContext, Target};
use crate::http::{ApiError, AuthState};
use crate::ids::{TenantId, UserId};
use crate::mfa::challenge::Pending;
use crate::mfa::signin::Checked;

/// A verified assertion.
pub(crate) struct Verified {
    pub user: UserId,
    pub method: Amr,
}

/// Where a verification's events go: the tenant of the sign-in or
/// step-up, or (passwordless, before a tenant is chosen) every tenant the
/// user is an active member of.
pub(crate) enum AuditIn {
    Tenant(TenantId),
    Memberships,
}

/// Verifies `cred` against the ceremony state `st`. `owner`: the user the
/// credential must belong to (`None`: passwordless, the credential names
/// its user, and the user handle must agree). `Err` only for failures of
/// the server; a wrong assertion is `Ok(Err(reason))`.
pub(crate) async fn verify(
    state: &AuthState,
    st: DiscoverableAuthentication,
    cred: &PublicKeyCredential,
    owner: Option<UserId>,
    audit_in: AuditIn,
    context: &RequestContext,
) -> Result<Result<Verified, &'static str>, ApiError> {
    let row = {
        let mut tx = state.db.global_read().await?;
        store::by_credential_id(&mut tx, cred.get_credential_id()).await?
    };
    let Some(row) = row else {
        return Ok(Err("unknown_credential"));
    };
    if owner.is_some_and(|o| o != row.user_id) {
        return Ok(Err("another_users_credential"));
    }
    match cred.get_user_unique_id().map(Uuid::from_slice) {
        Some(Ok(handle)) if handle == row.user_id.0 => {}
        None if owner.is_some() => {}
        _ => return Ok(Err("user_handle_mismatch")),
    }
    let passkey = row.passkey()?;
    let wa = super::relying_party(&state.config)?;
    let result = match wa.finish_discoverable_authentication_v2(cred, st, &passkey) {
        Ok(result) => result,
        Err(WebauthnError::CredentialPossibleCompromise) => {
            counter_regression(state, &row, audit_in, context).await?;
            return Ok(Err("counter_regression"));
        }
        Err(_) => return Ok(Err("assertion_invalid")),
    };
    let mut updated = passkey;
    updated.update_credential(&result);
    let after = serde_json::to_string(&updated).map_err(ApiError::internal)?;
    let mut tx = state.db.global_tx().await?;
    if !store::record_use(&mut tx, row.id, &row.passkey, &after, state.clock.now()).await? {
        return Ok(Err("concurrent_use"));
    }
    tx.commit().await?;
    let method = Amr::parse(&row.kind).ok_or_else(|| ApiError::internal("credential kind"))?;
    Ok(Ok(Verified {
        user: row.user_id,
        method,
    }))
}

async fn counter_regression(
    state: &AuthState,
    row: &store::CredentialRow,
    audit_in: AuditIn,
    context: &RequestContext,
) -> Result<(), ApiError> {
    let tenants = match audit_in {
        AuditIn::Tenant(t) => vec![t],
        AuditIn::Memberships => crate::identity::memberships_of(&state.db, row.user_id)
            .await?
            .into_iter()
            .filter(|m| m.status == "active")
            .map(|m| m.tenant_id)
            .collect(),
    };
    tracing::warn!(credential = %row.id, user = %row.user_id,
        "WebAuthn signature counter did not increase: possibly a cloned authenticator");
    for tenant in tenants {
        let event = NewEvent::new(
            Actor::User {
                id: row.user_id,
                impersonator: None,
            },
            "auth.mfa.webauthn.counter_regression",
        )
        .target(Target::new("webauthn_credential", row.id))
        .outcome(Outcome::Failure)
        .details(serde_json::json!({ "name": row.name, "kind": row.kind }))
        .context(context.clone());
        let mut tx = state.db.tenant_tx(tenant).await?;
        audit::append(&mut tx, state.clock.as_ref(), event)
            .await
            .map_err(ApiError::internal)?;
        tx.commit().await?;
    }
    Ok(())
}

/// Checks a WebAuthn assertion of `user`: for the sign-in `pending` (the
/// ceremony `POST /v1/auth/webauthn/login/begin` opened with its
/// `mfa_token`), or, without one, for a step-up (the ceremony of
/// `POST /v1/auth/webauthn/reauth/begin`). Malformed or oversized input
/// and no open ceremony are `Err` (4xx, nothing counted); a response that
/// does not verify is `Refused` (the caller counts it).
pub(crate) async fn check_assertion(
    state: &AuthState,
    user: UserId,
    tenant: TenantId,
    pending: Option<&Pending>,
    assertion: &serde_json::Value,
    context: &RequestContext,
) -> Result<Checked, ApiError> {
    let cred: PublicKeyCredential = super::parse(assertion)?;
    let st: DiscoverableAuthentication = match pending {
        Some(p) => {
            ceremony::take(
                state,
                Kind::SecondFactor,
                Find::Binding(p.token_hash(), user),
            )
            .await?
        }
        None => ceremony::take(state, Kind::StepUp, Find::User(user)).await?,
    };
    let verified = verify(
        state,
        st,
        &cred,
        Some(user),
        AuditIn::Tenant(tenant),
        context,
    )
    .await?;
    Ok(match verified {
        Ok(v) => Checked::Proved(v.method),
        Err(reason) => Checked::Refused(reason),
    })
}
