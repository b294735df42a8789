//! Multi-factor sign-in (SPEC §2.4, `docs/mfa.md`): TOTP (`totp.rs`),
//! recovery codes (`recovery.rs`), WebAuthn (`webauthn/`), the second step
//! of a sign-in (`challenge.rs`: the `mfa_token`; `signin.rs`:
//! `POST /v1/auth/mfa` and the factor check step-up shares), the rows
//! (`store.rs`), and what an unenrolled member the tenant's policy covers
//! may still do (`gate.rs`). The pure rules (codes, windows, `amr`, the
//! policy's coverage) are `stockade_core::mfa`.

pub mod challenge;
pub mod gate;
pub mod recovery;
pub mod signin;
mod state;
pub mod step_up;
pub mod store;
pub mod totp;
pub mod webauthn;

use axum::Router;
use axum::routing::post;

use crate::audit::{self, NewEvent};
use crate::http::{ApiError, AuthState, Principal};
pub use state::MfaState;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        totp::setup,
        totp::confirm,
        totp::remove,
        recovery::regenerate,
        signin::complete,
        webauthn::register::begin,
        webauthn::register::finish,
        webauthn::credentials::list,
        webauthn::credentials::remove,
        webauthn::login::begin,
        webauthn::login::finish,
        webauthn::login::reauth_begin
    ),
    components(schemas(
        totp::TotpSetup,
        totp::ConfirmTotp,
        totp::TotpConfirmed,
        recovery::RecoveryCodes,
        signin::CompleteMfa,
        challenge::MfaRequiredResponse,
        webauthn::register::RegistrationBegun,
        webauthn::register::FinishRegistration,
        webauthn::register::RegisteredCredential,
        webauthn::credentials::CredentialView,
        webauthn::credentials::CredentialList,
        webauthn::login::BeginLogin,
        webauthn::login::LoginBegun,
        webauthn::login::FinishLogin
    ))
)]
pub struct MfaApi;

pub fn routes() -> Router<MfaState> {
    Router::new()
        .route("/v1/auth/mfa", post(signin::complete))
        .route("/v1/auth/mfa/totp/setup", post(totp::setup))
        .route("/v1/auth/mfa/totp/confirm", post(totp::confirm))
        .route("/v1/auth/mfa/totp", axum::routing::delete(totp::remove))
        .route("/v1/auth/mfa/recovery-codes", post(recovery::regenerate))
        .merge(webauthn::routes())
}

/// Appends `events` to the caller's tenant, with the request's context.
pub(crate) async fn audit_here(
    state: &AuthState,
    p: &Principal,
    events: Vec<NewEvent>,
) -> Result<(), ApiError> {
    let events = events
        .into_iter()
        .map(|e| e.context(p.context.clone()))
        .collect();
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    audit::append_many(&mut tx, state.clock.as_ref(), events)
        .await
        .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(())
}
