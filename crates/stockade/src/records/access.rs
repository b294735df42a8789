//! Who may touch which records: `records:read` / `records:write` (or their
//! per-collection grants), then the caller's record rule for the collection
//! ("field F equals my user id"), which hides records (404, filtered out of
//! lists) and refuses writes that would produce a record outside it (403).

use axum::http::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use super::model::valid_name;
use crate::http::{ApiError, Principal};

/// A caller's access to one collection.
#[derive(Debug, Clone)]
pub struct Access {
    pub collection: String,
    pub user: Uuid,
    /// The field the caller's role restricts this collection by, if any.
    pub rule_field: Option<String>,
}

impl Access {
    /// Checks the collection name and `permission` (`records:read` or
    /// `records:write`) in it.
    pub fn new(p: &Principal, collection: &str, permission: &str) -> Result<Self, ApiError> {
        valid_collection(collection)?;
        p.require_in(permission, Some(collection))?;
        let rule_field = p
            .permissions
            .record_rules()
            .iter()
            .find(|r| r.collection == collection)
            .map(|r| r.field.clone());
        Ok(Self {
            collection: collection.to_owned(),
            user: p.user_id.0,
            rule_field,
        })
    }

    /// Whether the caller's rule lets them see a record with this data.
    pub fn sees(&self, data: &Value) -> bool {
        match &self.rule_field {
            None => true,
            Some(field) => {
                data.get(field)
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<Uuid>().ok())
                    == Some(self.user)
            }
        }
    }

    /// 403 `records.rule_violation` unless the caller's rule covers `data`.
    pub fn check_write(&self, data: &Value) -> Result<(), ApiError> {
        if self.sees(data) {
            return Ok(());
        }
        let field = self.rule_field.as_deref().unwrap_or_default();
        Err(
            ApiError::new(StatusCode::FORBIDDEN, "records.rule_violation").with_detail(format!(
                "your role only writes records of `{}` whose `{field}` is your user id",
                self.collection
            )),
        )
    }
}

/// 400 `records.invalid_collection` unless `^[a-z][a-z0-9_]{0,62}$`.
pub fn valid_collection(collection: &str) -> Result<(), ApiError> {
    if valid_name(collection) {
        return Ok(());
    }
    Err(ApiError::bad_request(
        "records.invalid_collection",
        "a collection name is 1 to 63 characters of a-z, 0-9 and _, starting with a letter",
    ))
}
