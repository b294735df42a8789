//! The per-request session check (SPEC §2.2 "revocation takes effect on
//! the next request"): one indexed query says whether a session is live,
//! its user, membership and tenant active, and returns what a request needs
//! of it (role and permissions, allowlist, step-up time and the tenant's
//! step-up window, impersonator).
//! Reads only; caching the answer is `sessions/cache.rs`.

use chrono::{DateTime, Duration, Utc};

use crate::db::{Db, DbError};
use crate::ids::{SessionId, TenantId, UserId};
use crate::sessions::model::{SessionStatus, session_status};
use stockade_core::mfa::amr::{self, Amr};
use stockade_core::mfa::policy::MfaRequired;

/// What the per-request check learns about a live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub role: String,
    /// The tenant's slug (subdomain routing compares it with the host).
    pub tenant_slug: String,
    /// When the user last proved their password in this session.
    pub authenticated_at: Option<DateTime<Utc>>,
    /// How recent that proof must be for a sensitive action: the tenant's
    /// `step_up_minutes` (5 minutes by default).
    pub step_up_window: Duration,
    /// The platform owner acting through this session, if any.
    pub impersonator: Option<UserId>,
    /// The tenant's IP allowlist (empty: anywhere).
    pub ip_allowlist: std::sync::Arc<Vec<ipnet::IpNet>>,
    /// What the role allows (built-in, or the tenant's custom role).
    pub permissions: std::sync::Arc<crate::rbac::PermissionSet>,
    /// When the session stops being live on its own (idle or absolute end).
    pub live_until: DateTime<Utc>,
    /// How the user signed in (RFC 8176).
    pub amr: Vec<Amr>,
    /// The user has a confirmed second factor.
    pub mfa_enabled: bool,
    /// The tenant's MFA requirement.
    pub mfa_required: MfaRequired,
}

#[derive(sqlx::FromRow)]
struct CheckRow {
    user_id: UserId,
    revoked_at: Option<DateTime<Utc>>,
    last_seen_at: DateTime<Utc>,
    idle_timeout_secs: i64,
    absolute_expires_at: DateTime<Utc>,
    role: String,
    role_permissions: Option<String>,
    role_record_rules: Option<String>,
    ip_allowlist: Option<String>,
    step_up_minutes: Option<i64>,
    tenant_slug: String,
    authenticated_at: Option<DateTime<Utc>>,
    impersonator_id: Option<UserId>,
    membership_status: String,
    user_status: String,
    tenant_status: String,
    amr: Option<String>,
    mfa_enabled: bool,
    mfa_required: Option<String>,
}

/// Why a credential's session cannot act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, revoked or expired session, or inactive user or membership.
    NotLive,
    /// The tenant is suspended (its sessions were revoked with it); said
    /// plainly to the holder of a genuine credential of that tenant.
    TenantSuspended,
}

/// The per-request check: the session is live, its user and membership are
/// active and its tenant is active. One indexed query.
pub async fn check(
    db: &Db,
    tenant: TenantId,
    session: SessionId,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<Result<Live, Refusal>, DbError> {
    let mut tx = db.tenant_read(tenant).await?;
    let row: Option<CheckRow> = tx
        .fetch_optional(
            "SELECT s.user_id, s.revoked_at, s.last_seen_at, s.idle_timeout_secs, \
             s.absolute_expires_at, m.role, r.permissions AS role_permissions, \
             r.record_rules AS role_record_rules, ts.ip_allowlist, ts.step_up_minutes, \
             t.slug AS tenant_slug, \
             s.authenticated_at, s.impersonator_id, \
             m.status AS membership_status, \
             u.status AS user_status, t.status AS tenant_status, \
             s.amr, u.mfa_enabled, ts.mfa_required \
             FROM sessions s \
             JOIN memberships m ON m.tenant_id = s.tenant_id AND m.user_id = s.user_id \
             LEFT JOIN roles r ON r.tenant_id = s.tenant_id AND r.name = m.role \
             LEFT JOIN tenant_settings ts ON ts.tenant_id = s.tenant_id \
             JOIN users u ON u.id = s.user_id \
             JOIN tenants t ON t.id = s.tenant_id \
             WHERE s.tenant_id = $1 AND s.id = $2",
            vec![session.into()],
        )
        .await?;
    let Some(r) = row else {
        return Ok(Err(Refusal::NotLive));
    };
    if r.user_id == user && r.tenant_status == "suspended" {
        return Ok(Err(Refusal::TenantSuspended));
    }
    Ok({
        let live = r.user_id == user
            && session_status(
                r.revoked_at,
                r.last_seen_at,
                r.idle_timeout_secs,
                r.absolute_expires_at,
                now,
            ) == SessionStatus::Active
            && r.membership_status == "active"
            && r.user_status == "active"
            && r.tenant_status == "active";
        let live_until =
            (r.last_seen_at + Duration::seconds(r.idle_timeout_secs)).min(r.absolute_expires_at);
        let permissions = role_permissions(
            &r.role,
            r.role_permissions.as_deref(),
            r.role_record_rules.as_deref(),
        );
        let ip_allowlist = r
            .ip_allowlist
            .as_deref()
            .map(crate::tenancy::settings::parse_allowlist)
            .unwrap_or_default();
        match live {
            true => Ok(Live {
                ip_allowlist: std::sync::Arc::new(ip_allowlist),
                tenant_slug: r.tenant_slug,
                authenticated_at: r.authenticated_at,
                step_up_window: crate::sessions::step_up_window(r.step_up_minutes),
                impersonator: r.impersonator_id,
                role: r.role,
                permissions: std::sync::Arc::new(permissions),
                live_until,
                amr: amr::decode(r.amr.as_deref().unwrap_or("")),
                mfa_enabled: r.mfa_enabled,
                mfa_required: r
                    .mfa_required
                    .as_deref()
                    .map_or(MfaRequired::Off, MfaRequired::parse),
            }),
            false => Err(Refusal::NotLive),
        }
    })
}

/// A membership's permissions: the built-in role's, or the custom role's as
/// stored. A custom role that is missing or unreadable grants nothing.
fn role_permissions(
    role: &str,
    stored: Option<&str>,
    record_rules: Option<&str>,
) -> crate::rbac::PermissionSet {
    if let Some(builtin) = crate::rbac::PermissionSet::builtin(role) {
        return builtin;
    }
    let grants: Vec<String> = stored
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let rules: Vec<crate::rbac::RecordRule> = record_rules
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    crate::rbac::PermissionSet::new(grants, rules)
}
