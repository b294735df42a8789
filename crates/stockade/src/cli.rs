//! The `stockade` command line. Every command has `--help`; every failure is
//! one `error:` line on stderr and a non-zero exit (2 for configuration that
//! is unfit to run, 1 for anything else).

use std::collections::{BTreeSet, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::app::{self, AppState};
use crate::audit::{Actor, RequestContext};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::crypto::keys as master_keys;
use crate::db::{Db, MigrateOptions};
use crate::identity::import::{ImportError, parse_import};
use crate::identity::import_store::{self, ImportStoreError};
use crate::tenancy::{self, NewTenant, Slug, TenantName};

mod database;
mod keys;
mod platform;

pub use platform::PlatformCommand;

use database::{open_migrated, open_migrated_without_keys};

/// The most rows `stockade users import` takes from one file.
pub const MAX_IMPORT_ROWS: usize = 100_000;

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
    /// Run the server (migrations run first where this process may apply them).
    #[command(long_about = "Run the server.\n\n\
        SQLite: pending migrations are applied first. PostgreSQL: the server connects as the \
        login role of STOCKADE_DATABASE_URL, which must own nothing; with \
        STOCKADE_MIGRATE_DATABASE_URL (the owner) it applies pending migrations first over a \
        connection it then closes, otherwise it refuses to start unless they are current.")]
    Serve {
        /// Also apply migrations that drop or empty data (back up first).
        #[arg(long)]
        allow_destructive: bool,
    },
    /// Apply pending database migrations and exit.
    #[command(long_about = "Apply pending database migrations and exit.\n\n\
        PostgreSQL: runs as the schema owner (STOCKADE_MIGRATE_DATABASE_URL), puts the grants of \
        stockade_app back to what this version needs, and checks the serving login role (the \
        user of STOCKADE_DATABASE_URL, else stockade_login), printing the statement that \
        creates it when it does not exist. A migration that drops or empties data is refused, \
        nothing applied, without --allow-destructive.")]
    Migrate {
        /// Also apply migrations that drop or empty data (back up first).
        #[arg(long)]
        allow_destructive: bool,
    },
    /// Configuration checks.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Tenant administration.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Signing and master keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// User administration.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Platform owners (who may use /v1/platform/*).
    #[command(subcommand)]
    Platform(PlatformCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the verdict on the configuration without starting (exit 2 if unfit).
    Check,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant with its keys (writes its first audit event).
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
    /// Write a tenant's events as NDJSON to stdout, ascending (for a SIEM).
    Export {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
        /// Resume after this sequence number (0: from the start).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
        after: i64,
    },
    /// Delete events older than each tenant's audit_retention_days (never below
    /// STOCKADE_AUDIT_RETENTION_MIN_DAYS; a shortening spares older events) and the
    /// platform's older than STOCKADE_AUDIT_PLATFORM_RETENTION_DAYS (checkpointed:
    /// verify still passes); a broken chain is skipped (exit 1), the others purged.
    /// The server also does this daily.
    Purge {
        /// Only this tenant (default: every tenant and the platform log).
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show the signing keys, the master-key versions with what each wraps, and each
    /// tenant's data-key versions with the records each protects (never a key itself).
    Status,
    /// Rotate the master key (default), the token signing key or tenants' data keys.
    #[command(long_about = "Rotate a key.\n\n\
        With no flag: adds a new master-key version to the key file (atomically, mode 0600) \
        and re-wraps every tenant key, signing key, server key and queued email under it, in \
        short transactions; no record is rewritten. Running servers pick the new version up \
        from the file. Re-run after a crash, it finishes the interrupted rotation instead of \
        adding another version.\n\n\
        --tenant-data makes a new data-key version for each tenant (or the one named by \
        --tenant) and re-encrypts its records in batches of 500, showing progress; the API \
        keeps serving. Re-run after a crash, it resumes with the current version.\n\n\
        --signing generates a new token signing key of the configured algorithm, makes it \
        current and retires the previous one, whose tokens keep verifying until they expire \
        (15 minutes).")]
    Rotate {
        /// Rotate the token signing key.
        #[arg(long, conflicts_with = "tenant_data")]
        signing: bool,
        /// Rotate the tenants' data keys and re-encrypt their records.
        #[arg(long)]
        tenant_data: bool,
        /// Only this tenant (with --tenant-data).
        #[arg(long, value_name = "SLUG", requires = "tenant_data")]
        tenant: Option<String>,
    },
    /// Retire a tenant data-key version, or with --master a master-key version.
    #[command(long_about = "Retire a key version: it no longer decrypts.\n\n\
        VERSION [--tenant SLUG] retires that data-key version of every tenant that has it (or \
        of the one tenant), and refuses, retiring nothing, while any record still uses it or \
        while it is a tenant's current version: run `keys rotate --tenant-data` first.\n\n\
        --master VERSION removes that master-key version from the key file, and refuses while \
        any item is still wrapped by it (run `keys rotate` first) or when it is the current one.")]
    Retire {
        /// The tenant data-key version to retire.
        #[arg(
            value_name = "VERSION",
            required_unless_present = "master",
            conflicts_with = "master"
        )]
        version: Option<u32>,
        /// Only this tenant.
        #[arg(long, value_name = "SLUG")]
        tenant: Option<String>,
        /// Retire this master-key version instead.
        #[arg(long, value_name = "VERSION", conflicts_with = "tenant")]
        master: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Import users with their bcrypt password hashes from a CSV file (all or nothing).
    #[command(
        long_about = "Import users with their bcrypt password hashes from a CSV file.\n\n\
        The file has a header row naming the columns email, name, password_hash and \
        optionally role (owner, admin, editor or viewer; viewer when empty), in any order; \
        at most 100000 rows. Every row is imported, or none: any problem is reported as one \
        line per row and nothing is written. An address that already has an account fails \
        the import (accounts are never linked silently). Imported users sign in with their \
        old password, which is then re-hashed with argon2id."
    )]
    Import {
        /// The CSV file.
        #[arg(value_name = "FILE.csv")]
        file: PathBuf,
        /// Slug of the tenant the users join.
        #[arg(long, value_name = "SLUG")]
        tenant: String,
    },
    /// Delete a user at once: memberships, sessions, API keys and credentials
    /// end, and their personal data in past audit events becomes unreadable.
    #[command(
        long_about = "Delete a user at once (SPEC §2.15): their memberships, sessions and \
        API keys end, the account and its credentials are removed, and the personal data \
        in past audit events (address, user agent, email) becomes unreadable for good, \
        while every audit chain still verifies. Refused while the user is the last active \
        owner of a tenant. The deletion is audited in each of their tenants and the \
        platform log."
    )]
    Delete {
        /// The user's email address.
        #[arg(long, value_name = "EMAIL")]
        email: String,
    },
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
    init_logging(&config, matches!(cli.command, Command::Serve { .. }));
    match cli.command {
        Command::Serve { allow_destructive } => {
            serve(config, MigrateOptions { allow_destructive }).await
        }
        Command::Migrate { allow_destructive } => {
            database::migrate(&config, MigrateOptions { allow_destructive }).await
        }
        Command::Config(ConfigCommand::Check) => config_check(&config),
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
        Command::Audit(AuditCommand::Export { tenant, after }) => {
            let db = open_migrated(&config).await?;
            let found = tenancy::find_by_slug(&db, &tenant)
                .await
                .map_err(Failure::one)?
                .ok_or_else(|| Failure::one(format!("no tenant with slug `{tenant}`")))?;
            let mut out = std::io::BufWriter::new(std::io::stdout());
            let r: anyhow::Result<u64> = async {
                crate::audit::api::audit_export(
                    &db,
                    &SystemClock,
                    found.id,
                    crate::audit::NewEvent::new(
                        crate::audit::Actor::System,
                        crate::audit::api::EXPORTED,
                    ),
                    after,
                )
                .await?;
                crate::audit::api::export_to(&db, found.id, after, &mut out).await
            }
            .await;
            db.close().await;
            r.map(|_| ()).map_err(Failure::one)
        }
        Command::Audit(AuditCommand::Purge { tenant }) => {
            let db = open_migrated(&config).await?;
            let r = audit_purge(&db, &config, tenant.as_deref()).await;
            db.close().await;
            r
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
            users_import(&config, &file, &tenant).await
        }
        Command::Users(UsersCommand::Delete { email }) => users_delete(&config, &email).await,
        Command::Platform(command) => platform::run(&config, command).await,
    }
}

async fn audit_purge(db: &Db, config: &Config, tenant: Option<&str>) -> Result<(), Failure> {
    use crate::audit::{retention, retention_policy::RetentionPolicy};
    let policy = RetentionPolicy::from_config(config);
    let run = match tenant {
        None => retention::purge_all(db, &SystemClock, policy)
            .await
            .map_err(Failure::one)?,
        Some(slug) => {
            let found = tenancy::find_by_slug(db, slug)
                .await
                .map_err(Failure::one)?
                .ok_or_else(|| Failure::one(format!("no tenant with slug `{slug}`")))?;
            let purged = retention::purge_one(db, &SystemClock, policy, found.id)
                .await
                .map_err(Failure::one)?;
            retention::PurgeRun {
                purged: purged.into_iter().collect(),
                skipped: Vec::new(),
            }
        }
    };
    for r in &run.purged {
        println!(
            "purged {} events of tenant {} (seq {} to {})",
            r.count, r.tenant_id, r.from_seq, r.up_to_seq
        );
    }
    if run.purged.is_empty() {
        println!("nothing older than the retention");
    }
    if run.skipped.is_empty() {
        return Ok(());
    }
    Err(Failure {
        lines: run
            .skipped
            .iter()
            .map(|k| {
                format!(
                    "tenant {} skipped, its events kept: {} (the other chains were purged)",
                    k.tenant_id, k.message
                )
            })
            .collect(),
        code: 1,
    })
}

const TIME_FORMAT: chrono::SecondsFormat = chrono::SecondsFormat::Secs;

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(TIME_FORMAT, true)
}

/// `users delete --email EMAIL`. Runs even while the email re-keying step
/// refuses to finish (two accounts with look-alike addresses): deleting one
/// of them is how the operator resolves it. The address is looked up as
/// stored first (so each of two look-alikes can be named), then in
/// canonical form.
async fn users_delete(config: &Config, email: &str) -> Result<(), Failure> {
    let parsed = crate::identity::Email::parse(email);
    let db = database::open_with_keys(
        config,
        crate::db::MigrateOptions::default(),
        database::RekeyCollisions::Warn,
    )
    .await?;
    let r = users_delete_in(&db, email, parsed.as_ref().ok()).await;
    db.close().await;
    let (erased, address) = match (r, parsed) {
        (Ok(found), _) => found,
        (Err(_), Err(e)) => {
            return Err(Failure::one(format!("`{}`: {e}", email.escape_debug())));
        }
        (Err(e), Ok(_)) => return Err(e),
    };
    println!(
        "deleted user {} ({address}): removed from {} tenants, {} sessions deleted, {} API keys revoked; \
         their audit personal data is now unreadable",
        erased.user_id,
        erased.tenants.len(),
        erased.sessions_deleted,
        erased.api_keys_revoked
    );
    Ok(())
}

async fn users_delete_in(
    db: &Db,
    input: &str,
    parsed: Option<&crate::identity::Email>,
) -> Result<(crate::identity::Erasure, String), Failure> {
    let stored = crate::identity::find_user_by_key(db, &crate::identity::email::legacy_key(input))
        .await
        .map_err(Failure::one)?;
    let user = match (stored, parsed) {
        (Some(user), _) => Some(user),
        (None, Some(email)) => crate::identity::find_user_by_email(db, email)
            .await
            .map_err(Failure::one)?,
        (None, None) => None,
    }
    .ok_or_else(|| Failure::one(format!("no user with email `{}`", input.escape_debug())))?;
    let erased = crate::identity::erase_user(
        db,
        &SystemClock,
        user.id,
        Actor::System,
        RequestContext::default(),
    )
    .await
    .map_err(Failure::one)?;
    Ok((erased, user.email))
}

/// `users import FILE --tenant SLUG`.
async fn users_import(config: &Config, path: &Path, slug: &str) -> Result<(), Failure> {
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::one(format!("cannot open {}: {e}", path.display())))?;
    let rows = match parse_import(std::io::BufReader::new(file), MAX_IMPORT_ROWS) {
        Ok(rows) => rows,
        Err(ImportError::Rows(errors)) => {
            return Err(Failure {
                lines: errors.iter().map(ToString::to_string).collect(),
                code: 1,
            });
        }
        Err(e) => return Err(Failure::one(format!("{}: {e}", path.display()))),
    };
    let source = path
        .file_name()
        .map_or_else(|| path.to_string_lossy(), |name| name.to_string_lossy())
        .into_owned();
    let total = u64::try_from(rows.len()).unwrap_or(u64::MAX);

    let db = open_migrated(config).await?;
    let result = async {
        let tenant = tenancy::find_by_slug(&db, slug)
            .await
            .map_err(Failure::one)?
            .ok_or_else(|| Failure::one(format!("no tenant with slug `{slug}`")))?;
        let progress = Progress::new(total, "users", "imported");
        let imported =
            import_store::import_users(&db, &SystemClock, &tenant, rows, &source, |done| {
                progress.set(done)
            })
            .await;
        progress.finish();
        imported.map_err(|e| import_failure(e, path))
    }
    .await;
    db.close().await;
    let imported = result?;
    if imported == 0 {
        println!("the file lists no users: nothing imported into {slug}");
    } else {
        println!("imported {imported} users into {slug}");
    }
    Ok(())
}

fn import_failure(e: ImportStoreError, path: &Path) -> Failure {
    match e {
        ImportStoreError::Rows(problems) => {
            let wanted: Vec<usize> = problems.iter().map(|p| p.index).collect();
            let lines = record_lines(path, &wanted).unwrap_or_default();
            Failure {
                lines: problems
                    .iter()
                    .map(|p| match lines.get(&p.index) {
                        Some(line) => format!("line {line}: {}", p.message),
                        None => format!("row {}: {}", p.index.saturating_add(1), p.message),
                    })
                    .collect(),
                code: 1,
            }
        }
        other => Failure::one(other),
    }
}

/// The line of the file on which each `wanted` data record (0-based, in
/// file order) starts, read the way `parse_import` reads the file; `None` if
/// the file cannot be read again.
///
/// A record's position from the `csv` crate is where the previous record's
/// terminator ended: before the `\n` of a CRLF, and before any blank lines.
/// Its `line()` is therefore one short for CRLF files and after blank lines,
/// so the line is counted here from the byte offset instead.
fn record_lines(path: &Path, wanted: &[usize]) -> Option<HashMap<usize, u64>> {
    let wanted: BTreeSet<usize> = wanted.iter().copied().collect();
    let last = *wanted.last()?;
    let file = std::fs::File::open(path).ok()?;
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(std::io::BufReader::new(file));
    let mut record = csv::ByteRecord::new();
    let mut offsets = Vec::new();
    let mut index: usize = 0;
    while index <= last && csv.read_byte_record(&mut record).ok()? {
        if wanted.contains(&index) {
            offsets.push((record.position()?.byte(), index));
        }
        index = index.saturating_add(1);
    }
    let file = std::fs::File::open(path).ok()?;
    let lines = line_numbers(std::io::BufReader::new(file), offsets.iter().map(|o| o.0)).ok()?;
    Some(offsets.into_iter().map(|o| o.1).zip(lines).collect())
}

/// For each byte offset (ascending), the 1-based line of the first byte at
/// or after it that is not a line break.
fn line_numbers(
    reader: impl std::io::BufRead,
    offsets: impl IntoIterator<Item = u64>,
) -> std::io::Result<Vec<u64>> {
    let mut offsets = offsets.into_iter().peekable();
    let mut lines = Vec::new();
    let mut newlines: u64 = 0;
    let mut waiting: usize = 0;
    let mut pos: u64 = 0;
    for byte in reader.bytes() {
        let byte = byte?;
        while offsets.next_if(|&o| o <= pos).is_some() {
            waiting = waiting.saturating_add(1);
        }
        if waiting > 0 && byte != b'\r' && byte != b'\n' {
            lines.extend(std::iter::repeat_n(newlines.saturating_add(1), waiting));
            waiting = 0;
        }
        if byte == b'\n' {
            newlines = newlines.saturating_add(1);
        }
        pos = pos.saturating_add(1);
    }
    let rest = waiting.saturating_add(offsets.count());
    lines.extend(std::iter::repeat_n(newlines.saturating_add(1), rest));
    Ok(lines)
}

/// Progress of long work: a bar when stderr is a terminal, otherwise a plain
/// line on stdout every tenth of the work (at most one per 1000 rows).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    /// What is counted ("users") and what was done to it ("imported").
    unit: &'static str,
    done_verb: &'static str,
    total: u64,
    every: u64,
    printed: std::cell::Cell<u64>,
}

impl Progress {
    fn new(total: u64, unit: &'static str, done_verb: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let style = indicatif::ProgressStyle::with_template(&format!(
                "{{bar:40.cyan/blue}} {{pos}}/{{len}} {unit} {{elapsed_precise}} (eta {{eta}})"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            indicatif::ProgressBar::new(total).with_style(style)
        });
        Self {
            bar,
            unit,
            done_verb,
            total,
            every: (total / 10).max(1000),
            printed: std::cell::Cell::new(0),
        }
    }

    fn set(&self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None => {
                if done >= self.printed.get().saturating_add(self.every) {
                    self.printed.set(done);
                    say(&format!(
                        "{} {done}/{} {}",
                        self.done_verb, self.total, self.unit
                    ));
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn config_check(config: &Config) -> Result<(), Failure> {
    let mut problems = match config.is_production() {
        true => master_keys::load(config).err().unwrap_or_default(),
        false => Vec::new(),
    };
    problems.extend(config.database_problems(crate::config::DatabaseUse::Serve));
    if !problems.is_empty() {
        return Err(Failure {
            lines: problems,
            code: 2,
        });
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
    for line in config.database_summary() {
        println!("{line}");
    }
    Ok(())
}

async fn serve(mut config: Config, options: MigrateOptions) -> Result<(), Failure> {
    let keys = master_keys::load(&config).map_err(|lines| Failure { lines, code: 2 })?;
    if keys.development {
        tracing::warn!("using development keys: never run production with them");
    }
    let db = database::open_with_keys(&config, options, database::RekeyCollisions::Fail).await?;
    // The owner's URL served its purpose: the serving process keeps neither
    // an owner connection nor its credentials.
    config.migrate_database_url = None;
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
        Some(_) => format!("http://{local} (public URL {})", config.base_url()),
        None => format!("http://{local}"),
    };
    let keyring = crate::crypto::keyring::load(&db, &keys, &SystemClock)
        .await
        .map_err(Failure::one)?;
    let production = config.is_production();
    let redis_configured = config.redis_url.is_some();
    let state = AppState::new(config, db.clone(), Arc::new(SystemClock), keys, keyring)?;
    // A Redis that does not answer at startup does not stop the server: the
    // session and API-key caches stay bypassed (every request reads the
    // database) until it answers, and the connection is retried on use.
    match state.session_cache.cluster() {
        Some(cluster) => match cluster.reachable().await {
            Ok(()) => {
                tracing::info!(key = %cluster.key(), "session and API-key caches on (Redis generation)")
            }
            Err(e) => tracing::error!(
                error = %e,
                "Redis not reachable: session and API-key caches bypassed until it answers"
            ),
        },
        None if redis_configured && db.kind() == crate::db::BackendKind::Sqlite => {
            tracing::info!("STOCKADE_REDIS_URL is not used in embedded mode")
        }
        None => {}
    }
    // Announced once ready: whoever waits for this line can use the server.
    say(&format!(
        "Stockade listening on {url} ({mode}, {} profile)",
        if production {
            "production"
        } else {
            "development"
        }
    ));
    let jobs = app::spawn_jobs(&state);
    let served = app::serve(listener, app::app(state), app::shutdown_signal()).await;
    jobs.abort();
    served.map_err(|e| Failure::one(format!("server error: {e}")))?;
    db.close().await;
    say("Stockade stopped");
    Ok(())
}

/// Prints a line to stdout; a closed stdout (e.g. a supervisor that stopped
/// reading) must not bring the server down, so write errors are ignored.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(file: &str, wanted: &[usize]) -> Vec<u64> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, file).unwrap();
        let found = record_lines(&path, wanted).unwrap();
        wanted.iter().map(|i| found[i]).collect()
    }

    #[test]
    fn record_lines_are_the_lines_of_the_file() {
        assert_eq!(lines_of("h1,h2\na,b\nc,d\n", &[0, 1]), [2, 3]);
        assert_eq!(lines_of("h1,h2\r\na,b\r\nc,d\r\n", &[0, 1]), [2, 3]);
        assert_eq!(lines_of("h1,h2\n\na,b\n\n\nc,d", &[0, 1]), [3, 6]);
        assert_eq!(lines_of("h1,h2\r\n\r\na,b\r\n\r\nc,d\r\n", &[1]), [5]);
        assert_eq!(lines_of("\u{feff}h1,h2\r\na,b\r\n", &[0]), [2]);
        assert_eq!(lines_of("h1,h2\n\"a\r\nb\",b\nc,d\n", &[0, 1]), [2, 4]);
        // Rows of the wrong width still count.
        assert_eq!(lines_of("h1,h2\na\nb,c,d\ne,f\n", &[2]), [4]);
        assert!(record_lines(Path::new("/nonexistent/f.csv"), &[0]).is_none());
        let dir = tempfile::tempdir().unwrap();
        assert!(record_lines(dir.path(), &[]).is_none());
    }

    #[test]
    fn line_numbers_skip_line_breaks() {
        let text = b"ab\n\r\n\ncd\n";
        assert_eq!(
            line_numbers(&text[..], [0, 2, 3, 9, 50]).unwrap(),
            [1, 4, 4, 5, 5]
        );
    }
}
