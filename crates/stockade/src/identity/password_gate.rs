//! What every endpoint that takes a password shares before it hashes one:
//! the per-client-address limit ([`LOGIN_QUOTA`], [`limit_ip`]: sign-up,
//! email verification, sign-in, step-up, password change and reset,
//! new-account invitation acceptance, sign-in-link redemption), and the
//! tenant password policies a new password must meet ([`policies_for`],
//! [`check_policy`]). It holds no state of its own: the limiter is built
//! once by `app.rs` and handed to the slices whose routes call it. The
//! per-account lockout is another thing (`throttle.rs`, `lockout.rs`).

use axum::http::StatusCode;
use secrecy::SecretString;

use super::password::{self, PasswordPolicy};
use super::store as users;
use crate::audit::sampler::{self, Sampled};
use crate::audit::{Actor, NewEvent, Outcome, RequestContext};
use crate::db::Db;
use crate::http::client_ip::{ClientIp, LimitKey};
use crate::http::{ApiError, AuthState};
use crate::ids::{TenantId, UserId};
use crate::ratelimit::{Decision, Quota, RateLimiter};
use crate::tenancy;

/// Sign-in attempts per client IP: 10 per 15 minutes (SPEC §2.3).
pub const LOGIN_QUOTA: Quota = Quota {
    burst: 10,
    period: chrono::Duration::minutes(15),
};

/// Sign-in and every other password-hashing endpoint, per client address
/// (IPv6 per /64; every unknown client under one key), at [`LOGIN_QUOTA`].
pub type LoginLimiter = RateLimiter<LimitKey>;

/// Refuses before any hashing when the client is over its quota. Every
/// refusal is counted in the platform log as `auth.ip.rate_limited`, sampled
/// per client (at most one event a minute, each with the count and span of
/// the refusals it stands for: `audit::sampler`).
pub(crate) async fn limit_ip(
    state: &AuthState,
    limiter: &LoginLimiter,
    ip: ClientIp,
    context: &RequestContext,
) -> Result<(), ApiError> {
    limit_ip_as(PASSWORD_LIMITER, state, limiter, ip, context).await
}

/// The `limiter` label of [`limit_ip`]'s refusals (`stockade_rate_limit_refusals_total`).
pub(crate) const PASSWORD_LIMITER: &str = "password_address";

/// [`limit_ip`], its refusals counted under the limiter name `name` (a
/// fixed name: a metric label).
pub(crate) async fn limit_ip_as(
    name: &'static str,
    state: &AuthState,
    limiter: &LoginLimiter,
    ip: ClientIp,
    context: &RequestContext,
) -> Result<(), ApiError> {
    let key = ip.0.limit_key();
    match limiter.check(&key, state.clock.now()) {
        Decision::Allow => Ok(()),
        Decision::Deny { retry_after_secs } => {
            let make = || {
                let event = NewEvent::new(Actor::System, "auth.ip.rate_limited")
                    .outcome(Outcome::Denied)
                    .details(serde_json::json!({
                        "retry_after_secs": retry_after_secs,
                        "client": key.to_string(),
                    }))
                    .context(context.clone());
                Sampled::new(TenantId::PLATFORM, event)
            };
            sampler::record(state, &state.refusals.rate_limited, key, make).await;
            Err(
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "auth.rate_limited")
                    .with_detail("too many attempts from this address")
                    .retry_after(retry_after_secs)
                    .limited_by(name, key),
            )
        }
    }
}

/// Checks a new password against `policies`; 400 listing every unmet rule.
pub(crate) fn check_policy(
    policies: &[PasswordPolicy],
    password: &SecretString,
    inputs: &[&str],
) -> Result<(), ApiError> {
    let mut violations: Vec<password::Violation> = Vec::new();
    for policy in policies {
        if let Err(e) = password::check(policy, password, inputs) {
            for v in e.violations {
                if !violations.iter().any(|seen| seen.code == v.code) {
                    violations.push(v);
                }
            }
        }
    }
    if violations.is_empty() {
        return Ok(());
    }
    Err(ApiError::bad_request(
        "auth.weak_password",
        "the password does not meet the policy",
    )
    .with_errors(serde_json::to_value(&violations).unwrap_or_default()))
}

/// The password policies a user's new password must meet: one per tenant
/// they belong to (so the strictest of each rule applies), the default
/// when they belong to none.
pub(crate) async fn policies_for(db: &Db, user: UserId) -> Result<Vec<PasswordPolicy>, ApiError> {
    let mut policies: Vec<PasswordPolicy> = Vec::new();
    for m in users::memberships_of(db, user).await? {
        let mut tx = db.tenant_read(m.tenant_id).await?;
        let policy = tenancy::settings::load(&mut tx).await?.password_policy;
        if !policies.contains(&policy) {
            policies.push(policy);
        }
    }
    if policies.is_empty() {
        policies.push(PasswordPolicy::default());
    }
    Ok(policies)
}
