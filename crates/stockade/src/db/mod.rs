//! Storage: one interface over embedded SQLite and PostgreSQL.
//!
//! Isolation by construction: code reaches tenant-owned tables only through a
//! [`TenantTx`], created from a [`TenantId`]; it binds the tenant as `$1` of every
//! query it runs. [`GlobalTx`] (for tenants and users) refuses SQL that names a
//! tenant-owned table. On PostgreSQL the database repeats the rule: the server
//! logs in as a role that inherits `stockade_app` and owns nothing (no owner
//! connection while serving: see [`pg_roles`]), every tenant table has
//! row-level security ENABLEd and FORCEd, and each tenant transaction sets
//! `stockade.tenant_id` for that transaction only (`set_config(…, true)`, the
//! function form of `SET LOCAL`), so even a query that forgets its filter sees
//! only the current tenant's rows, and a transaction without a tenant sees none.

pub mod destructive;
mod migrate;
pub mod pg_roles;
mod tx;

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgPool, SqlitePool};
use zeroize::Zeroizing;

#[doc(hidden)]
pub use migrate::migrate_postgres_from;
pub use migrate::{MigrateOptions, Migrated, MigrationStatus, migrate_postgres};
pub use tx::{FromAnyRow, GlobalTx, TenantTx, UserTx, Value};

use crate::config::Config;
use crate::ids::TenantId;

/// Tables whose rows belong to one tenant (`tenant_id` first in the primary
/// key, RLS on PostgreSQL). [`GlobalTx`] refuses SQL naming any of them.
pub const TENANT_TABLES: &[&str] = &[
    "memberships",
    "audit_events",
    "audit_heads",
    "sessions",
    "refresh_tokens",
    "tenant_settings",
    "roles",
    "invitations",
    "tenant_keys",
    "collections",
    "records",
    "record_index",
    "api_keys",
    "audit_webhooks",
    "audit_retention",
];

/// How long a PostgreSQL connection may sit idle in the pool before it is
/// pinged on its way out (see `Db::open_postgres`).
#[doc(hidden)]
pub const POOL_PING_AFTER_IDLE: Duration = Duration::from_millis(500);

/// The PostgreSQL role whose privileges the server's login role inherits:
/// owns no table, has no BYPASSRLS, cannot log in (see [`pg_roles`]).
pub const APP_ROLE: &str = "stockade_app";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unique constraint violated: {0}")]
    Unique(String),
    #[error("query refused by the tenancy guard: {0}")]
    Guard(String),
    #[error("database error: {0}")]
    Sqlx(sqlx::Error),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        if let Some(db) = e.as_database_error()
            && db.is_unique_violation()
        {
            // PostgreSQL names the constraint; SQLite names the columns or index.
            let name = db.constraint().map(str::to_owned).unwrap_or_else(|| {
                db.message()
                    .trim_start_matches("UNIQUE constraint failed: ")
                    .to_owned()
            });
            return Self::Unique(name);
        }
        Self::Sqlx(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    backend: Backend,
    /// Bumped after every commit that changed a session, user, membership
    /// or tenant row: caches of "is this session live" compare against it.
    /// Its hook, when set, publishes each bump to other processes.
    liveness: Arc<Liveness>,
    /// The key that signs audit chain heads (`audit::install_head_key`),
    /// shared by every clone and every transaction of this database. Set
    /// once at startup; appending without it is an error, never a skip.
    audit_head_key: AuditHeadKey,
}

/// The audit head HMAC key slot (see [`Db::set_audit_head_key`]).
pub(crate) type AuditHeadKey = Arc<OnceLock<Zeroizing<[u8; 32]>>>;

/// Called after every commit that bumped the liveness generation (see
/// [`Db::set_liveness_hook`]); the commit waits for the future.
pub type LivenessHook =
    Arc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

/// The liveness generation and the optional hook that publishes its bumps
/// beyond this process (shared by every clone and transaction of a `Db`).
#[derive(Default)]
pub(crate) struct Liveness {
    generation: AtomicU64,
    hook: OnceLock<LivenessHook>,
}

impl Liveness {
    /// After a commit that touched liveness: bump, then run the hook.
    pub(crate) async fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(hook) = self.hook.get() {
            hook().await;
        }
    }
}

#[derive(Clone)]
enum Backend {
    Sqlite {
        /// One connection: SQLite has one writer, and serialising writers in
        /// the pool avoids SQLITE_BUSY on lock upgrades.
        writer: SqlitePool,
        /// Read-only connections for reads that need no transaction order.
        reader: SqlitePool,
    },
    Postgres {
        /// Connections of the serving login role (`STOCKADE_DATABASE_URL`).
        /// There is no owner pool: migrations open their own connection
        /// with the owner's URL and close it (`migrate_postgres`).
        app: PgPool,
    },
}

impl Db {
    /// Opens the database the configuration names (embedded SQLite in
    /// `<data_dir>/stockade.db` by default). Does not migrate. On PostgreSQL
    /// it connects as `STOCKADE_DATABASE_URL`'s role, never as the owner.
    pub async fn open(cfg: &Config) -> anyhow::Result<Self> {
        match &cfg.database_url {
            Some(url) if cfg.is_postgres() => Self::open_postgres(url.value.expose_secret()).await,
            None if cfg.is_postgres() => anyhow::bail!(
                "STOCKADE_DATABASE_URL is not set: the server connects as a login role that \
                 inherits {APP_ROLE} (STOCKADE_MIGRATE_DATABASE_URL, the owner's, is for \
                 migrations only)"
            ),
            Some(url) => {
                let opts = SqliteConnectOptions::from_str(url.value.expose_secret())
                    .map_err(|e| anyhow::anyhow!("invalid STOCKADE_DATABASE_URL: {e}"))?;
                Self::open_sqlite(opts).await
            }
            None => {
                let dir = crate::crypto::keys::create_private_dir(&cfg.data_dir)?;
                Self::open_sqlite_file(&dir.join("stockade.db")).await
            }
        }
    }

    pub async fn open_sqlite_file(path: &Path) -> anyhow::Result<Self> {
        // Created 0600 before SQLite opens it; its -wal and -shm files inherit
        // the mode. Tenant data is no business of other local users.
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
        }
        Self::open_sqlite(SqliteConnectOptions::new().filename(path)).await
    }

    async fn open_sqlite(opts: SqliteConnectOptions) -> anyhow::Result<Self> {
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Deleted content is overwritten with zeros, so an erased user's
            // rows (identity::erase) do not linger in free pages.
            .pragma("secure_delete", "ON")
            .busy_timeout(Duration::from_secs(5));
        // No ping before handing out a connection (sqlx's default is one
        // round trip to the connection's worker thread per acquire): an
        // embedded connection has no peer that can hang up while idle, and
        // sqlx still pings each connection when it comes back (flushing the
        // rollback of a dropped transaction). On the single writer that
        // round trip was part of every write transaction's hold.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(opts.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the SQLite database: {e}"))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(opts.read_only(true))
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the SQLite database: {e}"))?;
        Ok(Self {
            backend: Backend::Sqlite { writer, reader },
            liveness: Arc::default(),
            audit_head_key: Arc::default(),
        })
    }

    /// The serving pool on PostgreSQL: connections log in as the URL's role
    /// and run as it (no `SET ROLE`). TLS as the URL says (`sslmode`,
    /// `sslrootcert`; rustls).
    pub async fn open_postgres(url: &str) -> anyhow::Result<Self> {
        let opts = postgres_options(url, "STOCKADE_DATABASE_URL")?;
        let app = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            // A connection is pinged before it is handed out only when it has
            // been idle for POOL_PING_AFTER_IDLE (sqlx pings every connection
            // on release anyway, so a connection back within that window was
            // alive a moment ago): HikariCP's `aliveBypassWindowMs`. A
            // connection that died while idle (the database restarted, a
            // proxy dropped it) is still replaced before use, and a busy pool
            // spends no round trip per transaction on it.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= POOL_PING_AFTER_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(opts);
        Ok(Self {
            backend: Backend::Postgres { app },
            liveness: Arc::default(),
            audit_head_key: Arc::default(),
        })
    }

    /// Installs the audit head key (normally through
    /// `audit::install_head_key`, which loads it sealed from `server_keys`).
    /// The first key installed stays; returns whether this one was taken.
    pub fn set_audit_head_key(&self, key: Zeroizing<[u8; 32]>) -> bool {
        self.audit_head_key.set(key).is_ok()
    }

    /// The audit head key, if installed.
    pub(crate) fn audit_head_key(&self) -> Option<Zeroizing<[u8; 32]>> {
        self.audit_head_key.get().cloned()
    }

    /// The liveness generation (see the field).
    pub fn liveness_generation(&self) -> u64 {
        self.liveness.generation.load(Ordering::SeqCst)
    }

    /// Installs a hook run (and awaited) after every commit that bumps the
    /// liveness generation, e.g. to publish the bump cluster-wide. The first
    /// hook installed stays; returns whether this one was taken.
    pub fn set_liveness_hook(&self, hook: LivenessHook) -> bool {
        self.liveness.hook.set(hook).is_ok()
    }

    /// The database name (PostgreSQL), to name per-database keys elsewhere.
    pub fn postgres_database_name(&self) -> Option<String> {
        match &self.backend {
            Backend::Postgres { app, .. } => {
                app.connect_options().get_database().map(str::to_owned)
            }
            Backend::Sqlite { .. } => None,
        }
    }

    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Sqlite { .. } => BackendKind::Sqlite,
            Backend::Postgres { .. } => BackendKind::Postgres,
        }
    }

    /// Runs pending migrations on SQLite, refusing a destructive one. On
    /// PostgreSQL the serving role cannot migrate: see [`migrate_postgres`].
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.migrate_with(MigrateOptions::default()).await.map(drop)
    }

    /// [`Db::migrate`] with options (`--allow-destructive`).
    pub async fn migrate_with(&self, options: MigrateOptions) -> anyhow::Result<Migrated> {
        self.migrate_from(migrate::embedded(self.kind()), options)
            .await
    }

    /// [`Db::migrate_with`] with another migration source (tests).
    #[doc(hidden)]
    pub async fn migrate_from(
        &self,
        migrator: &sqlx::migrate::Migrator,
        options: MigrateOptions,
    ) -> anyhow::Result<Migrated> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => migrate::run_sqlite(writer, migrator, options).await,
            Backend::Postgres { .. } => anyhow::bail!(
                "PostgreSQL migrations run as the owner: give its URL in \
                 STOCKADE_MIGRATE_DATABASE_URL (the serving role owns nothing)"
            ),
        }
    }

    /// PostgreSQL: what makes this connection's role unfit to serve (see
    /// [`pg_roles::serving_role_problems`]); SQLite: nothing.
    pub async fn serving_role_problems(&self) -> anyhow::Result<Vec<String>> {
        match &self.backend {
            Backend::Sqlite { .. } => Ok(Vec::new()),
            Backend::Postgres { app } => {
                let mut conn = app.acquire().await.map_err(|e| {
                    anyhow::anyhow!("cannot connect with STOCKADE_DATABASE_URL: {e}")
                })?;
                Ok(pg_roles::serving_role_problems(&mut conn, None)
                    .await?
                    .unwrap_or_default())
            }
        }
    }

    /// A read-write transaction scoped to one tenant.
    pub async fn tenant_tx(&self, tenant: TenantId) -> Result<TenantTx, DbError> {
        let conn = self
            .begin(true, Some((tx::TENANT_SETTING, tenant.0)))
            .await?;
        Ok(TenantTx::begun(conn, tenant))
    }

    /// A read-only transaction scoped to one tenant (SQLite: a reader
    /// connection, so reads do not queue behind the single writer).
    pub async fn tenant_read(&self, tenant: TenantId) -> Result<TenantTx, DbError> {
        let conn = self
            .begin(false, Some((tx::TENANT_SETTING, tenant.0)))
            .await?;
        Ok(TenantTx::begun(conn, tenant))
    }

    /// A read-write transaction on global tables (tenants, users), with no
    /// tenant set: tenant-owned rows are unreachable from it.
    pub async fn global_tx(&self) -> Result<GlobalTx, DbError> {
        Ok(GlobalTx::new(self.begin(true, None).await?))
    }

    /// A transaction scoped to one user's own rows across tenants (their
    /// memberships, to choose a tenant at sign-in; their sessions, to sign out
    /// everywhere). Binds the user as `$1` of every statement.
    pub async fn user_tx(&self, user: crate::ids::UserId) -> Result<UserTx, DbError> {
        let conn = self.begin(true, Some((tx::USER_SETTING, user.0))).await?;
        Ok(UserTx::begun(conn, user))
    }

    /// A read-only [`Db::user_tx`] (SQLite: a reader connection).
    pub async fn user_read(&self, user: crate::ids::UserId) -> Result<UserTx, DbError> {
        let conn = self.begin(false, Some((tx::USER_SETTING, user.0))).await?;
        Ok(UserTx::begun(conn, user))
    }

    pub async fn global_read(&self) -> Result<GlobalTx, DbError> {
        Ok(GlobalTx::new(self.begin(false, None).await?))
    }

    /// Begins a transaction on the writer (`write`) or a reader (SQLite; on
    /// PostgreSQL every connection is both). With a `scope` (a setting and an
    /// id), PostgreSQL gets `BEGIN` and the transaction-local setting as one
    /// simple query: one round trip instead of two on every scoped
    /// transaction. The id is a UUID, written as hex digits and dashes, so the
    /// query holds no text from outside. SQLite has no setting (no RLS).
    async fn begin(
        &self,
        write: bool,
        scope: Option<(&'static str, uuid::Uuid)>,
    ) -> Result<tx::Conn, DbError> {
        let raw = match &self.backend {
            Backend::Sqlite { writer, reader } => {
                tx::RawConn::Sqlite(if write { writer } else { reader }.begin().await?)
            }
            Backend::Postgres { app, .. } => tx::RawConn::Pg(match scope {
                Some((setting, id)) => {
                    app.begin_with(format!(
                        "BEGIN; SELECT set_config('{setting}', '{}', true)",
                        id.hyphenated()
                    ))
                    .await?
                }
                None => app.begin().await?,
            }),
        };
        Ok(tx::Conn::new(
            raw,
            self.liveness.clone(),
            self.audit_head_key.clone(),
        ))
    }

    /// Database reachable and every migration applied.
    pub async fn readiness(&self) -> MigrationStatus {
        match &self.backend {
            Backend::Sqlite { reader, .. } => migrate::sqlite_status(reader).await,
            Backend::Postgres { app, .. } => migrate::postgres_status(app).await,
        }
    }

    /// The pool of server-role connections on PostgreSQL: the leader
    /// election takes its lock connection from it (`jobs::leader`), and the
    /// isolation tests run deliberately unscoped SQL through it to show that
    /// row-level security holds without the application's help.
    pub fn postgres_app_pool(&self) -> Option<&PgPool> {
        match &self.backend {
            Backend::Postgres { app, .. } => Some(app),
            Backend::Sqlite { .. } => None,
        }
    }

    #[doc(hidden)]
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => Some(writer),
            Backend::Postgres { .. } => None,
        }
    }

    /// Each connection pool's use now (`ops::metrics` reads it at every
    /// scrape): SQLite's writer and readers, or PostgreSQL's one pool.
    pub fn pool_use(&self) -> Vec<PoolUse> {
        match &self.backend {
            Backend::Sqlite { writer, reader } => vec![
                PoolUse::of("sqlite_writer", writer),
                PoolUse::of("sqlite_reader", reader),
            ],
            Backend::Postgres { app } => vec![PoolUse::of("postgres", app)],
        }
    }

    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { writer, reader } => {
                reader.close().await;
                writer.close().await;
            }
            Backend::Postgres { app } => app.close().await,
        }
    }
}

/// One connection pool's use (see [`Db::pool_use`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// `sqlite_writer`, `sqlite_reader` or `postgres`.
    pub name: &'static str,
    /// Connections open (idle or in use).
    pub size: u32,
    pub idle: usize,
    pub max: u32,
}

impl PoolUse {
    fn of<DB: sqlx::Database>(name: &'static str, pool: &sqlx::Pool<DB>) -> Self {
        Self {
            name,
            size: pool.size(),
            idle: pool.num_idle(),
            max: pool.options().get_max_connections(),
        }
    }
}

/// Parses a PostgreSQL URL; an error names the variable, never the URL (it
/// may hold a password).
pub(crate) fn postgres_options(url: &str, origin: &str) -> anyhow::Result<PgConnectOptions> {
    PgConnectOptions::from_str(url).map_err(|e| match e {
        sqlx::Error::Configuration(cause) => {
            anyhow::anyhow!("invalid {origin}: {cause}")
        }
        _ => anyhow::anyhow!("invalid {origin} (not a postgres:// URL)"),
    })
}

/// One PostgreSQL connection (migrations, checks), not a pool.
pub(crate) async fn connect_postgres(
    url: &str,
    origin: &str,
) -> anyhow::Result<sqlx::PgConnection> {
    let opts = postgres_options(url, origin)?;
    sqlx::PgConnection::connect_with(&opts)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect with {origin}: {e}"))
}
