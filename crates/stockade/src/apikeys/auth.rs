//! Authenticating a request that carries `Authorization: Bearer stk_…`.
//!
//! The key, its creator's membership and role, and the tenant are read from
//! the database, or from the cache of fully successful authentications
//! (keyed by public id, a [`LivenessCache`]: the session cache's generation
//! rules, see `crate::cache`). An entry is used only while the liveness
//! generation it was filled under is unchanged, and every write that can
//! end or narrow a key bumps it: revocation, rotation and the creator's
//! removal (`api_keys`), demotion or deactivation (`memberships`, `users`),
//! a role edit (`roles`), suspension (`tenants`), the IP allowlist and the
//! per-key rate (`tenant_settings`). So all of them take effect on the next
//! request, in this process and, with Redis, on every instance; changes
//! made outside a server within `CROSS_PROCESS_TTL`.
//!
//! A hit skips only the database reads. Every request, hit or not, parses
//! the token, checks its environment, verifies the presented secret against
//! the stored keyed hash in constant time, and checks the key's expiry,
//! revocation and rotation grace against the current time ([`judge`]):
//! a wrong secret on a cached key is refused and counted exactly like one
//! on an uncached key, and a rotated key stops at the end of its grace
//! period without any write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::denials::{self, DeniedKey};
use super::model::{self, ApiKey, KeyEnv};
use super::store;
use crate::audit::RequestContext;
use crate::cache::{Generations, LivenessCache, MAX_ENTRIES};
use crate::http::client_ip::{ClientAddr, LimitKey};
use crate::http::{ApiError, AuthState};
use crate::ids::{TenantId, UserId};
use crate::ratelimit::{Decision, Quota, RateLimiter};
use crate::rbac::PermissionSet;

/// The server key purpose of the API-key HMAC key.
pub const HMAC_PURPOSE: &str = "api_key_hmac";

/// A key's last use is written at most once per this long.
pub const TOUCH_EVERY: Duration = Duration::minutes(1);

/// Failed key authentications per client address: like sign-ins, 10 per
/// 15 minutes; past it, 429 before any database work.
pub const FAILURE_QUOTA: Quota = crate::identity::LOGIN_QUOTA;

/// What authenticating API keys keeps in memory, per process (in
/// `AuthState::api_keys`).
pub struct ApiKeyAuth {
    hmac_key: tokio::sync::OnceCell<Zeroizing<[u8; 32]>>,
    /// Fully successful authentications, by the key's public id.
    cache: LivenessCache<String, Arc<Cached>>,
    /// The tenant owning each public id seen to exist: a key never changes
    /// tenant, so a cache miss (or a refresh after `CROSS_PROCESS_TTL`)
    /// needs one transaction, in that tenant, instead of two.
    owners: Mutex<HashMap<String, TenantId>>,
    /// Failed authentications per client address (IPv6 per /64; only
    /// failures are counted).
    pub failures: RateLimiter<LimitKey>,
    /// Requests per key, at the tenant's `api_key_rate_per_minute`.
    pub per_key: RateLimiter<Uuid>,
    /// Last-use writes per key: at most one per [`TOUCH_EVERY`] in this
    /// process, whatever a cached entry's (older) `last_used_at` says.
    touches: RateLimiter<Uuid>,
    pub denials: denials::DenialAudit,
}

impl ApiKeyAuth {
    /// The state of a process whose caches use `generations`.
    pub fn new(generations: Generations) -> Self {
        Self {
            hmac_key: tokio::sync::OnceCell::new(),
            cache: LivenessCache::new(generations),
            owners: Mutex::new(HashMap::new()),
            failures: RateLimiter::new(FAILURE_QUOTA),
            per_key: RateLimiter::new(per_minute(600)),
            touches: RateLimiter::new(Quota {
                burst: 1,
                period: TOUCH_EVERY,
            }),
            denials: denials::denial_audit(),
        }
    }

    /// Authentications answered from the cache since start.
    pub fn cache_hits(&self) -> u64 {
        self.cache.hits()
    }

    /// Public ids whose tenant is remembered now.
    pub fn remembered_owners(&self) -> usize {
        self.owners.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Keys cached now.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The cluster-wide generation the cache uses (cluster mode with Redis):
    /// the session cache's own, one per process.
    pub fn cluster(&self) -> Option<&Arc<crate::cache::cluster::ClusterGeneration>> {
        self.cache.generations().cluster()
    }
}

/// A fully successful authentication, as cached: what every request still
/// judges (see [`judge`]), and the answer.
struct Cached {
    standing: Standing,
    denied: DeniedKey,
    key: Authenticated,
}

/// What a request decides afresh from, whether read from the database or
/// from the cache: the stored hash and the key's dates, and whether the
/// tenant and the creator let it act at all.
struct Standing {
    /// The stored keyed hash of the secret.
    hash: Vec<u8>,
    revoked_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    grace_until: Option<DateTime<Utc>>,
    tenant_suspended: bool,
    /// The creator's role, while they may act through their keys.
    creator_role: Option<String>,
}

impl Standing {
    fn of(row: &store::AuthRow) -> Self {
        // The creator must still be an active member, and have been one
        // since before the key was made: removing a member disables their
        // keys for good, even if they are invited back later.
        let creator_active = row.tenant_status == "active"
            && row.membership_status.as_deref() == Some("active")
            && row.user_status.as_deref() == Some("active")
            && row
                .member_since
                .is_some_and(|since| since <= row.created_at);
        Self {
            hash: row.hash.clone(),
            revoked_at: row.revoked_at,
            expires_at: row.expires_at,
            grace_until: row.grace_until,
            tenant_suspended: row.tenant_status == "suspended",
            creator_role: row.role.clone().filter(|_| creator_active),
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
pub async fn hmac_key(state: &AuthState) -> Result<&[u8; 32], ApiError> {
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
    /// As read from the database (a cached copy may be older: see
    /// `ApiKeyAuth::touches`).
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
    state: &AuthState,
    token: &str,
    ip: ClientAddr,
    context: &RequestContext,
) -> Result<Authenticated, ApiError> {
    let now = state.clock.now();
    let ip = ip.limit_key();
    if let Some(secs) = state.api_keys.failures.peek(&ip, now) {
        return Err(
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "auth.rate_limited")
                .with_detail("too many failed API-key authentications from this address")
                .retry_after(secs)
                .limited_by("api_key_failures_address", ip),
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
    let cache = &state.api_keys.cache;
    // Before the database read (see `crate::cache`); `None`: no hit, no fill.
    let stamp = cache.stamp(&state.db).await;
    if let Some(hit) = stamp.and_then(|st| cache.get(&key.public_id, st, now, |_| true)) {
        let hmac = hmac_key(state).await?;
        judge(state, &key, hmac, &hit.standing, &hit.denied, now, context)
            .await
            .map_err(|refused| refused.unwrap_or_else(fail))?;
        return Ok(hit.key.clone());
    }
    let Some(tenant) = owner_of(state, &key.public_id).await? else {
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
    let standing = Standing::of(&row);
    judge(state, &key, hmac, &standing, &denied, now, context)
        .await
        .map_err(|refused| refused.unwrap_or_else(fail))?;
    let role = standing.creator_role.clone().unwrap_or_default();
    let creator_set = crate::rbac::role_permissions(&mut tx, &role)
        .await?
        .unwrap_or_default();
    drop(tx);
    let permissions = effective(&store::parse_scopes(&row.scopes), &creator_set);
    let authenticated = Authenticated {
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
    };
    if let Some(stamp) = stamp {
        let entry = Cached {
            standing,
            denied,
            key: authenticated.clone(),
        };
        cache.fill(key.public_id.clone(), Arc::new(entry), stamp, now);
    }
    Ok(authenticated)
}

/// The tenant owning `public_id`, from memory or `api_key_ids`. Only keys
/// found are remembered (a flood of made-up ids fills nothing), and the map
/// is bounded like the caches. An owner remembered for a key deleted since
/// is harmless: the key's row is then missing in that tenant.
async fn owner_of(state: &AuthState, public_id: &str) -> Result<Option<TenantId>, ApiError> {
    let owners = &state.api_keys.owners;
    if let Some(tenant) = owners
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(public_id)
    {
        return Ok(Some(*tenant));
    }
    let found = store::tenant_of(&state.db, public_id).await?;
    if let Some(tenant) = found {
        let mut owners = owners.lock().unwrap_or_else(|p| p.into_inner());
        if owners.len() >= MAX_ENTRIES {
            owners.clear();
        }
        owners.insert(public_id.to_owned(), tenant);
    }
    Ok(found)
}

/// What every request decides afresh, from the database or from the cache:
/// the presented secret against the stored hash (constant time), the key's
/// dates against `now`, the tenant, the creator. A refusal is audited
/// (sampled) here; `Err(None)` means "answer 401 and count the failure",
/// `Err(Some(e))` answer `e`.
async fn judge(
    state: &AuthState,
    key: &ApiKey,
    hmac: &[u8; 32],
    standing: &Standing,
    denied: &DeniedKey,
    now: DateTime<Utc>,
    context: &RequestContext,
) -> Result<(), Option<ApiError>> {
    let deny = |reason: &'static str| {
        denials::record(state, denied, reason, serde_json::json!({}), context)
    };
    if let Some(reason) = refusal(key.verify(hmac, &standing.hash), standing, now) {
        deny(reason).await;
        return Err(None);
    }
    if standing.tenant_suspended {
        return Err(Some(
            ApiError::new(StatusCode::FORBIDDEN, "tenancy.suspended")
                .with_detail("this tenant is suspended"),
        ));
    }
    if standing.creator_role.is_none() {
        deny("creator_inactive").await;
        return Err(None);
    }
    Ok(())
}

/// Why a stored key cannot be used now, if it cannot: wrong secret,
/// revoked, expired, or rotated and past its grace period.
fn refusal(secret_ok: bool, key: &Standing, now: DateTime<Utc>) -> Option<&'static str> {
    if !secret_ok {
        Some("bad_secret")
    } else if key.revoked_at.is_some() {
        Some("revoked")
    } else if key.expires_at.is_some_and(|at| now >= at) {
        Some("expired")
    } else if key.grace_until.is_some_and(|at| now >= at) {
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
/// `Retry-After`) and records the use (at most once a minute per key and
/// process). The record is a bookkeeping write: it does not bump the
/// liveness generation, so it empties no cache.
pub async fn admit(state: &AuthState, key: &Authenticated, ip: ClientAddr) -> Result<(), ApiError> {
    let now = state.clock.now();
    let quota = per_minute(key.rate_per_minute);
    if let Decision::Deny {
        retry_after_secs, ..
    } = state.api_keys.per_key.check_quota(&key.key_id, quota, now)
    {
        return Err(
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "api_keys.rate_limited")
                .with_detail("this API key made too many requests: slow down")
                .retry_after(retry_after_secs)
                .limited_by("api_key", ip.limit_key()),
        );
    }
    // The stored time spares a write another process (or an earlier run)
    // made recently; the in-process throttle covers a cached entry, whose
    // copy of it is older than this process's own last write.
    let due = key
        .last_used_at
        .is_none_or(|at| now < at || now - at >= TOUCH_EVERY)
        && state.api_keys.touches.check(&key.key_id, now) == Decision::Allow;
    if due
        && let Err(e) =
            store::touch(&state.db, key.tenant_id, key.key_id, now, &ip.to_string()).await
    {
        // Bookkeeping only: the request itself may proceed.
        tracing::warn!(error = %e, "API key last use could not be recorded");
    }
    Ok(())
}
