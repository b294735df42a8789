//! Test fixtures: fresh SQLite files, fresh PostgreSQL databases (created on
//! the local server and dropped afterwards), a real server on an ephemeral port.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use chrono::TimeZone;
use sqlx::Connection;
use stockade::app::{self, AppState};
use stockade::clock::ManualClock;
use stockade::config::Config;
use stockade::db::Db;
use tokio::sync::{Mutex, oneshot};

/// The server the Postgres tests use; override with STOCKADE_TEST_PG_URL.
pub fn pg_admin_url() -> String {
    std::env::var("STOCKADE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Migrations create a cluster-wide role; databases are set up one at a time.
pub static PG_SETUP: Mutex<()> = Mutex::const_new(());

/// A database for one test. PostgreSQL databases are dropped on drop.
pub struct TestDb {
    pub db: Db,
    pub name: String,
    pub url: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stockade.db");
        let db = Db::open_sqlite_file(&path).await.unwrap();
        db.migrate().await.unwrap();
        db.set_audit_head_key(zeroize::Zeroizing::new([7; 32]));
        TestDb {
            db,
            name: path.display().to_string(),
            url: None,
            _dir: Some(dir),
        }
    }

    /// A fresh, migrated database on the local PostgreSQL. `None` (test
    /// skipped) only outside CI when no server answers; under `CI=true` a
    /// missing server fails the test.
    pub async fn postgres() -> Option<TestDb> {
        let (name, url) = create_pg_database().await?;
        let db = Db::open_postgres(&url).await.unwrap();
        {
            let _guard = PG_SETUP.lock().await;
            db.migrate().await.unwrap();
        }
        db.set_audit_head_key(zeroize::Zeroizing::new([7; 32]));
        Some(TestDb {
            db,
            name,
            url: Some(url),
            _dir: None,
        })
    }
}

/// Creates an empty database `test_<random>`; returns its name and URL.
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
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Some((name.clone(), format!("{base}/{name}")))
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
    let pool = db.postgres_owner_pool().unwrap();
    sqlx::query(sql)
        .bind(tenant)
        .execute(pool)
        .await
        .unwrap()
        .rows_affected()
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
        if let Some((_, url)) = &pg {
            extra.push(("STOCKADE_DATABASE_URL", url.as_str()));
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
        Self::launch(&extra, true, None).await
    }

    async fn launch(extra: &[(&str, &str)], migrate: bool, pg_name: Option<String>) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let config = test_config(dir.path(), extra);
        let keys = stockade::crypto::keys::load(&config).unwrap();
        let db = Db::open(&config).await.unwrap();
        if migrate {
            let _guard = PG_SETUP.lock().await;
            db.migrate().await.unwrap();
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
