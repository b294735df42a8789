//! What an impersonation may never do (issue #17 item 1).
//!
//! An impersonation session lets a platform owner act as a user for 15
//! minutes, marked (`act` claim, `impersonator_id` on the session and on
//! every audit event). It must never turn into anything that outlives it or
//! drops the mark: a new session (tenant switch), a password proof (step-up),
//! credentials (API keys), or a change to the account's own security
//! (password, account deletion, signing out of every tenant, and later email
//! and MFA changes). Every such
//! route calls [`Principal::forbid_impersonation`] first — this one piece of
//! code — which answers 403 `platform.impersonation_forbidden` and records
//! `platform.impersonation.denied` with the impersonator, in the tenant's
//! chain and the platform's.
//!
//! Refusing rather than carrying the mark along: a tenant switch would move
//! the impersonation into a tenant the owner never named (whose log has no
//! `platform.impersonation.started`), a step-up would claim a password the
//! owner does not hold, and keys or password changes outlive the 15 minutes
//! by design. Nothing of the sort is needed to support a user.

use axum::http::StatusCode;
use serde_json::json;

use crate::audit::sampler::{self, Sampled};
use crate::audit::{NewEvent, Outcome, Target};
use crate::http::{ApiError, AuthState, Principal};

/// The stable code of the refusal.
pub const IMPERSONATION_FORBIDDEN: &str = "platform.impersonation_forbidden";

/// The operations an impersonation is refused, as `details.operation` names
/// them.
pub mod operation {
    pub const TENANT_SWITCH: &str = "tenant_switch";
    pub const STEP_UP: &str = "step_up";
    pub const PASSWORD_CHANGE: &str = "password_change";
    pub const LOGOUT_ALL: &str = "logout_all";
    pub const ACCOUNT_DELETION: &str = "account_deletion";
    pub const INVITATION_ACCEPT: &str = "invitation_accept";
    pub const API_KEY_LIST: &str = "api_key_list";
    pub const API_KEY_CREATE: &str = "api_key_create";
    pub const API_KEY_ROTATE: &str = "api_key_rotate";
    pub const API_KEY_REVOKE: &str = "api_key_revoke";
    pub const MFA_CHANGE: &str = "mfa_change";
}

impl Principal {
    /// The guard of every route an impersonation may not use: `Ok` for a
    /// user in a session of their own (or an API key, which routes refuse on
    /// their own terms); for an impersonation session, 403
    /// `platform.impersonation_forbidden`, audited with the impersonator
    /// (sampled: one event per session and operation per minute, with the
    /// count of refusals it stands for). Call it before anything else.
    pub async fn forbid_impersonation(
        &self,
        state: &AuthState,
        operation: &'static str,
    ) -> Result<(), ApiError> {
        if self.impersonator.is_none() {
            return Ok(());
        }
        let make = || event(self, operation);
        let key = (self.session_id.0, operation);
        sampler::record(state, &state.refusals.impersonation, key, make).await;
        Err(
            ApiError::new(StatusCode::FORBIDDEN, IMPERSONATION_FORBIDDEN).with_detail(
                "an impersonation session cannot do this: the user must do it themselves",
            ),
        )
    }
}

/// `platform.impersonation.denied` in the session's tenant and, in the same
/// transaction, in the platform chain (with `tenant_id`); the sampler adds the
/// count of refusals it stands for.
fn event(p: &Principal, operation: &'static str) -> Sampled {
    let event = NewEvent::new(p.actor(), "platform.impersonation.denied")
        .target(Target::new("session", p.session_id))
        .outcome(Outcome::Denied)
        .details(json!({ "operation": operation }))
        .context(p.context.clone());
    Sampled::new(p.tenant_id, event).with_platform_copy()
}
