//! The policy a new password must meet (SPEC §2.1): length in characters
//! and bytes, character classes, and no common, breached or guessable
//! password (`common`), with every unmet rule reported at once. Also the
//! shape of a stored bcrypt hash (`hash_shape`). Pure: this file must not
//! hash or verify a password (that is `stockade::identity::password`'s
//! `Hasher`, on its own threads), and no message here contains the password.
//!
//! Plaintext only ever travels as a [`SecretString`]; no type here shows secret
//! material in `Debug`.

mod common;
mod hash_shape;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

pub use hash_shape::is_bcrypt_hash;

/// bcrypt only reads the first 72 bytes of a password.
pub const BCRYPT_MAX_BYTES: usize = 72;
/// Longest password accepted when bcrypt compatibility is off.
pub const MAX_BYTES: usize = 256;

/// The rules a new password must meet. Per-tenant configurable; call
/// [`PasswordPolicy::validate`] on any policy that comes from outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordPolicy {
    /// Minimum length in Unicode characters (8 to 128).
    pub min_length: usize,
    /// At least one upper-case letter.
    pub require_upper: bool,
    /// At least one lower-case letter.
    pub require_lower: bool,
    /// At least one digit.
    pub require_digit: bool,
    /// Limit passwords to 72 bytes so that they stay usable with bcrypt;
    /// otherwise the limit is 256 bytes.
    pub bcrypt_compatible: bool,
    /// Reject common/breached passwords and passwords that are easy to guess
    /// (including ones built from the user's email, name or organisation).
    pub reject_common: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 10,
            require_upper: true,
            require_lower: true,
            require_digit: true,
            bcrypt_compatible: false,
            reject_common: true,
        }
    }
}

impl PasswordPolicy {
    /// Smallest `min_length` a tenant may configure.
    pub const MIN_LENGTH_FLOOR: usize = 8;
    /// Largest `min_length` a tenant may configure.
    pub const MIN_LENGTH_CEILING: usize = 128;

    /// Checks that the settings are within bounds and satisfiable.
    pub fn validate(&self) -> Result<(), String> {
        if !(Self::MIN_LENGTH_FLOOR..=Self::MIN_LENGTH_CEILING).contains(&self.min_length) {
            return Err(format!(
                "min_length must be between {} and {}",
                Self::MIN_LENGTH_FLOOR,
                Self::MIN_LENGTH_CEILING
            ));
        }
        if self.min_length > self.max_bytes() {
            return Err(format!(
                "min_length must be at most {} when bcrypt_compatible is on",
                self.max_bytes()
            ));
        }
        Ok(())
    }

    /// The longest password allowed, in bytes of UTF-8.
    pub fn max_bytes(&self) -> usize {
        if self.bcrypt_compatible {
            BCRYPT_MAX_BYTES
        } else {
            MAX_BYTES
        }
    }
}

/// One unmet rule of the policy. The message never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Violation {
    /// Stable code, e.g. `password.too_short`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

/// Every rule the password did not meet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, thiserror::Error)]
#[error("password does not meet the policy: {}", describe(.violations))]
pub struct PolicyError {
    pub violations: Vec<Violation>,
}

fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| v.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

impl PolicyError {
    /// The codes of the unmet rules, in order.
    pub fn codes(&self) -> Vec<&'static str> {
        self.violations.iter().map(|v| v.code).collect()
    }
}

/// Checks `password` against `policy` and reports every unmet rule.
///
/// `user_inputs` are things the user or tenant is known by (email, name,
/// tenant slug/name); passwords built from them count as easy to guess.
/// Length is counted in Unicode characters for the minimum and in bytes for
/// the maximum. The strength estimate (zxcvbn, which ships the common and
/// breached password frequency lists) looks at the first 100 characters and
/// costs up to a few milliseconds of CPU.
pub fn check(
    policy: &PasswordPolicy,
    password: &SecretString,
    user_inputs: &[&str],
) -> Result<(), PolicyError> {
    let pw = password.expose_secret();
    let mut violations = Vec::new();

    if pw.chars().count() < policy.min_length {
        violations.push(Violation {
            code: "password.too_short",
            message: format!("must be at least {} characters long", policy.min_length),
        });
    }
    if pw.len() > policy.max_bytes() {
        violations.push(Violation {
            code: "password.too_long",
            message: format!(
                "must be at most {} bytes long (non-ASCII characters take 2 to 4 bytes)",
                policy.max_bytes()
            ),
        });
    }
    if policy.require_upper && !pw.chars().any(char::is_uppercase) {
        violations.push(Violation {
            code: "password.missing_upper",
            message: "must contain an upper-case letter".to_owned(),
        });
    }
    if policy.require_lower && !pw.chars().any(char::is_lowercase) {
        violations.push(Violation {
            code: "password.missing_lower",
            message: "must contain a lower-case letter".to_owned(),
        });
    }
    if policy.require_digit && !pw.chars().any(char::is_numeric) {
        violations.push(Violation {
            code: "password.missing_digit",
            message: "must contain a digit".to_owned(),
        });
    }
    if policy.reject_common && common::is_common(pw, user_inputs) {
        violations.push(Violation {
            code: "password.common",
            message: "is too common or too easy to guess (a well-known or breached password, \
                      or one built from your email, name or organisation)"
                .to_owned(),
        });
    }

    if violations.is_empty() {
        Ok(())
    } else {
        Err(PolicyError { violations })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    pub(super) fn codes(policy: &PasswordPolicy, pw: &str, inputs: &[&str]) -> Vec<&'static str> {
        match check(policy, &secret(pw), inputs) {
            Ok(()) => Vec::new(),
            Err(e) => e.codes(),
        }
    }

    /// A policy with only one rule switched on, to test rules one at a time.
    fn only(f: impl FnOnce(&mut PasswordPolicy)) -> PasswordPolicy {
        let mut p = PasswordPolicy {
            min_length: 0,
            require_upper: false,
            require_lower: false,
            require_digit: false,
            bcrypt_compatible: false,
            reject_common: false,
        };
        f(&mut p);
        p
    }

    pub(super) const STRONG: &str = "Glacier-Tandem-47-Quokka";

    #[test]
    fn defaults_match_the_spec() {
        let p = PasswordPolicy::default();
        assert_eq!(p.min_length, 10);
        assert!(p.require_upper && p.require_lower && p.require_digit && p.reject_common);
        assert!(!p.bcrypt_compatible);
        assert_eq!(p.max_bytes(), 256);
        assert!(p.validate().is_ok());
    }

    #[test]
    fn policy_serde_defaults_and_rejects_unknown_fields() {
        let p: PasswordPolicy = serde_json::from_str(r#"{"min_length": 12}"#).unwrap();
        assert_eq!(p.min_length, 12);
        assert!(p.require_upper);
        assert!(serde_json::from_str::<PasswordPolicy>(r#"{"min_lenght": 12}"#).is_err());
        let back: PasswordPolicy =
            serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn validate_bounds_the_settings() {
        for (min, bcrypt, ok) in [
            (7, false, false),
            (8, false, true),
            (128, false, true),
            (129, false, false),
            (72, true, true),
            (73, true, false),
            (0, false, false),
        ] {
            let p = PasswordPolicy {
                min_length: min,
                bcrypt_compatible: bcrypt,
                ..PasswordPolicy::default()
            };
            assert_eq!(p.validate().is_ok(), ok, "{min} {bcrypt}");
        }
        let p = PasswordPolicy {
            reject_common: false,
            ..PasswordPolicy::default()
        };
        assert!(p.validate().is_ok());
    }

    #[test]
    fn each_rule_on_its_own() {
        let p = only(|p| p.min_length = 10);
        assert_eq!(codes(&p, "abcdefghi", &[]), ["password.too_short"]);
        assert!(codes(&p, "abcdefghij", &[]).is_empty());
        // Characters, not bytes, count for the minimum.
        assert!(codes(&p, "éééééééééé", &[]).is_empty());
        assert_eq!(codes(&p, "ééééééééé", &[]), ["password.too_short"]);

        let p = only(|p| p.require_upper = true);
        assert_eq!(codes(&p, "abc1", &[]), ["password.missing_upper"]);
        assert!(codes(&p, "aBc1", &[]).is_empty());

        let p = only(|p| p.require_lower = true);
        assert_eq!(codes(&p, "ABC1", &[]), ["password.missing_lower"]);
        assert!(codes(&p, "AbC1", &[]).is_empty());

        let p = only(|p| p.require_digit = true);
        assert_eq!(codes(&p, "abcD", &[]), ["password.missing_digit"]);
        assert!(codes(&p, "abc4", &[]).is_empty());

        let p = only(|p| p.reject_common = true);
        assert_eq!(codes(&p, "password", &[]), ["password.common"]);
        assert!(codes(&p, STRONG, &[]).is_empty());

        let p = only(|_| {});
        assert!(codes(&p, "", &[]).is_empty());
    }

    #[test]
    fn all_violations_are_listed_at_once() {
        let p = PasswordPolicy::default();
        let err = check(&p, &secret("!!!"), &[]).unwrap_err();
        assert_eq!(
            err.codes(),
            [
                "password.too_short",
                "password.missing_upper",
                "password.missing_lower",
                "password.missing_digit",
                "password.common",
            ]
        );
        let long = "!".repeat(300);
        let err = check(&p, &secret(&long), &[]).unwrap_err();
        assert_eq!(
            err.codes(),
            [
                "password.too_long",
                "password.missing_upper",
                "password.missing_lower",
                "password.missing_digit",
                "password.common",
            ]
        );
        let text = err.to_string();
        assert!(text.contains("at most 256 bytes"), "{text}");
        assert!(!text.contains("!!!!"), "{text}");
    }

    #[test]
    fn byte_limits_72_and_256_with_multibyte_characters() {
        let bcrypt = only(|p| p.bcrypt_compatible = true);
        let plain = only(|_| {});
        // 'é' is 2 bytes, '😀' is 4 bytes.
        let e36 = "é".repeat(36); // 72 bytes
        let e37 = "é".repeat(37); // 74 bytes, only 37 characters
        assert!(codes(&bcrypt, &e36, &[]).is_empty());
        assert_eq!(codes(&bcrypt, &e37, &[]), ["password.too_long"]);
        assert!(codes(&plain, &e37, &[]).is_empty());

        let s64 = "😀".repeat(64); // 256 bytes
        let s65 = "😀".repeat(65); // 260 bytes
        assert!(codes(&plain, &s64, &[]).is_empty());
        assert_eq!(codes(&plain, &s65, &[]), ["password.too_long"]);
        let a256 = "a".repeat(256);
        let a257 = "a".repeat(257);
        assert!(codes(&plain, &a256, &[]).is_empty());
        assert_eq!(codes(&plain, &a257, &[]), ["password.too_long"]);
        assert_eq!(codes(&bcrypt, &"a".repeat(73), &[]), ["password.too_long"]);
        assert!(codes(&bcrypt, &"a".repeat(72), &[]).is_empty());
    }
}
