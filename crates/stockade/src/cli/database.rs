//! Opening the database from the command line, and `stockade migrate`.
//!
//! On PostgreSQL every command but `migrate` works as the serving login role
//! of `STOCKADE_DATABASE_URL`, which owns nothing. Migrations need the owner
//! (`STOCKADE_MIGRATE_DATABASE_URL`): with it a command migrates first over
//! one connection that it closes before going on; without it the command
//! checks that the schema is current and refuses to run if not. SQLite has
//! one file and no roles: commands migrate it. Either way a destructive
//! migration needs `--allow-destructive` (`migrate`, `serve`).

use secrecy::ExposeSecret;

use super::Failure;
use crate::clock::SystemClock;
use crate::config::{Config, DatabaseUse};
use crate::crypto::keys as master_keys;
use crate::db::pg_roles::{self, ServingRole};
use crate::db::{self, Db, MigrateOptions, Migrated, MigrationStatus};

/// What to do when the email re-keying step finds two accounts with
/// look-alike addresses (`identity::rekey`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum RekeyCollisions {
    /// Stop with the error (every command but `users delete`).
    Fail,
    /// Print it as a warning and go on (`users delete`, which resolves it).
    Warn,
}

/// Opens the database, migrated, without loading any key: for commands
/// that neither append nor verify audit events (`keys status`).
pub(super) async fn open_migrated_without_keys(config: &Config) -> Result<Db, Failure> {
    open_ready(config, MigrateOptions::default(), RekeyCollisions::Fail).await
}

/// Opens the database, migrated, with the audit head key installed (every
/// command but `migrate` may append or verify audit events).
pub(super) async fn open_migrated(config: &Config) -> Result<Db, Failure> {
    open_with_keys(config, MigrateOptions::default(), RekeyCollisions::Fail).await
}

/// [`open_migrated`] with migration options (`serve --allow-destructive`)
/// and the answer to look-alike collisions (`users delete` goes on).
pub(super) async fn open_with_keys(
    config: &Config,
    options: MigrateOptions,
    collisions: RekeyCollisions,
) -> Result<Db, Failure> {
    let keys = master_keys::load(config).map_err(|lines| Failure { lines, code: 2 })?;
    let db = open_ready(config, options, collisions).await?;
    if let Err(e) = crate::audit::install_head_key(&db, &keys.master, &SystemClock).await {
        db.close().await;
        return Err(Failure::one(e));
    }
    // Settings a migration changed get their audit events now (the chain
    // can only be extended here, with the head key installed).
    if let Err(e) = crate::tenancy::settings_reset::audit_migrated_settings(&db, &SystemClock).await
    {
        db.close().await;
        return Err(Failure::one(e));
    }
    Ok(db)
}

/// Opens the database as the serving role with the schema current: migrated
/// here where this process may, otherwise checked; on PostgreSQL a serving
/// role that is or can become the owner (or bypass row-level security) is
/// refused, exit 2. Then stored email keys are brought to the canonical
/// form (`identity::rekey`, once per key version).
async fn open_ready(
    config: &Config,
    options: MigrateOptions,
    collisions: RekeyCollisions,
) -> Result<Db, Failure> {
    let problems = config.database_problems(DatabaseUse::Serve);
    if !problems.is_empty() {
        return Err(Failure {
            lines: problems,
            code: 2,
        });
    }
    if let Some(owner) = config.migrate_database_url.as_ref() {
        let migrated = db::migrate_postgres(owner.value.expose_secret(), options).await?;
        log_migrated(&migrated);
    }
    let db = Db::open(config).await?;
    let ready = match check(&db, options).await {
        Ok(()) => rekey(&db, collisions).await,
        Err(failure) => Err(failure),
    };
    if let Err(failure) = ready {
        db.close().await;
        return Err(failure);
    }
    Ok(db)
}

/// Brings stored email keys to the canonical form, as the serving role.
async fn rekey(db: &Db, collisions: RekeyCollisions) -> Result<(), Failure> {
    match crate::identity::rekey::rekey_emails(db).await {
        Ok(_) => Ok(()),
        Err(e @ crate::identity::rekey::RekeyError::Collision { .. })
            if collisions == RekeyCollisions::Warn =>
        {
            eprintln!("warning: {e}");
            Ok(())
        }
        Err(e) => Err(Failure::one(e)),
    }
}

async fn check(db: &Db, options: MigrateOptions) -> Result<(), Failure> {
    if db.kind() == db::BackendKind::Sqlite {
        let migrated = db.migrate_with(options).await?;
        log_migrated(&migrated);
        return Ok(());
    }
    match db.readiness().await {
        MigrationStatus::Current { .. } => {}
        MigrationStatus::Unreachable(cause) => {
            return Err(Failure::one(format!(
                "cannot reach PostgreSQL with STOCKADE_DATABASE_URL: {cause}"
            )));
        }
        behind @ MigrationStatus::Behind { .. } => {
            return Err(Failure::one(format!(
                "{behind}: run `stockade migrate` with the owner's URL in \
                 STOCKADE_MIGRATE_DATABASE_URL (or give that URL to this command too)"
            )));
        }
    }
    let problems = db.serving_role_problems().await?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure {
            lines: problems,
            code: 2,
        })
    }
}

fn log_migrated(migrated: &Migrated) {
    for name in &migrated.applied {
        tracing::info!(migration = %name, "migration applied");
    }
    for table in &migrated.ungranted_tables {
        tracing::warn!(
            %table,
            "table has no grants listed for stockade_app in db::pg_roles: left as its migration set them"
        );
    }
}

/// `stockade migrate [--allow-destructive]`.
pub(super) async fn migrate(config: &Config, options: MigrateOptions) -> Result<(), Failure> {
    let mut problems = config.database_problems(DatabaseUse::Migrate);
    if config.is_production() {
        problems.extend(config.database_tls_problems());
    }
    if !problems.is_empty() {
        return Err(Failure {
            lines: problems,
            code: 2,
        });
    }
    let owner = match config.migrate_database_url.as_ref() {
        Some(owner) if config.is_postgres() => owner.value.expose_secret(),
        _ => {
            let db = Db::open(config).await?;
            let migrated = match db.migrate_with(options).await {
                Ok(migrated) => rekey(&db, RekeyCollisions::Fail).await.map(|()| migrated),
                Err(e) => Err(Failure::from(e)),
            };
            db.close().await;
            report_applied(&migrated?);
            println!("migrations are current");
            return Ok(());
        }
    };
    let migrated = db::migrate_postgres(owner, options).await?;
    report_applied(&migrated);
    println!("migrations are current");
    println!(
        "grants of {} are in place ({} tables)",
        db::APP_ROLE,
        pg_roles::APP_TABLE_GRANTS.len()
    );
    for table in &migrated.ungranted_tables {
        eprintln!(
            "warning: table {table} has no grants listed for {} (db::pg_roles): left as its migration set them",
            db::APP_ROLE
        );
    }
    let role = config
        .serving_role_name()
        .unwrap_or_else(|| pg_roles::DEFAULT_LOGIN_ROLE.to_owned());
    match pg_roles::inspect_serving_role(owner, &role).await? {
        ServingRole::Ready => println!(
            "the serving role `{role}` is ready: it inherits {} and owns nothing",
            db::APP_ROLE
        ),
        ServingRole::Unfit(problems) => {
            for problem in problems {
                eprintln!("warning: {problem} (serve refuses it)");
            }
        }
        ServingRole::Missing { create } => {
            println!(
                "the serving role `{role}` does not exist yet; create it once (as a role with \
                 CREATEROLE), then serve with its URL in STOCKADE_DATABASE_URL:"
            );
            println!("  {create}");
        }
    }
    Ok(())
}

fn report_applied(migrated: &Migrated) {
    for name in &migrated.applied {
        println!("applied {name}");
    }
}
