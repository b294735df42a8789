//! What a member may do while the tenant's MFA policy covers them and they
//! have no factor yet: enrol one, and nothing else. Every other route
//! answers 403 `auth.mfa_enrolment_required`. Enrolment needs a step-up
//! (`/v1/auth/reauth`), and the member may still see who they are
//! (`GET /v1/me`) and sign out.

use axum::http::request::Parts;
use axum::http::{Method, StatusCode};

use crate::http::ApiError;

/// Path prefixes an unenrolled member may still call (at a segment
/// boundary).
pub const ENROLMENT_PATHS: &[&str] = &[
    "/v1/auth/mfa/totp",
    "/v1/auth/webauthn/register",
    "/v1/auth/reauth",
    "/v1/auth/logout",
];

/// 403 `auth.mfa_enrolment_required`.
pub fn enrolment_required() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "auth.mfa_enrolment_required").with_detail(
        "a second factor is required here: enrol one first (POST /v1/auth/mfa/totp/setup \
         or POST /v1/auth/webauthn/register/begin)",
    )
}

/// Admits only the enrolment routes (and `GET /v1/me`).
pub fn enrolment_only(parts: &Parts) -> Result<(), ApiError> {
    let path = parts.uri.path();
    let enrolling = ENROLMENT_PATHS.iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    if enrolling || (parts.method == Method::GET && path == "/v1/me") {
        return Ok(());
    }
    Err(enrolment_required())
}
