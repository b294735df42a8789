//! WebAuthn ceremonies between `begin` and `finish`: the `webauthn-rs`
//! state (its challenge, the policy) sealed under the master key with
//! associated data naming the ceremony's id, kind and user, so a row
//! cannot be moved to another user or kind. A ceremony lives five minutes
//! and is spent by the first `finish` that takes it — before the response
//! is verified, so two requests racing with one response cannot both
//! verify, and a wrong response leaves nothing to retry against.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use stockade_core::mfa::webauthn::CEREMONY_TTL_SECS;
use uuid::Uuid;

use crate::http::{ApiError, AuthState};
use crate::ids::UserId;

/// What a ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Registering a credential (a signed-in user, after a step-up).
    Register,
    /// The second step of a sign-in, bound to its `mfa_token`.
    SecondFactor,
    /// A step-up of a signed-in user.
    StepUp,
    /// A passwordless sign-in: no user until the response names one.
    Passwordless,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::SecondFactor => "second_factor",
            Self::StepUp => "step_up",
            Self::Passwordless => "passwordless",
        }
    }
}

/// 400 `auth.webauthn_ceremony_invalid`: unknown, expired, already used, of
/// another user or of another kind. One answer for all.
pub(crate) fn invalid() -> ApiError {
    ApiError::bad_request(
        "auth.webauthn_ceremony_invalid",
        "no open WebAuthn ceremony matches: begin again",
    )
}

fn aad(id: Uuid, kind: Kind, user: Option<UserId>) -> Vec<u8> {
    let user = user.map_or_else(|| "-".to_owned(), |u| u.to_string());
    format!("stockade:webauthn_ceremony:{id}:{}:{user}", kind.as_str()).into_bytes()
}

/// Opens a ceremony holding `st`; answers its id. A second-factor or
/// step-up ceremony replaces the open one of the same sign-in or user (only
/// the latest options can be answered). Expired rows are swept here.
pub(crate) async fn open<T: Serialize>(
    state: &AuthState,
    kind: Kind,
    user: Option<UserId>,
    binding: Option<[u8; 32]>,
    st: &T,
) -> Result<Uuid, ApiError> {
    let id = Uuid::new_v4();
    let plain = zeroize::Zeroizing::new(serde_json::to_vec(st).map_err(ApiError::internal)?);
    let (sealed, version) = state
        .master()
        .seal(&aad(id, kind, user), &plain)
        .map_err(ApiError::internal)?;
    let now = state.clock.now();
    let mut tx = state.db.global_tx().await?;
    tx.execute(
        "DELETE FROM webauthn_ceremonies WHERE expires_at < $1",
        vec![now.into()],
    )
    .await?;
    match (kind, binding) {
        (Kind::SecondFactor, Some(b)) => {
            tx.execute(
                "DELETE FROM webauthn_ceremonies WHERE kind = $1 AND binding = $2",
                vec![kind.as_str().into(), b.into()],
            )
            .await?;
        }
        (Kind::StepUp, _) => {
            tx.execute(
                "DELETE FROM webauthn_ceremonies WHERE kind = $1 AND user_id = $2",
                vec![kind.as_str().into(), user.into()],
            )
            .await?;
        }
        _ => {}
    }
    tx.execute(
        "INSERT INTO webauthn_ceremonies (id, user_id, kind, sealed_state, master_version, \
         created_at, expires_at, binding) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        vec![
            id.into(),
            user.into(),
            kind.as_str().into(),
            sealed.into(),
            i64::from(version).into(),
            now.into(),
            (now + Duration::seconds(CEREMONY_TTL_SECS)).into(),
            binding.map(|b| b.to_vec()).into(),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    user_id: Option<UserId>,
    sealed_state: Vec<u8>,
    master_version: i64,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
}

/// Which ceremony a `finish` names.
pub(crate) enum Find {
    /// By the id `begin` answered, of this user (`None`: passwordless).
    Id(Uuid, Option<UserId>),
    /// The latest of the sign-in whose `mfa_token` hashes to this.
    Binding([u8; 32], UserId),
    /// The latest step-up of this user.
    User(UserId),
}

/// Takes (spends) the open ceremony `find` names, of `kind`, and answers
/// its state; 400 [`invalid`] when there is none. Of two requests racing
/// for one ceremony, one gets it.
pub(crate) async fn take<T: DeserializeOwned>(
    state: &AuthState,
    kind: Kind,
    find: Find,
) -> Result<T, ApiError> {
    const COLUMNS: &str = "SELECT id, user_id, sealed_state, master_version, expires_at, used_at \
         FROM webauthn_ceremonies";
    let mut tx = state.db.global_tx().await?;
    let (row, user): (Option<Row>, Option<UserId>) = match find {
        Find::Id(id, user) => {
            let row: Option<Row> = tx
                .fetch_optional(
                    &format!("{COLUMNS} WHERE id = $1 AND kind = $2"),
                    vec![id.into(), kind.as_str().into()],
                )
                .await?;
            (row, user)
        }
        Find::Binding(binding, user) => {
            let row = tx
                .fetch_optional(
                    &format!(
                        "{COLUMNS} WHERE kind = $1 AND binding = $2 AND user_id = $3 \
                         ORDER BY created_at DESC LIMIT 1"
                    ),
                    vec![kind.as_str().into(), binding.into(), user.into()],
                )
                .await?;
            (row, Some(user))
        }
        Find::User(user) => {
            let row = tx
                .fetch_optional(
                    &format!(
                        "{COLUMNS} WHERE kind = $1 AND user_id = $2 \
                         ORDER BY created_at DESC LIMIT 1"
                    ),
                    vec![kind.as_str().into(), user.into()],
                )
                .await?;
            (row, Some(user))
        }
    };
    let now = state.clock.now();
    let row = row
        .filter(|r| r.user_id == user && r.used_at.is_none() && now < r.expires_at)
        .ok_or_else(invalid)?;
    let spent = tx
        .execute(
            "UPDATE webauthn_ceremonies SET used_at = $2 \
             WHERE id = $1 AND used_at IS NULL AND expires_at > $2",
            vec![row.id.into(), now.into()],
        )
        .await?;
    tx.commit().await?;
    if spent != 1 {
        return Err(invalid());
    }
    let version = u32::try_from(row.master_version).map_err(ApiError::internal)?;
    let plain = state
        .master()
        .open(version, &aad(row.id, kind, row.user_id), &row.sealed_state)
        .map_err(ApiError::internal)?;
    serde_json::from_slice(&plain).map_err(ApiError::internal)
}
