//! In-process rate limiting: GCRA (the generic cell rate algorithm) per key,
//! on the caller's `now` (from the injected `Clock`) so tests move time
//! instead of sleeping. In memory only: it must not sleep, spawn or reach
//! the network.
//!
//! `governor` implements the same algorithm, but on its own clock; driving it
//! from our `Clock` would need an adapter larger than the algorithm itself,
//! which is one comparison and one store per check. Cluster mode moves the
//! state to Redis (same algorithm, one key per client).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

/// `burst` requests per `period`, refilled evenly: 10 per 15 minutes allows
/// 10 at once, then one every 90 s.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub burst: u32,
    pub period: Duration,
}

impl Quota {
    fn interval(&self) -> Duration {
        self.period / i32::try_from(self.burst.max(1)).unwrap_or(i32::MAX)
    }
}

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused; retry after this many whole seconds (at least 1). Callers
    /// count refusals with `audit::sampler`.
    Deny {
        retry_after_secs: u64,
    },
}

/// Keys past this many are pruned of idle entries, so a flood of distinct
/// keys cannot grow memory without bound.
const PRUNE_AT: usize = 100_000;

pub struct RateLimiter<K> {
    quota: Quota,
    /// Per key: the theoretical arrival time.
    tat: Mutex<HashMap<K, DateTime<Utc>>>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    pub fn new(quota: Quota) -> Self {
        Self {
            quota,
            tat: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request for `key` at `now`.
    pub fn check(&self, key: &K, now: DateTime<Utc>) -> Decision {
        self.check_quota(key, self.quota, now)
    }

    /// Like [`RateLimiter::check`], under a quota chosen per call (e.g. a
    /// tenant's setting). A key should keep one quota; a changed quota
    /// applies from the key's next request.
    pub fn check_quota(&self, key: &K, quota: Quota, now: DateTime<Utc>) -> Decision {
        let interval = quota.interval();
        let tolerance = quota.period - interval;
        let mut map = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= PRUNE_AT {
            map.retain(|_, tat| *tat > now);
        }
        let tat = map.get(key).copied().unwrap_or(now).max(now);
        let allow_at = tat - tolerance;
        if now < allow_at {
            let wait = allow_at - now;
            let secs = u64::try_from(wait.num_milliseconds().max(0))
                .unwrap_or(0)
                .div_ceil(1000);
            return Decision::Deny {
                retry_after_secs: secs.max(1),
            };
        }
        map.insert(key.clone(), tat + interval);
        Decision::Allow
    }

    /// Whether a request for `key` would be refused now, without counting
    /// one: callers that count only failures look before they try.
    pub fn peek(&self, key: &K, now: DateTime<Utc>) -> Option<u64> {
        let tolerance = self.quota.period - self.quota.interval();
        let map = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let tat = map.get(key).copied()?;
        let allow_at = tat.max(now) - tolerance;
        (now < allow_at).then(|| {
            u64::try_from((allow_at - now).num_milliseconds().max(0))
                .unwrap_or(0)
                .div_ceil(1000)
                .max(1)
        })
    }

    /// Forgets `key` (e.g. after a successful sign-in).
    pub fn reset(&self, key: &K) {
        self.tat
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn ten_per_fifteen_minutes() {
        let rl = RateLimiter::new(Quota {
            burst: 10,
            period: Duration::minutes(15),
        });
        for _ in 0..10 {
            assert_eq!(rl.check(&"ip", t0()), Decision::Allow);
        }
        for _ in 0..2 {
            assert_eq!(
                rl.check(&"ip", t0()),
                Decision::Deny {
                    retry_after_secs: 90
                }
            );
        }
        // Another key is independent.
        assert_eq!(rl.check(&"other", t0()), Decision::Allow);
        // One more slot after 90 s, not two.
        let later = t0() + Duration::seconds(90);
        assert_eq!(rl.check(&"ip", later), Decision::Allow);
        assert!(matches!(rl.check(&"ip", later), Decision::Deny { .. }));
        // Fully refilled after the period.
        let much_later = t0() + Duration::minutes(16) + Duration::seconds(90);
        for _ in 0..10 {
            assert_eq!(rl.check(&"ip", much_later), Decision::Allow);
        }
    }

    #[test]
    fn denied_requests_do_not_extend_the_wait() {
        let rl = RateLimiter::new(Quota {
            burst: 2,
            period: Duration::seconds(60),
        });
        rl.check(&1, t0());
        rl.check(&1, t0());
        for _ in 0..100 {
            assert!(matches!(rl.check(&1, t0()), Decision::Deny { .. }));
        }
        assert_eq!(rl.check(&1, t0() + Duration::seconds(30)), Decision::Allow);
    }

    #[test]
    fn peek_does_not_count_and_quota_can_vary() {
        let rl = RateLimiter::new(Quota {
            burst: 2,
            period: Duration::seconds(60),
        });
        for _ in 0..10 {
            assert_eq!(rl.peek(&1, t0()), None);
        }
        rl.check(&1, t0());
        rl.check(&1, t0());
        assert_eq!(rl.peek(&1, t0()), Some(30));
        assert_eq!(rl.peek(&1, t0() + Duration::seconds(30)), None);
        let tight = Quota {
            burst: 1,
            period: Duration::seconds(10),
        };
        assert_eq!(rl.check_quota(&2, tight, t0()), Decision::Allow);
        assert!(matches!(
            rl.check_quota(&2, tight, t0()),
            Decision::Deny {
                retry_after_secs: 10
            }
        ));
    }

    #[test]
    fn reset_forgets() {
        let rl = RateLimiter::new(Quota {
            burst: 1,
            period: Duration::seconds(60),
        });
        rl.check(&1, t0());
        assert!(matches!(rl.check(&1, t0()), Decision::Deny { .. }));
        rl.reset(&1);
        assert_eq!(rl.check(&1, t0()), Decision::Allow);
    }
}
