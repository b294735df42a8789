//! Per-account sign-in throttling: 10 consecutive failures lock the address
//! for 15 minutes, doubling on each repeat lockout (capped at 2^10 × 15 min).
//! Keyed by the normalised email, so unknown addresses are counted and locked
//! exactly like known ones. Every proof of a password counts here, not only
//! sign-in: step-up and password change go through `lockout::prove_password`.

use chrono::{DateTime, Duration, Utc};

use crate::db::{Db, DbError, GlobalTx};

pub const MAX_FAILURES: i64 = 10;
pub const BASE_LOCK: Duration = Duration::minutes(15);

/// Failures and lockouts older than this are forgotten: doubling answers a
/// sustained attack, and a quiet day ends it, so nobody can keep someone
/// else's account locked for weeks by failing on purpose once a day.
pub const FORGET_AFTER: Duration = Duration::hours(24);

/// The lock length after `previous_lockouts` earlier ones: 15 minutes,
/// doubling, at most 16 hours.
pub fn lock_duration(previous_lockouts: i64) -> Duration {
    BASE_LOCK * (1i32 << previous_lockouts.clamp(0, 6))
}

/// What a sign-in knows of `email_key`'s throttle before hashing, read in
/// the caller's transaction (with the user, in one read).
#[derive(Debug, Clone, Copy, Default)]
pub struct Standing {
    failures: i64,
    locked_until: Option<DateTime<Utc>>,
}

impl Standing {
    /// Until when the address is locked, if it is at `now`.
    pub fn locked_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.locked_until.filter(|until| *until > now)
    }

    /// Whether a successful sign-in has anything to clear. A failure counted
    /// after this read and before the success is left standing: it is the
    /// later of the two.
    pub fn has_failures(&self) -> bool {
        self.failures > 0 || self.locked_until.is_some()
    }
}

/// The throttle row of `email_key` (none: no failure counted).
pub async fn standing(tx: &mut GlobalTx, email_key: &str) -> Result<Standing, DbError> {
    let row: Option<(i64, Option<DateTime<Utc>>)> = tx
        .fetch_optional(
            "SELECT CAST(failures AS BIGINT), locked_until FROM login_throttle \
             WHERE email_key = $1",
            vec![email_key.into()],
        )
        .await?;
    Ok(
        row.map_or_else(Standing::default, |(failures, locked_until)| Standing {
            failures,
            locked_until,
        }),
    )
}

/// Counts a failure; returns the lock's end when this failure caused one.
pub async fn record_failure(
    db: &Db,
    email_key: &str,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, DbError> {
    let mut tx = db.global_tx().await?;
    let (failures, lockouts): (i64, i64) = tx
        .fetch_optional(
            "INSERT INTO login_throttle (email_key, failures, lockouts, updated_at) \
             VALUES ($1, 1, 0, $2) \
             ON CONFLICT (email_key) DO UPDATE SET \
             failures = CASE WHEN login_throttle.updated_at < $3 THEN 1 \
             ELSE login_throttle.failures + 1 END, \
             lockouts = CASE WHEN login_throttle.updated_at < $3 THEN 0 \
             ELSE login_throttle.lockouts END, \
             updated_at = $2 RETURNING CAST(failures AS BIGINT), CAST(lockouts AS BIGINT)",
            vec![email_key.into(), now.into(), (now - FORGET_AFTER).into()],
        )
        .await?
        .unwrap_or((1, 0));
    let mut locked = None;
    if failures >= MAX_FAILURES {
        let until = now + lock_duration(lockouts);
        tx.execute(
            "UPDATE login_throttle SET failures = 0, lockouts = lockouts + 1, locked_until = $2 \
             WHERE email_key = $1",
            vec![email_key.into(), until.into()],
        )
        .await?;
        locked = Some(until);
    }
    tx.commit().await?;
    Ok(locked)
}

/// A successful sign-in clears the failure count (lockout history stays, so
/// the next lockout is longer). Callers skip it when [`Standing::has_failures`]
/// says there is nothing to clear: most sign-ins then write only their session.
pub async fn record_success(db: &Db, email_key: &str) -> Result<(), DbError> {
    let mut tx = db.global_tx().await?;
    tx.execute(
        "UPDATE login_throttle SET failures = 0, locked_until = NULL WHERE email_key = $1",
        vec![email_key.into()],
    )
    .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockouts_double_and_are_capped() {
        assert_eq!(lock_duration(0), Duration::minutes(15));
        assert_eq!(lock_duration(1), Duration::minutes(30));
        assert_eq!(lock_duration(3), Duration::minutes(120));
        assert_eq!(lock_duration(6), Duration::hours(16));
        assert_eq!(lock_duration(50), Duration::hours(16));
    }
}
