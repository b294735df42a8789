//! WebAuthn (passkeys and security keys) as a factor. In progress (#19):
//! until the ceremonies land, no user can hold a credential, so no
//! assertion can be right.

use axum::http::StatusCode;

use super::challenge::Pending;
use super::signin::Checked;
use crate::http::{ApiError, AuthState};
use crate::ids::UserId;

/// 400 `auth.webauthn_invalid`.
pub fn invalid() -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "auth.webauthn_invalid")
        .with_detail("the WebAuthn response does not verify")
}

/// Checks a WebAuthn assertion of `user`.
pub(crate) async fn check_assertion(
    _state: &AuthState,
    _user: UserId,
    _pending: Option<&Pending>,
    _assertion: &serde_json::Value,
) -> Result<Checked, ApiError> {
    Ok(Checked::Refused("no_webauthn_credential"))
}
