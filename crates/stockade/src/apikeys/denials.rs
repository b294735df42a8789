//! Sampled audit of refused API-key requests: `api_keys.key.denied` at most
//! once per key, reason and minute, so a misbehaving client cannot flood its
//! tenant's log, and every refusal still counted: each event carries `count`
//! (the refusals it stands for), `suppressed` (`count - 1`), `first_at` and
//! `last_at`; refusals held when a window closes are written by the refusal
//! flush (`audit::sampler`). The state is in memory (per instance).

use chrono::Duration;
use uuid::Uuid;

use crate::audit::sampler::{self, Sampled, Sampler};
use crate::audit::{Actor, NewEvent, Outcome, RequestContext, Target};
use crate::http::AuthState;
use crate::ids::{TenantId, UserId};

/// One event per key and reason per this long.
pub const DENIAL_WINDOW: Duration = Duration::minutes(1);

/// The sampler of `api_keys.key.denied`, per key and reason.
pub type DenialAudit = Sampler<(Uuid, &'static str)>;

/// A sampler with [`DENIAL_WINDOW`].
pub fn denial_audit() -> DenialAudit {
    Sampler::new(DENIAL_WINDOW)
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
    state: &AuthState,
    key: &DeniedKey,
    reason: &'static str,
    extra: serde_json::Value,
    context: &RequestContext,
) {
    let make = || event(key, reason, extra, context.clone());
    sampler::record(state, &state.api_keys.denials, (key.id, reason), make).await;
}

/// Like [`record`], from synchronous code: the event is written in the
/// background (see [`Sampler::flush`]).
pub fn record_later(
    state: &AuthState,
    key: DeniedKey,
    reason: &'static str,
    extra: serde_json::Value,
    context: RequestContext,
) {
    let id = (key.id, reason);
    let make = move || event(&key, reason, extra, context);
    sampler::record_later(state, &state.api_keys.denials, id, make);
}

fn event(
    key: &DeniedKey,
    reason: &'static str,
    extra: serde_json::Value,
    context: RequestContext,
) -> Sampled {
    let mut details = serde_json::json!({ "reason": reason, "prefix": key.prefix });
    if let (Some(d), Some(x)) = (details.as_object_mut(), extra.as_object()) {
        d.extend(x.clone());
    }
    let actor = Actor::ApiKey {
        id: key.id.to_string(),
        creator: key.creator,
    };
    let event = NewEvent::new(actor, "api_keys.key.denied")
        .target(Target::new("api_key", key.id))
        .outcome(Outcome::Denied)
        .details(details)
        .context(context);
    Sampled::new(key.tenant, event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    #[test]
    fn one_event_per_key_reason_and_minute_with_the_count() {
        let d = denial_audit();
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let (k1, k2) = (Uuid::new_v4(), Uuid::new_v4());
        let key = |id| DeniedKey {
            tenant: TenantId::PLATFORM,
            id,
            prefix: "stk_test_x".into(),
            creator: UserId::new(),
        };
        let make = |id| {
            let k = key(id);
            move || {
                event(
                    &k,
                    "expired",
                    serde_json::json!({}),
                    RequestContext::default(),
                )
            }
        };
        let count = |due: Option<(Sampled, sampler::Tally)>| due.map(|(_, t)| t.count);
        assert_eq!(count(d.sample((k1, "expired"), t0, make(k1))), Some(1));
        for _ in 0..5 {
            let at = t0 + Duration::seconds(10);
            assert_eq!(count(d.sample((k1, "expired"), at, make(k1))), None);
        }
        // Another reason or key has its own window.
        assert_eq!(count(d.sample((k1, "out_of_scope"), t0, make(k1))), Some(1));
        assert_eq!(count(d.sample((k2, "expired"), t0, make(k2))), Some(1));
        // The next event stands for itself and the five held.
        let at = t0 + Duration::seconds(60);
        assert_eq!(count(d.sample((k1, "expired"), at, make(k1))), Some(6));
        let at = t0 + Duration::seconds(61);
        assert_eq!(count(d.sample((k1, "expired"), at, make(k1))), None);
    }
}
