//! The `stockade` command line. Every command has `--help`; every failure is
//! one `error:` line on stderr and a non-zero exit (2 for configuration that
//! is unfit to run, 1 for anything else). This file parses, dispatches
//! (`run`) and reports; each command's work is in a module of its own
//! (`cli/args.rs`: the commands and flags; `cli/serve.rs`: `serve` and
//! `config check`; `cli/audit.rs`, `cli/users.rs`, `cli/keys.rs`,
//! `cli/platform.rs`; `cli/database.rs`: opening the database).

use std::process::ExitCode;

use clap::Parser;

use crate::audit::{Actor, RequestContext};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::db::MigrateOptions;
use crate::tenancy::{self, NewTenant, Slug, TenantName};

mod args;
mod audit;
mod database;
mod keys;
mod platform;
mod progress;
mod serve;
mod users;

pub use args::{
    AuditCommand, Cli, Command, ConfigCommand, KeysCommand, TenantCommand, UsersCommand,
};
pub use platform::PlatformCommand;

use database::{open_migrated, open_migrated_without_keys};
use progress::Progress;
use serve::say;

/// The most rows `stockade users import` takes from one file.
pub const MAX_IMPORT_ROWS: usize = 100_000;

/// A failure with its exit code.
pub struct Failure {
    pub lines: Vec<String>,
    pub code: u8,
}

impl Failure {
    fn one(line: impl std::fmt::Display) -> Self {
        Self {
            lines: vec![line.to_string()],
            code: 1,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::one(format!("{e:#}"))
    }
}

/// Entry point for `main`.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("{first} (see --help)");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return report(Failure::one(format!("cannot start the runtime: {e}"))),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => report(failure),
    }
}

fn report(failure: Failure) -> ExitCode {
    for line in failure.lines {
        // One line per problem, whatever the cause's own formatting.
        eprintln!("error: {}", line.replace(['\n', '\r'], " "));
    }
    ExitCode::from(failure.code)
}

pub async fn run(cli: Cli) -> Result<(), Failure> {
    let config = Config::from_env(cli.config.as_deref()).map_err(|e| Failure {
        lines: vec![e.to_string()],
        code: 2,
    })?;
    serve::init_logging(&config, matches!(cli.command, Command::Serve { .. }));
    match cli.command {
        Command::Serve { allow_destructive } => {
            serve::serve(config, MigrateOptions { allow_destructive }).await
        }
        Command::Migrate { allow_destructive } => {
            database::migrate(&config, MigrateOptions { allow_destructive }).await
        }
        Command::Config(ConfigCommand::Check) => serve::config_check(&config),
        Command::Tenant(TenantCommand::Create { slug, name }) => {
            let new = NewTenant {
                slug: Slug::parse(&slug).map_err(Failure::one)?,
                name: TenantName::parse(&name).map_err(Failure::one)?,
            };
            let keys =
                crate::crypto::keys::load(&config).map_err(|lines| Failure { lines, code: 2 })?;
            let db = open_migrated(&config).await?;
            let tenant = tenancy::create_tenant(
                &db,
                &SystemClock,
                &keys.master,
                new,
                Actor::System,
                RequestContext::default(),
            )
            .await
            .map_err(Failure::one)?;
            db.close().await;
            println!("created tenant {} ({})", tenant.slug, tenant.id);
            Ok(())
        }
        Command::Audit(AuditCommand::Verify) => audit::verify(&config).await,
        Command::Audit(AuditCommand::Export { tenant, after }) => {
            audit::export(&config, &tenant, after).await
        }
        Command::Audit(AuditCommand::Purge { tenant }) => {
            audit::purge(&config, tenant.as_deref()).await
        }
        Command::Keys(KeysCommand::Status) => keys::status(&config).await,
        Command::Keys(KeysCommand::Rotate {
            signing,
            tenant_data,
            tenant,
        }) => match (signing, tenant_data) {
            (true, _) => keys::rotate_signing(&config).await,
            (false, true) => keys::rotate_tenant_data(&config, tenant.as_deref()).await,
            (false, false) => keys::rotate_master(&config).await,
        },
        Command::Keys(KeysCommand::Retire {
            version,
            tenant,
            master,
        }) => match (master, version) {
            (Some(v), _) => keys::retire_master(&config, v).await,
            (None, Some(v)) => keys::retire_data(&config, v, tenant.as_deref()).await,
            (None, None) => Err(Failure {
                lines: vec!["say which version to retire (see --help)".to_owned()],
                code: 2,
            }),
        },
        Command::Users(UsersCommand::Import { file, tenant }) => {
            users::import(&config, &file, &tenant).await
        }
        Command::Users(UsersCommand::Delete { email }) => users::delete(&config, &email).await,
        Command::Platform(command) => platform::run(&config, command).await,
    }
}

const TIME_FORMAT: chrono::SecondsFormat = chrono::SecondsFormat::Secs;

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(TIME_FORMAT, true)
}
