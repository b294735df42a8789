//! Tenants' pure rules: what a slug, a display name, a status and a role
//! name may be, and why one is refused ([`TenancyRefusal`]). This file must
//! not read or write a tenant or a membership (that is `stockade::tenancy`),
//! and its messages quote no more of the input than the rule.

use serde::Serialize;

/// Why a slug, a tenant name or a role name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TenancyRefusal {
    #[error("invalid slug: {0}")]
    InvalidSlug(&'static str),
    #[error("invalid name: {0}")]
    InvalidName(&'static str),
    #[error("invalid role name")]
    InvalidRole,
}

/// Slugs that would collide with routes, subdomains or support
/// impersonation tricks.
const RESERVED: &[&str] = &[
    "admin", "api", "app", "auth", "console", "platform", "root", "stockade", "support", "system",
    "trust", "www", "mail", "status", "static", "assets", "login", "signup",
];

/// A tenant's URL-safe handle: 3–63 of `a-z`, `0-9`, `-`, starting and ending
/// with a letter or digit (a valid DNS label, for subdomain routing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Slug(String);

impl Slug {
    pub fn parse(input: &str) -> Result<Self, TenancyRefusal> {
        let s = input;
        if !(3..=63).contains(&s.len()) {
            return Err(TenancyRefusal::InvalidSlug("must be 3 to 63 characters"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(TenancyRefusal::InvalidSlug(
                "only lower-case letters, digits and '-' are allowed",
            ));
        }
        if s.starts_with('-') || s.ends_with('-') || s.contains("--") {
            return Err(TenancyRefusal::InvalidSlug(
                "must not start or end with '-' or contain '--'",
            ));
        }
        if RESERVED.contains(&s) {
            return Err(TenancyRefusal::InvalidSlug("this slug is reserved"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: 1–200 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(input: &str) -> Result<Self, TenancyRefusal> {
        let s = input.trim();
        if s.is_empty() || s.chars().count() > 200 {
            return Err(TenancyRefusal::InvalidName("must be 1 to 200 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(TenancyRefusal::InvalidName(
                "must not contain control characters",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Suspended,
    PendingDeletion,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::PendingDeletion => "pending_deletion",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "pending_deletion" => Some(Self::PendingDeletion),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub slug: Slug,
    pub name: TenantName,
}

/// Role names: 1–40 of lower-case letters, digits, `_` and `-`.
pub fn validate_role(role: &str) -> Result<(), TenancyRefusal> {
    let ok = (1..=40).contains(&role.len())
        && role
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(TenancyRefusal::InvalidRole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["acme", "acme-corp", "a1b", "x".repeat(63).as_str()] {
            assert!(Slug::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ab",
            "Acme",
            "acme_corp",
            "-acme",
            "acme-",
            "ac--me",
            "admin",
            "acme.com",
            "x".repeat(64).as_str(),
            "acmé",
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(
            TenantName::parse("  Acme Ltd ").unwrap().as_str(),
            "Acme Ltd"
        );
        assert!(TenantName::parse("   ").is_err());
        assert!(TenantName::parse("a\u{0}b").is_err());
        assert!(TenantName::parse(&"n".repeat(201)).is_err());
    }

    #[test]
    fn roles() {
        assert!(validate_role("owner").is_ok());
        assert!(validate_role("data-entry").is_ok());
        assert!(validate_role("").is_err());
        assert!(validate_role("Owner").is_err());
    }
}
