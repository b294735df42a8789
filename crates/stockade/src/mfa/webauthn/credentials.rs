//! The caller's own WebAuthn credentials: the list (name, kind, created,
//! last used — never the key or counter) and removal (step-up; another
//! user's credential is 404 like a missing one). Removing the last factor
//! also drops the recovery codes (`mfa::store::refresh_enrolled`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::store;
use crate::audit::{NewEvent, Target};
use crate::http::{ApiError, Principal};
use crate::mfa::MfaState;
use crate::mfa::store as factors;
use crate::platform::operation;

/// One credential as listed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CredentialView {
    pub id: Uuid,
    pub name: String,
    /// `hwk` (security key) or `swk` (platform passkey).
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CredentialList {
    pub credentials: Vec<CredentialView>,
}

/// The caller's credentials, oldest first.
#[utoipa::path(get, path = "/v1/auth/webauthn/credentials", tag = "mfa",
    security(("bearer" = [])),
    responses((status = 200, body = CredentialList)))]
pub async fn list(
    State(state): State<MfaState>,
    p: Principal,
) -> Result<Json<CredentialList>, ApiError> {
    let rows = {
        let mut tx = state.db.global_read().await?;
        store::of_user(&mut tx, p.user_id).await?
    };
    Ok(Json(CredentialList {
        credentials: rows
            .into_iter()
            .map(|r| CredentialView {
                id: r.id,
                name: r.name,
                kind: r.kind,
                created_at: r.created_at,
                last_used_at: r.last_used_at,
            })
            .collect(),
    }))
}

/// Removes one of the caller's credentials. Needs a recent step-up.
#[utoipa::path(delete, path = "/v1/auth/webauthn/credentials/{id}", tag = "mfa",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the credential's id from the list")),
    responses((status = 204),
        (status = 403, body = crate::http::Problem,
            description = "`auth.step_up_required` or `platform.impersonation_forbidden`"),
        (status = 404, body = crate::http::Problem,
            description = "no such credential of the caller")))]
pub async fn remove(
    State(state): State<MfaState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // Not a UUID: no such credential (a problem+json 404, not axum's text).
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found())?;
    p.forbid_impersonation(&state, operation::MFA_CHANGE)
        .await?;
    p.require_step_up(state.clock.now())?;
    let mut tx = state.db.global_tx().await?;
    if !store::delete(&mut tx, p.user_id, id).await? {
        return Err(ApiError::not_found());
    }
    let still = factors::refresh_enrolled(&mut tx, p.user_id).await?;
    tx.commit().await?;
    let event = NewEvent::new(p.actor(), "auth.mfa.webauthn.removed")
        .target(Target::new("webauthn_credential", id))
        .details(serde_json::json!({ "mfa_enabled": still }));
    crate::mfa::audit_here(&state, &p, vec![event]).await?;
    Ok(StatusCode::NO_CONTENT)
}
