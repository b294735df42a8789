//! The second step of a sign-in. When the user has a confirmed factor, a
//! right password (or a sign-in link) answers `{mfa_required: true,
//! mfa_token, methods}` and issues no session; `POST /v1/auth/mfa`
//! completes it with a factor. The token is 256 random bits, stored only as
//! SHA-256, lives [`TTL`], is single-use, and is bound to the user, the
//! tenant and the client address it was issued to. After
//! [`MAX_FAILURES`] wrong factors it is burned; every wrong factor also
//! counts toward the account's lockout, like a wrong password. Expired
//! steps are deleted whenever a new one is opened.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use stockade_core::mfa::amr::Amr;

use super::MfaState;
use crate::audit::{self, Actor, NewEvent, Outcome, RequestContext};
use crate::crypto::random;
use crate::http::client_ip::ClientAddr;
use crate::http::{ApiError, AuthState};
use crate::ids::{TenantId, UserId};
use crate::tenancy::allowlist::Pathway;

/// How long an `mfa_token` lives.
pub const TTL: Duration = Duration::minutes(5);
/// Wrong factors one token takes before it is burned.
pub const MAX_FAILURES: i64 = 5;

/// The answer of a right first factor when a second one is needed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MfaRequiredResponse {
    /// Always `true`.
    pub mfa_required: bool,
    /// Single-use; send it to `POST /v1/auth/mfa` within `expires_in`
    /// seconds, from the same address.
    pub mfa_token: String,
    /// The factors the user has: `totp`, `webauthn`, `recovery_code`.
    pub methods: Vec<&'static str>,
    pub expires_in: i64,
}

/// 401 `auth.mfa_token_invalid`: one answer for unknown, expired, spent,
/// burned, or presented from another address.
pub fn invalid_token() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "auth.mfa_token_invalid")
        .with_detail("the sign-in step is unknown, expired or already used: sign in again")
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The factors `user` can complete a sign-in with.
pub(crate) async fn methods_of(
    state: &AuthState,
    user: UserId,
) -> Result<Vec<&'static str>, ApiError> {
    let mut tx = state.db.global_read().await?;
    let mut methods = Vec::new();
    if super::store::totp_of(&mut tx, user)
        .await?
        .is_some_and(|t| t.confirmed_at.is_some())
    {
        methods.push("totp");
    }
    if super::store::has_webauthn(&mut tx, user).await? {
        methods.push("webauthn");
    }
    if super::store::recovery_codes_left(&mut tx, user).await? > 0 {
        methods.push("recovery_code");
    }
    Ok(methods)
}

/// Stores a new open step and answers its token (the response and the
/// audit event are [`issue`]'s; the load benchmark calls this alone).
pub(crate) async fn create(
    state: &AuthState,
    user: UserId,
    tenant: TenantId,
    first: Amr,
    client: ClientAddr,
) -> Result<String, ApiError> {
    let token = B64URL.encode(random::secret_bytes::<32>().map_err(ApiError::internal)?);
    let now = state.clock.now();
    let mut tx = state.db.global_tx().await?;
    // Steps that can no longer be used go as new ones are opened, so the
    // table holds at most five minutes of sign-ins.
    tx.execute(
        "DELETE FROM mfa_challenges WHERE expires_at < $1",
        vec![now.into()],
    )
    .await?;
    tx.execute(
        "INSERT INTO mfa_challenges (token_hash, user_id, target_tenant, ip, first_factor, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vec![
            hash(&token).into(),
            user.into(),
            tenant.into(),
            client.to_string().into(),
            first.as_str().into(),
            now.into(),
            (now + TTL).into(),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(token)
}

/// Opens the second step of a sign-in of `user` into `tenant` after
/// `first` succeeded, and answers 200 [`MfaRequiredResponse`].
pub(crate) async fn issue(
    state: &AuthState,
    user: UserId,
    tenant: TenantId,
    first: Amr,
    client: ClientAddr,
    context: &RequestContext,
) -> Result<Response, ApiError> {
    let token = create(state, user, tenant, first, client).await?;
    let methods = methods_of(state, user).await?;
    let event = NewEvent::new(
        Actor::User {
            id: user,
            impersonator: None,
        },
        "auth.mfa.challenged",
    )
    .details(serde_json::json!({ "first_factor": first.as_str(), "methods": methods }))
    .context(context.clone());
    let mut tx = state.db.tenant_tx(tenant).await?;
    audit::append(&mut tx, state.clock.as_ref(), event)
        .await
        .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok((
        StatusCode::OK,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(MfaRequiredResponse {
            mfa_required: true,
            mfa_token: token,
            methods,
            expires_in: TTL.num_seconds(),
        }),
    )
        .into_response())
}

/// An open second step.
#[derive(Debug, Clone)]
pub struct Pending {
    hash: [u8; 32],
    pub user: UserId,
    pub tenant: TenantId,
    pub first: Amr,
}

impl Pending {
    /// The SHA-256 of the step's `mfa_token`: what a WebAuthn ceremony
    /// answering this step is bound to.
    pub(crate) fn token_hash(&self) -> [u8; 32] {
        self.hash
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    user_id: UserId,
    target_tenant: TenantId,
    ip: Option<String>,
    first_factor: String,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
}

/// The open step `token` names, presented from `client`; 401
/// [`invalid_token`] otherwise. Changes nothing.
pub(crate) async fn open(
    state: &AuthState,
    token: &str,
    client: ClientAddr,
) -> Result<Pending, ApiError> {
    if token.len() != 43 || B64URL.decode(token).is_err() {
        return Err(invalid_token());
    }
    let hash = hash(token);
    let row: Option<Row> = state
        .db
        .global_read()
        .await?
        .fetch_optional(
            "SELECT user_id, target_tenant, ip, first_factor, expires_at, used_at \
             FROM mfa_challenges WHERE token_hash = $1",
            vec![hash.into()],
        )
        .await?;
    let now = state.clock.now();
    let row = row.ok_or_else(invalid_token)?;
    let same_client = row.ip.as_deref() == Some(client.to_string().as_str());
    if row.used_at.is_some() || now >= row.expires_at || !same_client {
        return Err(invalid_token());
    }
    Ok(Pending {
        hash,
        user: row.user_id,
        tenant: row.target_tenant,
        first: Amr::parse(&row.first_factor).ok_or_else(invalid_token)?,
    })
}

/// Counts a wrong factor on `pending`: the token burns after
/// [`MAX_FAILURES`], the account's lockout counts it, and
/// `auth.mfa.failed` is written in the tenant's log.
pub(crate) async fn fail(
    state: &AuthState,
    pending: &Pending,
    method: &str,
    reason: &str,
    context: &RequestContext,
) -> Result<(), ApiError> {
    let now = state.clock.now();
    let mut tx = state.db.global_tx().await?;
    tx.execute(
        "UPDATE mfa_challenges SET failures = failures + 1, \
         used_at = CASE WHEN failures + 1 >= $2 THEN $3 ELSE used_at END \
         WHERE token_hash = $1",
        vec![pending.hash.into(), MAX_FAILURES.into(), now.into()],
    )
    .await?;
    tx.commit().await?;
    let event = NewEvent::new(
        Actor::User {
            id: pending.user,
            impersonator: None,
        },
        "auth.mfa.failed",
    )
    .outcome(Outcome::Failure)
    .details(serde_json::json!({ "method": method, "reason": reason }));
    crate::identity::count_factor_failure(state, pending.user, pending.tenant, event, context).await
}

/// Completes the sign-in of `pending` with `method`: spends the token (of
/// two requests racing with one token, one wins), clears the account's
/// failure count, starts the session (`amr`: the first factor and
/// `method`) and writes `auth.mfa.succeeded` and `auth.login.succeeded`.
pub(crate) async fn complete(
    state: &MfaState,
    pending: Pending,
    method: Amr,
    client: ClientAddr,
    context: &RequestContext,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let mut tx = state.db.global_tx().await?;
    let spent = tx
        .execute(
            "UPDATE mfa_challenges SET used_at = $2 \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
            vec![pending.hash.into(), now.into()],
        )
        .await?;
    tx.commit().await?;
    if spent != 1 {
        return Err(invalid_token());
    }
    crate::identity::clear_failures(state, pending.user).await?;
    let actor = Actor::User {
        id: pending.user,
        impersonator: None,
    };
    let succeeded = NewEvent::new(actor, "auth.mfa.succeeded")
        .details(serde_json::json!({ "method": method.as_str() }));
    let pathway = match pending.first {
        Amr::Email => Pathway::SignInLink,
        _ => Pathway::Login,
    };
    let amr = [pending.first, method];
    let sign_in = crate::sessions::SignIn {
        user: pending.user,
        tenant: pending.tenant,
        action: "auth.login.succeeded",
        context,
        proved: true,
        amr: &amr,
        entry: (pathway, client),
    };
    crate::sessions::start(state, &state.session_policy, sign_in, vec![succeeded]).await
}
