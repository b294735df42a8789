//! Transactions: one query definition runs on either backend. SQL is written
//! once in the portable subset both understand (`$n` placeholders,
//! `RETURNING`, `ON CONFLICT`), arguments are [`Value`]s, rows decode into any
//! type that implements `FromRow` for both backends.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Postgres, Sqlite, Transaction};
use uuid::Uuid;

use super::{DbError, TENANT_TABLES};
use crate::ids::{EventId, SessionId, TenantId, UserId};

/// The transaction-local settings that scope a transaction on PostgreSQL
/// (row-level security reads them).
pub(crate) const TENANT_SETTING: &str = "stockade.tenant_id";
pub(crate) const USER_SETTING: &str = "stockade.user_id";

pub(crate) enum RawConn {
    Sqlite(Transaction<'static, Sqlite>),
    Pg(Transaction<'static, Postgres>),
}

/// A transaction plus the bookkeeping that keeps caches honest: a commit
/// that changed a session, API key, user, membership, tenant, role or
/// tenant-settings row bumps the database's liveness generation, which
/// invalidates every cached session and API-key check (see `crate::cache`).
pub(crate) struct Conn {
    raw: RawConn,
    liveness: Arc<super::Liveness>,
    touched_liveness: bool,
    audit_head_key: super::AuditHeadKey,
}

/// Tables whose UPDATE or DELETE can end a session's or an API key's right
/// to act.
/// (`roles`: editing a custom role changes what its holders may do.)
/// (`api_keys`: a revoked or rotated key ends on the next request.)
const LIVENESS_TABLES: &[&str] = &[
    "sessions",
    "users",
    "tenants",
    "memberships",
    "roles",
    "api_keys",
];

/// Tables where any write, inserts included, changes what a session may do
/// (an upserted IP allowlist, say).
/// (`roles`: creating a role a member already names gives them its rights.)
const LIVENESS_UPSERT_TABLES: &[&str] = &["tenant_settings", "roles"];

fn affects_liveness(sql: &str) -> bool {
    let head = sql.trim_start();
    let is_insert = head
        .get(.."INSERT".len())
        .is_some_and(|h| h.eq_ignore_ascii_case("INSERT"));
    if is_insert {
        return sql
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|w| {
                LIVENESS_UPSERT_TABLES
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(w))
            });
    }
    let is_write = ["UPDATE", "DELETE"].iter().any(|verb| {
        head.get(..verb.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(verb))
    });
    is_write
        && sql
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|w| LIVENESS_TABLES.iter().any(|t| t.eq_ignore_ascii_case(w)))
}

/// A bound argument. Typed nulls, because PostgreSQL wants to know the type
/// of a NULL. Deliberately not `Debug`: arguments may be secret hashes.
#[derive(Clone)]
pub enum Value {
    Uuid(Option<Uuid>),
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
    Time(Option<DateTime<Utc>>),
}

macro_rules! value_from {
    ($variant:ident, $t:ty, $conv:expr) => {
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::$variant(Some($conv(v)))
            }
        }
        impl From<Option<$t>> for Value {
            fn from(v: Option<$t>) -> Self {
                Value::$variant(v.map($conv))
            }
        }
    };
}

value_from!(Uuid, Uuid, |v| v);
value_from!(Uuid, TenantId, |v: TenantId| v.0);
value_from!(Uuid, UserId, |v: UserId| v.0);
value_from!(Uuid, EventId, |v: EventId| v.0);
value_from!(Uuid, SessionId, |v: SessionId| v.0);
value_from!(Text, String, |v| v);
value_from!(Text, &str, |v: &str| v.to_owned());
value_from!(Text, &String, |v: &String| v.clone());
value_from!(Int, i64, |v| v);
value_from!(Int, i32, i64::from);
value_from!(Bool, bool, |v| v);
value_from!(Bytes, Vec<u8>, |v| v);
value_from!(Bytes, &[u8], |v: &[u8]| v.to_vec());
value_from!(Bytes, [u8; 32], |v: [u8; 32]| v.to_vec());
value_from!(Time, DateTime<Utc>, |v| v);

/// Rows that decode on both backends (derive `sqlx::FromRow`, or tuples).
pub trait FromAnyRow:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}
impl<T> FromAnyRow for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for v in $args {
            q = match v {
                Value::Uuid(x) => q.bind(x),
                Value::Text(x) => q.bind(x),
                Value::Int(x) => q.bind(x),
                Value::Bool(x) => q.bind(x),
                Value::Bytes(x) => q.bind(x),
                Value::Time(x) => q.bind(x),
            };
        }
        q
    }};
}

impl Conn {
    pub(crate) fn new(
        raw: RawConn,
        liveness: Arc<super::Liveness>,
        audit_head_key: super::AuditHeadKey,
    ) -> Self {
        Self {
            raw,
            liveness,
            touched_liveness: false,
            audit_head_key,
        }
    }

    /// Remembers whether `sql` can change what a session may do.
    fn note(&mut self, sql: &str) {
        if affects_liveness(sql) {
            self.touched_liveness = true;
        }
    }

    async fn execute(&mut self, sql: &str, args: Vec<Value>) -> Result<u64, DbError> {
        self.note(sql);
        self.execute_untracked(sql, args).await
    }

    /// `execute` without the liveness bookkeeping (see
    /// [`TenantTx::execute_bookkeeping`]).
    async fn execute_untracked(&mut self, sql: &str, args: Vec<Value>) -> Result<u64, DbError> {
        Ok(match &mut self.raw {
            RawConn::Sqlite(tx) => bind_all!(sqlx::query(sql), args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            RawConn::Pg(tx) => bind_all!(sqlx::query(sql), args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    async fn fetch_all<T: FromAnyRow>(
        &mut self,
        sql: &str,
        args: Vec<Value>,
    ) -> Result<Vec<T>, DbError> {
        self.note(sql);
        Ok(match &mut self.raw {
            RawConn::Sqlite(tx) => {
                bind_all!(sqlx::query_as::<Sqlite, T>(sql), args)
                    .fetch_all(&mut **tx)
                    .await?
            }
            RawConn::Pg(tx) => {
                bind_all!(sqlx::query_as::<Postgres, T>(sql), args)
                    .fetch_all(&mut **tx)
                    .await?
            }
        })
    }

    async fn fetch_optional<T: FromAnyRow>(
        &mut self,
        sql: &str,
        args: Vec<Value>,
    ) -> Result<Option<T>, DbError> {
        self.note(sql);
        Ok(match &mut self.raw {
            RawConn::Sqlite(tx) => {
                bind_all!(sqlx::query_as::<Sqlite, T>(sql), args)
                    .fetch_optional(&mut **tx)
                    .await?
            }
            RawConn::Pg(tx) => {
                bind_all!(sqlx::query_as::<Postgres, T>(sql), args)
                    .fetch_optional(&mut **tx)
                    .await?
            }
        })
    }

    async fn commit(self) -> Result<(), DbError> {
        match self.raw {
            RawConn::Sqlite(tx) => tx.commit().await?,
            RawConn::Pg(tx) => tx.commit().await?,
        }
        // After the commit. A cache entry is tagged with the generation read
        // *before* its database read, so an entry filled from the old state
        // carries an old generation and is never used after this bump.
        // The hook (if any) publishes the bump to other processes the same
        // way, after the commit.
        if self.touched_liveness {
            self.liveness.bump().await;
        }
        Ok(())
    }

    /// Sets a transaction-local setting (PostgreSQL; SQLite has no RLS).
    async fn set_local(&mut self, name: &str, value: String) -> Result<(), DbError> {
        if let RawConn::Pg(tx) = &mut self.raw {
            sqlx::query("SELECT set_config($1, $2, true)")
                .bind(name)
                .bind(value)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

/// A transaction on global tables (tenants, users). It has no tenant: on
/// PostgreSQL row-level security shows it no tenant-owned row, and here it
/// refuses SQL that names a tenant-owned table at all.
pub struct GlobalTx {
    conn: Conn,
}

impl GlobalTx {
    pub(crate) fn new(conn: Conn) -> Self {
        Self { conn }
    }

    /// Turns this transaction into one scoped to `tenant`, keeping what it
    /// has done so far (e.g. create a tenant row, then its first audit event,
    /// atomically).
    pub async fn scoped(mut self, tenant: TenantId) -> Result<TenantTx, DbError> {
        self.conn
            .set_local(TENANT_SETTING, tenant.0.to_string())
            .await?;
        Ok(TenantTx {
            conn: self.conn,
            tenant,
        })
    }

    /// Turns this transaction into one scoped to `user`'s own rows.
    pub async fn for_user(mut self, user: UserId) -> Result<UserTx, DbError> {
        self.conn
            .set_local(USER_SETTING, user.0.to_string())
            .await?;
        Ok(UserTx {
            conn: self.conn,
            user,
        })
    }

    pub async fn execute(&mut self, sql: &str, args: Vec<Value>) -> Result<u64, DbError> {
        guard_global(sql)?;
        self.conn.execute(sql, args).await
    }

    pub async fn fetch_all<T: FromAnyRow>(
        &mut self,
        sql: &str,
        args: Vec<Value>,
    ) -> Result<Vec<T>, DbError> {
        guard_global(sql)?;
        self.conn.fetch_all(sql, args).await
    }

    pub async fn fetch_optional<T: FromAnyRow>(
        &mut self,
        sql: &str,
        args: Vec<Value>,
    ) -> Result<Option<T>, DbError> {
        guard_global(sql)?;
        self.conn.fetch_optional(sql, args).await
    }

    pub async fn commit(self) -> Result<(), DbError> {
        self.conn.commit().await
    }
}

/// A transaction scoped to one tenant. Every query gets the tenant id bound
/// as `$1` and must use it; callers' arguments follow as `$2`, `$3`, …
pub struct TenantTx {
    conn: Conn,
    tenant: TenantId,
}

impl TenantTx {
    /// A transaction already scoped to `tenant` (see `Db::begin`).
    pub(crate) fn begun(conn: Conn, tenant: TenantId) -> Self {
        Self { conn, tenant }
    }

    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The audit head key of the database this transaction came from.
    pub(crate) fn audit_head_key(&self) -> Option<zeroize::Zeroizing<[u8; 32]>> {
        self.conn.audit_head_key.get().cloned()
    }

    /// Opens the savepoint that brackets one unit of a group commit.
    pub(crate) async fn savepoint(&mut self) -> Result<(), DbError> {
        self.conn
            .execute_untracked("SAVEPOINT stockade_unit", Vec::new())
            .await
            .map(|_| ())
    }

    /// Ends the unit: keeps its writes (`keep`) or undoes them.
    pub(crate) async fn end_savepoint(&mut self, keep: bool) -> Result<(), DbError> {
        if !keep {
            self.conn
                .execute_untracked("ROLLBACK TO SAVEPOINT stockade_unit", Vec::new())
                .await?;
        }
        self.conn
            .execute_untracked("RELEASE SAVEPOINT stockade_unit", Vec::new())
            .await
            .map(|_| ())
    }

    pub async fn execute(&mut self, sql: &str, args: Vec<Value>) -> Result<u64, DbError> {
        let args = self.with_tenant(sql, args)?;
        self.conn.execute(sql, args).await
    }

    /// A write of usage stamps only (a key's last use, a session's last
    /// sight) that never bumps the liveness generation, so it does not empty
    /// every cache of session and API-key checks. Only for columns whose
    /// cached copies may safely be stale: nothing a cached check reads may be
    /// written this way, except a stamp whose old value can only make a
    /// cached entry expire *sooner* (a session's idle deadline).
    pub async fn execute_bookkeeping(
        &mut self,
        sql: &str,
        args: Vec<Value>,
    ) -> Result<u64, DbError> {
        let args = self.with_tenant(sql, args)?;
        self.conn.execute_untracked(sql, args).await
    }

    pub async fn fetch_all<T: FromAnyRow>(
        &mut self,
        sql: &str,
        args: Vec<Value>,
    ) -> Result<Vec<T>, DbError> {
        let args = self.with_tenant(sql, args)?;
        self.conn.fetch_all(sql, args).await
    }

    pub async fn fetch_optional<T: FromAnyRow>(
        &mut self,
        sql: &str,
        args: Vec<Value>,
    ) -> Result<Option<T>, DbError> {
        let args = self.with_tenant(sql, args)?;
        self.conn.fetch_optional(sql, args).await
    }

    pub async fn fetch_one<T: FromAnyRow>(
        &mut self,
        sql: &str,
        args: Vec<Value>,
    ) -> Result<T, DbError> {
        self.fetch_optional(sql, args)
            .await?
            .ok_or(DbError::Sqlx(sqlx::Error::RowNotFound))
    }

    pub async fn commit(self) -> Result<(), DbError> {
        self.conn.commit().await
    }

    /// Deletes this tenant's audit events up to `upto` (the audit retention
    /// purge; `audit::purge_tenant` writes the checkpoint first). SQLite:
    /// opens the append-only triggers' purge gate for this statement only
    /// and closes it before the transaction can commit. PostgreSQL: the
    /// server role cannot DELETE audit events, so this calls the SECURITY
    /// DEFINER function `audit_purge`, which deletes only behind the
    /// checkpoint recorded in the head row, for the current tenant only.
    pub(crate) async fn purge_audit_events(&mut self, upto: i64) -> Result<u64, DbError> {
        let tenant = self.tenant.0;
        match &mut self.conn.raw {
            RawConn::Sqlite(tx) => {
                sqlx::query("UPDATE audit_purge_gate SET open = 1 WHERE id = 1")
                    .execute(&mut **tx)
                    .await?;
                let n = sqlx::query("DELETE FROM audit_events WHERE tenant_id = $1 AND seq <= $2")
                    .bind(tenant)
                    .bind(upto)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                sqlx::query("UPDATE audit_purge_gate SET open = 0 WHERE id = 1")
                    .execute(&mut **tx)
                    .await?;
                Ok(n)
            }
            RawConn::Pg(tx) => {
                let (n,): (i64,) = sqlx::query_as("SELECT audit_purge($1, $2)")
                    .bind(tenant)
                    .bind(upto)
                    .fetch_one(&mut **tx)
                    .await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }
        }
    }

    /// Continues this transaction in another tenant (e.g. one audit event in
    /// each tenant of a user, atomically with the change they describe).
    pub async fn rescope(mut self, tenant: TenantId) -> Result<TenantTx, DbError> {
        self.conn
            .set_local(TENANT_SETTING, tenant.0.to_string())
            .await?;
        self.tenant = tenant;
        Ok(self)
    }

    /// Continues this transaction without a tenant, on global tables again
    /// (e.g. the email that reports what was done in each tenant, queued
    /// atomically with it). PostgreSQL: the tenant setting is cleared, so
    /// row-level security shows it no tenant row.
    pub async fn into_global(mut self) -> Result<GlobalTx, DbError> {
        self.conn.set_local(TENANT_SETTING, String::new()).await?;
        Ok(GlobalTx { conn: self.conn })
    }

    fn with_tenant(&self, sql: &str, args: Vec<Value>) -> Result<Vec<Value>, DbError> {
        with_first(sql, self.tenant.into(), args)
    }
}

/// A transaction scoped to one user's own rows in every tenant. Every
/// statement gets the user id bound as `$1` and must use it.
pub struct UserTx {
    conn: Conn,
    user: UserId,
}

impl UserTx {
    /// A transaction already scoped to `user` (see `Db::begin`).
    pub(crate) fn begun(conn: Conn, user: UserId) -> Self {
        Self { conn, user }
    }

    pub fn user(&self) -> UserId {
        self.user
    }

    /// Continues this transaction scoped to `tenant` as well.
    pub async fn scoped(mut self, tenant: TenantId) -> Result<TenantTx, DbError> {
        self.conn
            .set_local(TENANT_SETTING, tenant.0.to_string())
            .await?;
        Ok(TenantTx {
            conn: self.conn,
            tenant,
        })
    }

    pub async fn execute(&mut self, sql: &str, args: Vec<Value>) -> Result<u64, DbError> {
        let args = with_first(sql, self.user.into(), args)?;
        self.conn.execute(sql, args).await
    }

    pub async fn fetch_all<T: FromAnyRow>(
        &mut self,
        sql: &str,
        args: Vec<Value>,
    ) -> Result<Vec<T>, DbError> {
        let args = with_first(sql, self.user.into(), args)?;
        self.conn.fetch_all(sql, args).await
    }

    pub async fn commit(self) -> Result<(), DbError> {
        self.conn.commit().await
    }
}

/// Prepends the scope's id as `$1`, refusing SQL that does not use it.
fn with_first(sql: &str, first: Value, args: Vec<Value>) -> Result<Vec<Value>, DbError> {
    if !uses_param_one(sql) {
        return Err(DbError::Guard(format!(
            "a scoped query must filter by its scope ($1): {sql}"
        )));
    }
    let mut all = Vec::with_capacity(args.len() + 1);
    all.push(first);
    all.extend(args);
    Ok(all)
}

/// Whether `$1` (and not just `$10`…) appears in the SQL.
fn uses_param_one(sql: &str) -> bool {
    sql.match_indices("$1").any(|(i, m)| {
        !sql.get(i + m.len()..)
            .and_then(|rest| rest.chars().next())
            .is_some_and(|c| c.is_ascii_digit())
    })
}

fn guard_global(sql: &str) -> Result<(), DbError> {
    let named = sql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find(|word| TENANT_TABLES.iter().any(|t| t.eq_ignore_ascii_case(word)));
    match named {
        Some(table) => Err(DbError::Guard(format!(
            "`{table}` is tenant-owned: use a tenant-scoped transaction"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_one_detection_ignores_higher_numbers() {
        assert!(uses_param_one("SELECT 1 FROM t WHERE tenant_id = $1"));
        assert!(uses_param_one("INSERT INTO t VALUES ($1, $2)"));
        assert!(!uses_param_one("SELECT * FROM t WHERE id = $10"));
        assert!(!uses_param_one("SELECT * FROM memberships"));
    }

    #[test]
    fn liveness_writes_are_recognised() {
        assert!(affects_liveness("UPDATE sessions SET revoked_at = $2"));
        assert!(affects_liveness("  delete FROM memberships WHERE x"));
        assert!(affects_liveness("UPDATE users SET status = 'deactivated'"));
        assert!(affects_liveness(
            "UPDATE tenants SET status = $2 WHERE id = $1"
        ));
        assert!(!affects_liveness("INSERT INTO sessions VALUES ($1)"));
        assert!(affects_liveness(
            "INSERT INTO tenant_settings (tenant_id) VALUES ($1)"
        ));
        assert!(!affects_liveness("SELECT * FROM sessions"));
        assert!(!affects_liveness("UPDATE refresh_tokens SET used_at = $3"));
        assert!(affects_liveness(
            "UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1"
        ));
        assert!(!affects_liveness("UPDATE login_throttle SET failures = 0"));
    }

    #[test]
    fn global_guard_refuses_tenant_tables() {
        assert!(guard_global("SELECT * FROM tenants WHERE id = $1").is_ok());
        assert!(guard_global("SELECT * FROM users").is_ok());
        assert!(guard_global("SELECT * FROM memberships").is_err());
        assert!(guard_global("select * from AUDIT_EVENTS").is_err());
        assert!(guard_global("DELETE FROM audit_heads").is_err());
    }
}
