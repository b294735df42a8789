//! An in-memory cache of the per-request session check, so a request with a
//! live session costs a hash-map lookup instead of a database query.
//!
//! Correctness rests on the database's liveness generation
//! (`Db::liveness_generation`), bumped after every commit that changes a
//! session, user, membership, tenant, role or tenant-settings row: an entry
//! is used only while the generation it was filled under is still current,
//! so revocation in this process takes effect on the next request. Changes
//! made by *another* process cannot bump our counter; for those the entry
//! also expires after [`CROSS_PROCESS_TTL`].
//!
//! Embedded mode (SQLite, one server process) caches with the local
//! generation alone. Cluster mode (PostgreSQL) caches only with Redis
//! configured (`STOCKADE_REDIS_URL`), where the cluster-wide generation of
//! `sessions::cluster` carries every instance's bumps: each instance `INCR`s
//! it after the commit (a hook on its `Db`) and `GET`s it before each check,
//! *before* its database read, tagging the entry with it — the same ordering
//! argument as the local counter, so an entry filled from old state carries
//! an old generation. A hit needs both generations unchanged. Fail safe:
//! if the `GET` errors or times out (250 ms) the request reads the database
//! and fills nothing; if an `INCR` fails it is logged as an error, and other
//! instances see that change within [`CROSS_PROCESS_TTL`]. PostgreSQL without
//! Redis does not cache: every request reads the database.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, Utc};

use super::cluster::ClusterGeneration;
use super::store::{self, Live, Refusal};
use crate::config::Config;
use crate::db::{BackendKind, Db, DbError};
use crate::ids::{SessionId, TenantId, UserId};

/// Bound on staleness for changes made by another process (e.g. the CLI).
pub const CROSS_PROCESS_TTL: Duration = Duration::seconds(5);

/// Entries kept at most; past it the cache starts over (memory stays bounded).
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone)]
struct Entry {
    user: UserId,
    live: Live,
    generation: u64,
    /// The cluster-wide generation (cluster mode), read with `generation`.
    cluster: Option<u64>,
    filled_at: DateTime<Utc>,
}

/// Which generations a hit depends on.
enum Mode {
    /// No caching: every check reads the database.
    Off,
    /// The local generation (one process owns the database).
    Local,
    /// The local and the Redis generation.
    Cluster(Arc<ClusterGeneration>),
}

pub struct SessionCache {
    mode: Mode,
    entries: Mutex<HashMap<(TenantId, SessionId), Entry>>,
    hits: AtomicU64,
}

impl SessionCache {
    /// Embedded mode caches, cluster mode does not (no Redis).
    pub fn for_backend(kind: BackendKind) -> Self {
        Self::with_mode(match kind {
            BackendKind::Sqlite => Mode::Local,
            BackendKind::Postgres => Mode::Off,
        })
    }

    /// The cache `config` allows for `db`: on PostgreSQL with
    /// `STOCKADE_REDIS_URL`, the cluster-wide generation, whose hook this
    /// installs on `db`. Connects lazily: an unreachable Redis leaves every
    /// check reading the database until it answers.
    pub fn new(config: &Config, db: &Db) -> Self {
        let url = config
            .redis_url
            .as_ref()
            .map(|u| secrecy::ExposeSecret::expose_secret(&u.value).to_owned());
        let (Some(url), Some(database)) = (url, db.postgres_database_name()) else {
            return Self::for_backend(db.kind());
        };
        match ClusterGeneration::connect(&url, &database) {
            Ok(cluster) => {
                db.set_liveness_hook(cluster.hook());
                Self::with_mode(Mode::Cluster(cluster))
            }
            Err(e) => {
                tracing::error!(error = %e, "STOCKADE_REDIS_URL unusable: session cache off");
                Self::with_mode(Mode::Off)
            }
        }
    }

    fn with_mode(mode: Mode) -> Self {
        Self {
            mode,
            entries: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
        }
    }

    /// The cluster-wide generation, in cluster mode with Redis.
    pub fn cluster(&self) -> Option<&Arc<ClusterGeneration>> {
        match &self.mode {
            Mode::Cluster(c) => Some(c),
            Mode::Off | Mode::Local => None,
        }
    }

    /// Checks answered from memory since start.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `sessions::check`, answered from memory when it safely can be.
    pub async fn check(
        &self,
        db: &Db,
        tenant: TenantId,
        session: SessionId,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Result<Live, Refusal>, DbError> {
        // Both read before the database read (see `db::tx` on the ordering).
        let generation = db.liveness_generation();
        let cluster = match &self.mode {
            Mode::Off => return store::check(db, tenant, session, user, now).await,
            Mode::Local => None,
            Mode::Cluster(c) => match c.current().await {
                Some(g) => Some(g),
                // Redis unavailable: no hit, no fill.
                None => return store::check(db, tenant, session, user, now).await,
            },
        };
        let key = (tenant, session);
        if let Some(hit) = self.lookup(&key, user, generation, cluster, now) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Ok(hit));
        }
        let live = store::check(db, tenant, session, user, now).await?;
        if let Ok(live) = &live {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(
                key,
                Entry {
                    user,
                    live: live.clone(),
                    generation,
                    cluster,
                    filled_at: now,
                },
            );
        }
        Ok(live)
    }

    fn lookup(
        &self,
        key: &(TenantId, SessionId),
        user: UserId,
        generation: u64,
        cluster: Option<u64>,
        now: DateTime<Utc>,
    ) -> Option<Live> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let e = entries.get(key)?;
        let fresh = e.generation == generation
            && e.cluster == cluster
            && e.user == user
            && now < e.live.live_until
            && now >= e.filled_at
            && now - e.filled_at < CROSS_PROCESS_TTL;
        fresh.then(|| e.live.clone())
    }
}
