//! Retention holds, pure part (SPEC §2.7): when a chain's retention is
//! shortened from N to M days, what was already written keeps N days until
//! the change plus N days ([`change`] records the [`Hold`]); at any instant
//! a chain keeps the longest of its retention and its live holds
//! ([`effective`]). This file must not read or write the holds (that is
//! `stockade::audit::retention_policy`, over `audit_retention`) nor purge.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The promise a shortening leaves: until `until`, keep at least `days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub days: i64,
    pub until: DateTime<Utc>,
}

/// Records in `holds` that the retention went from `old` to `new` days at
/// `now`: a shortening adds the hold it leaves (returned); expired holds
/// and holds another one covers are dropped, so the list stays short.
pub fn change(holds: &mut Vec<Hold>, old: i64, new: i64, now: DateTime<Utc>) -> Option<Hold> {
    let added = (new < old).then(|| Hold {
        days: old,
        until: now + Duration::days(old),
    });
    holds.extend(added);
    holds.retain(|h| h.until > now);
    let all = holds.clone();
    holds.retain(|h| {
        !all.iter()
            .any(|o| o != h && o.days >= h.days && o.until >= h.until)
    });
    holds.sort_by_key(|h| h.until);
    holds.dedup();
    added
}

/// The days a chain is kept at `now`: `days`, or more while a hold lasts.
pub fn effective(days: i64, holds: &[Hold], now: DateTime<Utc>) -> i64 {
    holds
        .iter()
        .filter(|h| h.until > now)
        .map(|h| h.days)
        .fold(days, i64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap() + Duration::days(day)
    }

    #[test]
    fn a_shortening_holds_the_old_retention_for_what_was_written() {
        let mut holds = Vec::new();
        // Lengthening: applies at once, leaves nothing.
        assert_eq!(change(&mut holds, 90, 365, at(0)), None);
        assert_eq!(effective(365, &holds, at(0)), 365);
        // 365 → 90 on day 10: what exists keeps 365 days until day 375.
        let hold = change(&mut holds, 365, 90, at(10)).unwrap();
        assert_eq!(
            hold,
            Hold {
                days: 365,
                until: at(375)
            }
        );
        assert_eq!(effective(90, &holds, at(11)), 365);
        assert_eq!(effective(90, &holds, at(374)), 365);
        assert_eq!(effective(90, &holds, at(375)), 90);
        // 200 → 100 on day 200: a hold that ends later (day 400), for fewer
        // days; both are kept, and each applies until it ends.
        change(&mut holds, 200, 100, at(200));
        assert_eq!(holds.len(), 2, "{holds:?}");
        assert_eq!(effective(100, &holds, at(300)), 365);
        assert_eq!(effective(100, &holds, at(380)), 200);
        assert_eq!(effective(100, &holds, at(400)), 100);
        // A hold another one covers is dropped; expired ones too.
        change(&mut holds, 150, 100, at(210));
        assert_eq!(holds.len(), 2, "{holds:?}");
        change(&mut holds, 100, 100, at(400));
        assert!(holds.is_empty(), "{holds:?}");
    }

    #[test]
    fn repeated_toggling_keeps_the_list_short() {
        let mut holds = Vec::new();
        for day in 0..1000 {
            change(&mut holds, 365, 90, at(day));
            change(&mut holds, 90, 365, at(day));
        }
        assert_eq!(holds.len(), 1, "{holds:?}");
        assert_eq!(
            holds[0],
            Hold {
                days: 365,
                until: at(999 + 365)
            }
        );
    }
}
