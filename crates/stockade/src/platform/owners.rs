//! Who is a platform owner (SPEC §2.6; issue #17 item 2): a user id listed
//! in `STOCKADE_PLATFORM_OWNERS`, a grant made with
//! `stockade platform add-owner`, or an email listed in the configuration —
//! but only for the account whose address is *verified* (its owner used a
//! verification link), so nobody becomes an owner by signing up or
//! accepting an invitation with a listed address, in any spelling.

use crate::audit::{self, Actor, NewEvent, RequestContext, Target};
use crate::clock::Clock;
use crate::db::{Db, DbError};
use crate::identity::{Email, User};
use crate::ids::{TenantId, UserId};

/// Whether the configured list names `user`: by id (any UUID spelling), or
/// by an email whose canonical key is the user's, once verified.
pub fn listed(owners: &[String], user: &User) -> bool {
    owners
        .iter()
        .any(|o| match uuid::Uuid::parse_str(o.trim()) {
            Ok(uuid) => uuid == user.id.0,
            Err(_) => {
                user.email_verified_at.is_some()
                    && Email::parse(o).is_ok_and(|e| e.key() == user.email_key)
            }
        })
}

/// Whether `user` is a platform owner: listed, or granted.
pub async fn is_owner(db: &Db, owners: &[String], user: &User) -> Result<bool, DbError> {
    if listed(owners, user) {
        return Ok(true);
    }
    let granted: Option<(UserId,)> = db
        .global_read()
        .await?
        .fetch_optional(
            "SELECT user_id FROM platform_owner_grants WHERE user_id = $1",
            vec![user.id.into()],
        )
        .await?;
    Ok(granted.is_some())
}

/// A granted owner, for `platform list-owners`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Grant {
    pub user_id: UserId,
    pub email: String,
    pub granted_at: chrono::DateTime<chrono::Utc>,
}

/// Every grant, oldest first.
pub async fn grants(db: &Db) -> Result<Vec<Grant>, DbError> {
    db.global_read()
        .await?
        .fetch_all(
            "SELECT g.user_id, u.email, g.granted_at FROM platform_owner_grants g \
             JOIN users u ON u.id = g.user_id ORDER BY g.granted_at, g.user_id",
            vec![],
        )
        .await
}

/// Grants (`true`) or revokes (`false`) platform ownership to `user`, with
/// `platform.owner.granted` / `platform.owner.revoked` in the platform
/// chain, in one transaction. Returns whether anything changed (granting an
/// owner again, or revoking a non-owner, changes and audits nothing).
pub async fn set_grant(
    db: &Db,
    clock: &dyn Clock,
    user: &User,
    grant: bool,
    actor: Actor,
    context: RequestContext,
) -> Result<bool, audit::AuditError> {
    let now = clock.now();
    let mut tx = db.global_tx().await?;
    let changed = if grant {
        tx.execute(
            "INSERT INTO platform_owner_grants (user_id, granted_at) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO NOTHING",
            vec![user.id.into(), now.into()],
        )
        .await?
    } else {
        tx.execute(
            "DELETE FROM platform_owner_grants WHERE user_id = $1",
            vec![user.id.into()],
        )
        .await?
    };
    if changed == 0 {
        return Ok(false);
    }
    let action = if grant {
        "platform.owner.granted"
    } else {
        "platform.owner.revoked"
    };
    let mut tx = tx.scoped(TenantId::PLATFORM).await?;
    audit::append(
        &mut tx,
        clock,
        NewEvent::new(actor, action)
            .target(Target::new("user", user.id))
            .details(serde_json::json!({ "email": user.email }))
            .context(context),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(email: &str, verified: bool) -> User {
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let e = Email::parse(email).unwrap();
        User {
            id: UserId::new(),
            email: e.as_str().to_owned(),
            email_key: e.key().to_owned(),
            name: "N".to_owned(),
            status: "active".to_owned(),
            email_verified_at: verified.then_some(now),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn owners_match_by_id_or_verified_email() {
        let root = user("root@platform.test", true);
        let simple = root.id.0.simple().to_string().to_uppercase();
        assert!(listed(std::slice::from_ref(&simple), &root));
        let owners = vec!["Root@Platform.test".to_owned()];
        assert!(listed(&owners, &root));
        // Any spelling of the address, but only once verified.
        assert!(!listed(&owners, &user("root@platform.test", false)));
        assert!(!listed(&owners, &user("ｒｏｏｔ@platform.test", false)));
        assert!(listed(&owners, &user("ＲＯＯＴ@platform.test", true)));
        assert!(!listed(&owners, &user("root@platform.test.evil", true)));
        assert!(!listed(&[], &root));
        assert!(!listed(&[simple], &user("root@platform.test", true)));
    }
}
