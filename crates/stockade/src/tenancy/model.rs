//! Pure rules for tenants: slugs, names, statuses.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::{TenantId, UserId};

#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error("invalid slug: {0}")]
    InvalidSlug(&'static str),
    #[error("invalid name: {0}")]
    InvalidName(&'static str),
    #[error("a tenant with slug `{0}` already exists")]
    SlugTaken(String),
    #[error("the user is already a member of this tenant")]
    AlreadyMember,
    #[error("invalid role name")]
    InvalidRole,
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("cannot create the tenant's keys: {0}")]
    Keys(#[from] crate::crypto::envelope::EnvelopeError),
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
    pub fn parse(input: &str) -> Result<Self, TenancyError> {
        let s = input;
        if !(3..=63).contains(&s.len()) {
            return Err(TenancyError::InvalidSlug("must be 3 to 63 characters"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(TenancyError::InvalidSlug(
                "only lower-case letters, digits and '-' are allowed",
            ));
        }
        if s.starts_with('-') || s.ends_with('-') || s.contains("--") {
            return Err(TenancyError::InvalidSlug(
                "must not start or end with '-' or contain '--'",
            ));
        }
        if RESERVED.contains(&s) {
            return Err(TenancyError::InvalidSlug("this slug is reserved"));
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
    pub fn parse(input: &str) -> Result<Self, TenancyError> {
        let s = input.trim();
        if s.is_empty() || s.chars().count() > 200 {
            return Err(TenancyError::InvalidName("must be 1 to 200 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(TenancyError::InvalidName(
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub status: String,
    pub deletion_requested_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Tenant {
    pub fn status(&self) -> Option<TenantStatus> {
        TenantStatus::parse(&self.status)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Membership {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub role: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// Role names: 1–40 of lower-case letters, digits, `_` and `-`.
pub(crate) fn validate_role(role: &str) -> Result<(), TenancyError> {
    let ok = (1..=40).contains(&role.len())
        && role
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(TenancyError::InvalidRole)
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
