//! `POST /bench/mfa-sign-ins`: the fixture of the MFA completion load.
//! Creates `count` members of a tenant, each with a confirmed TOTP (a fresh
//! random secret, sealed as enrolment seals it), and for each an open
//! sign-in step (`mfa_token`) bound to its own client address
//! `10.<ip_base>.<n / 250>.<n % 250 + 1>` — what a right password would have
//! issued, without the argon2id hash, which the `login` load measures.
//! Answers `[{token, ip, secret}]` (secret in base32): the seeding script
//! computes the codes, the load script posts them to `POST /v1/auth/mfa`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use stockade_core::mfa::{amr::Amr, totp};
use uuid::Uuid;

use super::{BenchState, bad};
use crate::http::ApiError;
use crate::http::client_ip::ClientAddr;
use crate::ids::{TenantId, UserId};

/// Most members one call creates.
const MAX: u32 = 20_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MfaSignIns {
    tenant: Uuid,
    count: u32,
    ip_base: u8,
}

pub(super) async fn mfa_sign_ins(
    State(state): State<BenchState>,
    Json(req): Json<MfaSignIns>,
) -> Result<Response, ApiError> {
    if req.count == 0 || req.count > MAX {
        return Err(bad("count must be 1..=20000"));
    }
    let tenant = TenantId(req.tenant);
    let clock = state.clock.as_ref();
    let mut out = Vec::with_capacity(req.count as usize);
    for n in 0..req.count {
        let user = UserId::new();
        let email = crate::identity::Email::parse(&format!("mfa-{}@bench.test", user.0.simple()))
            .map_err(|_| bad("email"))?;
        let secret = totp::new_secret().map_err(ApiError::internal)?;
        let (sealed, version) = state
            .master()
            .seal(&crate::mfa::totp::aad(user), secret.as_slice())
            .map_err(ApiError::internal)?;
        let mut tx = state.db.global_tx().await?;
        crate::identity::insert_user(&mut tx, clock, user, &email, "MFA Bench", None, true)
            .await
            .map_err(ApiError::internal)?;
        crate::mfa::store::put_pending_totp(&mut tx, user, sealed, version, clock.now()).await?;
        crate::mfa::store::confirm_totp(&mut tx, user, 0, clock.now()).await?;
        crate::mfa::store::refresh_enrolled(&mut tx, user).await?;
        let mut tx = tx.scoped(tenant).await?;
        crate::tenancy::add_member(&mut tx, clock, user, "viewer")
            .await
            .map_err(|_| bad("no such tenant"))?;
        tx.commit().await?;
        let ip = std::net::Ipv4Addr::new(10, req.ip_base, (n / 250) as u8, (n % 250 + 1) as u8);
        let token = crate::mfa::challenge::create(
            &state,
            user,
            tenant,
            Amr::Pwd,
            ClientAddr::of(ip.into()),
        )
        .await?;
        out.push(json!({
            "token": token,
            "ip": ip.to_string(),
            "secret": totp::secret_base32(secret.as_slice()).as_str(),
        }));
    }
    Ok((StatusCode::CREATED, Json(out)).into_response())
}
