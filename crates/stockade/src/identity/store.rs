//! User queries (global table).

use super::email::Email;
use super::model::{IdentityError, User, validate_name};
use crate::clock::Clock;
use crate::db::{Db, DbError, GlobalTx, UserTx};
use crate::ids::UserId;

pub async fn create_user(
    tx: &mut GlobalTx,
    clock: &dyn Clock,
    email: &Email,
    name: &str,
) -> Result<User, IdentityError> {
    create_user_with_password(tx, clock, email, name, None).await
}

/// Creates a user with a password hash (argon2id PHC, or an imported bcrypt
/// hash that is upgraded at the first sign-in).
pub async fn create_user_with_password(
    tx: &mut GlobalTx,
    clock: &dyn Clock,
    email: &Email,
    name: &str,
    password_hash: Option<&str>,
) -> Result<User, IdentityError> {
    insert_user(tx, clock, UserId::new(), email, name, password_hash, false).await
}

/// Inserts a user with a chosen id; `verified`: the address was proven by
/// a verification link just now (`email_verified_at`).
pub(crate) async fn insert_user(
    tx: &mut GlobalTx,
    clock: &dyn Clock,
    id: UserId,
    email: &Email,
    name: &str,
    password_hash: Option<&str>,
    verified: bool,
) -> Result<User, IdentityError> {
    let name = validate_name(name)?;
    let now = clock.now();
    tx.fetch_optional(
        "INSERT INTO users (id, email, email_key, name, status, password_hash, \
         password_changed_at, email_verified_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $6, $6) \
         RETURNING id, email, email_key, name, status, email_verified_at, created_at, updated_at",
        vec![
            id.into(),
            email.as_str().into(),
            email.key().into(),
            name.into(),
            password_hash.into(),
            now.into(),
            verified.then_some(now).into(),
        ],
    )
    .await
    .map_err(|e| match e {
        DbError::Unique(_) => IdentityError::EmailTaken,
        other => other.into(),
    })?
    .ok_or(IdentityError::Db(DbError::Sqlx(sqlx::Error::RowNotFound)))
}

pub async fn find_user_by_email(db: &Db, email: &Email) -> Result<Option<User>, DbError> {
    db.global_read()
        .await?
        .fetch_optional(
            "SELECT id, email, email_key, name, status, email_verified_at, created_at, updated_at FROM users \
             WHERE email_key = $1",
            vec![email.key().into()],
        )
        .await
}

/// The user whose stored key is exactly `key` (no canonicalisation).
pub async fn find_user_by_key(db: &Db, key: &str) -> Result<Option<User>, DbError> {
    db.global_read()
        .await?
        .fetch_optional(
            "SELECT id, email, email_key, name, status, email_verified_at, created_at, updated_at \
             FROM users WHERE email_key = $1",
            vec![key.into()],
        )
        .await
}

/// What sign-in needs to know about a user. Not `Debug`: holds the hash.
#[derive(sqlx::FromRow)]
pub struct AuthUser {
    pub id: UserId,
    pub email: String,
    /// The canonical key of the address: the account's lockout is counted
    /// under it (`throttle`), whichever route proves the password.
    pub email_key: String,
    pub name: String,
    pub status: String,
    pub password_hash: Option<String>,
    /// The user has a confirmed second factor: sign-in asks for it.
    pub mfa_enabled: bool,
}

pub async fn find_auth_user(db: &Db, email_key: &str) -> Result<Option<AuthUser>, DbError> {
    find_auth_user_in(&mut db.global_read().await?, email_key).await
}

/// [`find_auth_user`] in the caller's transaction.
pub(super) async fn find_auth_user_in(
    tx: &mut GlobalTx,
    email_key: &str,
) -> Result<Option<AuthUser>, DbError> {
    tx.fetch_optional(
        "SELECT id, email, email_key, name, status, password_hash, mfa_enabled FROM users WHERE email_key = $1",
        vec![email_key.into()],
    )
    .await
}

pub async fn find_auth_user_by_id(db: &Db, id: UserId) -> Result<Option<AuthUser>, DbError> {
    db.global_read()
        .await?
        .fetch_optional(
            "SELECT id, email, email_key, name, status, password_hash, mfa_enabled FROM users WHERE id = $1",
            vec![id.into()],
        )
        .await
}

pub async fn find_user(db: &Db, id: UserId) -> Result<Option<User>, DbError> {
    db.global_read()
        .await?
        .fetch_optional(
            "SELECT id, email, email_key, name, status, email_verified_at, created_at, updated_at FROM users \
             WHERE id = $1",
            vec![id.into()],
        )
        .await
}

pub async fn set_password_hash(
    tx: &mut GlobalTx,
    user: UserId,
    hash: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE users SET password_hash = $2, password_changed_at = $3, updated_at = $3 \
         WHERE id = $1",
        vec![user.into(), hash.into(), now.into()],
    )
    .await?;
    Ok(())
}

/// Marks the user's address verified, if it was not: a completed password
/// reset proves the mailbox, since its link was only ever emailed there.
/// Returns whether this call verified it.
pub(crate) async fn mark_email_verified(
    tx: &mut GlobalTx,
    user: UserId,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, DbError> {
    let changed = tx
        .execute(
            "UPDATE users SET email_verified_at = $2 WHERE id = $1 AND email_verified_at IS NULL",
            vec![user.into(), now.into()],
        )
        .await?;
    Ok(changed > 0)
}

/// One of a user's memberships, with its tenant.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserMembership {
    pub tenant_id: crate::ids::TenantId,
    pub slug: String,
    pub tenant_name: String,
    pub tenant_status: String,
    pub role: String,
    pub status: String,
}

/// Every membership of `user`, in every tenant (a user-scoped read).
pub async fn memberships_of(db: &Db, user: UserId) -> Result<Vec<UserMembership>, DbError> {
    memberships_in(&mut db.user_read(user).await?).await
}

/// Every membership of the transaction's user.
pub async fn memberships_in(tx: &mut UserTx) -> Result<Vec<UserMembership>, DbError> {
    tx.fetch_all(
        "SELECT m.tenant_id, t.slug, t.name AS tenant_name, t.status AS tenant_status, m.role, \
         m.status FROM memberships m JOIN tenants t ON t.id = m.tenant_id \
         WHERE m.user_id = $1 ORDER BY t.slug",
        vec![],
    )
    .await
}
