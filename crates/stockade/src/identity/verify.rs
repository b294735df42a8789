//! Email verification before the first sign-in (SPEC §2.13; issue #17
//! items 2 and 8).
//!
//! A sign-up, or a new account accepting an invitation, creates nothing at
//! first: it stores what the account will be (name, password hash, the ids
//! it will get, its tenant or invitation) beside a single-use link — 256
//! random bits, stored only as SHA-256, valid 30 minutes — and queues that
//! link to the address. `POST /v1/auth/verify-email {token, password}` then
//! creates the account with `email_verified_at` set, in the same
//! transaction as the link's use, and signs it in. The password chosen at
//! sign-up is asked again: the link alone (the mailbox) does not complete
//! someone else's sign-up, so whoever signs up with another person's
//! address cannot get that person to create an account whose password the
//! attacker knows by clicking a link they did not ask for. An address that already has an account gets
//! the same answer as a new one, and its owner an email instead
//! ([`notify_existing`]): the answer never tells whether an address is
//! registered, and a registered address can never be handed tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::Email;
use super::IdentityState;
use super::password::Verification;
use super::password_gate::limit_ip;
use crate::crypto::random;
use crate::db::GlobalTx;
use crate::email::{self, Message};
use crate::http::AuthState;
use crate::http::client_ip::ClientIp;
use crate::http::{ApiError, ApiJson, AuditContext};
use crate::ids::{TenantId, UserId};

/// How long a verification link stays valid.
pub const VERIFICATION_TTL: Duration = Duration::minutes(30);

/// Characters of a verification token: 32 random bytes, base64url.
const TOKEN_LEN: usize = 43;

/// What the verified account will join.
pub(crate) enum Purpose<'a> {
    /// A new tenant, which the account will own.
    Signup { slug: &'a str, name: &'a str },
    /// The tenant's invitation, which the account will accept.
    Invitation { invitation: Uuid },
}

/// An account waiting for its verification link.
pub(crate) struct NewPending<'a> {
    pub purpose: Purpose<'a>,
    pub email: &'a Email,
    pub name: &'a str,
    pub password_hash: &'a str,
    pub user_id: UserId,
    /// Signup: the id the tenant will get; invitation: the inviting tenant.
    pub tenant_id: TenantId,
    /// Names the tenant in the email.
    pub tenant_label: &'a str,
}

/// A stored pending account (not `Debug`: it holds a password hash).
#[derive(sqlx::FromRow)]
pub(crate) struct Pending {
    pub token_hash: Vec<u8>,
    pub purpose: String,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub user_id: UserId,
    pub target_tenant_id: TenantId,
    pub tenant_slug: Option<String>,
    pub tenant_name: Option<String>,
    pub invitation_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
}

/// Stores `new` and queues its verification link to its address, inside
/// `tx`. Returns when the link expires.
pub(crate) async fn issue(
    tx: &mut GlobalTx,
    state: &AuthState,
    new: &NewPending<'_>,
) -> Result<DateTime<Utc>, ApiError> {
    let secret = random::secret_bytes::<32>().map_err(ApiError::internal)?;
    let token = Zeroizing::new(B64URL.encode(secret.as_slice()));
    let now = state.clock.now();
    let expires_at = now + VERIFICATION_TTL;
    sweep(tx, now).await?;
    let (purpose, slug, tenant_name, invitation) = match new.purpose {
        Purpose::Signup { slug, name } => ("signup", Some(slug), Some(name), None),
        Purpose::Invitation { invitation } => ("invitation", None, None, Some(invitation)),
    };
    tx.execute(
        "INSERT INTO email_verifications (token_hash, purpose, email, email_key, name, \
         password_hash, user_id, target_tenant_id, tenant_slug, tenant_name, invitation_id, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        vec![
            token_hash(token.as_bytes()).into(),
            purpose.into(),
            new.email.as_str().into(),
            new.email.key().into(),
            new.name.into(),
            new.password_hash.into(),
            new.user_id.into(),
            new.tenant_id.into(),
            slug.into(),
            tenant_name.into(),
            invitation.into(),
            now.into(),
            expires_at.into(),
        ],
    )
    .await?;
    let what = match new.purpose {
        Purpose::Signup { .. } => {
            format!("create your account and the workspace {}", new.tenant_label)
        }
        Purpose::Invitation { .. } => format!("create your account and join {}", new.tenant_label),
    };
    let body = Zeroizing::new(format!(
        "To confirm this address and {what}, open this link within 30 minutes and enter \
         the password you chose:\n\
         {}/verify-email#token={}\n\n\
         If you did not ask for this, ignore this message: nothing is created.",
        state.issuer,
        token.as_str()
    ));
    enqueue(
        tx,
        state,
        new.email.as_str(),
        "verification",
        "Confirm your email address",
        &body,
    )
    .await?;
    Ok(expires_at)
}

/// Deletes the links that can no longer be used, with the password hashes
/// they hold (every sign-up answer and every use of a link does it: both
/// kinds of answer do the same work, and nothing lingers long).
async fn sweep(tx: &mut GlobalTx, now: DateTime<Utc>) -> Result<(), ApiError> {
    tx.execute(
        "DELETE FROM email_verifications WHERE expires_at < $1",
        vec![now.into()],
    )
    .await?;
    Ok(())
}

/// Tells the owner of an existing account that someone tried to create
/// another one with their address (the answer to that request is the one a
/// new address gets).
pub(crate) async fn notify_existing(
    tx: &mut GlobalTx,
    state: &AuthState,
    to: &str,
    attempt: &str,
) -> Result<(), ApiError> {
    sweep(tx, state.clock.now()).await?;
    let body = format!(
        "Someone tried to {attempt} with this address, which already has an account.\n\n\
         If it was you: sign in with your password ({}/login), or reset it if you forgot \
         it. No second account was created.\n\n\
         If it was not you, ignore this message: nothing changed.",
        state.issuer
    );
    enqueue(
        tx,
        state,
        to,
        "account_exists",
        "You already have an account",
        &body,
    )
    .await
}

async fn enqueue(
    tx: &mut GlobalTx,
    state: &AuthState,
    to: &str,
    kind: &str,
    subject: &str,
    body: &str,
) -> Result<(), ApiError> {
    email::enqueue(
        tx,
        state.clock.as_ref(),
        &state.master(),
        &Message {
            to,
            kind,
            subject,
            body,
        },
        state.config.is_production(),
    )
    .await
    .map_err(ApiError::internal)?;
    Ok(())
}

/// Uses the link up, in the transaction that creates the account: its row
/// (address, name, password hash) is deleted, so of two concurrent uses one
/// wins. `false`: used (or expired) already.
pub(crate) async fn claim(
    tx: &mut GlobalTx,
    pending: &Pending,
    now: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let n = tx
        .execute(
            "DELETE FROM email_verifications WHERE token_hash = $1 AND expires_at > $2",
            vec![pending.token_hash.clone().into(), now.into()],
        )
        .await?;
    sweep(tx, now).await?;
    Ok(n == 1)
}

pub(crate) fn invalid_token() -> ApiError {
    ApiError::bad_request(
        "identity.invalid_verification_token",
        "the verification link is invalid, used or expired",
    )
}

/// 409 for a link whose address got an account since it was sent (another
/// link of the same address was used first). Its holder proved the
/// mailbox, so saying so reveals nothing to anyone else.
pub(crate) fn email_taken() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "identity.email_taken")
        .with_detail("an account with this email exists: sign in instead")
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailRequest {
    /// The token of the link in the verification email.
    #[schema(value_type = String, format = Password)]
    pub token: SecretString,
    /// The password chosen when signing up (or accepting the invitation).
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

/// Confirms an address with the link from a verification email: creates the
/// pending account (and, for a sign-up, its tenant; for an invitation, its
/// membership), marks the address verified and signs it in.
#[utoipa::path(post, path = "/v1/auth/verify-email", tag = "auth",
    request_body = VerifyEmailRequest,
    responses(
        (status = 201, description = "the account exists and is signed in: `SignupResponse` \
            for a sign-up, `AcceptedAccount` for an invitation; refresh cookie set"),
        (status = 400, body = crate::http::Problem,
            description = "`identity.invalid_verification_token`, `auth.wrong_password`"),
        (status = 403, body = crate::http::Problem,
            description = "`tenancy.ip_not_allowed`: an invitation's tenant has an IP \
                allowlist that refuses the client (nothing is created, the link stays usable)"),
        (status = 409, body = crate::http::Problem,
            description = "`identity.email_taken`, `tenancy.slug_taken`, \
                `tenancy.tenant_inactive`"),
        (status = 410, body = crate::http::Problem,
            description = "the invitation was used, revoked or expired meanwhile"),
        (status = 429, body = crate::http::Problem)))]
pub(crate) async fn confirm(
    State(state): State<IdentityState>,
    ip: ClientIp,
    AuditContext(context): AuditContext,
    ApiJson(req): ApiJson<VerifyEmailRequest>,
) -> Result<Response, ApiError> {
    limit_ip(&state, &state.login_limiter, ip, &context).await?;
    let token = req.token.expose_secret();
    if token.len() != TOKEN_LEN {
        return Err(invalid_token());
    }
    let pending: Option<Pending> = state
        .db
        .global_read()
        .await?
        .fetch_optional(
            "SELECT token_hash, purpose, email, name, password_hash, user_id, target_tenant_id, \
             tenant_slug, tenant_name, invitation_id, expires_at \
             FROM email_verifications WHERE token_hash = $1",
            vec![token_hash(token.as_bytes()).into()],
        )
        .await?;
    let now = state.clock.now();
    let Some(pending) = pending.filter(|p| p.expires_at > now) else {
        return Err(invalid_token());
    };
    let verdict = state
        .hasher
        .verify(req.password, Some(pending.password_hash.clone()))
        .await
        .map_err(ApiError::internal)?;
    if verdict == Verification::Mismatch {
        return Err(ApiError::bad_request(
            "auth.wrong_password",
            "this is not the password chosen when signing up",
        ));
    }
    match pending.purpose.as_str() {
        "signup" => super::signup::complete(&state, &pending, &context).await,
        "invitation" => {
            let signing_in = (&context, ip.0);
            let policy = &state.session_policy;
            crate::tenancy::invitation_accounts::complete(&state, policy, &pending, signing_in)
                .await
        }
        _ => Err(invalid_token()),
    }
}

fn token_hash(token: &[u8]) -> Vec<u8> {
    Sha256::digest(token).to_vec()
}
