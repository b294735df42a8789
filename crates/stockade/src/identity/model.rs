//! Pure rules for users.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::UserId;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid email address")]
    InvalidEmail,
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("invalid name: must be 1 to 200 characters without control characters")]
    InvalidName,
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

/// An email address as given, with its normalised key (trimmed, lower-cased)
/// that makes addresses unique case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    display: String,
    key: String,
}

impl Email {
    /// A pragmatic check: one `@`, non-empty local part and a dotted domain,
    /// at most 254 bytes, no spaces or control characters. Deliverability is
    /// proven by the verification email, not by a regex.
    pub fn parse(input: &str) -> Result<Self, IdentityError> {
        let s = input.trim();
        let (local, domain) = s.split_once('@').ok_or(IdentityError::InvalidEmail)?;
        let ok = s.len() <= 254
            && !local.is_empty()
            && local.len() <= 64
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(IdentityError::InvalidEmail);
        }
        Ok(Self {
            display: s.to_owned(),
            key: s.to_lowercase(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.display
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct User {
    pub id: UserId,
    pub email: String,
    #[serde(skip)]
    pub email_key: String,
    pub name: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) fn validate_name(name: &str) -> Result<String, IdentityError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 200 || n.chars().any(char::is_control) {
        return Err(IdentityError::InvalidName);
    }
    Ok(n.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_normalise_case() {
        let e = Email::parse("  Alice@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Alice@Example.COM");
        assert_eq!(e.key(), "alice@example.com");
        for bad in [
            "",
            "alice",
            "a@b",
            "@example.com",
            "a@@example.com",
            "a b@example.com",
            "a@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
