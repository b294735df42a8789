//! Whom a tenant's MFA requirement covers (SPEC §2.4): `off`, `admins`
//! (owners, admins, and any role holding a permission that manages people,
//! roles, settings or API keys), or `all`. A covered member without a
//! confirmed factor may sign in, but only to enrol one.

use serde::{Deserialize, Serialize};

use crate::rbac::model::PermissionSet;

/// The tenant setting `mfa_required`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MfaRequired {
    Off,
    Admins,
    All,
}

impl MfaRequired {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Admins => "admins",
            Self::All => "all",
        }
    }

    /// The stored form read back; anything unknown is `Off`'s opposite:
    /// an unreadable value covers everyone (fail closed).
    pub fn parse(s: &str) -> Self {
        match s {
            "off" => Self::Off,
            "admins" => Self::Admins,
            _ => Self::All,
        }
    }
}

/// Permissions that make a custom role an administrator's for `admins`.
pub const ADMIN_PERMISSIONS: &[&str] = &[
    "members:manage",
    "roles:manage",
    "settings:manage",
    "api_keys:manage",
];

/// Whether `policy` requires a second factor of a member with `role`
/// whose permissions are `grants`.
pub fn covers(policy: MfaRequired, role: &str, grants: &PermissionSet) -> bool {
    match policy {
        MfaRequired::Off => false,
        MfaRequired::All => true,
        MfaRequired::Admins => {
            matches!(role, "owner" | "admin")
                || ADMIN_PERMISSIONS.iter().any(|p| grants.allows(p, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admins_covers_owners_admins_and_managing_custom_roles_only() {
        let builtin = |r: &str| PermissionSet::builtin(r).unwrap();
        let custom = |g: &[&str]| PermissionSet::new(g.iter().map(|s| s.to_string()), vec![]);
        assert!(covers(MfaRequired::Admins, "owner", &builtin("owner")));
        assert!(covers(MfaRequired::Admins, "admin", &builtin("admin")));
        assert!(!covers(MfaRequired::Admins, "editor", &builtin("editor")));
        assert!(!covers(MfaRequired::Admins, "viewer", &builtin("viewer")));
        for p in ADMIN_PERMISSIONS {
            assert!(covers(MfaRequired::Admins, "ops", &custom(&[p])), "{p}");
        }
        assert!(!covers(
            MfaRequired::Admins,
            "reader",
            &custom(&["records:read"])
        ));
        assert!(covers(MfaRequired::All, "viewer", &builtin("viewer")));
        assert!(!covers(MfaRequired::Off, "owner", &builtin("owner")));
    }

    #[test]
    fn an_unreadable_policy_covers_everyone() {
        assert_eq!(MfaRequired::parse("off"), MfaRequired::Off);
        assert_eq!(MfaRequired::parse("admins"), MfaRequired::Admins);
        assert_eq!(MfaRequired::parse("ALL"), MfaRequired::All);
        assert_eq!(MfaRequired::parse(""), MfaRequired::All);
    }
}
