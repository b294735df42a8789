//! Planned permissions (`model::PLANNED_PERMISSIONS`): their capability does
//! not exist yet, so no route checks them. This file owns their status and
//! how to find them among grants; it must not build HTTP answers (the one
//! refusal, 422 `rbac.permission_planned`, is `stockade::rbac::planned_refused`).

use serde::Serialize;

use super::model::{PermissionError, parse_permission};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_grants_are_found() {
        assert!(is_planned("files:read"));
        assert!(is_planned("exports:create"));
        assert!(!is_planned("records:read"));
        assert!(!is_planned("root:all"));
        let grants = ["records:read".to_owned(), "secrets:reveal".to_owned()];
        assert_eq!(planned_among(&grants), ["secrets:reveal"]);
    }
}
