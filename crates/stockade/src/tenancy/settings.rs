//! Per-tenant security settings: password policy and session timeouts.
//! (The `GET/PATCH /v1/tenant/settings` API and the remaining settings —
//! MFA requirement, IP allowlist, audit retention — come with issue #4.)

use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::db::{DbError, TenantTx};
use crate::identity::password::PasswordPolicy;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSettings {
    pub password_policy: PasswordPolicy,
    pub session_idle_secs: i64,
    pub session_absolute_secs: i64,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            password_policy: PasswordPolicy::default(),
            session_idle_secs: 8 * 3600,
            session_absolute_secs: 30 * 86_400,
        }
    }
}

/// Bounds: idle 5 minutes to 30 days, absolute 1 hour to 365 days, idle not
/// longer than absolute.
pub const IDLE_RANGE: std::ops::RangeInclusive<i64> = 300..=30 * 86_400;
pub const ABSOLUTE_RANGE: std::ops::RangeInclusive<i64> = 3600..=365 * 86_400;

impl TenantSettings {
    pub fn validate(&self) -> Result<(), String> {
        self.password_policy.validate()?;
        if !IDLE_RANGE.contains(&self.session_idle_secs) {
            return Err("session_idle_secs must be from 300 to 2592000".into());
        }
        if !ABSOLUTE_RANGE.contains(&self.session_absolute_secs) {
            return Err("session_absolute_secs must be from 3600 to 31536000".into());
        }
        if self.session_idle_secs > self.session_absolute_secs {
            return Err("session_idle_secs must not exceed session_absolute_secs".into());
        }
        Ok(())
    }

    pub fn idle(&self) -> Duration {
        Duration::seconds(self.session_idle_secs)
    }

    pub fn absolute(&self) -> Duration {
        Duration::seconds(self.session_absolute_secs)
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    password_policy: String,
    session_idle_secs: i64,
    session_absolute_secs: i64,
}

/// The tenant's settings (the defaults when it never changed them). A stored
/// policy that no longer parses falls back to the defaults, never to "none".
pub async fn load(tx: &mut TenantTx) -> Result<TenantSettings, DbError> {
    let row: Option<Row> = tx
        .fetch_optional(
            "SELECT password_policy, session_idle_secs, session_absolute_secs \
             FROM tenant_settings WHERE tenant_id = $1",
            vec![],
        )
        .await?;
    Ok(match row {
        None => TenantSettings::default(),
        Some(r) => TenantSettings {
            password_policy: serde_json::from_str(&r.password_policy).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "stored password policy unreadable: using the default");
                PasswordPolicy::default()
            }),
            session_idle_secs: r.session_idle_secs,
            session_absolute_secs: r.session_absolute_secs,
        },
    })
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid settings: {0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Stores validated settings for the transaction's tenant.
pub async fn save(
    tx: &mut TenantTx,
    clock: &dyn Clock,
    settings: &TenantSettings,
) -> Result<(), SettingsError> {
    settings.validate().map_err(SettingsError::Invalid)?;
    let policy = serde_json::to_string(&settings.password_policy)
        .map_err(|e| SettingsError::Invalid(e.to_string()))?;
    tx.execute(
        "INSERT INTO tenant_settings (tenant_id, password_policy, session_idle_secs, \
         session_absolute_secs, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant_id) DO UPDATE SET password_policy = $2, session_idle_secs = $3, \
         session_absolute_secs = $4, updated_at = $5",
        vec![
            policy.into(),
            settings.session_idle_secs.into(),
            settings.session_absolute_secs.into(),
            clock.now().into(),
        ],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert!(TenantSettings::default().validate().is_ok());
        let s = TenantSettings {
            session_idle_secs: 60,
            ..TenantSettings::default()
        };
        assert!(s.validate().is_err());
        let s = TenantSettings {
            session_idle_secs: 7200,
            session_absolute_secs: 3600,
            ..TenantSettings::default()
        };
        assert!(s.validate().is_err());
        let mut s = TenantSettings::default();
        s.password_policy.min_length = 4;
        assert!(s.validate().is_err());
    }
}
