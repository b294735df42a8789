//! Permissions and the built-in roles. Custom roles, per-collection grants and
//! record-level rules build on this (issue #4).

/// Every permission, `area:verb` (SPEC §2.6).
pub const PERMISSIONS: &[&str] = &[
    "records:read",
    "records:write",
    "members:manage",
    "roles:manage",
    "audit:read",
    "settings:manage",
    "api_keys:manage",
    "files:read",
    "files:write",
    "secrets:manage",
    "secrets:reveal",
    "billing:manage",
    "exports:create",
];

/// The permissions of a built-in role; `None` for a name that is not one.
pub fn builtin_role(role: &str) -> Option<Vec<&'static str>> {
    let all = PERMISSIONS.to_vec();
    Some(match role {
        "owner" => all,
        "admin" => all.into_iter().filter(|p| *p != "billing:manage").collect(),
        "editor" => vec!["records:read", "records:write", "files:read", "files:write"],
        "viewer" => vec!["records:read", "files:read"],
        _ => return None,
    })
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
    }
}
