//! `stockade platform add-owner | remove-owner | list-owners` (SPEC §4;
//! issue #17 item 2): platform ownership granted to an existing account by
//! id or email, recorded in `platform_owner_grants` with an event in the
//! platform audit chain.

use clap::{Args, Subcommand};

use super::{Failure, open_migrated};
use crate::audit::{Actor, RequestContext};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::db::Db;
use crate::identity::{self, User};
use crate::ids::UserId;
use crate::platform::owners;

#[derive(Debug, Subcommand)]
pub enum PlatformCommand {
    /// Make an existing account a platform owner (audited in the platform log).
    #[command(long_about = "Make an existing account a platform owner: it may use \
        /v1/platform/* (with a recent step-up). Name the account by --user-id or by --email \
        (any spelling of its address). The grant is recorded with a platform.owner.granted \
        event in the platform audit log; granting an owner again changes nothing.")]
    AddOwner(Who),
    /// Withdraw a grant made with add-owner (audited in the platform log).
    #[command(
        long_about = "Withdraw a grant made with add-owner (platform.owner.revoked in \
        the platform audit log). Owners listed by id or email in STOCKADE_PLATFORM_OWNERS \
        stay owners until the configuration changes."
    )]
    RemoveOwner(Who),
    /// List the granted platform owners (and say which configured entries exist).
    ListOwners,
}

/// The account a command is about.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Who {
    /// The account's user id.
    #[arg(long, value_name = "UUID")]
    user_id: Option<String>,
    /// The account's email address (any spelling).
    #[arg(long, value_name = "EMAIL")]
    email: Option<String>,
}

pub(super) async fn run(config: &Config, command: PlatformCommand) -> Result<(), Failure> {
    let db = open_migrated(config).await?;
    let result = match command {
        PlatformCommand::AddOwner(who) => set(&db, &who, true).await,
        PlatformCommand::RemoveOwner(who) => set(&db, &who, false).await,
        PlatformCommand::ListOwners => list(&db, config).await,
    };
    db.close().await;
    result
}

async fn set(db: &Db, who: &Who, grant: bool) -> Result<(), Failure> {
    let user = find(db, who).await?;
    let changed = owners::set_grant(
        db,
        &SystemClock,
        &user,
        grant,
        Actor::System,
        RequestContext::default(),
    )
    .await
    .map_err(Failure::one)?;
    let line = match (grant, changed) {
        (true, true) => "is now a platform owner",
        (true, false) => "was already a platform owner (granted): nothing changed",
        (false, true) => "is no longer a platform owner by grant",
        (false, false) => "had no platform-owner grant: nothing changed",
    };
    println!("user {} ({}) {line}", user.id, user.email);
    Ok(())
}

async fn list(db: &Db, config: &Config) -> Result<(), Failure> {
    let grants = owners::grants(db).await.map_err(Failure::one)?;
    for g in &grants {
        println!(
            "granted {} {} since {}",
            g.user_id,
            g.email,
            super::timestamp(g.granted_at)
        );
    }
    for entry in &config.platform_owners {
        println!("configured {entry}");
    }
    if grants.is_empty() && config.platform_owners.is_empty() {
        println!("no platform owners");
    }
    Ok(())
}

async fn find(db: &Db, who: &Who) -> Result<User, Failure> {
    match (&who.user_id, &who.email) {
        (Some(id), _) => {
            let id: UserId = id
                .trim()
                .parse()
                .map_err(|_| Failure::one(format!("`{}` is not a user id", id.escape_debug())))?;
            identity::find_user(db, id)
                .await
                .map_err(Failure::one)?
                .ok_or_else(|| Failure::one(format!("no user with id {id}")))
        }
        (None, Some(email)) => {
            let parsed = identity::Email::parse(email)
                .map_err(|e| Failure::one(format!("`{}`: {e}", email.escape_debug())))?;
            identity::find_user_by_email(db, &parsed)
                .await
                .map_err(Failure::one)?
                .ok_or_else(|| Failure::one(format!("no user with email `{}`", parsed.as_str())))
        }
        (None, None) => Err(Failure::one("name the account: --user-id or --email")),
    }
}
