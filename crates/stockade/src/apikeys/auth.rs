//! Authenticating a request that carries `Authorization: Bearer stk_…`.
//!
//! Every request reads the key, its creator's membership and the tenant
//! from the database (no cache), so revocation, expiry, the end of a
//! rotation's grace period, the creator's removal or demotion and tenant
//! suspension all take effect on the next request.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::denials::{self, DeniedKey};
use super::model::{self, KeyEnv};
use super::store;
use crate::app::AppState;
use crate::audit::RequestContext;
use crate::http::ApiError;
use crate::ids::{TenantId, UserId};
use crate::ratelimit::{Decision, Quota, RateLimiter};
use crate::rbac::PermissionSet;

/// The server key purpose of the API-key HMAC key.
pub const HMAC_PURPOSE: &str = "api_key_hmac";

/// A key's last use is written at most once per this long.
pub const TOUCH_EVERY: Duration = Duration::minutes(1);

/// Failed key authentications per client address: like sign-ins, 10 per
/// 15 minutes; past it, 429 before any database work.
pub const FAILURE_QUOTA: Quota = crate::app::LOGIN_QUOTA;

/// Process-wide API-key state, in `AppState::api_keys`.
pub struct ApiKeyState {
    hmac_key: tokio::sync::OnceCell<Zeroizing<[u8; 32]>>,
    /// Failed authentications per client IP (only failures are counted).
    pub failures: RateLimiter<IpAddr>,
    /// Requests per key, at the tenant's `api_key_rate_per_minute`.
    pub per_key: RateLimiter<Uuid>,
    pub denials: denials::DenialAudit,
}

impl Default for ApiKeyState {
    fn default() -> Self {
        Self {
            hmac_key: tokio::sync::OnceCell::new(),
            failures: RateLimiter::new(FAILURE_QUOTA),
            per_key: RateLimiter::new(per_minute(600)),
            denials: denials::DenialAudit::default(),
        }
    }
}

fn per_minute(rate: i64) -> Quota {
    Quota {
        burst: u32::try_from(rate.clamp(1, 100_000)).unwrap_or(600),
        period: Duration::minutes(1),
    }
}

/// The HMAC key (sealed in `server_keys`), loaded once per process.
pub async fn hmac_key(state: &AppState) -> Result<&[u8; 32], ApiError> {
    let key = state
        .api_keys
        .hmac_key
        .get_or_try_init(|| async {
            crate::crypto::server_keys::get_or_create(
                &state.db,
                &state.master(),
                state.clock.as_ref(),
                HMAC_PURPOSE,
            )
            .await
        })
        .await
        .map_err(ApiError::internal)?;
    Ok(key)
}

/// A key that authenticated, with what it may do right now.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub key_id: Uuid,
    pub prefix: String,
    pub tenant_id: TenantId,
    pub creator: UserId,
    pub role: String,
    /// The key's scopes that its creator still holds, under the creator's
    /// record rules.
    pub permissions: Arc<PermissionSet>,
    pub tenant_slug: String,
    pub ip_allowlist: Arc<Vec<ipnet::IpNet>>,
    rate_per_minute: i64,
    last_used_at: Option<DateTime<Utc>>,
}

impl Authenticated {
    pub fn denied_key(&self) -> DeniedKey {
        DeniedKey {
            tenant: self.tenant_id,
            id: self.key_id,
            prefix: self.prefix.clone(),
            creator: self.creator,
        }
    }
}

fn invalid() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "auth.invalid_api_key")
        .with_detail("this API key is not valid")
}

/// Checks an `stk_…` bearer token. Failures answer 401
/// `auth.invalid_api_key` whatever the reason (unknown, wrong secret,
/// revoked, expired, rotated out, creator gone) and count against the
/// client address; a suspended tenant answers 403 `tenancy.suspended`.
pub async fn authenticate(
    state: &AppState,
    token: &str,
    ip: IpAddr,
    context: &RequestContext,
) -> Result<Authenticated, ApiError> {
    let now = state.clock.now();
    if let Some(secs) = state.api_keys.failures.peek(&ip, now) {
        return Err(
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "auth.rate_limited")
                .with_detail("too many failed API-key authentications from this address")
                .retry_after(secs),
        );
    }
    let fail = || {
        let _ = state.api_keys.failures.check(&ip, now);
        invalid()
    };
    let Ok(key) = model::parse(token) else {
        return Err(fail());
    };
    if key.env != KeyEnv::for_config(&state.config) {
        return Err(fail());
    }
    let Some(tenant) = store::tenant_of(&state.db, &key.public_id).await? else {
        return Err(fail());
    };
    let hmac = hmac_key(state).await?;
    let mut tx = state.db.tenant_read(tenant).await?;
    let Some(row) = store::auth_row(&mut tx, &key.public_id).await? else {
        return Err(fail());
    };
    let denied = DeniedKey {
        tenant,
        id: row.id,
        prefix: key.prefix(),
        creator: row.created_by,
    };
    let deny = |reason: &'static str| {
        denials::record(state, &denied, reason, serde_json::json!({}), context)
    };
    if let Some(reason) = refusal(key.verify(hmac, &row.hash), &row, now) {
        deny(reason).await;
        return Err(fail());
    }
    if row.tenant_status == "suspended" {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "tenancy.suspended")
            .with_detail("this tenant is suspended"));
    }
    // The creator must still be an active member, and have been one since
    // before the key was made: removing a member disables their keys for
    // good, even if they are invited back later.
    let creator_active = row.tenant_status == "active"
        && row.membership_status.as_deref() == Some("active")
        && row.user_status.as_deref() == Some("active")
        && row
            .member_since
            .is_some_and(|since| since <= row.created_at);
    let role = match (&row.role, creator_active) {
        (Some(role), true) => role.clone(),
        _ => {
            deny("creator_inactive").await;
            return Err(fail());
        }
    };
    let creator_set = crate::rbac::role_permissions(&mut tx, &role)
        .await?
        .unwrap_or_default();
    drop(tx);
    let permissions = effective(&store::parse_scopes(&row.scopes), &creator_set);
    Ok(Authenticated {
        key_id: row.id,
        prefix: key.prefix(),
        tenant_id: tenant,
        creator: row.created_by,
        role,
        permissions: Arc::new(permissions),
        tenant_slug: row.tenant_slug,
        ip_allowlist: Arc::new(
            row.ip_allowlist
                .as_deref()
                .map(crate::tenancy::settings::parse_allowlist)
                .unwrap_or_default(),
        ),
        rate_per_minute: row.rate_per_minute.unwrap_or(600),
        last_used_at: row.last_used_at,
    })
}

/// Why a stored key cannot be used now, if it cannot: wrong secret,
/// revoked, expired, or rotated and past its grace period.
fn refusal(secret_ok: bool, row: &store::AuthRow, now: DateTime<Utc>) -> Option<&'static str> {
    if !secret_ok {
        Some("bad_secret")
    } else if row.revoked_at.is_some() {
        Some("revoked")
    } else if row.expires_at.is_some_and(|at| now >= at) {
        Some("expired")
    } else if row.grace_until.is_some_and(|at| now >= at) {
        Some("rotated")
    } else {
        None
    }
}

/// What a key may do: those of its scopes its creator holds now, bound by
/// the creator's record rules. A scope the creator lost is dropped whole.
pub fn effective(scopes: &[String], creator: &PermissionSet) -> PermissionSet {
    let kept = scopes
        .iter()
        .filter(|s| creator.covers(&PermissionSet::new([(*s).clone()], Vec::new())))
        .cloned();
    PermissionSet::new(kept, creator.record_rules().to_vec())
}

/// Applies the per-key rate limit (429 `api_keys.rate_limited` with
/// `Retry-After`) and records the use (at most once a minute per key).
pub async fn admit(state: &AppState, key: &Authenticated, ip: IpAddr) -> Result<(), ApiError> {
    let now = state.clock.now();
    let quota = per_minute(key.rate_per_minute);
    if let Decision::Deny {
        retry_after_secs, ..
    } = state.api_keys.per_key.check_quota(&key.key_id, quota, now)
    {
        return Err(
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "api_keys.rate_limited")
                .with_detail("this API key made too many requests: slow down")
                .retry_after(retry_after_secs),
        );
    }
    let due = key
        .last_used_at
        .is_none_or(|at| now < at || now - at >= TOUCH_EVERY);
    if due
        && let Err(e) =
            store::touch(&state.db, key.tenant_id, key.key_id, now, &ip.to_string()).await
    {
        // Bookkeeping only: the request itself may proceed.
        tracing::warn!(error = %e, "API key last use could not be recorded");
    }
    Ok(())
}
