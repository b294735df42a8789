//! PostgreSQL roles (SPEC §1, §2.5): who owns the schema, who serves.
//!
//! - The **owner** (`STOCKADE_MIGRATE_DATABASE_URL`) creates and owns every
//!   table and runs migrations. The serving process never logs in as it.
//! - `stockade_app` (`NOLOGIN`, created by `0001_core.sql`) holds exactly the
//!   privileges the server needs: [`APP_TABLE_GRANTS`], re-applied by every
//!   `stockade migrate` (idempotent), so a grant added or removed by hand, or
//!   lost in a dump restored without its roles, is put back.
//! - The **serving login role** (`STOCKADE_DATABASE_URL`) is created once by
//!   an operator with [`create_login_statement`] and inherits `stockade_app`:
//!   it owns nothing, has no `BYPASSRLS`, is no member of the owner and needs
//!   no `SET ROLE`, so `RESET ROLE` leads nowhere. [`serving_role_problems`]
//!   checks all of that; `serve` refuses to start when it finds anything.

use sqlx::PgConnection;

use super::APP_ROLE;

/// The table privileges of `stockade_app`, one entry per table in schema
/// `public`. `stockade migrate` revokes everything else on these tables.
/// A migration that adds a table adds its line here (the test
/// `tests/it/postgres_roles.rs::every_table_has_exactly_its_listed_app_grants`
/// fails otherwise).
pub const APP_TABLE_GRANTS: &[(&str, &str)] = &[
    ("_sqlx_migrations", "SELECT"),
    ("tenants", "SELECT, INSERT, UPDATE, DELETE"),
    ("users", "SELECT, INSERT, UPDATE, DELETE"),
    ("memberships", "SELECT, INSERT, UPDATE, DELETE"),
    // Append-only for the server (SPEC §2.7): never UPDATE, DELETE or
    // TRUNCATE; the retention purge goes through `audit_purge`.
    ("audit_events", "SELECT, INSERT"),
    ("audit_heads", "SELECT, INSERT, UPDATE"),
    ("signing_keys", "SELECT, INSERT, UPDATE"),
    ("login_throttle", "SELECT, INSERT, UPDATE, DELETE"),
    ("sessions", "SELECT, INSERT, UPDATE, DELETE"),
    ("refresh_tokens", "SELECT, INSERT, UPDATE, DELETE"),
    ("password_resets", "SELECT, INSERT, UPDATE"),
    ("email_outbox", "SELECT, INSERT, UPDATE"),
    ("tenant_settings", "SELECT, INSERT, UPDATE"),
    ("roles", "SELECT, INSERT, UPDATE, DELETE"),
    ("invitations", "SELECT, INSERT, UPDATE, DELETE"),
    ("sign_in_links", "SELECT, INSERT, UPDATE"),
    ("tenant_keys", "SELECT, INSERT, UPDATE, DELETE"),
    ("collections", "SELECT, INSERT, UPDATE, DELETE"),
    ("records", "SELECT, INSERT, UPDATE, DELETE"),
    ("record_index", "SELECT, INSERT, UPDATE, DELETE"),
    ("server_keys", "SELECT, INSERT, UPDATE"),
    ("api_keys", "SELECT, INSERT, UPDATE"),
    ("api_key_ids", "SELECT, INSERT"),
    ("audit_head_signing", "SELECT, UPDATE"),
    ("audit_subject_keys", "SELECT, INSERT, UPDATE"),
    ("audit_webhooks", "SELECT, INSERT, UPDATE, DELETE"),
    ("webhook_tenants", "SELECT, INSERT, DELETE"),
    ("email_verifications", "SELECT, INSERT, DELETE"),
    ("platform_owner_grants", "SELECT, INSERT, DELETE"),
    ("email_key_version", "SELECT, UPDATE"),
    ("audit_retention", "SELECT, INSERT, UPDATE"),
    ("migrated_settings", "SELECT, DELETE"),
    ("mfa_totp", "SELECT, INSERT, UPDATE, DELETE"),
    ("mfa_recovery_codes", "SELECT, INSERT, UPDATE, DELETE"),
    ("mfa_challenges", "SELECT, INSERT, UPDATE, DELETE"),
    ("webauthn_credentials", "SELECT, INSERT, UPDATE, DELETE"),
    ("webauthn_ceremonies", "SELECT, INSERT, UPDATE, DELETE"),
    ("chain_verifications", "SELECT, INSERT, DELETE"),
];

/// Functions `stockade_app` may call. `audit_purge` is `SECURITY DEFINER`
/// (it deletes audit events behind a signed checkpoint), so nobody else may.
const APP_FUNCTIONS: &[&str] = &[
    "stockade_current_tenant()",
    "stockade_current_user()",
    "audit_purge(uuid, bigint)",
];
const DEFINER_FUNCTIONS: &[&str] = &["audit_purge(uuid, bigint)"];

/// The role name a fresh deployment is told to create.
pub const DEFAULT_LOGIN_ROLE: &str = "stockade_login";

/// Puts `stockade_app`'s privileges back to exactly [`APP_TABLE_GRANTS`]
/// and [`APP_FUNCTIONS`], in one transaction on the owner's connection
/// (which holds the migration lock, so concurrent runs do not collide).
/// Returns the tables of schema `public` the list does not name: their
/// privileges are left as their migration set them, and `migrate` warns.
pub(crate) async fn maintain_grants(conn: &mut PgConnection) -> anyhow::Result<Vec<String>> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    let existing: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c \
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm') \
         ORDER BY 1",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut sql = format!(
        "GRANT USAGE ON SCHEMA public TO {APP_ROLE};\n\
         REVOKE CREATE ON SCHEMA public FROM PUBLIC, {APP_ROLE};\n"
    );
    for (table, privileges) in APP_TABLE_GRANTS {
        if existing.iter().any(|t| t == table) {
            sql.push_str(&format!(
                "REVOKE ALL ON TABLE {table} FROM {APP_ROLE};\n\
                 GRANT {privileges} ON TABLE {table} TO {APP_ROLE};\n"
            ));
        }
    }
    for function in DEFINER_FUNCTIONS {
        sql.push_str(&format!("REVOKE ALL ON FUNCTION {function} FROM PUBLIC;\n"));
    }
    for function in APP_FUNCTIONS {
        sql.push_str(&format!(
            "GRANT EXECUTE ON FUNCTION {function} TO {APP_ROLE};\n"
        ));
    }
    sqlx::raw_sql(&sql).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(existing
        .into_iter()
        .filter(|t| !APP_TABLE_GRANTS.iter().any(|(name, _)| name == t))
        .collect())
}

/// What is wrong with `role` as the server's login role, one line each
/// (empty: fit to serve). `None` names the connection's own `current_user`.
/// Run by `serve` (and every command that opens the database) on its own
/// connection, and by `migrate` for the role of `STOCKADE_DATABASE_URL`.
pub(crate) async fn serving_role_problems(
    conn: &mut PgConnection,
    role: Option<&str>,
) -> Result<Option<Vec<String>>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Facts {
        name: String,
        rolsuper: bool,
        rolbypassrls: bool,
        rolcreaterole: bool,
        rolreplication: bool,
        inherits_app: bool,
        powerful: Option<String>,
        table_owners: Option<String>,
        database_owner: bool,
        can_create: bool,
    }
    let facts: Option<Facts> = sqlx::query_as(
        "SELECT r.rolname::text AS name, r.rolsuper, r.rolbypassrls, r.rolcreaterole, \
                r.rolreplication, \
                COALESCE((SELECT pg_has_role(r.oid, a.oid, 'USAGE') \
                          FROM pg_roles a WHERE a.rolname = $2), false) AS inherits_app, \
                (SELECT string_agg(m.rolname::text, ', ' ORDER BY m.rolname) FROM pg_roles m \
                 WHERE m.oid <> r.oid AND pg_has_role(r.oid, m.oid, 'MEMBER') \
                   AND (m.rolsuper OR m.rolbypassrls OR m.rolcreaterole OR m.rolreplication)) \
                   AS powerful, \
                (SELECT string_agg(DISTINCT o.rolname::text, ', ') FROM pg_class c \
                 JOIN pg_roles o ON o.oid = c.relowner \
                 WHERE c.relnamespace = 'public'::regnamespace \
                   AND pg_has_role(r.oid, c.relowner, 'MEMBER')) AS table_owners, \
                pg_has_role(r.oid, (SELECT datdba FROM pg_database \
                                    WHERE datname = current_database()), 'MEMBER') \
                   AS database_owner, \
                has_schema_privilege(r.oid, 'public', 'CREATE') AS can_create \
         FROM pg_roles r WHERE r.rolname = COALESCE($1, current_user::text)",
    )
    .bind(role)
    .bind(APP_ROLE)
    .fetch_optional(conn)
    .await?;
    let Some(f) = facts else {
        return Ok(None);
    };
    let who = format!("the serving role `{}`", f.name);
    let mut problems = Vec::new();
    if f.rolsuper {
        problems.push(format!(
            "{who} is a superuser (it bypasses row-level security)"
        ));
    }
    if f.rolbypassrls {
        problems.push(format!("{who} has BYPASSRLS"));
    }
    if f.rolcreaterole {
        problems.push(format!(
            "{who} has CREATEROLE (it could grant itself the owner's role)"
        ));
    }
    if f.rolreplication {
        problems.push(format!("{who} has REPLICATION (it could copy every table)"));
    }
    if let Some(owners) = &f.table_owners {
        problems.push(format!(
            "{who} is or can become `{owners}`, the owner of the tables: serve as a login role that only inherits {APP_ROLE}"
        ));
    }
    if let Some(roles) = f.powerful.as_deref().filter(|_| !f.rolsuper) {
        problems.push(format!(
            "{who} can become `{roles}`, which has SUPERUSER, BYPASSRLS, CREATEROLE or REPLICATION"
        ));
    }
    if f.database_owner && !f.rolsuper {
        problems.push(format!("{who} owns the database"));
    }
    if f.can_create && !f.rolsuper && f.table_owners.is_none() {
        problems.push(format!(
            "{who} may create objects in schema public (REVOKE CREATE ON SCHEMA public FROM PUBLIC)"
        ));
    }
    if !f.inherits_app && !f.rolsuper {
        problems.push(format!(
            "{who} does not inherit {APP_ROLE}: GRANT {APP_ROLE} TO {} (an INHERIT role)",
            f.name
        ));
    }
    Ok(Some(problems))
}

/// The statement an operator runs once (as a role with CREATEROLE) to make
/// the serving login role `name`; the password is theirs to choose.
pub(crate) async fn create_login_statement(
    conn: &mut PgConnection,
    name: &str,
) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L IN ROLE %I;', $1::text, \
                       '<a long random password>', $2::text)",
    )
    .bind(name)
    .bind(APP_ROLE)
    .fetch_one(conn)
    .await
}

/// The serving login role as the owner sees it (`stockade migrate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServingRole {
    /// Exists, inherits `stockade_app`, owns nothing, cannot escalate.
    Ready,
    /// Exists, with these problems (`serve` would refuse it).
    Unfit(Vec<String>),
    /// Does not exist: the statement that creates it.
    Missing { create: String },
}

/// Looks at the login role `name` through the owner's URL (one connection,
/// closed after).
pub async fn inspect_serving_role(owner_url: &str, name: &str) -> anyhow::Result<ServingRole> {
    use sqlx::Connection;
    let mut conn = super::connect_postgres(owner_url, "STOCKADE_MIGRATE_DATABASE_URL").await?;
    let result = async {
        Ok::<_, anyhow::Error>(match serving_role_problems(&mut conn, Some(name)).await? {
            Some(problems) if problems.is_empty() => ServingRole::Ready,
            Some(problems) => ServingRole::Unfit(problems),
            None => ServingRole::Missing {
                create: create_login_statement(&mut conn, name).await?,
            },
        })
    }
    .await;
    let _ = conn.close().await;
    result
}
