//! Bringing stored email keys to the canonical form (issue #17 item 9),
//! run by `stockade migrate` and at `serve` start after the SQL migrations.
//!
//! Keys written before canonical keys were only trimmed and lower-cased,
//! so look-alike spellings of one address may be two accounts. This step
//! recomputes every user's key from their stored address
//! ([`Email::parse`]) once per key version (`email_key_version`):
//!
//! - if two accounts would get the same key, it changes nothing and fails,
//!   naming both accounts — one of them is a look-alike of the other, and
//!   which one to keep is the operator's decision (`stockade users delete
//!   --email`, which does not need this step, removes one; re-run after);
//! - an address the new rules refuse (mixed scripts, invisible characters)
//!   keeps its old key: its owner still signs in with it (sign-in falls back
//!   to the old key for refused spellings), and no new account can take it;
//! - otherwise every key is rewritten in one transaction (through a
//!   temporary key, so no intermediate state collides) and the version is
//!   recorded, so the next start does nothing.

use std::collections::HashMap;

use super::email::Email;
use crate::db::{Db, DbError};
use crate::ids::UserId;

/// The version of the canonical key this binary writes.
pub const EMAIL_KEY_VERSION: i64 = 2;

/// Users read per query.
const PAGE: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum RekeyError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(
        "accounts {first} and {second} have look-alike email addresses (both are `{key}` in \
         canonical form): delete one (`stockade users delete --email ADDRESS`), then run \
         `stockade migrate` again"
    )]
    Collision {
        first: UserId,
        second: UserId,
        key: String,
    },
}

/// What a re-keying did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RekeyReport {
    /// Keys rewritten.
    pub rekeyed: usize,
    /// Accounts whose address the rules now refuse (old key kept).
    pub kept: Vec<UserId>,
}

/// Re-keys every user if the stored keys are older than
/// [`EMAIL_KEY_VERSION`]; fails, changing nothing, on the first collision.
pub async fn rekey_emails(db: &Db) -> Result<RekeyReport, RekeyError> {
    let version: Option<(i64,)> = db
        .global_read()
        .await?
        .fetch_optional(
            "SELECT CAST(version AS BIGINT) FROM email_key_version WHERE id = 1",
            vec![],
        )
        .await?;
    if version.is_some_and(|(v,)| v >= EMAIL_KEY_VERSION) {
        return Ok(RekeyReport::default());
    }
    let mut tx = db.global_tx().await?;
    let mut owner_of: HashMap<String, UserId> = HashMap::new();
    let mut changes: Vec<(UserId, String)> = Vec::new();
    let mut report = RekeyReport::default();
    let mut after: Option<UserId> = None;
    loop {
        let page: Vec<(UserId, String, String)> = match after {
            None => {
                tx.fetch_all(
                    "SELECT id, email, email_key FROM users ORDER BY id LIMIT $1",
                    vec![PAGE.into()],
                )
                .await?
            }
            Some(last) => {
                tx.fetch_all(
                    "SELECT id, email, email_key FROM users WHERE id > $1 ORDER BY id LIMIT $2",
                    vec![last.into(), PAGE.into()],
                )
                .await?
            }
        };
        let Some((last, _, _)) = page.last() else {
            break;
        };
        after = Some(*last);
        for (id, email, stored) in page {
            let key = match Email::parse(&email) {
                Ok(e) => e.key().to_owned(),
                Err(_) => {
                    report.kept.push(id);
                    stored.clone()
                }
            };
            if let Some(first) = owner_of.get(&key) {
                return Err(RekeyError::Collision {
                    first: *first,
                    second: id,
                    key,
                });
            }
            owner_of.insert(key.clone(), id);
            if key != stored {
                changes.push((id, key));
            }
        }
    }
    for (id, _) in &changes {
        tx.execute(
            "UPDATE users SET email_key = $2 WHERE id = $1",
            vec![(*id).into(), format!("rekey:{id}").into()],
        )
        .await?;
    }
    for (id, key) in &changes {
        tx.execute(
            "UPDATE users SET email_key = $2 WHERE id = $1",
            vec![(*id).into(), key.as_str().into()],
        )
        .await?;
    }
    tx.execute(
        "UPDATE email_key_version SET version = $1 WHERE id = 1",
        vec![EMAIL_KEY_VERSION.into()],
    )
    .await?;
    tx.commit().await?;
    report.rekeyed = changes.len();
    for id in &report.kept {
        tracing::warn!(user_id = %id, "this account's email address is refused by the canonical rules (mixed scripts or invisible characters): it keeps its old key");
    }
    Ok(report)
}
