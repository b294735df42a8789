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
//! `cache::cluster` carries every instance's bumps: each instance `INCR`s
//! it after the commit (a hook on its `Db`) and `GET`s it before each check,
//! *before* its database read, tagging the entry with it — the same ordering
//! argument as the local counter, so an entry filled from old state carries
//! an old generation. A hit needs both generations unchanged. Fail safe:
//! if the `GET` errors or times out (250 ms) the request reads the database
//! and fills nothing; if an `INCR` fails it is logged as an error, and other
//! instances see that change within [`CROSS_PROCESS_TTL`]. PostgreSQL without
//! Redis does not cache: every request reads the database.
//!
//! The generation logic is shared with the API-key cache: it lives in
//! `crate::cache` ([`Generations`], [`LivenessCache`]); this module adds what
//! is particular to sessions (the entry must name the same user, and the
//! session's own idle/absolute deadline).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::store::{self, Live, Refusal};
pub use crate::cache::CROSS_PROCESS_TTL;
use crate::cache::cluster::ClusterGeneration;
use crate::cache::{Generations, LivenessCache};
use crate::config::Config;
use crate::db::{BackendKind, Db, DbError};
use crate::ids::{SessionId, TenantId, UserId};

#[derive(Clone)]
struct Entry {
    user: UserId,
    live: Live,
}

pub struct SessionCache {
    cache: LivenessCache<(TenantId, SessionId), Entry>,
}

impl SessionCache {
    /// Embedded mode caches, cluster mode does not (no Redis).
    pub fn for_backend(kind: BackendKind) -> Self {
        Self::with_generations(Generations::for_backend(kind))
    }

    /// The cache `config` allows for `db`, with generations of its own (see
    /// [`Generations::new`]: it installs the Redis hook on `db`). A server
    /// builds one [`Generations`] for all its caches and uses
    /// [`SessionCache::with_generations`].
    pub fn new(config: &Config, db: &Db) -> Self {
        Self::with_generations(Generations::new(config, db))
    }

    /// A cache on the process's shared generations.
    pub fn with_generations(generations: Generations) -> Self {
        Self {
            cache: LivenessCache::new(generations),
        }
    }

    /// The cluster-wide generation, in cluster mode with Redis.
    pub fn cluster(&self) -> Option<&Arc<ClusterGeneration>> {
        self.cache.generations().cluster()
    }

    /// Checks answered from memory since start.
    pub fn hits(&self) -> u64 {
        self.cache.hits()
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
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
        // Before the database read (see `crate::cache`).
        let Some(stamp) = self.cache.stamp(db).await else {
            return store::check(db, tenant, session, user, now).await;
        };
        let key = (tenant, session);
        let usable = |e: &Entry| e.user == user && now < e.live.live_until;
        if let Some(hit) = self.cache.get(&key, stamp, now, usable) {
            return Ok(Ok(hit.live));
        }
        let live = store::check(db, tenant, session, user, now).await?;
        if let Ok(live) = &live {
            let entry = Entry {
                user,
                live: live.clone(),
            };
            self.cache.fill(key, entry, stamp, now);
        }
        Ok(live)
    }
}
