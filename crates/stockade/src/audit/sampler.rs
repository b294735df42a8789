//! Sampled audit of refusals, so a client cannot flood a tenant's log and
//! every refused attempt is still counted. One sampler per kind of refusal
//! (`http::refusals::Refusals`, `ApiKeyAuth::denials`, both in the
//! `AuthState`), each with its own key and window:
//!
//! - the first refusal of a key opens a window and is written at once;
//! - refusals inside the window are held (counted, with the time of the
//!   first and the last);
//! - the first refusal after the window writes one event standing for itself
//!   and everything held; a window that closes with refusals held is written
//!   by [`flush`] (a job of the serving instance, every [`FLUSH_EVERY`]).
//!
//! Every written event carries `count` (the refusals it stands for, itself
//! included), `suppressed` (`count - 1`), `first_at` and `last_at`; the
//! refusals of a key are the sum of its events' `count`. State is in memory,
//! per instance: a restart loses the refusals held at that moment. At most
//! [`MAX_WINDOWS`] windows are kept; past it, closed windows with nothing
//! held are dropped first, and refusals of keys that find no room are held
//! together in one overflow window (its event is the first such refusal's,
//! with `overflow: true` and the count of all of them).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

use crate::audit::{self, NewEvent};
use crate::http::AuthState;
use crate::ids::TenantId;

/// Windows kept at most per sampler.
pub const MAX_WINDOWS: usize = 100_000;

/// How often the serving instance writes the refusals held in closed windows.
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// An event to write, in a tenant's chain (and, when asked, the same event
/// in the platform chain too, in the same transaction).
#[derive(Debug, Clone)]
pub struct Sampled {
    pub tenant: TenantId,
    pub event: NewEvent,
    /// Also in the platform chain, with `tenant_id` added to its details.
    pub platform_copy: bool,
}

impl Sampled {
    /// `event` in `tenant`'s chain.
    pub fn new(tenant: TenantId, event: NewEvent) -> Self {
        Self {
            tenant,
            event,
            platform_copy: false,
        }
    }

    /// Written to the platform chain as well (for a refusal the platform's
    /// operators must see beside the tenant: `audit_both`'s rule).
    pub fn with_platform_copy(mut self) -> Self {
        self.platform_copy = true;
        self
    }
}

/// The refusals one event stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
}

impl Tally {
    fn one(at: DateTime<Utc>) -> Self {
        Self {
            count: 1,
            first_at: at,
            last_at: at,
        }
    }

    fn add(mut self, at: DateTime<Utc>) -> Self {
        self.count = self.count.saturating_add(1);
        self.first_at = self.first_at.min(at);
        self.last_at = self.last_at.max(at);
        self
    }
}

/// Refusals counted but in no event yet, with the event that will tell.
struct Held {
    tally: Tally,
    event: Sampled,
}

struct Window {
    until: DateTime<Utc>,
    held: Option<Held>,
}

struct Windows<K> {
    map: HashMap<K, Window>,
    overflow: Option<Held>,
}

pub struct Sampler<K> {
    window: Duration,
    windows: Mutex<Windows<K>>,
    /// Events written in the background (refusals found in synchronous
    /// code), so tests and shutdown can wait for them.
    pending: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl<K: Eq + Hash + Clone> Sampler<K> {
    /// A sampler writing at most one event per key per `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            windows: Mutex::new(Windows {
                map: HashMap::new(),
                overflow: None,
            }),
            pending: Mutex::new(Vec::new()),
        }
    }

    /// Counts one refusal of `key` at `now`. When an event is due now,
    /// returns it (made by `make`) with the tally it stands for; otherwise
    /// the refusal is held (`make` is called for the first one held).
    pub fn sample(
        &self,
        key: K,
        now: DateTime<Utc>,
        make: impl FnOnce() -> Sampled,
    ) -> Option<(Sampled, Tally)> {
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let until = now + self.window;
        if let Some(window) = w.map.get_mut(&key) {
            if now < window.until {
                match &mut window.held {
                    Some(held) => held.tally = held.tally.add(now),
                    None => {
                        window.held = Some(Held {
                            tally: Tally::one(now),
                            event: make(),
                        })
                    }
                }
                return None;
            }
            // The window closed: this event tells what it held, too.
            let tally = match window.held.take() {
                Some(held) => held.tally.add(now),
                None => Tally::one(now),
            };
            window.until = until;
            return Some((make(), tally));
        }
        if w.map.len() >= MAX_WINDOWS {
            w.map
                .retain(|_, window| window.until > now || window.held.is_some());
        }
        if w.map.len() >= MAX_WINDOWS {
            match &mut w.overflow {
                Some(held) => held.tally = held.tally.add(now),
                None => {
                    let mut event = make();
                    event.event =
                        with_details(event.event, serde_json::json!({ "overflow": true }));
                    w.overflow = Some(Held {
                        tally: Tally::one(now),
                        event,
                    });
                }
            }
            return None;
        }
        w.map.insert(key, Window { until, held: None });
        Some((make(), Tally::one(now)))
    }

    /// Removes the windows closed by `now`; returns the events of those that
    /// held refusals (and of the overflow), to be written.
    pub fn drain(&self, now: DateTime<Utc>) -> Vec<(Sampled, Tally)> {
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut due = Vec::new();
        w.map.retain(|_, window| {
            if window.until > now {
                return true;
            }
            if let Some(held) = window.held.take() {
                due.push((held.event, held.tally));
            }
            false
        });
        if let Some(held) = w.overflow.take() {
            due.push((held.event, held.tally));
        }
        due
    }

    /// Windows open or holding refusals now.
    pub fn len(&self) -> usize {
        self.windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }

    /// Whether no window is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn keep(&self, handle: tokio::task::JoinHandle<()>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|h| !h.is_finished());
        pending.push(handle);
    }

    /// Waits until every event written in the background is written.
    pub async fn flush(&self) {
        let handles: Vec<_> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        for h in handles {
            let _ = h.await;
        }
    }
}

/// Samples a refusal and, when due, writes its event (a failure to write is
/// logged: the refusal stands either way).
pub async fn record<K: Eq + Hash + Clone>(
    state: &AuthState,
    sampler: &Sampler<K>,
    key: K,
    make: impl FnOnce() -> Sampled,
) {
    if let Some((sampled, tally)) = sampler.sample(key, state.clock.now(), make) {
        write(state, sampled, tally).await;
    }
}

/// Like [`record`], from synchronous code: the event is written in the
/// background (see [`Sampler::flush`]).
pub fn record_later<K: Eq + Hash + Clone>(
    state: &AuthState,
    sampler: &Sampler<K>,
    key: K,
    make: impl FnOnce() -> Sampled,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if let Some((sampled, tally)) = sampler.sample(key, state.clock.now(), make) {
        let task_state = state.clone();
        sampler.keep(runtime.spawn(async move { write(&task_state, sampled, tally).await }));
    }
}

/// Writes the held refusals of every closed window of `sampler`.
pub async fn flush<K: Eq + Hash + Clone>(state: &AuthState, sampler: &Sampler<K>) -> usize {
    sampler.flush().await;
    let due = sampler.drain(state.clock.now());
    let n = due.len();
    for (sampled, tally) in due {
        write(state, sampled, tally).await;
    }
    n
}

/// Appends `sampled` with its tally in its details, in its own transaction
/// (with its platform copy, if any, in the same one).
pub async fn write(state: &AuthState, sampled: Sampled, tally: Tally) {
    let action = sampled.event.action.clone();
    let event = with_details(
        sampled.event,
        serde_json::json!({
            "count": tally.count,
            "suppressed": tally.count.saturating_sub(1),
            "first_at": tally.first_at,
            "last_at": tally.last_at,
        }),
    );
    let written = async {
        let clock = state.clock.as_ref();
        let mut tx = state.db.tenant_tx(sampled.tenant).await?;
        audit::append(&mut tx, clock, event.clone()).await?;
        if sampled.platform_copy && sampled.tenant != TenantId::PLATFORM {
            let copy = with_details(event, serde_json::json!({ "tenant_id": sampled.tenant }));
            tx = tx.rescope(TenantId::PLATFORM).await?;
            audit::append(&mut tx, clock, copy).await?;
        }
        tx.commit().await?;
        Ok::<(), audit::AuditError>(())
    };
    if let Err(e) = written.await {
        tracing::error!(error = %e, action, "a sampled refusal could not be audited");
    }
}

/// `event` with `extra`'s members added to its details.
fn with_details(mut event: NewEvent, extra: serde_json::Value) -> NewEvent {
    if !event.details.is_object() {
        event.details = serde_json::json!({});
    }
    if let (Some(d), Some(x)) = (event.details.as_object_mut(), extra.as_object()) {
        d.extend(x.clone());
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Actor;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn ev() -> Sampled {
        Sampled::new(
            TenantId::PLATFORM,
            NewEvent::new(Actor::System, "x.access.denied"),
        )
    }

    #[test]
    fn every_refusal_is_in_exactly_one_event() {
        let s: Sampler<u8> = Sampler::new(Duration::minutes(1));
        let mut counted = 0;
        let mut events = Vec::new();
        // 1 at t0, 30 inside the first window, then one after it.
        for secs in (0..31).chain([70]) {
            if let Some((_, tally)) = s.sample(1, t(secs), ev) {
                events.push(tally);
            }
            counted += 1;
        }
        assert_eq!(
            events,
            [
                Tally::one(t(0)),
                Tally {
                    count: 31,
                    first_at: t(1),
                    last_at: t(70)
                }
            ]
        );
        // Another key has its own window.
        assert_eq!(s.sample(2, t(5), ev).map(|e| e.1), Some(Tally::one(t(5))));
        // Held refusals are written when the window closes, once.
        for secs in 71..80 {
            assert!(s.sample(1, t(secs), ev).is_none());
        }
        assert!(s.drain(t(129)).is_empty(), "key 1's window is still open");
        let drained = s.drain(t(130));
        assert_eq!(drained.len(), 1);
        let tally = drained[0].1;
        assert_eq!(
            (tally.count, tally.first_at, tally.last_at),
            (9, t(71), t(79))
        );
        assert!(s.is_empty(), "closed windows are dropped");
        assert_eq!(events.iter().map(|e| e.count).sum::<u64>(), counted);
        // After a drain the next refusal is written at once again.
        assert_eq!(
            s.sample(1, t(131), ev).map(|e| e.1),
            Some(Tally::one(t(131)))
        );
    }

    #[test]
    fn past_the_bound_refusals_are_counted_in_one_overflow_window() {
        let s: Sampler<usize> = Sampler::new(Duration::minutes(1));
        for k in 0..MAX_WINDOWS {
            assert!(s.sample(k, t(0), ev).is_some());
        }
        // Open windows leave no room: new keys are held together.
        for k in 0..5 {
            assert!(s.sample(MAX_WINDOWS + k, t(1), ev).is_none());
        }
        assert_eq!(s.len(), MAX_WINDOWS);
        let drained = s.drain(t(2));
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].1.count, 5);
        assert_eq!(drained[0].0.event.details["overflow"], true);
        // Closed, empty windows make room again.
        assert!(s.sample(MAX_WINDOWS + 9, t(61), ev).is_some());
        assert_eq!(s.len(), 1);
    }
}
