//! The `stockade` command line. Every command has `--help`; every failure is
//! one `error:` line on stderr and a non-zero exit (2 for configuration that
//! is unfit to run, 1 for anything else).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::app::{self, AppState};
use crate::audit::{Actor, RequestContext};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::crypto::keys;
use crate::db::Db;
use crate::tenancy::{self, NewTenant, Slug, TenantName};

#[derive(Debug, Parser)]
#[command(
    name = "stockade",
    version,
    about = "The secure core of a multi-tenant B2B SaaS, as one binary.",
    long_about = "The secure core of a multi-tenant B2B SaaS, as one binary.\n\n\
        With no configuration it runs embedded (SQLite in ./stockade-data) in the \
        development profile. Configuration comes from STOCKADE_* environment variables \
        and an optional TOML file (--config)."
)]
pub struct Cli {
    /// TOML configuration file (environment variables override it).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (migrations run first).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Configuration checks.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Tenant administration.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the verdict on the configuration without starting (exit 2 if unfit).
    Check,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (writes its first audit event).
    Create {
        /// URL-safe handle: 3-63 of a-z, 0-9 and '-'.
        #[arg(long)]
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify every tenant's hash chain; reports the first broken sequence number.
    Verify,
}

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
    init_logging(&config, matches!(cli.command, Command::Serve));
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let db = open_migrated(&config).await?;
            db.close().await;
            println!("migrations are current");
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => config_check(&config),
        Command::Tenant(TenantCommand::Create { slug, name }) => {
            let new = NewTenant {
                slug: Slug::parse(&slug).map_err(Failure::one)?,
                name: TenantName::parse(&name).map_err(Failure::one)?,
                plan: "free".to_owned(),
                trial_ends_at: None,
            };
            let db = open_migrated(&config).await?;
            let tenant = tenancy::create_tenant(
                &db,
                &SystemClock,
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
        Command::Audit(AuditCommand::Verify) => {
            let db = open_migrated(&config).await?;
            let reports = crate::audit::verify_all(&db).await.map_err(Failure::one)?;
            db.close().await;
            let broken: Vec<String> = reports
                .iter()
                .filter(|r| !r.ok)
                .map(|r| {
                    format!(
                        "audit chain of tenant {} is broken at seq {}: {}",
                        r.tenant_id,
                        r.first_bad_seq.unwrap_or(0),
                        r.reason.as_deref().unwrap_or("")
                    )
                })
                .collect();
            for r in reports.iter().filter(|r| r.ok) {
                println!(
                    "ok {} events={} head_seq={} head_hash={}",
                    r.tenant_id, r.events_checked, r.head_seq, r.head_hash
                );
            }
            if broken.is_empty() {
                Ok(())
            } else {
                Err(Failure {
                    lines: broken,
                    code: 1,
                })
            }
        }
    }
}

fn config_check(config: &Config) -> Result<(), Failure> {
    if config.is_production() {
        keys::load(config).map_err(|lines| Failure { lines, code: 2 })?;
    }
    println!(
        "configuration OK: profile={}, database={}, listen={}, url={}",
        if config.is_production() {
            "production"
        } else {
            "development"
        },
        if config.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        },
        config.listen,
        config.base_url()
    );
    Ok(())
}

async fn open_migrated(config: &Config) -> Result<Db, Failure> {
    let db = Db::open(config).await?;
    db.migrate().await?;
    Ok(db)
}

async fn serve(config: Config) -> Result<(), Failure> {
    let keys = keys::load(&config).map_err(|lines| Failure { lines, code: 2 })?;
    if keys.development {
        tracing::warn!("using development keys: never run production with them");
    }
    let db = open_migrated(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Failure::one(format!("cannot listen on {}: {e}", config.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::one(format!("cannot read the listening address: {e}")))?;
    let mode = if config.is_postgres() {
        "PostgreSQL".to_owned()
    } else {
        format!("embedded SQLite in {}", config.data_dir.display())
    };
    let url = match &config.public_url {
        Some(_) => config.base_url(),
        None => format!("http://{local}"),
    };
    say(&format!(
        "Stockade listening on {url} ({mode}, {} profile)",
        if config.is_production() {
            "production"
        } else {
            "development"
        }
    ));
    let keyring = crate::crypto::keyring::load(&db, &keys, &SystemClock)
        .await
        .map_err(Failure::one)?;
    let state = AppState::new(config, db.clone(), Arc::new(SystemClock), keys, keyring)?;
    app::serve(listener, app::app(state), app::shutdown_signal())
        .await
        .map_err(|e| Failure::one(format!("server error: {e}")))?;
    db.close().await;
    say("Stockade stopped");
    Ok(())
}

/// Prints a line to stdout; a closed stdout (e.g. a supervisor that stopped
/// reading) must not bring the server down, so write errors are ignored.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn init_logging(config: &Config, serving: bool) {
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless: ignore its error.
    let _ = if config.log_json {
        builder
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}
