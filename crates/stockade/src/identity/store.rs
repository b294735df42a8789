//! User queries (global table).

use super::model::{Email, IdentityError, User, validate_name};
use crate::clock::Clock;
use crate::db::{Db, DbError, GlobalTx};
use crate::ids::UserId;

pub async fn create_user(
    tx: &mut GlobalTx,
    clock: &dyn Clock,
    email: &Email,
    name: &str,
) -> Result<User, IdentityError> {
    let name = validate_name(name)?;
    let now = clock.now();
    tx.fetch_optional(
        "INSERT INTO users (id, email, email_key, name, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'active', $5, $5) RETURNING *",
        vec![
            UserId::new().into(),
            email.as_str().into(),
            email.key().into(),
            name.into(),
            now.into(),
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
            "SELECT * FROM users WHERE email_key = $1",
            vec![email.key().into()],
        )
        .await
}
