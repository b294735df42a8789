//! The tenant IP allowlist (SPEC §2.5) on every pathway into a tenant: each
//! request with a bearer token or an API key (`http::Principal`), and every
//! way a session of the tenant is issued or extended — sign-in (once the
//! tenant is chosen, before anything is issued), refresh (before the token
//! is rotated), tenant switch, sign-in-link redemption and the invitation
//! acceptance that creates an account and signs it in. All of them call
//! [`check`]: a client outside the list (an unknown client is outside every
//! non-empty list) gets 403 `tenancy.ip_not_allowed`, nothing is issued,
//! rotated or claimed, and the refusal is audited as `tenancy.ip.denied`
//! (sampled per tenant and client).

use axum::http::StatusCode;
use ipnet::IpNet;

use crate::audit::sampler::{self, Sampled};
use crate::audit::{Actor, NewEvent, Outcome, RequestContext};
use crate::db::{DbError, TenantTx};
use crate::http::client_ip::ClientAddr;
use crate::http::{ApiError, AuthState};
use crate::ids::TenantId;

/// Which way into the tenant was refused (`details.pathway`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pathway {
    /// A request carrying a bearer token or an API key.
    Request,
    Login,
    Refresh,
    SwitchTenant,
    SignInLink,
    Invitation,
}

impl Pathway {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Login => "login",
            Self::Refresh => "refresh",
            Self::SwitchTenant => "switch_tenant",
            Self::SignInLink => "sign_in_link",
            Self::Invitation => "invitation",
        }
    }
}

/// The one gate: `Ok` when `client` may reach `tenant` through `allowlist`;
/// otherwise the refusal is audited and its 403 returned.
pub async fn check(
    state: &AuthState,
    tenant: TenantId,
    actor: Actor,
    allowlist: &[IpNet],
    client: ClientAddr,
    pathway: Pathway,
    context: &RequestContext,
) -> Result<(), ApiError> {
    if super::settings::ip_allowed(allowlist, client) {
        return Ok(());
    }
    Err(refuse(state, tenant, actor, client, pathway, context).await)
}

/// [`check`] for a pathway that issues inside the write transaction `tx`
/// (scoped to the tenant): reads the allowlist there and hands `tx` back; a
/// refused client's `tx` is rolled back (nothing issued or claimed) before
/// the refusal is audited.
pub async fn admit_in(
    state: &AuthState,
    mut tx: TenantTx,
    actor: Actor,
    client: ClientAddr,
    pathway: Pathway,
    context: &RequestContext,
) -> Result<TenantTx, ApiError> {
    let list = of(&mut tx).await?;
    if super::settings::ip_allowed(&list, client) {
        return Ok(tx);
    }
    let tenant = tx.tenant();
    drop(tx);
    Err(refuse(state, tenant, actor, client, pathway, context).await)
}

/// The tenant's allowlist, read in `tx` (empty when it has no settings row).
pub async fn of(tx: &mut TenantTx) -> Result<Vec<IpNet>, DbError> {
    let row: Option<(String,)> = tx
        .fetch_optional(
            "SELECT ip_allowlist FROM tenant_settings WHERE tenant_id = $1",
            vec![],
        )
        .await?;
    Ok(row
        .map(|(stored,)| super::settings::parse_allowlist(&stored))
        .unwrap_or_default())
}

/// The answer to a client outside the allowlist, after counting it: every
/// refusal is in a `tenancy.ip.denied` event's `count`, at most one event per
/// tenant and client (IPv6 per /64) per five minutes (`audit::sampler`), so
/// a blocked client cannot flood the tenant's log. A failure to audit is
/// logged; the client is refused all the same. Call it holding no write
/// transaction.
pub async fn refuse(
    state: &AuthState,
    tenant: TenantId,
    actor: Actor,
    client: ClientAddr,
    pathway: Pathway,
    context: &RequestContext,
) -> ApiError {
    let make = || {
        let event = NewEvent::new(actor, "tenancy.ip.denied")
            .outcome(Outcome::Denied)
            .details(serde_json::json!({ "pathway": pathway.as_str() }))
            .context(context.clone());
        Sampled::new(tenant, event)
    };
    let key = (tenant, client.limit_key());
    sampler::record(state, &state.refusals.allowlist, key, make).await;
    ApiError::new(StatusCode::FORBIDDEN, "tenancy.ip_not_allowed")
        .with_detail("this tenant cannot be reached from your address")
}
