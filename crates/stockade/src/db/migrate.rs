//! Migrations for both backends, embedded in the binary. They run by
//! `stockade migrate`, and on start when `serve` may (SQLite; PostgreSQL only
//! with the owner's URL). A destructive one (see [`super::destructive`]) is
//! refused, with nothing applied, unless the operator passes
//! `--allow-destructive`.

use std::collections::HashSet;

use sqlx::migrate::{Migrate, Migration, Migrator};

use super::{BackendKind, destructive, pg_roles};

static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// The migrations this binary carries for `kind`.
pub(crate) fn embedded(kind: BackendKind) -> &'static Migrator {
    match kind {
        BackendKind::Sqlite => &SQLITE,
        BackendKind::Postgres => &POSTGRES,
    }
}

/// How a run may change the schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MigrateOptions {
    /// Apply migrations that drop or empty data (`--allow-destructive`).
    pub allow_destructive: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migrated {
    /// The migrations applied by this run, as `0023_name`.
    pub applied: Vec<String>,
    /// PostgreSQL: tables of schema `public` that `db::pg_roles` has no
    /// grants for (left as their migration set them).
    pub ungranted_tables: Vec<String>,
}

/// A migration's name as its file is named (`0001_core`).
fn name(m: &Migration) -> String {
    format!("{:04}_{}", m.version, m.description.replace(' ', "_"))
}

/// Runs `migrator` on `conn` under the migration lock (PostgreSQL: an
/// advisory lock, so instances starting together apply each migration once).
/// On a database that has migrations applied, every pending migration is
/// checked before the first is applied.
pub(crate) async fn run_on<C: Migrate>(
    conn: &mut C,
    migrator: &Migrator,
    options: MigrateOptions,
) -> anyhow::Result<Vec<String>> {
    conn.lock().await?;
    let result = run_locked(conn, migrator, options).await;
    // A failed unlock is harmless: the lock dies with the connection, which
    // the caller closes.
    let _ = conn.unlock().await;
    result
}

async fn run_locked<C: Migrate>(
    conn: &mut C,
    migrator: &Migrator,
    options: MigrateOptions,
) -> anyhow::Result<Vec<String>> {
    conn.ensure_migrations_table().await?;
    let applied: HashSet<i64> = conn
        .list_applied_migrations()
        .await?
        .into_iter()
        .map(|m| m.version)
        .collect();
    let pending: Vec<&Migration> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .collect();
    // A fresh database (nothing applied) holds nothing a migration could
    // destroy: every table it has, the pending migrations create.
    if !options.allow_destructive && !applied.is_empty() {
        let refused: Vec<String> = pending
            .iter()
            .filter_map(|m| destructive::reason(&m.sql).map(|why| format!("{} ({why})", name(m))))
            .collect();
        if !refused.is_empty() {
            anyhow::bail!(
                "migration {} is destructive: nothing was applied; back up the database, then run \
                 `stockade migrate --allow-destructive`",
                refused.join(", ")
            );
        }
    }
    migrator.run_direct(conn).await?;
    Ok(pending.into_iter().map(name).collect())
}

/// Migrates the SQLite database behind `pool` (its one writer).
pub(crate) async fn run_sqlite(
    pool: &sqlx::SqlitePool,
    migrator: &Migrator,
    options: MigrateOptions,
) -> anyhow::Result<Migrated> {
    let mut conn = pool.acquire().await?;
    let applied = run_on(&mut *conn, migrator, options)
        .await
        .map_err(|e| anyhow::anyhow!("SQLite migration failed: {e}"))?;
    Ok(Migrated {
        applied,
        ungranted_tables: Vec::new(),
    })
}

/// Migrates PostgreSQL as the owner: one connection to `owner_url`, opened
/// for this run and closed after it (the serving process keeps none), then
/// `stockade_app`'s grants are put back to what `pg_roles` lists.
pub async fn migrate_postgres(
    owner_url: &str,
    options: MigrateOptions,
) -> anyhow::Result<Migrated> {
    migrate_postgres_from(owner_url, &POSTGRES, options).await
}

/// [`migrate_postgres`] with another migration source (tests).
#[doc(hidden)]
pub async fn migrate_postgres_from(
    owner_url: &str,
    migrator: &Migrator,
    options: MigrateOptions,
) -> anyhow::Result<Migrated> {
    use sqlx::Connection;
    let mut conn = super::connect_postgres(owner_url, "STOCKADE_MIGRATE_DATABASE_URL").await?;
    let result = async {
        conn.lock().await?;
        let done = async {
            let applied = run_locked(&mut conn, migrator, options).await?;
            // Under the same advisory lock as the migrations.
            let ungranted_tables = pg_roles::maintain_grants(&mut conn).await?;
            Ok::<_, anyhow::Error>(Migrated {
                applied,
                ungranted_tables,
            })
        }
        .await;
        let _ = conn.unlock().await;
        done
    }
    .await
    .map_err(|e| anyhow::anyhow!("PostgreSQL migration failed: {e}"));
    let _ = conn.close().await;
    result
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationStatus {
    Current { version: i64 },
    Behind { applied: Option<i64>, expected: i64 },
    Unreachable(String),
}

impl MigrationStatus {
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Current { .. })
    }
}

const APPLIED_SQL: &str =
    "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version DESC LIMIT 1";

pub(crate) async fn sqlite_status(pool: &sqlx::SqlitePool) -> MigrationStatus {
    let applied = sqlx::query_scalar::<_, i64>(APPLIED_SQL)
        .fetch_optional(pool)
        .await;
    status(&SQLITE, applied)
}

pub(crate) async fn postgres_status(pool: &sqlx::PgPool) -> MigrationStatus {
    let applied = sqlx::query_scalar::<_, i64>(APPLIED_SQL)
        .fetch_optional(pool)
        .await;
    status(&POSTGRES, applied)
}

/// Compares the applied migrations with the ones this binary carries.
fn status(migrator: &Migrator, applied: Result<Option<i64>, sqlx::Error>) -> MigrationStatus {
    let expected = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    match applied {
        Ok(Some(v)) if v == expected => MigrationStatus::Current { version: v },
        Ok(applied) => MigrationStatus::Behind { applied, expected },
        // The bookkeeping table itself is missing: nothing applied yet.
        Err(e) if e.as_database_error().is_some() => MigrationStatus::Behind {
            applied: None,
            expected,
        },
        Err(e) => MigrationStatus::Unreachable(e.to_string()),
    }
}

impl std::fmt::Display for MigrationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Current { version } => write!(f, "migrations are current (version {version})"),
            Self::Behind {
                applied: Some(v),
                expected,
            } if v > expected => write!(
                f,
                "the database schema is at migration {v}, newer than this binary ({expected})"
            ),
            Self::Behind { applied, expected } => write!(
                f,
                "the database schema is at migration {}, this binary needs {expected}",
                applied.map_or_else(|| "none".to_owned(), |v| v.to_string())
            ),
            Self::Unreachable(cause) => write!(f, "the database is not reachable: {cause}"),
        }
    }
}
