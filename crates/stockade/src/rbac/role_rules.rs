//! The pure rules of a role's input: its name, description, grants and
//! record rules as a request gives them (bounded, validated, each refusal a
//! stable 400 or 422 code), and the no-escalation rule (a role may not give
//! what its author does not hold). Nothing here reads or writes: the routes
//! (`routes.rs`) read, store and audit; these only judge, answering a
//! refusal as an `ApiError`. They belong with the permission model
//! (`model.rs`) and sit beside it while that file is owned elsewhere.

use axum::http::StatusCode;

use super::model::{PermissionSet, RecordRule, parse_permission};
use super::planned::{is_planned, planned_among, planned_refused};
use crate::http::ApiError;

/// Most grants one role may carry.
pub const MAX_ROLE_PERMISSIONS: usize = 64;
/// Most record rules one role may carry.
pub const MAX_RECORD_RULES: usize = 64;
/// Longest role description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// Whether `permission` may be narrowed to one collection.
pub(super) fn is_per_collection(permission: &str) -> bool {
    parse_permission(&format!("{permission}:c")).is_ok()
}

fn is_name_part(s: &str, max: usize, extra: u8) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == extra)
}

/// `[a-z0-9_-]{1,40}` (the same rule memberships apply to role names).
pub(super) fn parse_role_name(name: &str) -> Result<&str, ApiError> {
    if is_name_part(name, 40, b'-') {
        return Ok(name);
    }
    Err(ApiError::bad_request(
        "rbac.invalid_role_name",
        "a role name is 1 to 40 characters of a-z, 0-9, `_` and `-`",
    ))
}

pub(super) fn parse_description(text: &str) -> Result<String, ApiError> {
    if text.chars().count() <= MAX_DESCRIPTION_CHARS && !text.chars().any(char::is_control) {
        return Ok(text.to_owned());
    }
    Err(ApiError::bad_request(
        "rbac.invalid_description",
        format!(
            "a description is at most {MAX_DESCRIPTION_CHARS} characters, without control characters"
        ),
    ))
}

/// Validates every grant; 400 naming the first bad one (all of them in
/// `errors.permissions`); 422 `rbac.permission_planned` when the only
/// problem is planned permissions.
pub(super) fn parse_grants(grants: &[String]) -> Result<Vec<String>, ApiError> {
    if grants.len() > MAX_ROLE_PERMISSIONS {
        return Err(ApiError::bad_request(
            "rbac.too_many_permissions",
            format!("a role carries at most {MAX_ROLE_PERMISSIONS} permissions"),
        ));
    }
    let (ok, bad): (Vec<_>, Vec<_>) = grants
        .iter()
        .filter(|g| !is_planned(g))
        .map(|g| parse_permission(g))
        .partition(Result::is_ok);
    let bad: Vec<String> = bad
        .into_iter()
        .filter_map(Result::err)
        .map(|e| e.to_string())
        .collect();
    if let Some(first) = bad.first() {
        return Err(
            ApiError::bad_request("rbac.invalid_permission", first.clone())
                .with_errors(serde_json::json!({ "permissions": bad })),
        );
    }
    let planned = planned_among(grants);
    if !planned.is_empty() {
        return Err(planned_refused(planned));
    }
    Ok(ok.into_iter().filter_map(Result::ok).collect())
}

/// Each rule names a collection and a field (`[a-z0-9_]{1,64}`); at most
/// one rule per collection. Returned sorted by collection.
pub(super) fn parse_record_rules(mut rules: Vec<RecordRule>) -> Result<Vec<RecordRule>, ApiError> {
    let invalid = |detail: String| ApiError::bad_request("rbac.invalid_record_rule", detail);
    if rules.len() > MAX_RECORD_RULES {
        return Err(invalid(format!(
            "a role carries at most {MAX_RECORD_RULES} record rules"
        )));
    }
    if let Some(r) = rules
        .iter()
        .find(|r| !is_name_part(&r.collection, 64, b'_') || !is_name_part(&r.field, 64, b'_'))
    {
        return Err(invalid(format!(
            "`{}.{}`: collection and field are 1 to 64 characters of a-z, 0-9 and `_`",
            r.collection, r.field
        )));
    }
    rules.sort_by(|a, b| a.collection.cmp(&b.collection));
    for pair in rules.windows(2) {
        if let [a, b] = pair
            && a.collection == b.collection
        {
            return Err(invalid(format!(
                "collection `{}` has more than one rule",
                a.collection
            )));
        }
    }
    Ok(rules)
}

pub(super) fn parse_role_set(
    grants: &[String],
    rules: Vec<RecordRule>,
) -> Result<PermissionSet, ApiError> {
    Ok(PermissionSet::new(
        parse_grants(grants)?,
        parse_record_rules(rules)?,
    ))
}

/// What a role would give beyond the caller's own rights.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Escalation {
    /// Grants the caller does not hold.
    pub permissions: Vec<String>,
    /// Record rules the caller is bound by that the role would drop for a
    /// collection it grants access to.
    pub record_rules: Vec<RecordRule>,
}

impl Escalation {
    pub fn is_empty(&self) -> bool {
        self.permissions.is_empty() && self.record_rules.is_empty()
    }

    pub(super) fn merge(&mut self, other: Escalation) {
        for p in other.permissions {
            if !self.permissions.contains(&p) {
                self.permissions.push(p);
            }
        }
        for r in other.record_rules {
            if !self.record_rules.contains(&r) {
                self.record_rules.push(r);
            }
        }
    }

    /// 403 `rbac.escalation` naming what is lacking.
    pub fn into_error(self) -> ApiError {
        let mut named: Vec<String> = self.permissions.clone();
        named.extend(
            self.record_rules
                .iter()
                .map(|r| format!("record rule {}.{}", r.collection, r.field)),
        );
        ApiError::new(StatusCode::FORBIDDEN, "rbac.escalation")
            .with_detail(format!(
                "you cannot grant what you do not hold yourself: {}",
                named.join(", ")
            ))
            .with_errors(serde_json::json!({
                "permissions": self.permissions,
                "record_rules": self.record_rules,
            }))
    }
}

/// No privilege escalation: what `wanted` would grant that `caller` does
/// not hold. Every grant must be covered by the caller's; and where the
/// caller sees only its own records of a collection (a record rule), a
/// role that reaches that collection must carry the same rule.
pub fn escalation(caller: &PermissionSet, wanted: &PermissionSet) -> Escalation {
    let permissions = wanted
        .grants()
        .iter()
        .filter(|g| !caller.covers(&PermissionSet::new([(*g).clone()], Vec::new())))
        .cloned()
        .collect();
    let record_rules = caller
        .record_rules()
        .iter()
        .filter(|rule| {
            let reaches = ["records:read", "records:write"]
                .iter()
                .any(|p| wanted.allows(p, Some(&rule.collection)));
            reaches && !wanted.record_rules().contains(rule)
        })
        .cloned()
        .collect();
    Escalation {
        permissions,
        record_rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(grants: &[&str], rules: &[(&str, &str)]) -> PermissionSet {
        PermissionSet::new(
            grants.iter().map(|g| (*g).to_owned()),
            rules
                .iter()
                .map(|(c, f)| RecordRule {
                    collection: (*c).to_owned(),
                    field: (*f).to_owned(),
                })
                .collect(),
        )
    }

    #[test]
    fn per_collection_flags_follow_the_syntax() {
        assert!(is_per_collection("records:read"));
        assert!(is_per_collection("records:write"));
        assert!(!is_per_collection("members:manage"));
    }

    #[test]
    fn role_names() {
        for ok in ["driver", "data-entry", "ops_2", &"x".repeat(40)] {
            assert!(parse_role_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Driver", "a b", "é", &"x".repeat(41), "a/b"] {
            assert!(parse_role_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grants_are_validated_and_bounded() {
        let ok = parse_grants(&["records:read:orders".into(), "audit:read".into()]).unwrap();
        assert_eq!(ok, ["records:read:orders", "audit:read"]);
        let err = parse_grants(&["audit:read".into(), "root:all".into()]).unwrap_err();
        assert_eq!(err.code(), "rbac.invalid_permission");
        assert!(err.problem().detail.unwrap().contains("root:all"));
        // Planned permissions: 422 naming them; a malformed one beside
        // them is the first problem.
        let err = parse_grants(&["files:read".into(), "billing:manage".into()]).unwrap_err();
        assert_eq!(err.code(), "rbac.permission_planned");
        assert_eq!(err.status_code(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            err.problem().errors.unwrap()["permissions"],
            serde_json::json!(["files:read", "billing:manage"])
        );
        let err = parse_grants(&["files:read".into(), "root:all".into()]).unwrap_err();
        assert_eq!(err.code(), "rbac.invalid_permission");
        let many: Vec<String> = (0..65).map(|i| format!("records:read:c{i}")).collect();
        assert_eq!(
            parse_grants(&many).unwrap_err().code(),
            "rbac.too_many_permissions"
        );
    }

    #[test]
    fn record_rules_one_per_collection() {
        let rule = |c: &str, f: &str| RecordRule {
            collection: c.into(),
            field: f.into(),
        };
        let ok = parse_record_rules(vec![rule("runs", "driver_id"), rule("deals", "partner_id")])
            .unwrap();
        assert_eq!(ok.first().unwrap().collection, "deals");
        for bad in [
            vec![rule("runs", "driver_id"), rule("runs", "worker_id")],
            vec![rule("Runs", "driver_id")],
            vec![rule("runs", "")],
            vec![rule("runs", "driver-id")],
        ] {
            assert_eq!(
                parse_record_rules(bad).unwrap_err().code(),
                "rbac.invalid_record_rule"
            );
        }
    }

    #[test]
    fn escalation_names_missing_grants() {
        let admin = PermissionSet::builtin("admin").unwrap();
        let wanted = set(&["owners:manage", "records:read:orders"], &[]);
        let e = escalation(&admin, &wanted);
        assert_eq!(e.permissions, ["owners:manage"]);
        assert!(escalation(&PermissionSet::builtin("owner").unwrap(), &wanted).is_empty());
        let narrow = set(&["records:read:orders", "roles:manage"], &[]);
        assert_eq!(
            escalation(&narrow, &set(&["records:read"], &[])).permissions,
            ["records:read"]
        );
        assert!(escalation(&narrow, &set(&["records:read:orders"], &[])).is_empty());
    }

    #[test]
    fn a_caller_bound_by_a_record_rule_cannot_drop_it() {
        let partner_admin = set(
            &["records:read:deals", "records:write:deals", "roles:manage"],
            &[("deals", "partner_id")],
        );
        let without = set(&["records:read:deals"], &[]);
        let e = escalation(&partner_admin, &without);
        assert!(e.permissions.is_empty());
        assert_eq!(e.record_rules.len(), 1);
        let other_field = set(&["records:read:deals"], &[("deals", "owner_id")]);
        assert!(!escalation(&partner_admin, &other_field).is_empty());
        let with = set(&["records:read:deals"], &[("deals", "partner_id")]);
        assert!(escalation(&partner_admin, &with).is_empty());
        // A role that does not reach the collection needs no rule.
        assert!(escalation(&partner_admin, &set(&["roles:manage"], &[])).is_empty());
    }
}
