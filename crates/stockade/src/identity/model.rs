//! Pure rules for users.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::UserId;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid email address: {0}")]
    InvalidEmail(#[from] super::email::EmailRefusal),
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("invalid name: must be 1 to 200 characters without control characters")]
    InvalidName,
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct User {
    pub id: UserId,
    pub email: String,
    #[serde(skip)]
    pub email_key: String,
    pub name: String,
    pub status: String,
    /// When the owner proved the address with a verification link; `null`
    /// for accounts that never did (imported, or older than verification).
    pub email_verified_at: Option<DateTime<Utc>>,
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
