//! The platform operator's console API (SPEC §2.6): `/v1/platform/*`, open
//! only to platform owners (`owners.rs`: user ids or verified emails in
//! `STOCKADE_PLATFORM_OWNERS`, or `stockade platform add-owner`). Tenants can
//! be listed, suspended and reinstated; users can be impersonated (a
//! 15-minute session marked with the owner's id, the `act` claim) or sent a
//! one-time sign-in link. Every route, the tenant listing included, needs a
//! recent password proof (step-up): within the step-up window of the tenant
//! the owner is signed into, but never longer than the default 5 minutes
//! (that tenant's admins cannot lengthen a platform owner's window). Every
//! change also needs `"confirm": true`, and is audited in the platform log
//! and in the affected tenant's log, in the same transaction as the change.
//! What an impersonation session may never do is refused by one guard
//! (`forbidden.rs`, `Principal::forbid_impersonation`).

mod expiry;
mod forbidden;
pub mod owners;
pub mod routes;
pub mod sign_in_links;
mod state;
mod store;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;

pub use expiry::{SWEEP_INTERVAL, end_expired_impersonations, scheduled_sweep};
pub use forbidden::{IMPERSONATION_FORBIDDEN, operation};
pub use routes::{PlatformApi, routes};
pub use state::PlatformState;

use crate::audit::sampler::{self, Sampled};
use crate::audit::{Actor, NewEvent, Outcome};
use crate::http::AuthState;
use crate::http::{ApiError, Principal};
use crate::ids::TenantId;

/// A request from a platform owner acting as themselves (never through an
/// impersonation session). Unauthenticated: 401; anyone else: 403
/// `platform.forbidden`.
#[derive(Debug, Clone)]
pub struct PlatformOwner(pub Principal);

impl PlatformOwner {
    /// How platform actions are attributed in every log.
    pub fn actor(&self) -> Actor {
        Actor::PlatformOwner { id: self.0.user_id }
    }
}

impl std::ops::Deref for PlatformOwner {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S> FromRequestParts<S> for PlatformOwner
where
    AuthState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let mut p = Principal::from_request_parts(parts, state).await?;
        // The owner's tenant chooses its own window, not the platform's.
        p.step_up_window = p.step_up_window.min(crate::sessions::STEP_UP_WINDOW);
        let state = &AuthState::from_ref(state);
        // An impersonation session acts as its user, who is no owner; and
        // an owner must not chain impersonation into platform powers.
        if p.impersonator.is_some() {
            deny(state, &p, "impersonation", parts.uri.path()).await;
            return Err(forbidden());
        }
        let user = crate::identity::find_user(&state.db, p.user_id)
            .await?
            .ok_or_else(ApiError::unauthenticated)?;
        if !owners::is_owner(&state.db, &state.config.platform_owners, &user).await? {
            deny(state, &p, "not_owner", parts.uri.path()).await;
            return Err(forbidden());
        }
        // Platform owners always need a second factor (SPEC §2.4): enrolled,
        // and used to sign in (or to step up) in this session.
        if !p.mfa_enabled || !p.amr.iter().any(|m| m.is_second_factor()) {
            deny(state, &p, "mfa_required", parts.uri.path()).await;
            return Err(crate::mfa::gate::enrolment_required().with_detail(
                "platform owners need a second factor: enrol one (POST /v1/auth/mfa/totp/setup \
                 or /v1/auth/webauthn/register/begin), then sign in with it or confirm it at \
                 POST /v1/auth/reauth",
            ));
        }
        Ok(Self(p))
    }
}

/// Longest request path recorded in `platform.access.denied`.
const MAX_PATH: usize = 200;

/// Records a refused platform call in the platform chain, sampled: at most
/// one event per user and reason per minute, each with the count of the
/// refusals it stands for (`audit::sampler`), so a client cannot flood the
/// log.
async fn deny(state: &AuthState, p: &Principal, reason: &'static str, path: &str) {
    let make = || {
        let path: String = path.chars().take(MAX_PATH).collect();
        let event = NewEvent::new(p.actor(), "platform.access.denied")
            .outcome(Outcome::Denied)
            .details(serde_json::json!({
                "reason": reason,
                "path": path,
                "tenant_id": p.tenant_id,
            }))
            .context(p.context.clone());
        Sampled::new(TenantId::PLATFORM, event)
    };
    sampler::record(state, &state.refusals.platform, (p.user_id.0, reason), make).await;
}

fn forbidden() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "platform.forbidden")
        .with_detail("only platform owners may use the platform API")
}
