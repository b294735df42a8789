//! The rows of a user's factors (all global: a factor serves every tenant
//! of its user): the TOTP (sealed secret, last accepted step), recovery
//! codes (keyed hashes), and the `users.mfa_enabled` flag that sign-in and
//! the per-request check read. Queries only; every write that can change
//! whether the user has a factor ends with [`refresh_enrolled`] in the same
//! transaction.

use chrono::{DateTime, Utc};

use crate::db::{DbError, GlobalTx};
use crate::ids::UserId;

/// A user's TOTP row.
#[derive(sqlx::FromRow)]
pub struct TotpRow {
    pub sealed_secret: Vec<u8>,
    pub master_version: i64,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub last_step: Option<i64>,
}

pub async fn totp_of(tx: &mut GlobalTx, user: UserId) -> Result<Option<TotpRow>, DbError> {
    tx.fetch_optional(
        "SELECT sealed_secret, master_version, confirmed_at, last_step FROM mfa_totp \
         WHERE user_id = $1",
        vec![user.into()],
    )
    .await
}

/// Stores a new, unconfirmed secret, replacing an unconfirmed one. Returns
/// `false` (nothing written) when a confirmed TOTP exists.
pub async fn put_pending_totp(
    tx: &mut GlobalTx,
    user: UserId,
    sealed: Vec<u8>,
    master_version: u32,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    tx.execute(
        "DELETE FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NULL",
        vec![user.into()],
    )
    .await?;
    let written = tx
        .execute(
            "INSERT INTO mfa_totp (user_id, sealed_secret, master_version, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO NOTHING",
            vec![
                user.into(),
                sealed.into(),
                i64::from(master_version).into(),
                now.into(),
            ],
        )
        .await?;
    Ok(written == 1)
}

/// Confirms the pending TOTP with the step its first code belonged to.
/// `false` when there is none pending (confirmed meanwhile, or removed).
pub async fn confirm_totp(
    tx: &mut GlobalTx,
    user: UserId,
    step: u64,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    let n = tx
        .execute(
            "UPDATE mfa_totp SET confirmed_at = $2, last_step = $3 \
             WHERE user_id = $1 AND confirmed_at IS NULL",
            vec![user.into(), now.into(), step.into()],
        )
        .await?;
    Ok(n == 1)
}

/// Records `step` as the last accepted one, only if it is later than the
/// stored one: of two requests racing with one code, one wins.
pub async fn advance_step(tx: &mut GlobalTx, user: UserId, step: u64) -> Result<bool, DbError> {
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    let n = tx
        .execute(
            "UPDATE mfa_totp SET last_step = $2 WHERE user_id = $1 \
             AND confirmed_at IS NOT NULL AND (last_step IS NULL OR last_step < $2)",
            vec![user.into(), step.into()],
        )
        .await?;
    Ok(n == 1)
}

/// Removes the user's TOTP, confirmed or not; `true` if a confirmed one
/// went.
pub async fn delete_totp(tx: &mut GlobalTx, user: UserId) -> Result<bool, DbError> {
    let confirmed: Option<(Option<DateTime<Utc>>,)> = tx
        .fetch_optional(
            "SELECT confirmed_at FROM mfa_totp WHERE user_id = $1",
            vec![user.into()],
        )
        .await?;
    tx.execute("DELETE FROM mfa_totp WHERE user_id = $1", vec![user.into()])
        .await?;
    Ok(confirmed.is_some_and(|(c,)| c.is_some()))
}

/// Sets `users.mfa_enabled` from the factors the user has now (a confirmed
/// TOTP, a WebAuthn credential) and answers it. With no factor left the
/// recovery codes go too: they recover a factor, not replace one.
pub async fn refresh_enrolled(tx: &mut GlobalTx, user: UserId) -> Result<bool, DbError> {
    let (totp,): (i64,) = tx
        .fetch_optional(
            "SELECT COUNT(*) FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL",
            vec![user.into()],
        )
        .await?
        .unwrap_or((0,));
    let (keys,): (i64,) = tx
        .fetch_optional(
            "SELECT COUNT(*) FROM webauthn_credentials WHERE user_id = $1",
            vec![user.into()],
        )
        .await?
        .unwrap_or((0,));
    let enabled = totp + keys > 0;
    tx.execute(
        "UPDATE users SET mfa_enabled = $2 WHERE id = $1 AND mfa_enabled <> $2",
        vec![user.into(), enabled.into()],
    )
    .await?;
    if !enabled {
        tx.execute(
            "DELETE FROM mfa_recovery_codes WHERE user_id = $1",
            vec![user.into()],
        )
        .await?;
    }
    Ok(enabled)
}

/// Replaces every recovery code of `user` with `hashes`.
pub async fn replace_recovery_codes(
    tx: &mut GlobalTx,
    user: UserId,
    hashes: &[[u8; 32]],
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    tx.execute(
        "DELETE FROM mfa_recovery_codes WHERE user_id = $1",
        vec![user.into()],
    )
    .await?;
    for hash in hashes {
        tx.execute(
            "INSERT INTO mfa_recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)",
            vec![user.into(), (*hash).into(), now.into()],
        )
        .await?;
    }
    Ok(())
}

/// Spends the code hashed `hash`: `true` once, `false` for an unknown or
/// spent code (and for the loser of two racing requests).
pub async fn spend_recovery_code(
    tx: &mut GlobalTx,
    user: UserId,
    hash: [u8; 32],
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let n = tx
        .execute(
            "UPDATE mfa_recovery_codes SET used_at = $3 \
             WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
            vec![user.into(), hash.into(), now.into()],
        )
        .await?;
    Ok(n == 1)
}

/// Unspent recovery codes of `user`.
pub async fn recovery_codes_left(tx: &mut GlobalTx, user: UserId) -> Result<i64, DbError> {
    let (n,): (i64,) = tx
        .fetch_optional(
            "SELECT COUNT(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL",
            vec![user.into()],
        )
        .await?
        .unwrap_or((0,));
    Ok(n)
}

/// Whether `user` has a WebAuthn credential.
pub async fn has_webauthn(tx: &mut GlobalTx, user: UserId) -> Result<bool, DbError> {
    let (n,): (i64,) = tx
        .fetch_optional(
            "SELECT COUNT(*) FROM webauthn_credentials WHERE user_id = $1",
            vec![user.into()],
        )
        .await?
        .unwrap_or((0,));
    Ok(n > 0)
}
