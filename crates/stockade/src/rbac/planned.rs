//! The one answer to a planned permission wherever a permission is granted
//! (custom roles, API key scopes): 422 `rbac.permission_planned`. Which
//! permissions are planned, and how to find them, is a pure rule of
//! `stockade_core::rbac::planned` (re-exported here); this file must only
//! turn them into the HTTP refusal.

use axum::http::StatusCode;

pub use stockade_core::rbac::planned::{PermissionStatus, is_planned, planned_among};

use crate::http::ApiError;

/// 422 `rbac.permission_planned` naming `planned` (`errors.permissions`).
pub fn planned_refused(planned: Vec<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "rbac.permission_planned")
        .with_detail(format!(
            "not grantable until its capability exists (planned): {}",
            planned.join(", ")
        ))
        .with_errors(serde_json::json!({ "permissions": planned }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_grants_are_named() {
        let grants = ["records:read".to_owned(), "secrets:reveal".to_owned()];
        let err = planned_refused(planned_among(&grants));
        assert_eq!(err.status_code(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.code(), "rbac.permission_planned");
        assert!(err.problem().detail.unwrap().contains("secrets:reveal"));
    }
}
