//! Pure rules: permission syntax, built-in roles, permission checks. This
//! file must not read roles from storage or answer HTTP: it decides from the
//! grants it is given, and unknown grants never widen a set.

use serde::{Deserialize, Serialize};

/// Every permission that guards something today, `area:verb` (SPEC §2.6).
/// `owners:manage` is the owner's alone among the built-in roles: by the
/// escalation rule only a holder can make someone an owner, or change or
/// remove an owner (members, invitations).
pub const PERMISSIONS: &[&str] = &[
    "records:read",
    "records:write",
    "members:manage",
    "roles:manage",
    "audit:read",
    "settings:manage",
    "api_keys:manage",
    "owners:manage",
];

/// Permissions of capabilities not built yet (SPEC §2.6): listed by
/// `GET /v1/permissions` as `planned`, carried by no built-in role, and
/// refused in roles and API-key scopes (422 `rbac.permission_planned`) until
/// a route checks them. A permission that guards nothing would promise a
/// control that does not exist.
pub const PLANNED_PERMISSIONS: &[&str] = &[
    "files:read",
    "files:write",
    "secrets:manage",
    "secrets:reveal",
    "billing:manage",
    "exports:create",
];

/// Permissions that may be narrowed to one collection.
const PER_COLLECTION: &[&str] = &["records:read", "records:write"];

pub const BUILTIN_ROLES: &[&str] = &["owner", "admin", "editor", "viewer"];

/// The permissions of a built-in role; `None` for a name that is not one.
pub fn builtin_role(role: &str) -> Option<Vec<&'static str>> {
    let all = PERMISSIONS.to_vec();
    Some(match role {
        "owner" => all,
        "admin" => all.into_iter().filter(|p| *p != "owners:manage").collect(),
        "editor" => vec!["records:read", "records:write"],
        "viewer" => vec!["records:read"],
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    #[error("unknown permission `{0}`")]
    Unknown(String),
    #[error("`{0}` is planned: no route checks it until its capability exists")]
    Planned(String),
    #[error("`{0}` cannot be narrowed to a collection")]
    NotPerCollection(String),
    #[error("invalid collection name in `{0}`")]
    BadCollection(String),
}

/// Validates a permission string: a known `area:verb`, or a per-collection
/// grant `records:read:<collection>`. Returns it normalised.
pub fn parse_permission(input: &str) -> Result<String, PermissionError> {
    let mut parts = input.splitn(3, ':');
    let (area, verb) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let base = format!("{area}:{verb}");
    if PLANNED_PERMISSIONS.contains(&base.as_str()) {
        return Err(PermissionError::Planned(input.to_owned()));
    }
    if !PERMISSIONS.contains(&base.as_str()) {
        return Err(PermissionError::Unknown(input.to_owned()));
    }
    match parts.next() {
        None => Ok(base),
        Some(collection) => {
            if !PER_COLLECTION.contains(&base.as_str()) {
                return Err(PermissionError::NotPerCollection(input.to_owned()));
            }
            let ok = (1..=64).contains(&collection.len())
                && collection
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return Err(PermissionError::BadCollection(input.to_owned()));
            }
            Ok(format!("{base}:{collection}"))
        }
    }
}

/// "Only records whose `field` equals my user id", for one collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordRule {
    pub collection: String,
    pub field: String,
}

/// What a principal may do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PermissionSet {
    grants: Vec<String>,
    record_rules: Vec<RecordRule>,
}

impl PermissionSet {
    /// From validated grants (unknown ones are dropped: fail closed).
    pub fn new(grants: impl IntoIterator<Item = String>, record_rules: Vec<RecordRule>) -> Self {
        let mut grants: Vec<String> = grants
            .into_iter()
            .filter_map(|g| parse_permission(&g).ok())
            .collect();
        grants.sort();
        grants.dedup();
        Self {
            grants,
            record_rules,
        }
    }

    pub fn builtin(role: &str) -> Option<Self> {
        builtin_role(role).map(|ps| Self::new(ps.into_iter().map(str::to_owned), Vec::new()))
    }

    pub fn grants(&self) -> &[String] {
        &self.grants
    }

    pub fn record_rules(&self) -> &[RecordRule] {
        &self.record_rules
    }

    /// `permission` (an `area:verb`) in general, or for `collection`.
    pub fn allows(&self, permission: &str, collection: Option<&str>) -> bool {
        self.grants.iter().any(|g| {
            g == permission
                || collection.is_some_and(|c| {
                    g.strip_prefix(permission)
                        .and_then(|rest| rest.strip_prefix(':'))
                        == Some(c)
                })
        })
    }

    /// Whether every grant of `other` is covered by this set (no privilege
    /// escalation: nobody hands out what they do not hold).
    pub fn covers(&self, other: &PermissionSet) -> bool {
        other.grants.iter().all(|g| {
            let mut parts = g.splitn(3, ':');
            let base = format!(
                "{}:{}",
                parts.next().unwrap_or(""),
                parts.next().unwrap_or("")
            );
            self.allows(&base, parts.next())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_roles_are_nested() {
        let owner = builtin_role("owner").unwrap();
        let admin = builtin_role("admin").unwrap();
        let editor = builtin_role("editor").unwrap();
        let viewer = builtin_role("viewer").unwrap();
        assert_eq!(owner.len(), PERMISSIONS.len());
        for (small, big) in [(&viewer, &editor), (&editor, &admin), (&admin, &owner)] {
            assert!(small.iter().all(|p| big.contains(p)));
        }
        assert!(builtin_role("root").is_none());
        // No built-in role carries a permission that guards nothing.
        for role in BUILTIN_ROLES {
            let perms = builtin_role(role).unwrap();
            assert!(perms.iter().all(|p| PERMISSIONS.contains(p)), "{role}");
        }
        assert!(!admin.contains(&"owners:manage"));
    }

    #[test]
    fn planned_permissions_are_not_grantable() {
        for planned in PLANNED_PERMISSIONS {
            assert_eq!(
                parse_permission(planned),
                Err(PermissionError::Planned((*planned).to_owned()))
            );
            assert!(!PERMISSIONS.contains(planned));
        }
        // A stored grant of one (a role saved before) gives nothing.
        let old = PermissionSet::new(["files:read".to_owned(), "records:read".to_owned()], vec![]);
        assert_eq!(old.grants(), ["records:read"]);
    }

    #[test]
    fn permission_syntax() {
        assert_eq!(parse_permission("records:read").unwrap(), "records:read");
        assert_eq!(
            parse_permission("records:read:orders").unwrap(),
            "records:read:orders"
        );
        for bad in [
            "",
            "records",
            "records:delete",
            "admin:all",
            "members:manage:x",
            "records:read:Orders",
            "records:read:",
            "records:read:a b",
        ] {
            assert!(parse_permission(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn per_collection_grants_and_coverage() {
        let driver = PermissionSet::new(
            ["records:read:runs".to_owned(), "audit:read".to_owned()],
            vec![],
        );
        assert!(driver.allows("records:read", Some("runs")));
        assert!(!driver.allows("records:read", Some("orders")));
        assert!(!driver.allows("records:read", None));
        assert!(driver.allows("audit:read", None));
        let editor = PermissionSet::builtin("editor").unwrap();
        assert!(!editor.covers(&driver), "audit:read is not the editor's");
        let driver = PermissionSet::new(["records:read:runs".to_owned()], vec![]);
        assert!(editor.allows("records:write", Some("anything")));
        assert!(editor.covers(&driver));
        assert!(!driver.covers(&editor));
        let admin = PermissionSet::builtin("admin").unwrap();
        let owner = PermissionSet::builtin("owner").unwrap();
        assert!(!admin.covers(&owner), "owners:manage is the owner's");
        // Unknown grants never widen a set.
        let odd = PermissionSet::new(["root:all".to_owned()], vec![]);
        assert!(odd.grants().is_empty());
    }
}
