//! `/v1/auth/refresh`, logout, sessions; and the token response every
//! sign-in path returns.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use cookie::{Cookie, SameSite};
use serde::Serialize;

use super::SessionsState;
use super::model::{REFRESH_COOKIE, RefreshToken, Session};
use super::store::{self, RefreshError};
use crate::audit::{self, NewEvent, Target};
use crate::crypto::jwt::{ActClaim, Claims};
use crate::http::auth_state::AUDIENCE;
use crate::http::client_ip::ClientIp;
use crate::http::{ApiError, AuditContext, AuthState, Principal, SameOrigin};
use crate::ids::SessionId;
use crate::tenancy::allowlist::{self, Pathway};

/// Access tokens live 15 minutes (SPEC §2.2).
pub const ACCESS_TOKEN_SECONDS: i64 = 900;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(refresh, logout, logout_all, list, revoke_one),
    components(schemas(TokenResponse, SessionView))
)]
pub struct SessionsApi;

pub fn routes() -> Router<SessionsState> {
    Router::new()
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/auth/logout-all", post(logout_all))
        .route("/v1/auth/sessions", get(list))
        .route("/v1/auth/sessions/{id}", delete(revoke_one))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires (900).
    pub expires_in: i64,
}

/// Signs an access token for a session.
pub(crate) fn access_token(
    state: &AuthState,
    session: &Session,
) -> Result<TokenResponse, ApiError> {
    let now = state.clock.now().timestamp();
    let claims = Claims {
        iss: state.issuer.clone(),
        aud: AUDIENCE.to_owned(),
        sub: session.user_id.to_string(),
        tid: session.tenant_id.to_string(),
        sid: session.id.to_string(),
        iat: now,
        exp: now + ACCESS_TOKEN_SECONDS,
        jti: uuid::Uuid::new_v4().to_string(),
        act: session
            .impersonator_id
            .map(|u| ActClaim { sub: u.to_string() }),
        amr: stockade_core::mfa::amr::claim(&stockade_core::mfa::amr::decode(
            session.amr.as_deref().unwrap_or(""),
        )),
    };
    let token = state.keyring().issue(&claims).map_err(ApiError::internal)?;
    Ok(TokenResponse {
        access_token: token,
        token_type: "Bearer",
        expires_in: ACCESS_TOKEN_SECONDS,
    })
}

/// The refresh cookie: HttpOnly, Secure, SameSite=Lax, Path=/, `__Host-`.
pub(crate) fn refresh_cookie(token: &RefreshToken, ttl: Duration) -> HeaderValue {
    let value = token.encode();
    let cookie = Cookie::build((REFRESH_COOKIE, value.as_str()))
        .path("/")
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(ttl.num_seconds()))
        .build();
    HeaderValue::from_str(&cookie.to_string()).unwrap_or(HeaderValue::from_static(""))
}

/// A header that deletes the refresh cookie.
pub(crate) fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-stockade_refresh=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0",
    )
}

/// Reads the refresh token from the `Cookie` header(s).
pub(crate) fn refresh_from_cookies(headers: &HeaderMap) -> Option<RefreshToken> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == REFRESH_COOKIE)
        .and_then(|c| RefreshToken::parse(c.value()))
}

/// JSON body plus the refresh cookie.
pub(crate) fn with_cookie(
    status: StatusCode,
    body: impl Serialize,
    cookie: HeaderValue,
) -> Response {
    let mut res = (status, Json(body)).into_response();
    res.headers_mut().insert(header::SET_COOKIE, cookie);
    res
}

/// Exchanges the refresh cookie for a new access token and a new cookie.
/// The cookie alone authorises it, so a browser request from another site
/// (`Sec-Fetch-Site: cross-site`, or an `Origin` that is not the
/// deployment's own) is refused with 403 `auth.cross_site_refused` and
/// changes nothing; a client that sends neither header is not a browser and
/// is served. A client the tenant's IP allowlist refuses gets 403
/// `tenancy.ip_not_allowed` and keeps its (unrotated) cookie.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth",
    responses((status = 200, body = TokenResponse), (status = 401, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem,
            description = "`auth.cross_site_refused` or `tenancy.ip_not_allowed`")))]
async fn refresh(
    _same_origin: SameOrigin,
    State(state): State<SessionsState>,
    ClientIp(client): ClientIp,
    AuditContext(context): AuditContext,
    headers: HeaderMap,
) -> Response {
    let Some(presented) = refresh_from_cookies(&headers) else {
        return unauthenticated_clearing_cookie();
    };
    let rotated = state
        .refresh_rotations
        .rotate(presented, context.clone())
        .await;
    match rotated {
        // `rotate` refuses impersonation sessions; the mark is carried
        // anyway, so no path can drop it.
        Ok(r) => match access_token(&state, &r.session) {
            Ok(body) => with_cookie(
                StatusCode::OK,
                body,
                refresh_cookie(&r.token, state.session_policy.refresh_ttl),
            ),
            Err(e) => e.into_response(),
        },
        Err(RefreshError::Invalid) => unauthenticated_clearing_cookie(),
        Err(RefreshError::Reused) => {
            crate::ops::metrics::refresh_reuse_detected();
            unauthenticated_clearing_cookie()
        }
        Err(RefreshError::AddressRefused {
            tenant,
            user,
            impersonator,
        }) => {
            let actor = crate::audit::Actor::User {
                id: user,
                impersonator,
            };
            allowlist::refuse(&state, tenant, actor, client, Pathway::Refresh, &context)
                .await
                .into_response()
        }
        Err(e) => ApiError::internal(e).into_response(),
    }
}

fn unauthenticated_clearing_cookie() -> Response {
    let mut res = ApiError::unauthenticated().into_response();
    res.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    res
}

/// Ends the current session.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = crate::http::Problem)))]
async fn logout(State(state): State<SessionsState>, p: Principal) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    store::revoke(&mut tx, p.session_id, "logout", now).await?;
    let mut events = vec![NewEvent::new(p.actor(), "auth.session.logged_out")];
    if let Some(owner) = p.impersonator {
        // The impersonation ends with its session; said in both logs.
        events.push(
            NewEvent::new(
                crate::audit::Actor::PlatformOwner { id: owner },
                "platform.impersonation.ended",
            )
            .details(serde_json::json!({ "user_id": p.user_id })),
        );
    }
    let batch = events
        .iter()
        .map(|e| {
            e.clone()
                .target(Target::new("session", p.session_id))
                .context(p.context.clone())
        })
        .collect();
    audit::append_many(&mut tx, state.clock.as_ref(), batch)
        .await
        .map_err(ApiError::internal)?;
    if p.impersonator.is_some() {
        let mut ptx = tx.rescope(crate::ids::TenantId::PLATFORM).await?;
        if let Some(ended) = events.get(1) {
            audit::append(
                &mut ptx,
                state.clock.as_ref(),
                ended
                    .clone()
                    .target(Target::new("session", p.session_id))
                    .details(serde_json::json!({ "user_id": p.user_id, "tenant_id": p.tenant_id }))
                    .context(p.context.clone()),
            )
            .await
            .map_err(ApiError::internal)?;
        }
        ptx.commit().await?;
    } else {
        tx.commit().await?;
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    Ok(res)
}

/// Signs the user out of every session, in every tenant, this one included;
/// `auth.session.logged_out_all` is written in every tenant where sessions
/// ended (in the same transaction), with that tenant's count. Refused to an
/// impersonation session (403 `platform.impersonation_forbidden`): it
/// reaches tenants the impersonation was never granted.
#[utoipa::path(post, path = "/v1/auth/logout-all", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = crate::http::Problem),
        (status = 403, body = crate::http::Problem,
            description = "`platform.impersonation_forbidden`")))]
async fn logout_all(
    State(state): State<SessionsState>,
    p: Principal,
) -> Result<Response, ApiError> {
    p.forbid_impersonation(&state, crate::platform::operation::LOGOUT_ALL)
        .await?;
    let now = state.clock.now();
    let mut tx = state.db.user_tx(p.user_id).await?;
    let mut ended = super::everywhere::revoke_all_by_tenant(&mut tx, "logout_all", now).await?;
    if !ended.iter().any(|(t, _)| *t == p.tenant_id) {
        // The caller's tenant always has the event (its session may have
        // ended concurrently).
        ended.insert(0, (p.tenant_id, 0));
    }
    let total: u64 = ended.iter().map(|(_, n)| n).sum();
    let mut tx = tx.scoped(p.tenant_id).await?;
    for (tenant, n) in ended {
        tx = tx.rescope(tenant).await?;
        audit::append(
            &mut tx,
            state.clock.as_ref(),
            NewEvent::new(p.actor(), "auth.session.logged_out_all")
                .target(Target::new("user", p.user_id))
                .details(serde_json::json!({
                    "sessions_revoked": n,
                    "sessions_revoked_everywhere": total,
                }))
                .context(p.context.clone()),
        )
        .await
        .map_err(ApiError::internal)?;
    }
    tx.commit().await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    Ok(res)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    #[schema(value_type = String, format = Uuid)]
    pub id: SessionId,
    pub current: bool,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub expires_at: DateTime<Utc>,
}

impl SessionView {
    fn of(s: Session, current: SessionId) -> Self {
        let idle_end = s.last_seen_at + Duration::seconds(s.idle_timeout_secs);
        Self {
            current: s.id == current,
            id: s.id,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            ip: s.ip,
            user_agent: s.user_agent,
            expires_at: idle_end.min(s.absolute_expires_at),
        }
    }
}

/// The caller's live sessions in this tenant; the current one is marked.
#[utoipa::path(get, path = "/v1/auth/sessions", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = [SessionView]), (status = 401, body = crate::http::Problem)))]
async fn list(
    State(state): State<SessionsState>,
    p: Principal,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let mut tx = state.db.tenant_read(p.tenant_id).await?;
    let sessions = store::list_for_user(&mut tx, p.user_id, state.clock.now()).await?;
    Ok(Json(
        sessions
            .into_iter()
            .map(|s| SessionView::of(s, p.session_id))
            .collect(),
    ))
}

/// Remote sign-out of one of the caller's sessions.
#[utoipa::path(delete, path = "/v1/auth/sessions/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 404, body = crate::http::Problem)))]
async fn revoke_one(
    State(state): State<SessionsState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = id.parse::<SessionId>().map_err(|_| ApiError::not_found())?;
    let now = state.clock.now();
    let mut tx = state.db.tenant_tx(p.tenant_id).await?;
    // Only the caller's own sessions: anyone else's is "not found".
    let own = store::list_for_user(&mut tx, p.user_id, now)
        .await?
        .into_iter()
        .any(|s| s.id == id);
    if !own {
        return Err(ApiError::not_found());
    }
    store::revoke(&mut tx, id, "remote_sign_out", now).await?;
    audit::append(
        &mut tx,
        state.clock.as_ref(),
        NewEvent::new(p.actor(), "sessions.session.revoked")
            .target(Target::new("session", id))
            .context(p.context.clone()),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
