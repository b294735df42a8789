//! A second factor as the proof of a step-up (`POST /v1/auth/reauth` with
//! `totp`, `recovery_code` or `webauthn` instead of `password`): the same
//! check as sign-in's second step, under the same lockout, audited as
//! `auth.step_up.failed` when wrong.

use stockade_core::mfa::amr::Amr;

use super::signin::{self, Checked};
use crate::audit::{NewEvent, Outcome, Target};
use crate::http::{ApiError, AuthState, Principal};

/// The method proved, or the refusal (400 `auth.mfa_invalid_code` /
/// `auth.webauthn_invalid`, counted toward the lockout; 429 while the
/// account is locked; 400 `auth.mfa_factor_required` with none or several).
pub(crate) async fn prove(
    state: &AuthState,
    p: &Principal,
    totp: &Option<String>,
    recovery_code: &Option<String>,
    webauthn: &Option<serde_json::Value>,
) -> Result<Amr, ApiError> {
    let factor = signin::one_factor(totp.as_deref(), recovery_code.as_deref(), webauthn.as_ref())?;
    crate::identity::refuse_if_locked(state, p.user_id).await?;
    let checked = signin::check(state, p.user_id, p.tenant_id, &factor, None, &p.context).await?;
    match checked {
        Checked::Proved(method) => Ok(method),
        Checked::Refused(reason) => {
            let event = NewEvent::new(p.actor(), "auth.step_up.failed")
                .target(Target::new("session", p.session_id))
                .outcome(Outcome::Failure)
                .details(serde_json::json!({ "method": factor.name(), "reason": reason }));
            crate::identity::count_factor_failure(state, p.user_id, p.tenant_id, event, &p.context)
                .await?;
            Err(match factor {
                signin::Factor::WebAuthn(_) => super::webauthn::invalid(),
                _ => super::totp::invalid_code(),
            })
        }
    }
}
