//! Refused authorization is audited: `<area>.access.denied`, in the caller's
//! own tenant, sampled per principal, route and reason (at most one event a
//! minute, each with the count of the refusals it stands for: see
//! `audit::sampler`).
//!
//! One layer does it for every route, so no handler can forget it: the
//! layer gives each request a [`Witness`], the `Principal` extractor notes
//! who called on it, and an error response names its refusal
//! ([`Refusal`], set by `ApiError`). When both are there the layer samples:
//!
//! | code | reason |
//! |---|---|
//! | `rbac.forbidden` (a missing permission; for API keys `api_keys.key.denied` `out_of_scope` says it already) | `missing_permission` |
//! | `rbac.escalation` (a role or grant beyond the caller's) | `escalation` |
//! | `records.rule_violation` (a record rule) | `record_rule` |
//! | a 404 `…not_found` answered to a signed-in caller (`records.not_found`, `tenancy.member_not_found`, `api_keys.not_found`, `http.not_found`, …: another tenant's id looks exactly like a missing one, and is recorded as such, in the caller's tenant only) | `not_found` |
//!
//! Other refusals have events of their own (`tenancy.ip.denied`,
//! `platform.access.denied`, `api_keys.key.denied`) or are not about
//! authorization. The platform API is left to `platform.access.denied`.
//!
//! [`Refusals`] holds the samplers of every kind of refused attempt but API
//! keys' own (`ApiKeyAuth::denials`), in the `AuthState`: their events are
//! made where the refusal happens, never here.

use std::sync::{Arc, OnceLock};

use axum::extract::{MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use super::auth_state::AuthState;
use super::client_ip::LimitKey;
use crate::audit::sampler::{self, Sampled, Sampler};
use crate::audit::{Actor, NewEvent, Outcome, RequestContext};
use crate::ids::TenantId;

/// The samplers of refused attempts (see `audit::sampler`): each refusal is
/// counted, at most one event per key and window is written at once, and the
/// rest is written with its count when the window closes.
pub struct Refusals {
    /// `auth.ip.rate_limited` (platform chain): per client, one a minute.
    pub rate_limited: Sampler<LimitKey>,
    /// `tenancy.ip.denied`: per tenant and client, one per five minutes.
    pub allowlist: Sampler<(TenantId, LimitKey)>,
    /// `platform.access.denied` (platform chain): per user and reason, one a
    /// minute.
    pub platform: Sampler<(uuid::Uuid, &'static str)>,
    /// `platform.impersonation.denied` (the tenant's chain and the
    /// platform's): per impersonation session and operation, one a minute
    /// (`platform::forbidden`).
    pub impersonation: Sampler<(uuid::Uuid, &'static str)>,
    /// `<area>.access.denied`: per tenant, principal, route and reason, one
    /// a minute ([`audit_refusals`]).
    pub access: Sampler<AccessKey>,
}

impl Default for Refusals {
    fn default() -> Self {
        let minute = chrono::Duration::minutes(1);
        Self {
            rate_limited: Sampler::new(minute),
            allowlist: Sampler::new(chrono::Duration::minutes(5)),
            platform: Sampler::new(minute),
            impersonation: Sampler::new(minute),
            access: Sampler::new(minute),
        }
    }
}

/// What an error response refused (403 and 404 only).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: &'static str,
    /// The permission a `rbac.forbidden` names.
    pub permission: Option<String>,
}

/// The sampling key: tenant, principal (`user:<id>` or `api_key:<id>`),
/// route template, reason.
pub type AccessKey = (TenantId, String, String, &'static str);

/// Who a request turned out to be, noted by the `Principal` extractor.
#[derive(Clone, Default)]
pub struct Witness(Arc<OnceLock<Seen>>);

struct Seen {
    tenant: TenantId,
    actor: Actor,
    context: RequestContext,
    route: String,
}

impl Witness {
    /// Notes the authenticated caller of the request behind `parts`.
    pub fn saw(parts: &Parts, tenant: TenantId, actor: &Actor, context: &RequestContext) {
        let Some(witness) = parts.extensions.get::<Witness>() else {
            return;
        };
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str)
            .to_owned();
        let _ = witness.0.set(Seen {
            tenant,
            actor: actor.clone(),
            context: context.clone(),
            route,
        });
    }
}

/// The layer (see the module documentation).
pub async fn audit_refusals(
    State(state): State<AuthState>,
    mut req: Request,
    next: Next,
) -> Response {
    let witness = Witness::default();
    req.extensions_mut().insert(witness.clone());
    let method = req.method().clone();
    let res = next.run(req).await;
    let (Some(refusal), Some(seen)) = (res.extensions().get::<Refusal>(), witness.0.get()) else {
        return res;
    };
    let api_key = matches!(seen.actor, Actor::ApiKey { .. });
    let (Some(reason), Some(area)) = (reason(refusal.code, api_key), area(&seen.route)) else {
        return res;
    };
    let principal = match &seen.actor {
        Actor::User { id, .. } => format!("user:{id}"),
        Actor::ApiKey { id, .. } => format!("api_key:{id}"),
        other => format!("{other:?}"),
    };
    let key = (seen.tenant, principal, seen.route.clone(), reason);
    let make = || {
        let mut details = serde_json::json!({
            "reason": reason,
            "route": seen.route,
            "method": method.as_str(),
            "code": refusal.code,
        });
        if let (Some(p), Some(d)) = (&refusal.permission, details.as_object_mut()) {
            d.insert("permission".to_owned(), p.clone().into());
        }
        let event = NewEvent::new(seen.actor.clone(), &format!("{area}.access.denied"))
            .outcome(Outcome::Denied)
            .details(details)
            .context(seen.context.clone());
        Sampled::new(seen.tenant, event)
    };
    sampler::record(&state, &state.refusals.access, key, make).await;
    res
}

/// Why a refusal counts as refused authorization, if it does.
fn reason(code: &str, api_key: bool) -> Option<&'static str> {
    match code {
        "rbac.forbidden" if !api_key => Some("missing_permission"),
        "rbac.escalation" => Some("escalation"),
        "records.rule_violation" => Some("record_rule"),
        c if c.ends_with(".not_found") || c.ends_with("_not_found") => Some("not_found"),
        _ => None,
    }
}

/// The audit area of a route template; `None` for the platform API.
fn area(route: &str) -> Option<&'static str> {
    let first = route
        .strip_prefix("/v1/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    Some(match first {
        "collections" => "records",
        "members" | "invitations" | "tenant" => "tenancy",
        "roles" | "permissions" => "rbac",
        "api-keys" => "api_keys",
        "audit" => "audit",
        "auth" | "me" => "auth",
        "platform" => return None,
        _ => "http",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_and_reasons() {
        assert_eq!(
            area("/v1/collections/{collection}/records/{id}"),
            Some("records")
        );
        assert_eq!(area("/v1/tenant/settings"), Some("tenancy"));
        assert_eq!(area("/v1/members/{user_id}"), Some("tenancy"));
        assert_eq!(area("/v1/roles/{name}"), Some("rbac"));
        assert_eq!(area("/v1/api-keys/{id}/rotate"), Some("api_keys"));
        assert_eq!(area("/v1/audit/events"), Some("audit"));
        assert_eq!(area("/v1/auth/sessions/{id}"), Some("auth"));
        assert_eq!(area("/v1/platform/tenants"), None);
        assert_eq!(area("unmatched"), Some("http"));
        assert_eq!(reason("rbac.forbidden", false), Some("missing_permission"));
        assert_eq!(reason("rbac.forbidden", true), None);
        assert_eq!(reason("http.not_found", true), Some("not_found"));
        assert_eq!(reason("records.not_found", false), Some("not_found"));
        assert_eq!(reason("tenancy.member_not_found", false), Some("not_found"));
        assert_eq!(reason("audit.webhook_not_configured", false), None);
        assert_eq!(reason("tenancy.ip_not_allowed", false), None);
    }
}
