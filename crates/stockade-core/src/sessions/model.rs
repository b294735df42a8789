//! Sessions' pure rules: the refresh cookie's name, the refresh-token
//! policy, the step-up window and when a proof is fresh enough for it, and
//! when a session is alive (revoked, idle or past its absolute expiry). This file must not read or write a
//! session, nor read the clock: time is the caller's `now`.

use chrono::{DateTime, Duration, Utc};

/// The refresh cookie: `__Host-` binds it to our origin, path `/`, Secure.
pub const REFRESH_COOKIE: &str = "__Host-stockade_refresh";

/// Refresh-token lifetime and reuse policy (deployment-wide). Idle and
/// absolute session timeouts are per tenant (`tenancy::settings`).
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub refresh_ttl: Duration,
    pub reuse_grace: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            refresh_ttl: Duration::days(7),
            reuse_grace: Duration::zero(),
        }
    }
}

/// How recent a password proof sensitive actions need (SPEC §2.4), unless
/// the tenant chose another window (`step_up_minutes`).
pub const STEP_UP_WINDOW: Duration = Duration::minutes(5);

/// The step-up windows a tenant may choose, in minutes.
pub const STEP_UP_MINUTES_RANGE: std::ops::RangeInclusive<i64> = 1..=60;

/// A tenant's step-up window from its stored minutes: none stored (no
/// settings row), or a value outside [`STEP_UP_MINUTES_RANGE`] (the
/// database's CHECK forbids one), is the default [`STEP_UP_WINDOW`].
pub fn step_up_window(minutes: Option<i64>) -> Duration {
    minutes
        .filter(|m| STEP_UP_MINUTES_RANGE.contains(m))
        .map_or(STEP_UP_WINDOW, Duration::minutes)
}

/// Whether a password proved at `authenticated_at` is recent enough at
/// `now` for a window of `window`. Never proved: no. A proof dated after
/// `now` (a clock that went backwards, a forged row) is not fresh either.
pub fn step_up_fresh(
    authenticated_at: Option<DateTime<Utc>>,
    window: Duration,
    now: DateTime<Utc>,
) -> bool {
    authenticated_at.is_some_and(|at| at <= now && now - at <= window)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Active,
    Revoked,
    IdleExpired,
    Expired,
}

/// A session's state at `now`, from its columns.
pub fn session_status(
    revoked_at: Option<DateTime<Utc>>,
    last_seen_at: DateTime<Utc>,
    idle_timeout_secs: i64,
    absolute_expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> SessionStatus {
    if revoked_at.is_some() {
        SessionStatus::Revoked
    } else if now >= absolute_expires_at {
        SessionStatus::Expired
    } else if now >= last_seen_at + Duration::seconds(idle_timeout_secs) {
        SessionStatus::IdleExpired
    } else {
        SessionStatus::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let s = |revoked: bool, last_seen_ago: i64, abs_in: i64| {
            session_status(
                revoked.then_some(now),
                now - Duration::seconds(last_seen_ago),
                8 * 3600,
                now + Duration::seconds(abs_in),
                now,
            )
        };
        assert_eq!(s(false, 0, 10), SessionStatus::Active);
        assert_eq!(s(true, 0, 10), SessionStatus::Revoked);
        assert_eq!(s(false, 8 * 3600, 10), SessionStatus::IdleExpired);
        assert_eq!(s(false, 0, 0), SessionStatus::Expired);
    }

    #[test]
    fn step_up_windows() {
        assert_eq!(step_up_window(None), STEP_UP_WINDOW);
        assert_eq!(step_up_window(Some(1)), Duration::minutes(1));
        assert_eq!(step_up_window(Some(60)), Duration::minutes(60));
        for out in [0, 61, -1, i64::MAX, i64::MIN] {
            assert_eq!(step_up_window(Some(out)), STEP_UP_WINDOW, "{out}");
        }
    }

    #[test]
    fn step_up_freshness() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let w = Duration::minutes(5);
        assert!(!step_up_fresh(None, w, now));
        assert!(step_up_fresh(Some(now), w, now));
        assert!(step_up_fresh(Some(now - w), w, now));
        assert!(!step_up_fresh(Some(now - w - Duration::seconds(1)), w, now));
        // A proof from the future (the clock moved backwards) is not fresh.
        assert!(!step_up_fresh(Some(now + Duration::seconds(1)), w, now));
        assert!(!step_up_fresh(Some(now + Duration::days(365)), w, now));
    }
}
