//! Test fixtures: fresh SQLite files, fresh PostgreSQL databases (created on
//! the local server and dropped afterwards), a real server on an ephemeral port.
//!
//! PostgreSQL as deployed: the admin user (`postgres`, the superuser of the
//! test server) creates each database, owns its schema and migrates it; the
//! code under test connects as [`PG_LOGIN_ROLE`], a login role that only
//! inherits `stockade_app`. Roles are cluster-wide and shared by every test
//! (and every checkout) using the server: they are created idempotently and
//! never dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use chrono::TimeZone;
use sqlx::Connection;
use stockade::app::{self, AppState};
use stockade::clock::ManualClock;
use stockade::config::Config;
use stockade::db::{Db, MigrateOptions, Migrated};
use tokio::sync::{Mutex, OnceCell, oneshot};

/// The server the Postgres tests use; override with STOCKADE_TEST_PG_URL.
pub fn pg_admin_url() -> String {
    std::env::var("STOCKADE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Migrations create a cluster-wide role; databases are set up one at a time.
pub static PG_SETUP: Mutex<()> = Mutex::const_new(());

/// The login role the tests serve as: inherits `stockade_app`, owns nothing.
pub const PG_LOGIN_ROLE: &str = "stockade_test_login";

/// Makes `stockade_app` and [`PG_LOGIN_ROLE`] exist (once per process),
/// tolerating another process doing the same at the same moment.
async fn ensure_pg_roles(admin: &mut sqlx::PgConnection) {
    static READY: OnceCell<()> = OnceCell::const_new();
    READY
        .get_or_init(|| async {
            sqlx::raw_sql(&format!(
                "DO $$ BEGIN \
                   CREATE ROLE stockade_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE \
                     NOBYPASSRLS NOINHERIT; \
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$; \
                 DO $$ BEGIN \
                   CREATE ROLE {PG_LOGIN_ROLE} LOGIN INHERIT NOSUPERUSER NOCREATEDB \
                     NOCREATEROLE NOBYPASSRLS NOREPLICATION IN ROLE stockade_app; \
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;"
            ))
            .execute(admin)
            .await
            .unwrap();
        })
        .await;
}

/// The URL of database `name` as its owner (the admin user).
pub fn pg_owner_url(name: &str) -> String {
    let admin = pg_admin_url();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}

/// The URL of database `name` as the serving login role [`PG_LOGIN_ROLE`].
pub fn pg_login_url(name: &str) -> String {
    let mut url = url::Url::parse(&pg_owner_url(name)).unwrap();
    url.set_username(PG_LOGIN_ROLE).unwrap();
    url.set_password(None).unwrap();
    url.to_string()
}

/// A pool on `db`'s PostgreSQL database as its owner: how the tests look at
/// and tamper with rows as someone with direct database access would (the
/// code under test holds no such connection).
pub async fn owner_pool(db: &Db) -> sqlx::PgPool {
    let name = db.postgres_database_name().unwrap();
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&pg_owner_url(&name))
        .await
        .unwrap()
}

/// A database for one test. PostgreSQL databases are dropped on drop.
pub struct TestDb {
    pub db: Db,
    pub name: String,
    /// PostgreSQL: the serving login role's URL.
    pub url: Option<String>,
    /// PostgreSQL: the owner's URL (migrations).
    pub owner_url: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let t = Self::sqlite_empty().await;
        t.db.migrate().await.unwrap();
        t
    }

    /// A new SQLite file with no migration applied.
    pub async fn sqlite_empty() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stockade.db");
        let db = Db::open_sqlite_file(&path).await.unwrap();
        db.set_audit_head_key(zeroize::Zeroizing::new([7; 32]));
        TestDb {
            db,
            name: path.display().to_string(),
            url: None,
            owner_url: None,
            _dir: Some(dir),
        }
    }

    /// A fresh database on the local PostgreSQL, migrated by its owner and
    /// opened as [`PG_LOGIN_ROLE`]. `None` (test skipped) only outside CI
    /// when no server answers; under `CI=true` a missing server fails the test.
    pub async fn postgres() -> Option<TestDb> {
        let t = Self::postgres_empty().await?;
        t.migrate(MigrateOptions::default()).await.unwrap();
        Some(t)
    }

    /// A new PostgreSQL database with no migration applied, opened as
    /// [`PG_LOGIN_ROLE`].
    pub async fn postgres_empty() -> Option<TestDb> {
        let (name, owner_url) = create_pg_database().await?;
        let url = pg_login_url(&name);
        let db = Db::open_postgres(&url).await.unwrap();
        db.set_audit_head_key(zeroize::Zeroizing::new([7; 32]));
        Some(TestDb {
            db,
            name,
            url: Some(url),
            owner_url: Some(owner_url),
            _dir: None,
        })
    }

    /// Runs this binary's migrations again, as `stockade migrate` would.
    pub async fn migrate(&self, options: MigrateOptions) -> anyhow::Result<Migrated> {
        match &self.owner_url {
            None => self.db.migrate_with(options).await,
            Some(owner) => migrate_pg(owner, options).await,
        }
    }

    /// Runs `migrator` as `stockade migrate` would: on SQLite through the
    /// database, on PostgreSQL as the owner.
    pub async fn migrate_from(
        &self,
        migrator: &sqlx::migrate::Migrator,
        options: MigrateOptions,
    ) -> anyhow::Result<Migrated> {
        match &self.owner_url {
            None => self.db.migrate_from(migrator, options).await,
            Some(owner) => {
                let _guard = PG_SETUP.lock().await;
                stockade::db::migrate_postgres_from(owner, migrator, options).await
            }
        }
    }
}

/// Migrates a PostgreSQL database as its owner (one at a time: migrations
/// touch the cluster-wide role).
async fn migrate_pg(owner_url: &str, options: MigrateOptions) -> anyhow::Result<Migrated> {
    let _guard = PG_SETUP.lock().await;
    stockade::db::migrate_postgres(owner_url, options).await
}

/// Creates an empty database `test_<random>` (and the shared roles if they
/// are missing); returns its name and its owner's URL.
pub async fn create_pg_database() -> Option<(String, String)> {
    let admin = pg_admin_url();
    let mut conn = match sqlx::PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) if in_ci() => panic!("PostgreSQL is required under CI=true: {e}"),
        Err(e) => {
            eprintln!("skipping: PostgreSQL not reachable at {admin}: {e}");
            return None;
        }
    };
    ensure_pg_roles(&mut conn).await;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    Some((name.clone(), pg_owner_url(&name)))
}

pub fn drop_pg_database(name: &str) {
    let name = name.to_owned();
    // Drop runs outside any runtime guarantee: use a thread with its own.
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        });
    })
    .join();
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.url.is_some() {
            drop_pg_database(&self.name);
        }
    }
}

/// Runs raw SQL as someone with direct database access (the SQLite file, or
/// the PostgreSQL owner): how the tests tamper with rows. On SQLite such a
/// person can open the audit purge gate (migration 0016), so this does.
pub async fn raw_execute(db: &Db, sql: &str, tenant: uuid::Uuid) -> u64 {
    if let Some(pool) = db.sqlite_pool() {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("UPDATE audit_purge_gate SET open = 1")
            .execute(&mut *tx)
            .await
            .unwrap();
        let n = sqlx::query(sql)
            .bind(tenant)
            .execute(&mut *tx)
            .await
            .unwrap()
            .rows_affected();
        sqlx::query("UPDATE audit_purge_gate SET open = 0")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        return n;
    }
    let pool = owner_pool(db).await;
    let n = sqlx::query(sql)
        .bind(tenant)
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
    pool.close().await;
    n
}

pub fn fixed_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 21, 12, 0, 0)
            .unwrap(),
    ))
}

/// A configuration for tests: data in `dir`, nothing from the environment.
pub fn test_config(dir: &std::path::Path, extra: &[(&str, &str)]) -> Config {
    let mut env = BTreeMap::new();
    env.insert("STOCKADE_DATA_DIR".to_owned(), dir.display().to_string());
    env.insert("STOCKADE_LISTEN".to_owned(), "127.0.0.1:0".to_owned());
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    Config::load(None, &env).unwrap()
}

/// The real application on an ephemeral port.
pub struct TestServer {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub db: Db,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    /// PostgreSQL: the owner's URL (the server itself was given it only to
    /// migrate, as `serve` is, and dropped it).
    pub owner_url: Option<String>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pg_name: Option<String>,
    _dir: tempfile::TempDir,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            drop_pg_database(&name);
        }
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(&[], true).await
    }

    pub async fn start_with(extra: &[(&str, &str)], migrate: bool) -> TestServer {
        Self::start_on(Backend::Sqlite, extra, migrate)
            .await
            .unwrap()
    }

    /// Starts on `backend`; `None` only for PostgreSQL outside CI with no server.
    pub async fn start_on(
        backend: Backend,
        extra: &[(&str, &str)],
        migrate: bool,
    ) -> Option<TestServer> {
        let mut extra: Vec<(&str, &str)> = extra.to_vec();
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(create_pg_database().await?),
        };
        let login = pg.as_ref().map(|(name, _)| pg_login_url(name));
        if let (Some((_, owner)), Some(login)) = (&pg, &login) {
            extra.push(("STOCKADE_DATABASE_URL", login.as_str()));
            extra.push(("STOCKADE_MIGRATE_DATABASE_URL", owner.as_str()));
        }
        let pg_name = pg.as_ref().map(|(name, _)| name.clone());
        Some(Self::launch(&extra, migrate, pg_name).await)
    }

    /// A second instance on `first`'s database and keys (its data
    /// directory), as another server process of one cluster would be. The
    /// database stays `first`'s to drop.
    pub async fn start_beside(first: &TestServer, extra: &[(&str, &str)]) -> TestServer {
        let cfg = &first.state.config;
        let dir = cfg.data_dir.display().to_string();
        let url = cfg
            .database_url
            .as_ref()
            .map(|u| secrecy::ExposeSecret::expose_secret(&u.value).to_owned());
        let mut extra: Vec<(&str, &str)> = extra.to_vec();
        extra.push(("STOCKADE_DATA_DIR", &dir));
        if let Some(url) = &url {
            extra.push(("STOCKADE_DATABASE_URL", url));
        }
        if let Some(owner) = &first.owner_url {
            extra.push(("STOCKADE_MIGRATE_DATABASE_URL", owner));
        }
        Self::launch(&extra, true, None).await
    }

    /// As `stockade serve` starts: migrate (PostgreSQL: as the owner, whose
    /// URL the state then forgets), then serve as the configured role.
    async fn launch(extra: &[(&str, &str)], migrate: bool, pg_name: Option<String>) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path(), extra);
        let keys = stockade::crypto::keys::load(&config).unwrap();
        let owner_url = config
            .migrate_database_url
            .take()
            .map(|u| secrecy::ExposeSecret::expose_secret(&u.value).to_owned());
        let db = Db::open(&config).await.unwrap();
        if migrate {
            match &owner_url {
                Some(owner) => {
                    migrate_pg(owner, MigrateOptions::default()).await.unwrap();
                }
                None => db.migrate().await.unwrap(),
            }
        }
        let clock = fixed_clock();
        if migrate {
            stockade::audit::install_head_key(&db, &keys.master, clock.as_ref())
                .await
                .unwrap();
        }
        let keyring = match migrate {
            true => stockade::crypto::keyring::load(&db, &keys, clock.as_ref())
                .await
                .unwrap(),
            false => stockade::crypto::jwt::Keyring::from_material(&keys.signing).unwrap(),
        };
        let state = AppState::new(config, db.clone(), clock.clone(), keys, keyring).unwrap();
        let router = app::app(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app::serve(listener, router, async {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            client: reqwest::Client::new(),
            db,
            state,
            clock,
            owner_url,
            shutdown: Some(tx),
            task: Some(task),
            pg_name,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The served OpenAPI document.
    pub async fn openapi(&self) -> serde_json::Value {
        self.client
            .get(self.url("/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// Runs the same async test body against SQLite and PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let t = $crate::testkit::TestDb::sqlite().await;
                    super::$name(&t).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(t) = $crate::testkit::TestDb::postgres().await else { return };
                    super::$name(&t).await;
                }
            )*
        }
    };
}

/// Runs the same async test body against a server on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_servers {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::testkit::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::testkit::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// Everything the database holds, as bytes, for "never stored in clear"
/// tests: SQLite's file and write-ahead log; on PostgreSQL every row of
/// every table as text, read as the owner past row-level security (bytea
/// appears there as hex: look for hex needles too).
pub async fn raw_database_bytes(s: &TestServer) -> Vec<u8> {
    match s.db.kind() {
        stockade::db::BackendKind::Sqlite => {
            let dir = s.state.config.data_dir.clone();
            let mut out = Vec::new();
            for name in ["stockade.db", "stockade.db-wal"] {
                if let Ok(bytes) = std::fs::read(dir.join(name)) {
                    out.extend(bytes);
                }
            }
            assert!(!out.is_empty(), "no database file was read");
            out
        }
        stockade::db::BackendKind::Postgres => {
            let pool = owner_pool(&s.db).await;
            let tables: Vec<(String,)> =
                sqlx::query_as("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            let mut out = Vec::new();
            for (table,) in tables {
                let rows: Vec<(String,)> =
                    sqlx::query_as(&format!("SELECT t::text FROM \"{table}\" t"))
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                for (r,) in rows {
                    out.extend(r.into_bytes());
                }
            }
            out
        }
    }
}
