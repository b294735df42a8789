//! Load-benchmark support, compiled only with the `bench` cargo feature and
//! never part of a product build (`bench/run` builds it; see
//! `bench/README.md`). A binary built with it refuses the production
//! profile (`Config::production_problems`).
//!
//! - `GET /bench/baseline/{tenant}/{collection}/{id}` reads a record exactly as
//!   `GET /v1/collections/{c}/records/{id}` does — same transaction kind, same
//!   row read, same tenant keys, same decryption and JSON — but with no
//!   authentication, no tenant resolution from a credential and no
//!   permission or record-rule check. It is the baseline of the *security
//!   overhead* ratio.
//! - `POST /bench/sessions` creates many live sessions for one member and
//!   passes each through the session check (filling the session cache as a
//!   request would), to measure memory with that many live sessions.
//! - `GET /bench/argon2?n=N` hashes a password N times, one after the other,
//!   with the server's own hasher and parameters, and answers the mean time
//!   of one hash: the in-process figure of the *login efficiency* ratio.
//! - `POST /bench/mfa-sign-ins` creates members with a confirmed TOTP and
//!   an open sign-in step each (`bench/mfa.rs`), for the load of
//!   `POST /v1/auth/mfa`.
//! - `GET /bench/verification-token?email=E` unseals the newest verification
//!   email queued to E and answers its link's token, so the seeding script
//!   can finish its sign-ups (`POST /v1/auth/verify-email`) without a mail
//!   server.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

mod mfa;

use crate::audit::RequestContext;
use crate::http::{ApiError, AuthState};
use crate::identity::password::Hasher;
use crate::ids::{TenantId, UserId};
use crate::records::service;
use crate::sessions::SessionPolicy;

/// Most sessions one `POST /bench/sessions` call creates.
const MAX_SESSIONS_PER_CALL: u32 = 10_000;

/// What the benchmark routes use: the auth state, the server's own password
/// hasher and the session policy, built by `app.rs`.
#[derive(Clone)]
pub struct BenchState {
    pub auth: AuthState,
    pub hasher: Hasher,
    pub session_policy: SessionPolicy,
}

crate::http::auth_state::auth_slice!(BenchState);

pub fn routes() -> Router<BenchState> {
    Router::new()
        .route("/bench/baseline/{tenant}/{collection}/{id}", get(baseline))
        .route("/bench/sessions", post(sessions))
        .route("/bench/argon2", get(argon2))
        .route("/bench/verification-token", get(verification_token))
        .route("/bench/mfa-sign-ins", post(mfa::mfa_sign_ins))
}

fn bad(what: &str) -> ApiError {
    ApiError::bad_request("bench.invalid", what)
}

/// The record read of `GET /v1/collections/{c}/records/{id}` without the
/// security layers.
async fn baseline(
    State(state): State<BenchState>,
    Path((tenant, collection, id)): Path<(Uuid, String, Uuid)>,
) -> Result<Response, ApiError> {
    let record = service::read(&state, TenantId(tenant), &collection, id).await?;
    Ok(crate::records::with_etag(StatusCode::OK, record))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionsRequest {
    tenant: Uuid,
    user: Uuid,
    count: u32,
}

/// Creates `count` sessions of a member and checks each once, as the first
/// request of each would.
async fn sessions(
    State(state): State<BenchState>,
    Json(req): Json<SessionsRequest>,
) -> Result<Response, ApiError> {
    if req.count == 0 || req.count > MAX_SESSIONS_PER_CALL {
        return Err(bad("count must be 1..=10000"));
    }
    let (tenant, user) = (TenantId(req.tenant), UserId(req.user));
    let mut ids = Vec::with_capacity(req.count as usize);
    let mut tx = state.db.tenant_tx(tenant).await?;
    for _ in 0..req.count {
        let (session, _refresh) = crate::sessions::create(
            &mut tx,
            state.clock.as_ref(),
            user,
            &state.session_policy,
            &RequestContext::default(),
            &[stockade_core::mfa::amr::Amr::Pwd],
        )
        .await
        .map_err(|_| bad("no such member"))?;
        ids.push(session.id);
    }
    tx.commit().await?;
    let now = state.clock.now();
    let mut live = 0u32;
    for id in ids {
        let checked = state
            .session_cache
            .check(&state.db, tenant, id, user, now)
            .await?;
        if checked.is_ok() {
            live += 1;
        }
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({ "created": req.count, "live": live, "cached": state.session_cache.len() })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HashRuns {
    n: u32,
}

/// The mean wall time of one argon2id hash, sequentially (nothing else runs
/// in `bench/run` while it is measured).
async fn argon2(
    State(state): State<BenchState>,
    Query(runs): Query<HashRuns>,
) -> Result<Response, ApiError> {
    if runs.n == 0 || runs.n > 1000 {
        return Err(bad("n must be 1..=1000"));
    }
    let password = secrecy::SecretString::from("bench-password-Quartz-7-Lantern");
    let start = std::time::Instant::now();
    for _ in 0..runs.n {
        state
            .hasher
            .hash(password.clone())
            .await
            .map_err(ApiError::internal)?;
    }
    let mean = start.elapsed().as_secs_f64() / f64::from(runs.n);
    Ok(Json(json!({ "n": runs.n, "mean_seconds": mean })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerificationFor {
    email: String,
}

/// The token of the newest verification link queued to `email`.
async fn verification_token(
    State(state): State<BenchState>,
    Query(q): Query<VerificationFor>,
) -> Result<Response, ApiError> {
    let row: Option<(Uuid, Vec<u8>, i64)> = state
        .db
        .global_read()
        .await?
        .fetch_optional(
            "SELECT id, sealed_body, CAST(master_version AS BIGINT) FROM email_outbox \
             WHERE kind = 'verification' AND to_address = $1 ORDER BY created_at DESC, id DESC",
            vec![q.email.as_str().into()],
        )
        .await?;
    let (id, sealed, version) = row.ok_or_else(ApiError::not_found)?;
    let version = u32::try_from(version).map_err(ApiError::internal)?;
    let opened = state
        .master()
        .open(version, &crate::email::outbox_aad(id), &sealed)
        .map_err(ApiError::internal)?;
    let payload: serde_json::Value = serde_json::from_slice(&opened).map_err(ApiError::internal)?;
    let token = payload
        .get("body")
        .and_then(serde_json::Value::as_str)
        .and_then(|b| b.split_once("#token="))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .ok_or_else(|| ApiError::internal("no link in the verification email"))?;
    Ok(Json(json!({ "token": token })).into_response())
}
