//! Writing the users of an import file (`stockade users import`): every row
//! or none, in one transaction.
//!
//! The rows come from [`super::import::parse_import`], already validated as
//! text. Here they are checked against the database and the role model: an
//! address that already has an account fails the whole import (an import
//! never links an existing account to a tenant behind its owner's back), and
//! only the built-in roles are accepted. Problems name the row by its index in
//! the input, so the caller can point at the file's line; like the parser,
//! they never repeat a cell's content.

use std::collections::HashMap;

use secrecy::ExposeSecret;
use serde::Serialize;

use super::import::ImportRow;
use super::{IdentityError, create_user_with_password};
use crate::audit::{self, Actor, AuditError, NewEvent, Target};
use crate::clock::Clock;
use crate::db::{Db, DbError, GlobalTx};
use crate::ids::UserId;
use crate::rbac::builtin_role;
use crate::tenancy::{self, TenancyError, Tenant, TenantStatus};

/// The audit action written once per import, into the tenant's chain.
pub const IMPORTED_ACTION: &str = "identity.users.imported";

/// Existing addresses are looked up this many at a time (well under the
/// bound-parameter limits of SQLite and PostgreSQL).
const LOOKUP_CHUNK: usize = 500;

/// A row that cannot be imported. `index` is its 0-based position in the
/// rows given to [`import_users`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowProblem {
    pub index: usize,
    pub message: String,
}

/// Why nothing was imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportStoreError {
    /// Some rows cannot be imported; all of them are listed, in row order.
    #[error("{} row(s) cannot be imported, nothing imported", .0.len())]
    Rows(Vec<RowProblem>),
    /// The tenant is being deleted.
    #[error("tenant `{0}` is pending deletion: nothing imported")]
    TenantPendingDeletion(String),
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl ImportStoreError {
    /// The per-row problems (empty for any other error).
    pub fn row_problems(&self) -> &[RowProblem] {
        match self {
            Self::Rows(problems) => problems,
            _ => &[],
        }
    }
}

const EMAIL_TAKEN: &str =
    "email: an account with this address already exists (an import never links existing accounts)";
const NOT_BUILTIN_ROLE: &str =
    "role: must be one of the built-in roles owner, admin, editor, viewer";

/// Imports `rows` into `tenant` in one transaction: creates each user with
/// its imported bcrypt hash (upgraded to argon2id at the first sign-in), adds
/// its membership with the row's role, and appends one
/// [`IMPORTED_ACTION`] audit event (actor: system; details: the count and the
/// file name of `source`, never its directory). Any problem rolls everything
/// back. Returns the number of users imported; an empty `rows` writes nothing.
///
/// `progress` is told how many rows are done, from 0 to `rows.len()`, as the
/// work advances. Each row takes two writes (its user, then its membership in
/// a second pass), so a row counts as half done after the first.
pub async fn import_users(
    db: &Db,
    clock: &dyn Clock,
    tenant: &Tenant,
    rows: Vec<ImportRow>,
    source: &str,
    progress: impl Fn(u64),
) -> Result<u64, ImportStoreError> {
    if tenant.status() == Some(TenantStatus::PendingDeletion) {
        return Err(ImportStoreError::TenantPendingDeletion(tenant.slug.clone()));
    }
    let problems = role_problems(&rows);
    if !problems.is_empty() {
        return Err(ImportStoreError::Rows(problems));
    }
    if rows.is_empty() {
        return Ok(0);
    }
    let total = rows.len();
    let count = u64::try_from(total).unwrap_or(u64::MAX);
    // Writes done so far: two per row.
    let mut writes: u64 = 0;

    let mut tx = db.global_tx().await?;
    let problems = taken_emails(&mut tx, &rows).await?;
    if !problems.is_empty() {
        return Err(ImportStoreError::Rows(problems));
    }
    let mut users: Vec<UserId> = Vec::with_capacity(total);
    for (index, row) in rows.iter().enumerate() {
        let created = create_user_with_password(
            &mut tx,
            clock,
            &row.email,
            &row.name,
            Some(row.password_hash.expose_secret()),
        )
        .await;
        let user = match created {
            Ok(user) => user,
            // Created by someone else since the lookup above.
            Err(IdentityError::EmailTaken) => return Err(row_problem(index, EMAIL_TAKEN)),
            Err(IdentityError::InvalidName) => {
                return Err(row_problem(
                    index,
                    "name: must be 1 to 200 characters without control characters",
                ));
            }
            Err(IdentityError::InvalidEmail(_)) => {
                return Err(row_problem(index, "email: not a valid email address"));
            }
            Err(IdentityError::Db(e)) => return Err(e.into()),
        };
        users.push(user.id);
        step(&mut writes, &progress);
    }

    let mut tx = tx.scoped(tenant.id).await?;
    for (row, user) in rows.iter().zip(users) {
        tenancy::add_member(&mut tx, clock, user, &row.role).await?;
        step(&mut writes, &progress);
    }
    audit::append(
        &mut tx,
        clock,
        NewEvent::new(Actor::System, IMPORTED_ACTION)
            .target(Target::new("tenant", tenant.id))
            .details(serde_json::json!({ "count": count, "file": file_name(source) })),
    )
    .await?;
    tx.commit().await?;
    Ok(count)
}

/// Counts one more write and reports the whole rows done (two writes each).
fn step(writes: &mut u64, progress: &impl Fn(u64)) {
    *writes = writes.saturating_add(1);
    if writes.is_multiple_of(2) {
        progress(*writes / 2);
    }
}

fn row_problem(index: usize, message: &str) -> ImportStoreError {
    ImportStoreError::Rows(vec![RowProblem {
        index,
        message: message.to_owned(),
    }])
}

/// Rows whose role is not a built-in role.
fn role_problems(rows: &[ImportRow]) -> Vec<RowProblem> {
    rows.iter()
        .enumerate()
        .filter(|(_, row)| builtin_role(&row.role).is_none())
        .map(|(index, _)| RowProblem {
            index,
            message: NOT_BUILTIN_ROLE.to_owned(),
        })
        .collect()
}

/// Rows whose address already has an account, looked up in `tx` so the
/// answer holds for the inserts that follow (a concurrent insert still fails
/// them on the unique index).
async fn taken_emails(tx: &mut GlobalTx, rows: &[ImportRow]) -> Result<Vec<RowProblem>, DbError> {
    let index_of: HashMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(index, row)| (row.email.key(), index))
        .collect();
    let mut problems = Vec::new();
    for chunk in rows.chunks(LOOKUP_CHUNK) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT email_key FROM users WHERE email_key IN ({})",
            placeholders.join(", ")
        );
        let found: Vec<(String,)> = tx
            .fetch_all(&sql, chunk.iter().map(|r| r.email.key().into()).collect())
            .await?;
        problems.extend(found.iter().filter_map(|(key,)| {
            index_of.get(key.as_str()).map(|&index| RowProblem {
                index,
                message: EMAIL_TAKEN.to_owned(),
            })
        }));
    }
    problems.sort_by_key(|p| p.index);
    Ok(problems)
}

/// The last component of `source`: the audit log names the file, not where
/// it sat on the operator's machine.
fn file_name(source: &str) -> &str {
    source
        .rsplit(['/', '\\'])
        .next()
        .filter(|name| !name.is_empty())
        .unwrap_or(source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::identity::import::parse_import;
    use crate::identity::{Email, find_auth_user};
    use crate::tenancy::{NewTenant, Slug, TenantName};

    fn hash() -> String {
        bcrypt::hash("Imported-Pass-1", 4).unwrap()
    }

    async fn setup() -> (tempfile::TempDir, Db, Tenant) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite_file(&dir.path().join("t.db"))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        db.set_audit_head_key(zeroize::Zeroizing::new([7; 32]));
        let tenant = tenancy::create_tenant(
            &db,
            &crate::clock::SystemClock,
            &crate::crypto::keys::MasterKey::single(1, [7u8; 32]),
            NewTenant {
                slug: Slug::parse("acme").unwrap(),
                name: TenantName::parse("Acme").unwrap(),
            },
            Actor::System,
            crate::audit::RequestContext::default(),
        )
        .await
        .unwrap();
        (dir, db, tenant)
    }

    fn rows(body: &str) -> Vec<ImportRow> {
        parse_import(
            format!("email,name,password_hash,role\n{body}").as_bytes(),
            100,
        )
        .unwrap()
    }

    async fn audit_count(db: &Db, tenant: &Tenant) -> i64 {
        let mut tx = db.tenant_read(tenant.id).await.unwrap();
        let (n,): (i64,) = tx
            .fetch_one(
                "SELECT COUNT(*) FROM audit_events WHERE tenant_id = $1",
                vec![],
            )
            .await
            .unwrap();
        n
    }

    #[test]
    fn file_names_drop_the_directory() {
        assert_eq!(file_name("/home/op/users.csv"), "users.csv");
        assert_eq!(file_name("users.csv"), "users.csv");
        assert_eq!(file_name("C:\\x\\u.csv"), "u.csv");
        assert_eq!(file_name("dir/"), "dir/");
    }

    #[tokio::test]
    async fn imports_all_rows_with_progress_and_one_event() {
        let (_dir, db, tenant) = setup().await;
        let h = hash();
        let seen = std::cell::RefCell::new(Vec::new());
        let n = import_users(
            &db,
            &crate::clock::SystemClock,
            &tenant,
            rows(&format!(
                "a@x.test,A,{h},admin\nb@x.test,B,{h},\nc@x.test,C,{h},owner\n"
            )),
            "/tmp/secret-dir/users.csv",
            |done| seen.borrow_mut().push(done),
        )
        .await
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(*seen.borrow(), [1, 2, 3]);
        let user = find_auth_user(&db, "a@x.test").await.unwrap().unwrap();
        assert_eq!(user.password_hash.as_deref(), Some(h.as_str()));
        assert_eq!(audit_count(&db, &tenant).await, 2);
        let mut tx = db.tenant_read(tenant.id).await.unwrap();
        let (details,): (String,) = tx
            .fetch_one(
                "SELECT details FROM audit_events WHERE tenant_id = $1 AND action = $2",
                vec![IMPORTED_ACTION.into()],
            )
            .await
            .unwrap();
        let details: serde_json::Value = serde_json::from_str(&details).unwrap();
        assert_eq!(
            details,
            serde_json::json!({"count": 3, "file": "users.csv"})
        );
        let roles: Vec<(String,)> = tx
            .fetch_all(
                "SELECT role FROM memberships WHERE tenant_id = $1 ORDER BY role",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            roles.into_iter().map(|r| r.0).collect::<Vec<_>>(),
            ["admin", "owner", "viewer"]
        );
    }

    #[tokio::test]
    async fn unknown_roles_and_taken_emails_write_nothing() {
        let (_dir, db, tenant) = setup().await;
        let h = hash();
        let clock = crate::clock::SystemClock;
        let err = import_users(
            &db,
            &clock,
            &tenant,
            rows(&format!(
                "a@x.test,A,{h},admin\nb@x.test,B,{h},billing\nc@x.test,C,{h},root\n"
            )),
            "u.csv",
            |_| {},
        )
        .await
        .unwrap_err();
        let indexes: Vec<usize> = err.row_problems().iter().map(|p| p.index).collect();
        assert_eq!(indexes, [1, 2]);
        assert!(find_auth_user(&db, "a@x.test").await.unwrap().is_none());

        // An address that already has an account (in any letter case).
        let mut tx = db.global_tx().await.unwrap();
        create_user_with_password(
            &mut tx,
            &clock,
            &Email::parse("b@x.test").unwrap(),
            "B",
            None,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let err = import_users(
            &db,
            &clock,
            &tenant,
            rows(&format!("a@x.test,A,{h},\nB@X.TEST,B,{h},\n")),
            "u.csv",
            |_| {},
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.row_problems(),
            [RowProblem {
                index: 1,
                message: EMAIL_TAKEN.to_owned()
            }]
        );
        assert!(find_auth_user(&db, "a@x.test").await.unwrap().is_none());
        assert_eq!(audit_count(&db, &tenant).await, 1);

        // Nothing to import writes nothing.
        assert_eq!(
            import_users(&db, &clock, &tenant, Vec::new(), "u.csv", |_| {})
                .await
                .unwrap(),
            0
        );
        assert_eq!(audit_count(&db, &tenant).await, 1);
    }
}
