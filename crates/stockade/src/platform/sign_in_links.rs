//! One-time sign-in links (SPEC §2.6): a platform owner asks for one
//! (`POST /v1/platform/sign-in-links`), the user redeems it
//! (`POST /v1/auth/sign-in-link`) and gets a normal session of their own,
//! without a password proof.

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

use super::PlatformOwner;
use super::routes::{audit_both, resolve_target, sensitive};
use super::store::{self, NewLink};
use crate::app::AppState;
use crate::audit::{self, Actor, NewEvent, Outcome, Target};
use crate::crypto::random;
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
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignInLinkResponse {
    /// `<public URL>/sign-in#link=<token>`: shown once, single use.
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Issues a one-time sign-in link for a user (15 minutes, single use). The
/// session it opens is a normal one of that user, without a password
/// proof: sensitive actions in it still need re-authentication.
#[utoipa::path(post, path = "/v1/platform/sign-in-links", tag = "platform",
    security(("bearer" = [])), request_body = SignInLinkRequest,
    responses((status = 201, body = SignInLinkResponse),
        (status = 400, body = crate::http::Problem), (status = 403, body = crate::http::Problem),
        (status = 404, body = crate::http::Problem), (status = 409, body = crate::http::Problem)))]
pub(super) async fn create_sign_in_link(
    State(state): State<AppState>,
    owner: PlatformOwner,
    ApiJson(req): ApiJson<SignInLinkRequest>,
) -> Result<(StatusCode, Json<SignInLinkResponse>), ApiError> {
    let now = state.clock.now();
    let reason = sensitive(&owner, now, req.confirm, &req.reason)?;
    let (user, membership) = resolve_target(&state, req.user_id, req.tenant.as_deref()).await?;
    let secret = random::secret_bytes::<32>().map_err(ApiError::internal)?;
    let token = zeroize::Zeroizing::new(B64URL.encode(secret.as_slice()));
    let hash = token_hash(&token);
    let expires_at = now + SIGN_IN_LINK_TTL;
    let mut tx = state.db.global_tx().await?;
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
    let tx = tx.scoped(membership.tenant_id).await?;
    let event = NewEvent::new(owner.actor(), "platform.sign_in_link.created")
        .target(Target::new("user", user.id))
        .details(serde_json::json!({
            "tenant_id": membership.tenant_id,
            "slug": membership.slug,
            "reason": reason,
            "link_id": link_id(&hash),
            "expires_at": expires_at,
        }))
        .context(owner.context.clone());
    audit_both(&state, tx, event).await?;
    Ok((
        StatusCode::CREATED,
        Json(SignInLinkResponse {
            url: format!("{}/sign-in#link={}", state.issuer, token.as_str()),
            expires_at,
        }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemSignInLink {
    /// The `link` value of the sign-in link's fragment.
    #[schema(value_type = String, format = Password)]
    pub token: SecretString,
}

/// Redeems a one-time sign-in link: a new session (access token and refresh
/// cookie, like a login). Used, expired or unknown: 400
/// `platform.link_invalid`. From outside the tenant's IP allowlist: 403
/// `tenancy.ip_not_allowed`, and the link is not used up.
#[utoipa::path(post, path = "/v1/auth/sign-in-link", tag = "auth",
    request_body = RedeemSignInLink,
    responses((status = 200, body = TokenResponse), (status = 400, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem), (status = 429, body = crate::http::Problem)))]
pub(super) async fn redeem_sign_in_link(
    State(state): State<AppState>,
    ip: ClientIp,
    AuditContext(context): AuditContext,
    ApiJson(req): ApiJson<RedeemSignInLink>,
) -> Result<Response, ApiError> {
    crate::identity::routes::limit_ip(&state, ip, &context).await?;
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
    let (session, refresh) = sessions::create_unproven(
        &mut tx,
        clock,
        link.user_id,
        &state.session_policy,
        &context,
    )
    .await
    .map_err(ApiError::internal)?;
    audit::append(
        &mut tx,
        clock,
        NewEvent::new(
            Actor::User {
                id: link.user_id,
                impersonator: None,
            },
            "auth.sign_in_link.used",
        )
        .target(Target::new("session", session.id))
        .details(serde_json::json!({
            "link_id": link_id(&hash),
            "created_by": link.created_by,
        }))
        .context(context),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    let tokens = sessions::access_token(&state, link.user_id, link.tenant_id, session.id, None)?;
    Ok(sessions::with_cookie(
        StatusCode::OK,
        tokens,
        sessions::refresh_cookie(&refresh, state.session_policy.refresh_ttl),
    ))
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A public handle of a link for the audit logs (a prefix of its hash; it
/// reveals nothing of the token).
fn link_id(hash: &[u8; 32]) -> String {
    hex::encode(hash.iter().take(8).copied().collect::<Vec<u8>>())
}
