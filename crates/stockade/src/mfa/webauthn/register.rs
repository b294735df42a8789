//! Registering a passkey or security key: `begin` answers the creation
//! options (the user handle is the user's id; the user's credentials are
//! excluded; a discoverable credential is asked for, so it can later sign
//! in without a password) and opens a ceremony bound to the user;
//! `finish` verifies the authenticator's response against it and stores
//! the credential. Both need a recent step-up, are refused under
//! impersonation and to API keys (`/v1/auth` is closed to them). The
//! user's first factor also creates their recovery codes, returned once.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stockade_core::mfa::webauthn as rules;
use uuid::Uuid;
use webauthn_rs::prelude::{
    CreationChallengeResponse, PasskeyRegistration, RegisterPublicKeyCredential,
};
use webauthn_rs_proto::ResidentKeyRequirement;

use super::ceremony::{self, Find, Kind};
use super::store;
use crate::audit::{NewEvent, Target};
use crate::http::{ApiError, ApiJson, Principal};
use crate::mfa::MfaState;
use crate::mfa::store as factors;
use crate::platform::operation;

/// The options for `navigator.credentials.create()` and the ceremony to
/// answer with.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RegistrationBegun {
    pub ceremony_id: Uuid,
    /// `{publicKey: PublicKeyCredentialCreationOptions}`, binary fields in
    /// base64url.
    #[schema(value_type = Object)]
    pub options: CreationChallengeResponse,
    /// Seconds the ceremony stays open.
    pub expires_in: i64,
}

/// Starts registering a credential. Needs a recent step-up.
#[utoipa::path(post, path = "/v1/auth/webauthn/register/begin", tag = "mfa",
    security(("bearer" = [])),
    responses((status = 200, body = RegistrationBegun),
        (status = 403, body = crate::http::Problem,
            description = "`auth.step_up_required` or `platform.impersonation_forbidden`"),
        (status = 503, body = crate::http::Problem,
            description = "`auth.webauthn_unavailable`: the public URL is no domain")))]
pub async fn begin(
    State(state): State<MfaState>,
    p: Principal,
) -> Result<Json<RegistrationBegun>, ApiError> {
    p.forbid_impersonation(&state, operation::MFA_CHANGE)
        .await?;
    p.require_step_up(state.clock.now())?;
    let user = crate::identity::find_user(&state.db, p.user_id)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let existing = {
        let mut tx = state.db.global_read().await?;
        store::of_user(&mut tx, p.user_id).await?
    };
    let exclude = existing
        .iter()
        .map(|c| c.passkey().map(|k| k.cred_id().clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let wa = super::relying_party(&state.config)?;
    let (mut options, registration) = wa
        .start_passkey_registration(p.user_id.0, &user.email, &user.name, Some(exclude))
        .map_err(ApiError::internal)?;
    // Discoverable when the authenticator can (browsers treat "preferred"
    // as "required" where possible); a security key without room still
    // registers, as a second factor only.
    if let Some(sel) = options.public_key.authenticator_selection.as_mut() {
        sel.resident_key = Some(ResidentKeyRequirement::Preferred);
    }
    let ceremony_id =
        ceremony::open(&state, Kind::Register, Some(p.user_id), None, &registration).await?;
    Ok(Json(RegistrationBegun {
        ceremony_id,
        options,
        expires_in: rules::CEREMONY_TTL_SECS,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishRegistration {
    pub ceremony_id: Uuid,
    /// Shown in the list: 1 to 64 characters, no control or invisible
    /// characters.
    pub name: String,
    /// The `PublicKeyCredential` from `navigator.credentials.create()`,
    /// as JSON (binary fields in base64url).
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

/// A registered credential.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RegisteredCredential {
    pub id: Uuid,
    pub name: String,
    /// `hwk` (a security key, cross-platform) or `swk` (a platform passkey).
    pub kind: String,
    pub created_at: DateTime<Utc>,
    /// Ten single-use recovery codes, shown this once, when this is the
    /// user's first factor; otherwise absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
}

/// 400 `mfa.webauthn_name_invalid`.
fn bad_name(e: rules::NameError) -> ApiError {
    ApiError::bad_request("mfa.webauthn_name_invalid", e.to_string())
}

/// The attachment and transports the client reported (unsigned).
fn reported_kind(credential: &serde_json::Value) -> &'static str {
    let attachment = credential
        .get("authenticatorAttachment")
        .and_then(|v| v.as_str());
    let transports: Vec<&str> = credential
        .get("response")
        .and_then(|r| r.get("transports"))
        .and_then(|t| t.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    rules::kind_of(attachment, &transports).as_str()
}

/// Verifies the authenticator's response and stores the credential.
#[utoipa::path(post, path = "/v1/auth/webauthn/register/finish", tag = "mfa",
    security(("bearer" = [])), request_body = FinishRegistration,
    responses((status = 201, body = RegisteredCredential),
        (status = 400, body = crate::http::Problem,
            description = "`mfa.webauthn_name_invalid`, `auth.webauthn_malformed`, \
                `auth.webauthn_ceremony_invalid` (unknown, expired, used or another user's), \
                `auth.webauthn_invalid` (does not verify: challenge, origin, attestation)"),
        (status = 403, body = crate::http::Problem,
            description = "`auth.step_up_required` or `platform.impersonation_forbidden`"),
        (status = 409, body = crate::http::Problem,
            description = "`mfa.webauthn_credential_exists`"),
        (status = 413, body = crate::http::Problem, description = "`auth.webauthn_too_large`")))]
pub async fn finish(
    State(state): State<MfaState>,
    p: Principal,
    ApiJson(req): ApiJson<FinishRegistration>,
) -> Result<
    (
        StatusCode,
        [(axum::http::HeaderName, &'static str); 1],
        Json<RegisteredCredential>,
    ),
    ApiError,
> {
    p.forbid_impersonation(&state, operation::MFA_CHANGE)
        .await?;
    p.require_step_up(state.clock.now())?;
    let name = rules::credential_name(&req.name).map_err(bad_name)?;
    let response: RegisterPublicKeyCredential = super::parse(&req.credential)?;
    let kind = reported_kind(&req.credential);
    let discoverable = response
        .extensions
        .cred_props
        .as_ref()
        .is_some_and(|c| c.rk == Some(true));
    let registration: PasskeyRegistration = ceremony::take(
        &state,
        Kind::Register,
        Find::Id(req.ceremony_id, Some(p.user_id)),
    )
    .await?;
    let wa = super::relying_party(&state.config)?;
    let passkey = wa
        .finish_passkey_registration(&response, &registration)
        .map_err(|_| super::invalid())?;
    let passkey_json = serde_json::to_string(&passkey).map_err(ApiError::internal)?;
    // Before the transaction: the key may be created in one of its own.
    let recovery_key = crate::mfa::recovery::key(&state).await?;
    let now = state.clock.now();
    let id = Uuid::now_v7();
    let mut tx = state.db.global_tx().await?;
    // The first factor: no confirmed TOTP, no credential before this one.
    let first = !factors::refresh_enrolled(&mut tx, p.user_id).await?;
    let stored = store::insert(
        &mut tx,
        store::NewCredential {
            id,
            user: p.user_id,
            credential_id: passkey.cred_id().as_slice(),
            name: &name,
            passkey: &passkey_json,
            kind,
            discoverable,
            now,
        },
    )
    .await?;
    if !stored {
        return Err(
            ApiError::new(StatusCode::CONFLICT, "mfa.webauthn_credential_exists")
                .with_detail("this credential is registered already"),
        );
    }
    factors::refresh_enrolled(&mut tx, p.user_id).await?;
    let recovery_codes = match first {
        true => {
            Some(crate::mfa::recovery::replace(&state, &mut tx, &recovery_key, p.user_id).await?)
        }
        false => None,
    };
    tx.commit().await?;
    let mut events = vec![
        NewEvent::new(p.actor(), "auth.mfa.webauthn.registered")
            .target(Target::new("webauthn_credential", id))
            .details(
                serde_json::json!({ "name": name, "kind": kind, "discoverable": discoverable }),
            ),
    ];
    if first {
        events.push(
            NewEvent::new(p.actor(), "auth.mfa.recovery_codes.regenerated")
                .target(Target::new("user", p.user_id))
                .details(serde_json::json!({ "count": stockade_core::mfa::recovery::COUNT })),
        );
    }
    crate::mfa::audit_here(&state, &p, events).await?;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(RegisteredCredential {
            id,
            name,
            kind: kind.to_owned(),
            created_at: now,
            recovery_codes: recovery_codes
                .map(|codes| codes.iter().map(|c| c.to_string()).collect()),
        }),
    ))
}
