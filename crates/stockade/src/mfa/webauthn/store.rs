//! The rows of `webauthn_credentials` (global: a credential serves every
//! tenant of its user). `passkey` is the `webauthn-rs` credential as JSON
//! (public key, signature counter, flags: no secret). Queries only; a
//! write that adds or removes a credential is followed by
//! `mfa::store::refresh_enrolled` in the same transaction.

use chrono::{DateTime, Utc};
use uuid::Uuid;
use webauthn_rs::prelude::Passkey;

use crate::db::{DbError, GlobalTx};
use crate::http::ApiError;
use crate::ids::UserId;

/// One stored credential.
#[derive(sqlx::FromRow)]
pub(crate) struct CredentialRow {
    pub id: Uuid,
    pub user_id: UserId,
    pub name: String,
    pub passkey: String,
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "SELECT id, user_id, name, passkey, kind, created_at, last_used_at FROM webauthn_credentials";

impl CredentialRow {
    /// The stored `webauthn-rs` credential.
    pub(crate) fn passkey(&self) -> Result<Passkey, ApiError> {
        serde_json::from_str(&self.passkey).map_err(ApiError::internal)
    }
}

/// `user`'s credentials, oldest first.
pub(crate) async fn of_user(
    tx: &mut GlobalTx,
    user: UserId,
) -> Result<Vec<CredentialRow>, DbError> {
    tx.fetch_all(
        &format!("{COLUMNS} WHERE user_id = $1 ORDER BY created_at, id"),
        vec![user.into()],
    )
    .await
}

/// The credential whose WebAuthn credential id is `credential_id`.
pub(crate) async fn by_credential_id(
    tx: &mut GlobalTx,
    credential_id: &[u8],
) -> Result<Option<CredentialRow>, DbError> {
    tx.fetch_optional(
        &format!("{COLUMNS} WHERE credential_id = $1"),
        vec![credential_id.into()],
    )
    .await
}

/// A new credential.
pub(crate) struct NewCredential<'a> {
    pub id: Uuid,
    pub user: UserId,
    pub credential_id: &'a [u8],
    pub name: &'a str,
    pub passkey: &'a str,
    pub kind: &'a str,
    pub discoverable: bool,
    pub now: DateTime<Utc>,
}

/// Stores `c`; `false` (nothing written) when its credential id is
/// registered already (to anyone).
pub(crate) async fn insert(tx: &mut GlobalTx, c: NewCredential<'_>) -> Result<bool, DbError> {
    let n = tx
        .execute(
            "INSERT INTO webauthn_credentials (id, user_id, credential_id, name, passkey, kind, \
             discoverable, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (credential_id) DO NOTHING",
            vec![
                c.id.into(),
                c.user.into(),
                c.credential_id.into(),
                c.name.into(),
                c.passkey.into(),
                c.kind.into(),
                c.discoverable.into(),
                c.now.into(),
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Records a use: the updated credential (counter, backup flags) and when,
/// only if the row still holds `before` — of two assertions racing on one
/// credential, one is recorded and the other is refused.
pub(crate) async fn record_use(
    tx: &mut GlobalTx,
    id: Uuid,
    before: &str,
    after: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let n = tx
        .execute(
            "UPDATE webauthn_credentials SET passkey = $3, last_used_at = $4 \
             WHERE id = $1 AND passkey = $2",
            vec![id.into(), before.into(), after.into(), now.into()],
        )
        .await?;
    Ok(n == 1)
}

/// Removes `user`'s credential `id`; `false` when there is none (or it is
/// another user's).
pub(crate) async fn delete(tx: &mut GlobalTx, user: UserId, id: Uuid) -> Result<bool, DbError> {
    let n = tx
        .execute(
            "DELETE FROM webauthn_credentials WHERE id = $1 AND user_id = $2",
            vec![id.into(), user.into()],
        )
        .await?;
    Ok(n == 1)
}
