//! Planned permissions (`model::PLANNED_PERMISSIONS`): their capability does
//! not exist yet, so no route checks them. They are listed with their
//! status, and refused wherever a permission is granted (custom roles, API
//! key scopes) with one answer: 422 `rbac.permission_planned`.

use axum::http::StatusCode;
use serde::Serialize;

use super::model::{PermissionError, parse_permission};
use crate::http::ApiError;

/// `live`: a route checks it. `planned`: its capability does not exist
/// yet, so no role or API key may carry it (422 `rbac.permission_planned`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PermissionStatus {
    Live,
    Planned,
}

/// Whether `grant` (plain or per collection) names a planned permission.
pub fn is_planned(grant: &str) -> bool {
    matches!(parse_permission(grant), Err(PermissionError::Planned(_)))
}

/// The grants among `grants` that name planned permissions, in order.
pub fn planned_among(grants: &[String]) -> Vec<String> {
    grants.iter().filter(|g| is_planned(g)).cloned().collect()
}

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
    fn planned_grants_are_found_and_named() {
        assert!(is_planned("files:read"));
        assert!(is_planned("exports:create"));
        assert!(!is_planned("records:read"));
        assert!(!is_planned("root:all"));
        let grants = ["records:read".to_owned(), "secrets:reveal".to_owned()];
        assert_eq!(planned_among(&grants), ["secrets:reveal"]);
        let err = planned_refused(planned_among(&grants));
        assert_eq!(err.status_code(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.code(), "rbac.permission_planned");
        assert!(err.problem().detail.unwrap().contains("secrets:reveal"));
    }
}
