//! Migrations for both backends, embedded in the binary. They run on start
//! and by `stockade migrate`; none is destructive.

use sqlx::migrate::Migrator;

static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

pub(crate) async fn run_sqlite(pool: &sqlx::SqlitePool) -> anyhow::Result<()> {
    SQLITE
        .run(pool)
        .await
        .map_err(|e| anyhow::anyhow!("SQLite migration failed: {e}"))
}

pub(crate) async fn run_postgres(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    POSTGRES
        .run(pool)
        .await
        .map_err(|e| anyhow::anyhow!("PostgreSQL migration failed: {e}"))
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
