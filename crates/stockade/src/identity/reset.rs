//! Password reset: a single-use token (256 bits, stored as SHA-256, valid 30
//! minutes) sent through the email outbox. The request always answers 202,
//! whether or not the address has an account.

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::Email;
use super::IdentityState;
use super::password_gate::{check_policy, limit_ip, policies_for};
use super::store as users;
use crate::audit::{self, Actor, NewEvent, Target};
use crate::crypto::random;
use crate::db::UserTx;
use crate::email::{self, Message};
use crate::http::AuthState;
use crate::http::client_ip::ClientIp;
use crate::http::{ApiError, ApiJson, AuditContext};
use crate::ids::{TenantId, UserId};
use crate::sessions;

pub const RESET_TTL: Duration = Duration::minutes(30);

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub email: String,
    /// The page of your application that completes the reset: the emailed
    /// link is this URL with `#token=…`. Must be under the public URL or
    /// `STOCKADE_REDIRECT_ALLOWLIST` (400 `http.redirect_not_allowed`
    /// otherwise, whatever the address); default
    /// `<public URL>/reset-password`.
    #[serde(default)]
    pub redirect_to: Option<String>,
}

/// Starts a reset. Always 202: the answer says nothing about the address.
#[utoipa::path(post, path = "/v1/auth/password-reset/request", tag = "auth",
    request_body = ResetRequest, responses((status = 202),
        (status = 400, description = "`http.redirect_not_allowed`: `redirect_to` is not an allowed destination", body = crate::http::Problem),
        (status = 429, body = crate::http::Problem)))]
pub(crate) async fn request(
    State(state): State<IdentityState>,
    ip: ClientIp,
    AuditContext(context): AuditContext,
    ApiJson(req): ApiJson<ResetRequest>,
) -> Result<StatusCode, ApiError> {
    limit_ip(&state, &state.login_limiter, ip, &context).await?;
    // Judged before the address is looked at: the answer is the same for
    // every address.
    let page = match &req.redirect_to {
        Some(target) => Some(crate::http::redirect::allowed_target(
            &state.config,
            target,
        )?),
        None => None,
    };
    let Ok(email) = Email::parse(&req.email) else {
        return Ok(StatusCode::ACCEPTED);
    };
    let Some(user) = users::find_auth_user(&state.db, email.key()).await? else {
        return Ok(StatusCode::ACCEPTED);
    };
    if user.status != "active" {
        return Ok(StatusCode::ACCEPTED);
    }
    let secret = random::secret_bytes::<32>().map_err(ApiError::internal)?;
    let token = zeroize::Zeroizing::new(B64URL.encode(secret.as_slice()));
    let now = state.clock.now();
    let link = zeroize::Zeroizing::new(match &page {
        Some(page) => crate::http::redirect::token_link(page, "token", token.as_str()),
        None => format!("{}/reset-password#token={}", state.issuer, token.as_str()),
    });
    let body = zeroize::Zeroizing::new(format!(
        "Someone asked to reset the password of your account.\n\n\
         To choose a new password, open this link within 30 minutes:\n{}\n\n\
         If it was not you, ignore this message: your password is unchanged.",
        link.as_str()
    ));
    let mut tx = state.db.global_tx().await?;
    tx.execute(
        "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4)",
        vec![
            token_hash(token.as_bytes()).into(),
            user.id.into(),
            now.into(),
            (now + RESET_TTL).into(),
        ],
    )
    .await?;
    email::enqueue(
        &mut tx,
        state.clock.as_ref(),
        &state.master(),
        &Message {
            to: &user.email,
            kind: "password_reset",
            subject: "Reset your password",
            body: &body,
        },
        state.config.is_production(),
    )
    .await
    .map_err(ApiError::internal)?;
    let tx = tx.for_user(user.id).await?;
    audit_in_tenants(tx, &state, "auth.password.reset_requested", &context).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    #[schema(value_type = String, format = Password)]
    pub token: SecretString,
    #[schema(value_type = String, format = Password)]
    pub new_password: SecretString,
}

/// Completes a reset: sets the password, signs out every session, kills
/// every other reset link of the user and revokes the API keys they created
/// (unless a tenant keeps them: `keep_api_keys_on_password_reset`); the user
/// gets a notice naming the keys.
#[utoipa::path(post, path = "/v1/auth/password-reset/confirm", tag = "auth",
    request_body = ResetConfirm,
    responses((status = 204), (status = 400, body = crate::http::Problem)))]
pub(crate) async fn confirm(
    State(state): State<IdentityState>,
    ip: ClientIp,
    AuditContext(context): AuditContext,
    ApiJson(req): ApiJson<ResetConfirm>,
) -> Result<StatusCode, ApiError> {
    limit_ip(&state, &state.login_limiter, ip, &context).await?;
    let invalid = || {
        ApiError::bad_request(
            "auth.invalid_reset_token",
            "the reset link is invalid, used or expired",
        )
    };
    let token = req.token.expose_secret();
    if token.len() != 43 {
        return Err(invalid());
    }
    let hash = token_hash(token.as_bytes());
    let now = state.clock.now();
    let row: Option<(UserId, DateTime<Utc>, Option<DateTime<Utc>>)> = state
        .db
        .global_read()
        .await?
        .fetch_optional(
            "SELECT user_id, expires_at, used_at FROM password_resets WHERE token_hash = $1",
            vec![hash.into()],
        )
        .await?;
    let Some((user_id, expires_at, None)) = row else {
        return Err(invalid());
    };
    if expires_at <= now {
        return Err(invalid());
    }
    let user = users::find_auth_user_by_id(&state.db, user_id)
        .await?
        .ok_or_else(invalid)?;
    let policies = policies_for(&state.db, user_id).await?;
    check_policy(&policies, &req.new_password, &[&user.email, &user.name])?;
    let new_hash = state
        .hasher
        .hash(req.new_password)
        .await
        .map_err(ApiError::internal)?;
    let mut tx = state.db.global_tx().await?;
    // The user's row first: it orders concurrent confirmations (of any of
    // the user's links) and password changes, so the claim below sees
    // whatever an earlier one did.
    users::set_password_hash(&mut tx, user_id, &new_hash, now).await?;
    // Claim the token: of two concurrent confirmations, one wins.
    let claimed = tx
        .execute(
            "UPDATE password_resets SET used_at = $2 \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
            vec![hash.into(), now.into()],
        )
        .await?;
    if claimed == 0 {
        return Err(invalid());
    }
    // Every other link of the user dies with this one.
    super::reset_effects::invalidate_reset_links(&mut tx, user_id, now).await?;
    // The link was only ever emailed to the address: using it proves it.
    let verified = users::mark_email_verified(&mut tx, user_id, now).await?;
    let mut tx = tx.for_user(user_id).await?;
    sessions::revoke_all_for_user(&mut tx, None, "password_reset", now).await?;
    super::reset_effects::complete_reset(tx, &state, &user.email, verified, &context).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn token_hash(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Writes `action` into the audit log of every tenant of the transaction's
/// user, then commits: the events land atomically with the change.
async fn audit_in_tenants(
    mut tx: UserTx,
    state: &AuthState,
    action: &str,
    context: &crate::audit::RequestContext,
) -> Result<(), ApiError> {
    let user = tx.user();
    let tenants: Vec<TenantId> = users::memberships_in(&mut tx)
        .await?
        .into_iter()
        .map(|m| m.tenant_id)
        .collect();
    let Some((first, rest)) = tenants.split_first() else {
        tx.commit().await?;
        return Ok(());
    };
    let mut ttx = tx.scoped(*first).await?;
    for tenant in std::iter::once(first).chain(rest) {
        ttx = ttx.rescope(*tenant).await?;
        audit::append(
            &mut ttx,
            state.clock.as_ref(),
            NewEvent::new(
                Actor::User {
                    id: user,
                    impersonator: None,
                },
                action,
            )
            .target(Target::new("user", user))
            .context(context.clone()),
        )
        .await
        .map_err(ApiError::internal)?;
    }
    ttx.commit().await?;
    Ok(())
}
