//! PostgreSQL: the serving process is not the owner (SPEC §1, §2.5). Attacks
//! from a statement that reached the server's connection (`RESET ROLE`,
//! `SET ROLE <owner>`), and from a deployment that hands the server the
//! owner's login or an out-of-date schema.

use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::time::Duration;

use sqlx::Connection;
use stockade::db::APP_ROLE;

use crate::cli::{run, stockade};
use crate::testkit::{
    Backend, PG_LOGIN_ROLE, TestServer, create_pg_database, drop_pg_database, pg_login_url,
};

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.starts_with('{')) // JSON log lines
        .map(str::to_owned)
        .collect()
}

/// The server after some traffic; `None` outside CI without PostgreSQL.
async fn busy_server() -> Option<TestServer> {
    let s = TestServer::start_on(Backend::Postgres, &[], true).await?;
    crate::auth::signup(&s, "acme", "owner@acme.test").await;
    Some(s)
}

/// Every connection the server holds logs in as the login role and runs as
/// it; none is the owner's, and none stays open to the owner after the
/// start-up migration.
#[tokio::test]
async fn every_serving_connection_is_the_login_role() {
    let Some(s) = busy_server().await else {
        return;
    };
    let pool = s.db.postgres_app_pool().unwrap();
    // All of the pool's connections at once (16), so each one is checked.
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(pool.acquire().await.unwrap());
    }
    for conn in &mut held {
        let who: (String, String) = sqlx::query_as("SELECT current_user::text, session_user::text")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert_eq!(who, (PG_LOGIN_ROLE.to_owned(), PG_LOGIN_ROLE.to_owned()));
    }
    drop(held);
    // The transactions the code under test opens, too.
    let mut g = s.db.global_read().await.unwrap();
    let who: Option<(String, String)> = g
        .fetch_optional("SELECT current_user::text, session_user::text", vec![])
        .await
        .unwrap();
    assert_eq!(
        who,
        Some((PG_LOGIN_ROLE.to_owned(), PG_LOGIN_ROLE.to_owned()))
    );
    drop(g);
    // Seen from the server side: every backend on this database but the
    // test's own owner connection is the login role. (The migration's
    // connection is closed; its backend may take a moment to go.)
    let mut owner = sqlx::PgConnection::connect(s.owner_url.as_ref().unwrap())
        .await
        .unwrap();
    let mut users = Vec::new();
    for _ in 0..50 {
        users = sqlx::query_scalar::<_, String>(
            "SELECT DISTINCT usename::text FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND backend_type = 'client backend' ORDER BY 1",
        )
        .fetch_all(&mut owner)
        .await
        .unwrap();
        if users == [PG_LOGIN_ROLE] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        users,
        [PG_LOGIN_ROLE],
        "connections to the database by user"
    );
    owner.close().await.unwrap();
    s.stop().await;
}

/// A statement that reached a serving connection cannot leave the login
/// role: `RESET ROLE` keeps it (and so row-level security and the
/// append-only audit grants), `SET ROLE` and `SET SESSION AUTHORIZATION` to
/// the owner are refused.
#[tokio::test]
async fn reset_role_and_set_role_cannot_reach_the_owner() {
    let Some(s) = busy_server().await else {
        return;
    };
    let pool = s.db.postgres_app_pool().unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let table_owner: String =
        sqlx::query_scalar("SELECT tableowner::text FROM pg_tables WHERE tablename = 'tenants'")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_ne!(table_owner, PG_LOGIN_ROLE);
    sqlx::raw_sql("RESET ROLE")
        .execute(&mut *conn)
        .await
        .unwrap();
    let who: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(who, PG_LOGIN_ROLE, "RESET ROLE changed the role");
    // Still under row-level security: no tenant set, no tenant rows.
    let members: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM memberships")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(members, 0, "tenant rows visible after RESET ROLE");
    // Still append-only for audit events.
    let err = sqlx::raw_sql("DELETE FROM audit_events")
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    for sql in [
        format!("SET ROLE \"{table_owner}\""),
        format!("SET SESSION AUTHORIZATION \"{table_owner}\""),
        "SET ROLE postgres".to_owned(),
    ] {
        let err = sqlx::raw_sql(&sql).execute(&mut *conn).await.unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "{sql}: {err}"
        );
    }
    // Its role's reach, from the catalogue: not the owner, not a member of
    // it, nothing that bypasses row-level security.
    let (member_of_owner, bypass): (bool, bool) = sqlx::query_as(
        "SELECT pg_has_role(current_user, $1, 'MEMBER'), \
                EXISTS (SELECT 1 FROM pg_roles WHERE pg_has_role(current_user, oid, 'MEMBER') \
                        AND (rolsuper OR rolbypassrls))",
    )
    .bind(&table_owner)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert!(!member_of_owner && !bypass);
    conn.close().await.unwrap();
    s.stop().await;
}

/// Drops a test database however the test ends.
struct DropDb(String);

impl Drop for DropDb {
    fn drop(&mut self) {
        drop_pg_database(&self.0);
    }
}

/// `stockade serve` with a database URL, as the operator starts it.
struct Serving {
    child: std::process::Child,
    url: String,
}

impl Serving {
    fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Result<Serving, Output> {
        let mut cmd = stockade(dir);
        cmd.arg("serve")
            .env("STOCKADE_LISTEN", "127.0.0.1:0")
            .env("STOCKADE_ADMIN_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        match line.split_whitespace().find(|w| w.starts_with("http://")) {
            Some(url) => Ok(Serving {
                url: url.to_owned(),
                child,
            }),
            None => Err(child.wait_with_output().unwrap()),
        }
    }

    fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The server refuses to start on a schema it may not migrate, and refuses
/// the owner's login; `stockade migrate` with the owner's URL makes it
/// current, after which the login role alone serves.
#[tokio::test]
async fn serve_refuses_pending_migrations_and_the_owners_login() {
    let Some((name, owner)) = create_pg_database().await else {
        return;
    };
    let login = pg_login_url(&name);
    let dir = tempfile::tempdir().unwrap();
    let _drop = DropDb(name.clone());
    {
        // 1. Only the app URL, nothing migrated: one clear line, exit 1,
        //    and nothing created.
        let refused = Serving::start(dir.path(), &[("STOCKADE_DATABASE_URL", &login)])
            .err()
            .expect("serve started on an unmigrated database");
        let said = lines(&refused.stderr);
        assert_eq!(refused.status.code(), Some(1), "{said:?}");
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].starts_with("error: the database schema is at migration none")
                && said[0].contains("stockade migrate"),
            "{said:?}"
        );
        let mut conn = sqlx::PgConnection::connect(&owner).await.unwrap();
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(tables, 0);
        // 2. The owner migrates; it reports the serving role ready.
        let migrated = run(stockade(dir.path())
            .arg("migrate")
            .env("STOCKADE_DATABASE_URL", &login)
            .env("STOCKADE_MIGRATE_DATABASE_URL", &owner));
        let out = String::from_utf8_lossy(&migrated.stdout).into_owned();
        assert!(migrated.status.success(), "{:?}", lines(&migrated.stderr));
        assert!(out.contains("migrations are current"), "{out}");
        assert!(
            out.contains(&format!("the serving role `{PG_LOGIN_ROLE}` is ready")),
            "{out}"
        );
        // 3. The owner's login as the server's: refused, exit 2, each
        //    reason on its line.
        let refused = Serving::start(dir.path(), &[("STOCKADE_DATABASE_URL", &owner)])
            .err()
            .expect("serve started as the owner");
        let said = lines(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{said:?}");
        assert!(
            said.iter()
                .all(|l| l.starts_with("error: the serving role `")),
            "{said:?}"
        );
        assert!(said.iter().any(|l| l.contains("superuser")), "{said:?}");
        assert!(
            said.iter().any(|l| l.contains("owner of the tables")),
            "{said:?}"
        );
        // 4. The login role alone serves, ready.
        let serving = Serving::start(dir.path(), &[("STOCKADE_DATABASE_URL", &login)])
            .unwrap_or_else(|out| panic!("{:?}", lines(&out.stderr)));
        let ready: serde_json::Value = reqwest::get(format!("{}/readyz", serving.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        serving.stop();
        assert_eq!(ready["status"], "ready", "{ready}");
        conn.close().await.unwrap();
    }
}

/// `stockade migrate` puts `stockade_app`'s grants back on every run: a
/// grant taken away or added by hand (UPDATE and DELETE on the audit log,
/// CREATE in the schema) is undone. For a login role that does not exist it
/// prints the statement that creates one.
#[tokio::test]
async fn migrate_restores_the_app_grants_and_prints_the_login_statement() {
    let Some((name, owner)) = create_pg_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("stockade_nobody_{}", uuid::Uuid::new_v4().simple());
    let migrate = || {
        let mut url = url::Url::parse(&pg_login_url(&name)).unwrap();
        url.set_username(&missing).unwrap();
        run(stockade(dir.path())
            .arg("migrate")
            .env("STOCKADE_DATABASE_URL", url.as_str())
            .env("STOCKADE_MIGRATE_DATABASE_URL", &owner))
    };
    let _drop = DropDb(name.clone());
    {
        let first = migrate();
        assert!(first.status.success(), "{:?}", lines(&first.stderr));
        let mut conn = sqlx::PgConnection::connect(&owner).await.unwrap();
        sqlx::raw_sql(&format!(
            "REVOKE SELECT ON tenants FROM {APP_ROLE}; \
             GRANT UPDATE, DELETE, TRUNCATE ON audit_events TO {APP_ROLE}; \
             GRANT CREATE ON SCHEMA public TO {APP_ROLE};"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        let second = migrate();
        let out = String::from_utf8_lossy(&second.stdout).into_owned();
        assert!(second.status.success(), "{:?}", lines(&second.stderr));
        let privileges: (bool, bool, bool, bool, bool) = sqlx::query_as(
            "SELECT has_table_privilege($1, 'tenants', 'SELECT'), \
                    has_table_privilege($1, 'audit_events', 'UPDATE'), \
                    has_table_privilege($1, 'audit_events', 'DELETE'), \
                    has_table_privilege($1, 'audit_events', 'TRUNCATE'), \
                    has_schema_privilege($1, 'public', 'CREATE')",
        )
        .bind(APP_ROLE)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(privileges, (true, false, false, false, false));
        assert!(
            out.contains(&format!(
                "CREATE ROLE {missing} LOGIN PASSWORD '<a long random password>' IN ROLE {APP_ROLE};"
            )),
            "{out}"
        );
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(&missing)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(!exists, "migrate must not create roles itself");
        conn.close().await.unwrap();
    }
}

/// `db::pg_roles::APP_TABLE_GRANTS` is the whole truth: every table of the
/// schema is listed, every listed table exists, and after migrating
/// `stockade_app` holds exactly the listed privileges on each (so a new
/// table cannot ship without its grants, or with more).
#[tokio::test]
async fn every_table_has_exactly_its_listed_app_grants() {
    let Some(t) = crate::testkit::TestDb::postgres().await else {
        return;
    };
    let owner = crate::testkit::owner_pool(&t.db).await;
    let held: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT c.relname::text, \
                (SELECT string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type) \
                 FROM aclexplode(c.relacl) a WHERE a.grantee = $1::regrole) \
         FROM pg_class c \
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm') \
         ORDER BY 1",
    )
    .bind(APP_ROLE)
    .fetch_all(&owner)
    .await
    .unwrap();
    let mut listed: Vec<(String, Option<String>)> = stockade::db::pg_roles::APP_TABLE_GRANTS
        .iter()
        .map(|(table, privileges)| {
            let mut p: Vec<&str> = privileges.split(", ").collect();
            p.sort_unstable();
            ((*table).to_owned(), Some(p.join(", ")))
        })
        .collect();
    listed.sort();
    assert_eq!(held, listed);
    owner.close().await;
}
