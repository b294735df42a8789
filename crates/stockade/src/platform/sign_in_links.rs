//! One-time sign-in links (SPEC §2.6): a platform owner asks for one
//! (`POST /v1/platform/sign-in-links`), the user redeems it
//! (`POST /v1/auth/sign-in-link`) and gets a normal session of their own,
//! without a password proof.
//!
//! The link goes **only to the user**, by email, through the outbox (sealed
//! under the master key like every message; in development the sink writes
//! it to `<data_dir>/outbox/`; production has no sender yet, issue #21). The
//! owner's answer names the link (`link_id`, a prefix of the token's hash)
//! and the masked address it was queued to, never the token: an owner who
//! held the link could redeem it themselves and get a refreshable session
//! as the user with no `act` claim, every later action audited as the user
//! alone — impersonation laundered into a normal session (issue #17 item 1).
//!
//! Decided here: a link is sent only to an address the user proved (a
//! verification link; imported and older accounts never did) — otherwise
//! it could hand the account, without its password, to whoever holds a
//! mistyped or reassigned mailbox; such a user is answered 409
//! `platform.email_unverified` and can reset their password themselves.
//! A new link voids every unused older link of the user (in any tenant), so
//! at most one is alive.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::PlatformOwner;
use super::PlatformState;
use super::routes::{audit_both, resolve_target, sensitive};
use super::store::{self, NewLink};
use crate::audit::{self, Actor, NewEvent, Outcome, Target};
use crate::crypto::random;
use crate::email::{self, Message};
use crate::http::client_ip::ClientIp;
use crate::http::{ApiError, ApiJson, AuditContext};
use crate::ids::UserId;
use crate::sessions::{self, TokenResponse};
use crate::tenancy::allowlist::{self, Pathway};

/// One-time sign-in links are valid this long.
pub const SIGN_IN_LINK_TTL: Duration = Duration::minutes(15);

/// Characters of a sign-in link token: 32 random bytes, base64url.
const LINK_TOKEN_LEN: usize = 43;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInLinkRequest {
    #[schema(value_type = String, format = Uuid)]
    pub user_id: UserId,
    /// Tenant slug; needed when the user is an active member of several.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Why (1–500 characters); kept in both audit logs.
    #[serde(default)]
    pub reason: String,
    /// Must be `true`.
    #[serde(default)]
    pub confirm: bool,
    /// The page of your application that redeems the link: the emailed
    /// link is this URL with `#link=…`. Must be under the public URL or
    /// `STOCKADE_REDIRECT_ALLOWLIST` (400 `http.redirect_not_allowed`
    /// otherwise); default `<public URL>/sign-in`.
    #[serde(default)]
    pub redirect_to: Option<String>,
}

/// What the platform owner learns of a link: never the link itself.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignInLinkResponse {
    /// The link's public handle, as the audit events name it (16 hex
    /// characters of the token's SHA-256; it cannot be redeemed).
    pub link_id: String,
    pub expires_at: DateTime<Utc>,
    /// The masked address the link was emailed to (`p***@acme.test`).
    pub sent_to: String,
}

/// Emails a user a one-time sign-in link (15 minutes, single use). The
/// link goes to the user's verified address only, through the email
/// outbox, and is never shown to the caller. A new link voids the user's
/// older unused ones. The session it opens is a normal one of that user,
/// without a password proof: sensitive actions in it still need
/// re-authentication. Outside production the development sender writes the
/// message to `<data_dir>/outbox/`; production has no email sender yet
/// (issue #21), so the message waits, sealed, in the outbox.
#[utoipa::path(post, path = "/v1/platform/sign-in-links", tag = "platform",
    security(("bearer" = [])), request_body = SignInLinkRequest,
    responses((status = 201, body = SignInLinkResponse),
        (status = 400, body = crate::http::Problem), (status = 403, body = crate::http::Problem,
            description = "`platform.forbidden`, `platform.owner_protected`; `auth.step_up_required`: no step-up (password or second factor) within the tenant's step-up window (the problem's `max_age_seconds`; `POST /v1/auth/reauth`)"),
        (status = 404, body = crate::http::Problem),
        (status = 409, body = crate::http::Problem,
            description = "`platform.email_unverified` (the user never proved their \
                address), `platform.user_inactive`, `platform.tenant_state`")))]
pub(super) async fn create_sign_in_link(
    State(state): State<PlatformState>,
    owner: PlatformOwner,
    ApiJson(req): ApiJson<SignInLinkRequest>,
) -> Result<(StatusCode, Json<SignInLinkResponse>), ApiError> {
    let now = state.clock.now();
    let reason = sensitive(&owner, now, req.confirm, &req.reason)?;
    let page = match &req.redirect_to {
        Some(target) => Some(crate::http::redirect::allowed_target(
            &state.config,
            target,
        )?),
        None => None,
    };
    let (user, membership) = resolve_target(&state, req.user_id, req.tenant.as_deref()).await?;
    if user.email_verified_at.is_none() {
        return Err(
            ApiError::new(StatusCode::CONFLICT, "platform.email_unverified").with_detail(
                "this user never verified their email address: no sign-in link can be sent \
                 to it (they can reset their password themselves)",
            ),
        );
    }
    let secret = random::secret_bytes::<32>().map_err(ApiError::internal)?;
    let token = Zeroizing::new(B64URL.encode(secret.as_slice()));
    let hash = token_hash(&token);
    let expires_at = now + SIGN_IN_LINK_TTL;
    let mut tx = state.db.global_tx().await?;
    let voided = store::void_sign_in_links_of(&mut tx, user.id, now).await?;
    store::insert_sign_in_link(
        &mut tx,
        &NewLink {
            hash,
            user: user.id,
            tenant: membership.tenant_id,
            created_by: owner.user_id,
            created_at: now,
            expires_at,
        },
    )
    .await?;
    let link = Zeroizing::new(match &page {
        Some(page) => crate::http::redirect::token_link(page, "link", token.as_str()),
        None => format!("{}/sign-in#link={}", state.issuer, token.as_str()),
    });
    let body = Zeroizing::new(format!(
        "Our support team created a one-time sign-in link for your account in {}.\n\n\
         Open it within 15 minutes; it works once and signs you in without your password \
         (changing your password or other sensitive settings will still ask for it):\n\
         {}\n\n\
         If you did not ask support for help, do not open it: it expires by itself. \
         Tell your administrator.",
        membership.slug,
        link.as_str()
    ));
    email::enqueue(
        &mut tx,
        state.clock.as_ref(),
        &state.master(),
        &Message {
            to: &user.email,
            kind: "sign_in_link",
            subject: "Your one-time sign-in link",
            body: &body,
        },
        state.config.is_production(),
    )
    .await
    .map_err(ApiError::internal)?;
    let tx = tx.scoped(membership.tenant_id).await?;
    let event = NewEvent::new(owner.actor(), "platform.sign_in_link.created")
        .target(Target::new("user", user.id))
        .details(serde_json::json!({
            "tenant_id": membership.tenant_id,
            "slug": membership.slug,
            "reason": reason,
            "link_id": link_id(&hash),
            "expires_at": expires_at,
            "links_voided": voided,
        }))
        .context(owner.context.clone());
    audit_both(&state, tx, event).await?;
    Ok((
        StatusCode::CREATED,
        Json(SignInLinkResponse {
            link_id: link_id(&hash),
            expires_at,
            sent_to: email::mask_address(&user.email),
        }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemSignInLink {
    /// The `link` value of the emailed sign-in link's fragment.
    #[schema(value_type = String, format = Password)]
    pub token: SecretString,
}

/// Redeems a one-time sign-in link: a new session (access token and refresh
/// cookie, like a login). Used, expired, voided by a newer link or unknown:
/// 400 `platform.link_invalid`. From outside the tenant's IP allowlist: 403
/// `tenancy.ip_not_allowed`, and the link is not used up.
#[utoipa::path(post, path = "/v1/auth/sign-in-link", tag = "auth",
    request_body = RedeemSignInLink,
    responses((status = 200, body = TokenResponse), (status = 400, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem), (status = 429, body = crate::http::Problem)))]
pub(super) async fn redeem_sign_in_link(
    State(state): State<PlatformState>,
    ip: ClientIp,
    AuditContext(context): AuditContext,
    ApiJson(req): ApiJson<RedeemSignInLink>,
) -> Result<Response, ApiError> {
    crate::identity::password_gate::limit_ip(&state, &state.login_limiter, ip, &context).await?;
    let invalid = || {
        ApiError::bad_request(
            "platform.link_invalid",
            "the sign-in link is invalid, used or expired",
        )
    };
    let token = req.token.expose_secret();
    if token.len() != LINK_TOKEN_LEN {
        return Err(invalid());
    }
    let hash = token_hash(token);
    let now = state.clock.now();
    let clock = state.clock.as_ref();
    let mut tx = state.db.global_tx().await?;
    let link = store::find_sign_in_link(&mut tx, hash)
        .await?
        .ok_or_else(invalid)?;
    let refusal = match link.used_at {
        Some(_) => Some("used"),
        None if link.expires_at <= now => Some("expired"),
        None => None,
    };
    let claimed = refusal.is_none() && store::claim_sign_in_link(&mut tx, hash, now).await?;
    let mut tx = tx.scoped(link.tenant_id).await?;
    if !claimed {
        // A replayed or late link: the tenant learns someone holds it (who
        // is unknown, so the system, not the user, records it).
        audit::append(
            &mut tx,
            clock,
            NewEvent::new(Actor::System, "auth.sign_in_link.rejected")
                .target(Target::new("user", link.user_id))
                .outcome(Outcome::Denied)
                .details(serde_json::json!({
                    "link_id": link_id(&hash),
                    "reason": refusal.unwrap_or("used"),
                }))
                .context(context),
        )
        .await
        .map_err(ApiError::internal)?;
        tx.commit().await?;
        return Err(invalid());
    }
    let standing = store::standing(&mut tx, link.user_id)
        .await?
        .ok_or_else(invalid)?;
    if standing.user_status != "active" || standing.membership_status != "active" {
        return Err(invalid());
    }
    if standing.tenant_status != "active" {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "tenancy.suspended")
            .with_detail("this tenant is suspended"));
    }
    // Refused: the claim is undone, the link still works from an allowed address.
    let user = Actor::User {
        id: link.user_id,
        impersonator: None,
    };
    let mut tx = allowlist::admit_in(&state, tx, user, ip.0, Pathway::SignInLink, &context).await?;
    // A link is the first factor only: a user with a second factor must
    // still give it (`POST /v1/auth/mfa`); the link is spent either way.
    let has_factor = crate::identity::find_auth_user_by_id(&state.db, link.user_id)
        .await?
        .is_some_and(|u| u.mfa_enabled);
    let used = |target: Target, details: serde_json::Value| {
        NewEvent::new(
            Actor::User {
                id: link.user_id,
                impersonator: None,
            },
            "auth.sign_in_link.used",
        )
        .target(target)
        .details(details)
        .context(context.clone())
    };
    let details = serde_json::json!({
        "link_id": link_id(&hash),
        "created_by": link.created_by,
    });
    if has_factor {
        let details = serde_json::json!({
            "link_id": link_id(&hash),
            "created_by": link.created_by,
            "second_factor": "required",
        });
        let event = used(Target::new("user", link.user_id), details);
        audit::append(&mut tx, clock, event)
            .await
            .map_err(ApiError::internal)?;
        tx.commit().await?;
        return crate::mfa::challenge::issue(
            &state,
            link.user_id,
            link.tenant_id,
            stockade_core::mfa::amr::Amr::Email,
            ip.0,
            &context,
        )
        .await;
    }
    let (session, refresh) = sessions::create_unproven(
        &mut tx,
        clock,
        link.user_id,
        &state.session_policy,
        &context,
        &[stockade_core::mfa::amr::Amr::Email],
    )
    .await
    .map_err(ApiError::internal)?;
    audit::append(
        &mut tx,
        clock,
        used(Target::new("session", session.id), details),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    let tokens = sessions::access_token(&state, &session)?;
    Ok(sessions::with_cookie(
        StatusCode::OK,
        tokens,
        sessions::refresh_cookie(&refresh, state.session_policy.refresh_ttl),
    ))
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A public handle of a link for the audit logs and the owner's answer (a
/// prefix of its hash; it reveals nothing of the token).
fn link_id(hash: &[u8; 32]) -> String {
    hex::encode(hash.iter().take(8).copied().collect::<Vec<u8>>())
}
