//! The `stockade` command line as clap parses it: the commands, their
//! flags and their `--help` texts. Declarations only: what a command does is
//! in `cli.rs` (`run`) and the module it dispatches to.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::PlatformCommand;

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
