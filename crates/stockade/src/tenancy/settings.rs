//! Per-tenant security settings: password policy, session timeouts, MFA
//! requirement, IP allowlist, audit retention, API keys on a password
//! reset, the step-up window. Read by the code that enforces each; changed
//! through `PATCH /v1/tenant/settings`.

use chrono::Duration;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::db::{DbError, TenantTx};
use crate::http::client_ip::ClientAddr;
use crate::identity::password::PasswordPolicy;

/// Who must use multi-factor authentication (`off`, `admins`, `all`);
/// whom each covers is `stockade_core::mfa::policy::covers`, enforced on
/// every request (`http::principal`).
pub use stockade_core::mfa::policy::MfaRequired;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantSettings {
    pub password_policy: PasswordPolicy,
    pub session_idle_secs: i64,
    pub session_absolute_secs: i64,
    /// Who must have a second factor (see [`MfaRequired`]).
    pub mfa_required: MfaRequired,
    /// CIDRs the tenant may be reached from; empty means anywhere.
    #[schema(value_type = Vec<String>)]
    pub ip_allowlist: Vec<IpNet>,
    pub audit_retention_days: i64,
    /// Requests per minute each API key may make (SPEC §2.8).
    pub api_key_rate_per_minute: i64,
    /// A password reset (account recovery) revokes the API keys the user
    /// created in this tenant, unless this is `true`. Default `false`.
    pub keep_api_keys_on_password_reset: bool,
    /// How recent a password proof (`POST /v1/auth/reauth`) sensitive
    /// actions need, in minutes: 1 to 60, default 5. Takes effect on the
    /// next request of every session of the tenant.
    pub step_up_minutes: i64,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            password_policy: PasswordPolicy::default(),
            session_idle_secs: 8 * 3600,
            session_absolute_secs: 30 * 86_400,
            mfa_required: MfaRequired::Off,
            ip_allowlist: Vec::new(),
            audit_retention_days: 90,
            api_key_rate_per_minute: 600,
            keep_api_keys_on_password_reset: false,
            step_up_minutes: crate::sessions::STEP_UP_WINDOW.num_minutes(),
        }
    }
}

/// Bounds: idle 5 minutes to 30 days, absolute 1 hour to 365 days, idle not
/// longer than absolute; retention 1 to 3650 days (and never below the
/// deployment's floor: `settings_api`, `audit::retention_policy`); at most
/// 100 CIDRs.
pub const IDLE_RANGE: std::ops::RangeInclusive<i64> = 300..=30 * 86_400;
pub const ABSOLUTE_RANGE: std::ops::RangeInclusive<i64> = 3600..=365 * 86_400;
pub const RETENTION_RANGE: std::ops::RangeInclusive<i64> = 1..=3650;
pub const MAX_ALLOWLIST: usize = 100;
/// Requests per minute per API key: 1 to 100000.
pub const API_KEY_RATE_RANGE: std::ops::RangeInclusive<i64> = 1..=100_000;
/// The step-up window: 1 to 60 minutes.
pub use crate::sessions::STEP_UP_MINUTES_RANGE;

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
        if !RETENTION_RANGE.contains(&self.audit_retention_days) {
            return Err("audit_retention_days must be from 1 to 3650".into());
        }
        if self.ip_allowlist.len() > MAX_ALLOWLIST {
            return Err(format!("ip_allowlist holds at most {MAX_ALLOWLIST} CIDRs"));
        }
        if !API_KEY_RATE_RANGE.contains(&self.api_key_rate_per_minute) {
            return Err("api_key_rate_per_minute must be from 1 to 100000".into());
        }
        if !STEP_UP_MINUTES_RANGE.contains(&self.step_up_minutes) {
            return Err("step_up_minutes must be from 1 to 60".into());
        }
        Ok(())
    }

    pub fn idle(&self) -> Duration {
        Duration::seconds(self.session_idle_secs)
    }

    pub fn absolute(&self) -> Duration {
        Duration::seconds(self.session_absolute_secs)
    }

    /// Whether `client` may reach the tenant.
    pub fn ip_allowed(&self, client: ClientAddr) -> bool {
        ip_allowed(&self.ip_allowlist, client)
    }
}

/// Empty list: every client, an unknown one included; otherwise the client
/// must be known and in one of the CIDRs (canonical: see
/// [`canonical_allowlist`]).
pub fn ip_allowed(allowlist: &[IpNet], client: ClientAddr) -> bool {
    if allowlist.is_empty() {
        return true;
    }
    client
        .ip()
        .is_some_and(|ip| crate::http::client_ip::in_any(allowlist, ip))
}

/// The allowlist as stored and compared: each CIDR truncated to its network,
/// IPv4-mapped IPv6 ranges as the IPv4 ranges they stand for (a client is
/// always compared by its canonical address).
pub fn canonical_allowlist(list: Vec<IpNet>) -> Vec<IpNet> {
    list.into_iter()
        .map(|n| crate::http::client_ip::canonical_net(n).trunc())
        .collect()
}

/// Parses the stored allowlist. Unreadable → a list that admits nobody
/// (fail closed), logged.
pub fn parse_allowlist(stored: &str) -> Vec<IpNet> {
    match serde_json::from_str::<Vec<IpNet>>(stored) {
        Ok(list) => canonical_allowlist(list),
        Err(e) => {
            tracing::error!(error = %e, "stored IP allowlist unreadable: denying all addresses");
            // 0.0.0.0/32 and ::/128 match no real client.
            vec![
                IpNet::from(std::net::IpAddr::from([0, 0, 0, 0])),
                IpNet::from(std::net::IpAddr::from([0u16; 8])),
            ]
        }
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    password_policy: String,
    session_idle_secs: i64,
    session_absolute_secs: i64,
    mfa_required: String,
    ip_allowlist: String,
    audit_retention_days: i64,
    api_key_rate_per_minute: i64,
    keep_api_keys_on_password_reset: bool,
    step_up_minutes: i64,
}

/// The tenant's settings (the defaults when it never changed them). A stored
/// policy that no longer parses falls back to the defaults, never to "none".
pub async fn load(tx: &mut TenantTx) -> Result<TenantSettings, DbError> {
    let row: Option<Row> = tx
        .fetch_optional(
            "SELECT password_policy, session_idle_secs, session_absolute_secs, mfa_required, \
             ip_allowlist, CAST(audit_retention_days AS BIGINT) AS audit_retention_days, \
             CAST(api_key_rate_per_minute AS BIGINT) AS api_key_rate_per_minute, \
             keep_api_keys_on_password_reset, step_up_minutes \
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
            mfa_required: MfaRequired::parse(&r.mfa_required),
            ip_allowlist: parse_allowlist(&r.ip_allowlist),
            audit_retention_days: r.audit_retention_days,
            api_key_rate_per_minute: r.api_key_rate_per_minute,
            keep_api_keys_on_password_reset: r.keep_api_keys_on_password_reset,
            step_up_minutes: r.step_up_minutes,
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
    let allowlist = serde_json::to_string(&settings.ip_allowlist)
        .map_err(|e| SettingsError::Invalid(e.to_string()))?;
    tx.execute(
        "INSERT INTO tenant_settings (tenant_id, password_policy, session_idle_secs, \
         session_absolute_secs, mfa_required, ip_allowlist, audit_retention_days, updated_at, \
         api_key_rate_per_minute, keep_api_keys_on_password_reset, step_up_minutes) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (tenant_id) DO UPDATE SET password_policy = $2, session_idle_secs = $3, \
         session_absolute_secs = $4, mfa_required = $5, ip_allowlist = $6, \
         audit_retention_days = $7, updated_at = $8, api_key_rate_per_minute = $9, \
         keep_api_keys_on_password_reset = $10, step_up_minutes = $11",
        vec![
            policy.into(),
            settings.session_idle_secs.into(),
            settings.session_absolute_secs.into(),
            settings.mfa_required.as_str().into(),
            allowlist.into(),
            i32::try_from(settings.audit_retention_days)
                .unwrap_or(90)
                .into(),
            clock.now().into(),
            settings.api_key_rate_per_minute.into(),
            settings.keep_api_keys_on_password_reset.into(),
            settings.step_up_minutes.into(),
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
        let s = TenantSettings {
            audit_retention_days: 0,
            ..TenantSettings::default()
        };
        assert!(s.validate().is_err());
        let mut s = TenantSettings::default();
        s.password_policy.min_length = 4;
        assert!(s.validate().is_err());
        for rate in [0, 100_001] {
            let s = TenantSettings {
                api_key_rate_per_minute: rate,
                ..TenantSettings::default()
            };
            assert!(s.validate().is_err(), "{rate}");
        }
        for minutes in [0, 61, -1, i64::MAX] {
            let s = TenantSettings {
                step_up_minutes: minutes,
                ..TenantSettings::default()
            };
            assert!(s.validate().is_err(), "{minutes}");
        }
        for minutes in [1, 5, 60] {
            let s = TenantSettings {
                step_up_minutes: minutes,
                ..TenantSettings::default()
            };
            assert!(s.validate().is_ok(), "{minutes}");
        }
    }

    #[test]
    fn allowlist() {
        let ip = |s: &str| ClientAddr::of(s.parse::<std::net::IpAddr>().unwrap());
        assert!(ip_allowed(&[], ip("203.0.113.9")));
        assert!(ip_allowed(&[], ClientAddr::Unknown));
        let list: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        assert!(ip_allowed(&list, ip("10.1.2.3")));
        assert!(ip_allowed(&list, ip("::ffff:10.1.2.3")));
        assert!(ip_allowed(&list, ip("2001:db8::1")));
        assert!(!ip_allowed(&list, ip("203.0.113.9")));
        assert!(!ip_allowed(&list, ClientAddr::Unknown));
        let broken = parse_allowlist("not json");
        assert!(!ip_allowed(&broken, ip("10.1.2.3")));
        assert!(!ip_allowed(&broken, ip("::1")));
        // A mapped range admits the IPv4 clients it stands for.
        let mapped = parse_allowlist(r#"["::ffff:198.51.100.0/120"]"#);
        assert!(ip_allowed(&mapped, ip("198.51.100.7")));
        assert!(ip_allowed(&mapped, ip("::ffff:198.51.100.7")));
        assert!(!ip_allowed(&mapped, ip("198.51.101.7")));
    }
}
