//! Sampled audit of refused API-key requests: `api_keys.key.denied` at most
//! once per key, reason and minute, so a misbehaving client cannot flood its
//! tenant's log. Each event carries `suppressed`: how many refusals of the
//! same key and reason were not logged since the previous event. The state
//! is in memory (per instance); a restart starts every window afresh.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::app::AppState;
use crate::audit::{self, Actor, NewEvent, Outcome, RequestContext, Target};
use crate::ids::{TenantId, UserId};

/// One event per key and reason per this long.
pub const DENIAL_WINDOW: Duration = Duration::minutes(1);

/// Windows kept at most; past it, closed windows are dropped.
const PRUNE_AT: usize = 100_000;

struct Window {
    until: DateTime<Utc>,
    suppressed: u64,
}

#[derive(Default)]
pub struct DenialAudit {
    windows: Mutex<HashMap<(Uuid, &'static str), Window>>,
    /// Events written in the background (refusals found in synchronous
    /// permission checks), so tests and shutdown can wait for them.
    pending: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl DenialAudit {
    /// Counts one refusal; `Some(suppressed)` when an event is due now.
    pub fn sample(&self, key: Uuid, reason: &'static str, now: DateTime<Utc>) -> Option<u64> {
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= PRUNE_AT {
            map.retain(|_, w| w.until > now);
            if map.len() >= PRUNE_AT {
                map.clear();
            }
        }
        match map.get_mut(&(key, reason)) {
            Some(w) if now < w.until => {
                w.suppressed = w.suppressed.saturating_add(1);
                None
            }
            Some(w) => {
                let suppressed = w.suppressed;
                *w = Window {
                    until: now + DENIAL_WINDOW,
                    suppressed: 0,
                };
                Some(suppressed)
            }
            None => {
                map.insert(
                    (key, reason),
                    Window {
                        until: now + DENIAL_WINDOW,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }

    fn keep(&self, handle: tokio::task::JoinHandle<()>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|h| !h.is_finished());
        pending.push(handle);
    }

    /// Waits until every background denial event is written.
    pub async fn flush(&self) {
        let handles: Vec<_> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        for h in handles {
            let _ = h.await;
        }
    }
}

/// The key a denial is about.
#[derive(Debug, Clone)]
pub struct DeniedKey {
    pub tenant: TenantId,
    pub id: Uuid,
    pub prefix: String,
    pub creator: UserId,
}

/// Samples a refusal and, when due, writes its event.
pub(super) async fn record(
    state: &AppState,
    key: &DeniedKey,
    reason: &'static str,
    extra: serde_json::Value,
    context: &RequestContext,
) {
    let now = state.clock.now();
    let Some(suppressed) = state.api_keys.denials.sample(key.id, reason, now) else {
        return;
    };
    if let Err(e) = write(state, key, reason, suppressed, extra, context).await {
        tracing::error!(error = %e, "api_keys.key.denied could not be audited");
    }
}

/// Like [`record`], from synchronous code: the event is written in the
/// background (see [`DenialAudit::flush`]).
pub fn record_later(
    state: &AppState,
    key: DeniedKey,
    reason: &'static str,
    extra: serde_json::Value,
    context: RequestContext,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let now = state.clock.now();
    let Some(suppressed) = state.api_keys.denials.sample(key.id, reason, now) else {
        return;
    };
    let task_state = state.clone();
    let handle = runtime.spawn(async move {
        if let Err(e) = write(&task_state, &key, reason, suppressed, extra, &context).await {
            tracing::error!(error = %e, "api_keys.key.denied could not be audited");
        }
    });
    state.api_keys.denials.keep(handle);
}

async fn write(
    state: &AppState,
    key: &DeniedKey,
    reason: &'static str,
    suppressed: u64,
    extra: serde_json::Value,
    context: &RequestContext,
) -> anyhow::Result<()> {
    let mut details = serde_json::json!({
        "reason": reason,
        "prefix": key.prefix,
        "suppressed": suppressed,
    });
    if let (Some(d), Some(x)) = (details.as_object_mut(), extra.as_object()) {
        d.extend(x.clone());
    }
    let mut tx = state.db.tenant_tx(key.tenant).await?;
    audit::append(
        &mut tx,
        state.clock.as_ref(),
        NewEvent::new(
            Actor::ApiKey {
                id: key.id.to_string(),
                creator: key.creator,
            },
            "api_keys.key.denied",
        )
        .target(Target::new("api_key", key.id))
        .outcome(Outcome::Denied)
        .details(details)
        .context(context.clone()),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_key_reason_and_minute_with_the_count() {
        let d = DenialAudit::default();
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let (k1, k2) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(d.sample(k1, "expired", t0), Some(0));
        for _ in 0..5 {
            assert_eq!(d.sample(k1, "expired", t0 + Duration::seconds(10)), None);
        }
        // Another reason or key has its own window.
        assert_eq!(d.sample(k1, "out_of_scope", t0), Some(0));
        assert_eq!(d.sample(k2, "expired", t0), Some(0));
        // The next event carries the five it stands for.
        assert_eq!(d.sample(k1, "expired", t0 + Duration::seconds(60)), Some(5));
        assert_eq!(d.sample(k1, "expired", t0 + Duration::seconds(61)), None);
    }
}
