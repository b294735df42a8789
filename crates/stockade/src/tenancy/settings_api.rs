//! `GET/PATCH /v1/tenant/settings`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use ipnet::IpNet;
use serde::Deserialize;

use super::TenancyState;
use super::settings::{self, MfaRequired, TenantSettings};
use crate::audit::{self, NewEvent, Target};
use crate::http::client_ip::{ClientAddr, ClientIp};
use crate::http::{ApiError, ApiJson, Principal};
use crate::identity::password::PasswordPolicy;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(get_settings, patch_settings),
    components(schemas(TenantSettings, SettingsPatch, MfaRequired, PasswordPolicy))
)]
pub struct SettingsApi;

pub fn routes() -> Router<TenancyState> {
    Router::new().route(
        "/v1/tenant/settings",
        get(get_settings).patch(patch_settings),
    )
}

/// The tenant's security settings.
#[utoipa::path(get, path = "/v1/tenant/settings", tag = "tenancy", security(("bearer" = [])),
    responses((status = 200, body = TenantSettings), (status = 403, body = crate::http::Problem)))]
async fn get_settings(
    State(state): State<TenancyState>,
    p: Principal,
) -> Result<Json<TenantSettings>, ApiError> {
    p.require("settings:manage")?;
    let mut tx = state.db.tenant_read(p.tenant_id).await?;
    Ok(Json(settings::load(&mut tx).await?))
}

/// Fields to change; the others keep their values.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    #[serde(default)]
    pub password_policy: Option<PasswordPolicy>,
    #[serde(default)]
    pub session_idle_secs: Option<i64>,
    #[serde(default)]
    pub session_absolute_secs: Option<i64>,
    /// Who must have a second factor: `off`, `admins` or `all`. A policy
    /// covering the caller, who has no factor, is refused (409
    /// `tenancy.mfa_self_lockout`). Audited as
    /// `tenancy.settings.mfa_policy.changed` too.
    #[serde(default)]
    pub mfa_required: Option<MfaRequired>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub ip_allowlist: Option<Vec<IpNet>>,
    #[serde(default)]
    pub audit_retention_days: Option<i64>,
    #[serde(default)]
    pub api_key_rate_per_minute: Option<i64>,
    /// `true` keeps the API keys a user created when they reset their
    /// password; by default (`false`) a reset revokes them.
    #[serde(default)]
    pub keep_api_keys_on_password_reset: Option<bool>,
    /// How recent a password proof sensitive actions need, in minutes (1 to
    /// 60; default 5). An integer: `null`, a string or a fraction is 400
    /// `request.invalid_body`, a number out of range 400
    /// `tenancy.invalid_settings`; nothing is stored.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(minimum = 1, maximum = 60)]
    pub step_up_minutes: Option<i64>,
}

/// A field that may be left out but, when present, must hold a value:
/// `null` is refused rather than read as "unchanged".
fn not_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Changes settings. Audited with old and new values. An allowlist that
/// would shut out the caller's own address is refused. `audit_retention_days`
/// below the deployment's floor (`STOCKADE_AUDIT_RETENTION_MIN_DAYS`) is
/// refused with 422 `tenancy.retention_below_floor`; a shortening applies
/// only to events written after it (the event records the hold). An MFA
/// policy that would cover the caller, who has no second factor, is
/// refused (409 `tenancy.mfa_self_lockout`). `step_up_minutes` (1 to 60) is
/// how recent a password proof every sensitive action of the tenant needs;
/// a change applies from the next request of every session. Needs a recent
/// step-up itself.
#[utoipa::path(patch, path = "/v1/tenant/settings", tag = "tenancy", security(("bearer" = [])),
    request_body = SettingsPatch,
    responses((status = 200, body = TenantSettings), (status = 400, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem,
            description = "`rbac.forbidden`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)"),
        (status = 409, body = crate::http::Problem,
            description = "`tenancy.allowlist_lockout` or `tenancy.mfa_self_lockout`"),
        (status = 422, body = crate::http::Problem,
            description = "`tenancy.retention_below_floor`")))]
async fn patch_settings(
    State(state): State<TenancyState>,
    ClientIp(ip): ClientIp,
    p: Principal,
    ApiJson(patch): ApiJson<SettingsPatch>,
) -> Result<Json<TenantSettings>, ApiError> {
    p.require("settings:manage")?;
    // Security settings are a sensitive action: a recent password proof.
    p.require_step_up(state.clock.now())?;
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    let old = settings::load(&mut tx).await?;
    let mut new = old.clone();
    if let Some(v) = patch.password_policy {
        new.password_policy = v;
    }
    if let Some(v) = patch.session_idle_secs {
        new.session_idle_secs = v;
    }
    if let Some(v) = patch.session_absolute_secs {
        new.session_absolute_secs = v;
    }
    if let Some(v) = patch.mfa_required {
        // Never a policy that shuts its own author out: enrol first.
        let covers_me = stockade_core::mfa::policy::covers(v, &p.role, &p.permissions);
        if v != old.mfa_required && covers_me && !p.mfa_enabled {
            return Err(
                ApiError::new(StatusCode::CONFLICT, "tenancy.mfa_self_lockout").with_detail(
                    "this policy covers you and you have no second factor: enrol one first \
                     (POST /v1/auth/mfa/totp/setup)",
                ),
            );
        }
        new.mfa_required = v;
    }
    if let Some(v) = patch.ip_allowlist {
        new.ip_allowlist = settings::canonical_allowlist(v);
    }
    if let Some(v) = patch.audit_retention_days {
        let floor = state.config.audit_retention_min_days;
        // Out of 1..=3650 is malformed (400 below); in range but under the
        // floor is refused by this deployment's rule.
        if v != old.audit_retention_days && settings::RETENTION_RANGE.contains(&v) && v < floor {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "tenancy.retention_below_floor",
            )
            .with_detail(format!(
                "audit_retention_days must be at least {floor}, this deployment's floor"
            ))
            .with_errors(serde_json::json!({ "audit_retention_days": { "min": floor } })));
        }
        new.audit_retention_days = v;
    }
    if let Some(v) = patch.api_key_rate_per_minute {
        new.api_key_rate_per_minute = v;
    }
    if let Some(v) = patch.keep_api_keys_on_password_reset {
        new.keep_api_keys_on_password_reset = v;
    }
    if let Some(v) = patch.step_up_minutes {
        new.step_up_minutes = v;
    }
    new.validate()
        .map_err(|e| ApiError::bad_request("tenancy.invalid_settings", e))?;
    if !new.ip_allowed(ip) {
        let yours = match ip {
            ClientAddr::Known(ip) => format!("your current address {ip}"),
            ClientAddr::Unknown => {
                "your address, which is unknown (a proxy forwarded an unreadable X-Forwarded-For)"
                    .to_owned()
            }
        };
        return Err(
            ApiError::new(StatusCode::CONFLICT, "tenancy.allowlist_lockout").with_detail(format!(
                "the allowlist does not include {yours}: you would lock yourself out"
            )),
        );
    }
    let changes = diff(&old, &new);
    if changes.as_object().is_some_and(|m| m.is_empty()) {
        return Ok(Json(new));
    }
    settings::save(&mut tx, state.clock.as_ref(), &new)
        .await
        .map_err(|e| match e {
            settings::SettingsError::Invalid(m) => {
                ApiError::bad_request("tenancy.invalid_settings", m)
            }
            settings::SettingsError::Db(e) => e.into(),
        })?;
    let mut details = serde_json::json!({ "changes": changes });
    if new.audit_retention_days != old.audit_retention_days {
        // What was written keeps the retention it was written under.
        let floor = state.config.audit_retention_min_days;
        let hold = audit::retention_policy::record_change(
            &mut tx,
            state.clock.now(),
            old.audit_retention_days.max(floor),
            new.audit_retention_days.max(floor),
        )
        .await?;
        if let (Some(hold), Some(fields)) = (hold, details.as_object_mut()) {
            fields.insert("audit_retention_hold".to_owned(), serde_json::json!(hold));
        }
    }
    let mut events = vec![
        NewEvent::new(p.actor(), "tenancy.settings.updated")
            .target(Target::new("tenant", p.tenant_id))
            .details(details)
            .context(p.context.clone()),
    ];
    if new.mfa_required != old.mfa_required {
        events.push(
            NewEvent::new(p.actor(), "tenancy.settings.mfa_policy.changed")
                .target(Target::new("tenant", p.tenant_id))
                .details(serde_json::json!({
                    "old": old.mfa_required.as_str(),
                    "new": new.mfa_required.as_str(),
                }))
                .context(p.context.clone()),
        );
    }
    audit::append_many(&mut tx, state.clock.as_ref(), events)
        .await
        .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(Json(new))
}

/// `{field: {old, new}}` for every field that changed.
fn diff(old: &TenantSettings, new: &TenantSettings) -> serde_json::Value {
    let (old, new) = (
        serde_json::to_value(old).unwrap_or_default(),
        serde_json::to_value(new).unwrap_or_default(),
    );
    let mut out = serde_json::Map::new();
    if let (Some(o), Some(n)) = (old.as_object(), new.as_object()) {
        for (k, nv) in n {
            let ov = o.get(k).cloned().unwrap_or_default();
            if &ov != nv {
                out.insert(k.clone(), serde_json::json!({ "old": ov, "new": nv }));
            }
        }
    }
    serde_json::Value::Object(out)
}
