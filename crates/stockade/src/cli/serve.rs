//! `stockade serve` and what it shares with `config check`: the
//! configuration verdict, start-up (keys, database, keyring, caches, the
//! scheduled jobs, the listener), the ready line on stdout, logging, and a
//! graceful stop. It assembles what the rooms provide (`app::app`,
//! `app::spawn_jobs`); no request or job logic lives here.

use std::sync::Arc;

use super::{Failure, database};
use crate::app::{self, AppState};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::crypto::keys as master_keys;
use crate::db::MigrateOptions;

pub(super) fn config_check(config: &Config) -> Result<(), Failure> {
    let mut problems = match config.is_production() {
        true => master_keys::load(config).err().unwrap_or_default(),
        false => Vec::new(),
    };
    problems.extend(config.database_problems(crate::config::DatabaseUse::Serve));
    let listening = crate::http::listeners::check(config).unwrap_or_else(|problem| {
        problems.push(problem);
        Vec::new()
    });
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
    for line in config.database_summary().into_iter().chain(listening) {
        println!("{line}");
    }
    Ok(())
}

pub(super) async fn serve(mut config: Config, options: MigrateOptions) -> Result<(), Failure> {
    let keys = master_keys::load(&config).map_err(|lines| Failure { lines, code: 2 })?;
    if keys.development {
        tracing::warn!("using development keys: never run production with them");
    }
    let db = database::open_with_keys(&config, options, database::RekeyCollisions::Fail).await?;
    // The owner's URL served its purpose: the serving process keeps neither
    // an owner connection nor its credentials.
    config.migrate_database_url = None;
    // The API (HTTPS with a certificate) and the redirector (`http::listeners`).
    let listeners = crate::http::listeners::Listeners::bind(&config)
        .await
        .map_err(|e| Failure {
            lines: vec![e.line().to_owned()],
            code: e.exit_code(),
        })?;
    let url = listeners.describe(&config);
    let mode = if config.is_postgres() {
        "PostgreSQL".to_owned()
    } else {
        format!("embedded SQLite in {}", config.data_dir.display())
    };
    let keyring = crate::crypto::keyring::load(&db, &keys, &SystemClock)
        .await
        .map_err(Failure::one)?;
    let production = config.is_production();
    let redis_configured = config.redis_url.is_some();
    let state = AppState::new(config, db.clone(), Arc::new(SystemClock), keys, keyring)?;
    // The admin listener (`/metrics` only, `ops::admin`): never the public
    // port; stopped when this function returns.
    let _admin = crate::ops::admin::start_configured(&state.config, &db)
        .await
        .map_err(Failure::one)?;
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
    // The scheduled jobs (`jobs`), shown in `/readyz`; stopped on shutdown.
    let mut jobs = app::spawn_jobs(&state);
    let router = app::app(state).layer(axum::Extension(jobs.board()));
    let served = listeners.serve(router, app::shutdown_signal()).await;
    jobs.shutdown();
    served.map_err(|e| Failure::one(format!("server error: {e}")))?;
    db.close().await;
    say("Stockade stopped");
    Ok(())
}

/// Prints a line to stdout; a closed stdout (e.g. a supervisor that stopped
/// reading) must not bring the server down, so write errors are ignored.
pub(super) fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub(super) fn init_logging(config: &Config, serving: bool) {
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
