//! In-memory caches of per-request credential checks (the session check of
//! `sessions::cache`, the API-key check of `apikeys::auth`), kept honest by
//! the database's liveness generation. One piece of code decides, for every
//! such cache, when an entry may answer a request.
//!
//! Correctness rests on `Db::liveness_generation`, bumped after every commit
//! that changes a session, API key, user, membership, tenant, role or
//! tenant-settings row (`db::tx`): an entry is used only while the
//! generation it was filled under is still current, so a revocation in this
//! process takes effect on the next request. Changes made by *another*
//! process cannot bump our counter; for those an entry also expires after
//! [`CROSS_PROCESS_TTL`].
//!
//! [`Generations`] is the one per-process choice of which generations a hit
//! depends on. Embedded mode (SQLite, one server process) uses the local
//! generation alone. Cluster mode (PostgreSQL) caches only with Redis
//! configured (`STOCKADE_REDIS_URL`), where the cluster-wide generation of
//! [`cluster`] carries every instance's bumps: each instance `INCR`s it after
//! the commit (a hook on its `Db`, installed once) and `GET`s it before each
//! check, *before* its database read, tagging the entry with it — the same
//! ordering argument as the local counter, so an entry filled from old state
//! carries an old generation. A hit needs both generations unchanged. Fail
//! safe: if the `GET` errors or times out (250 ms) the request reads the
//! database and fills nothing; if an `INCR` fails it is logged as an error,
//! and other instances see that change within [`CROSS_PROCESS_TTL`].
//! PostgreSQL without Redis does not cache: every request reads the database.
//!
//! A [`LivenessCache`] is used in three steps: [`LivenessCache::stamp`]
//! (before any database read; `None` means read the database and fill
//! nothing), [`LivenessCache::get`] (a hit only under that same stamp and
//! within the TTL), and on a miss [`LivenessCache::fill`] with what the
//! database answered, tagged with the stamp read before it.

pub mod cluster;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

use crate::config::Config;
use crate::db::{BackendKind, Db};
use cluster::ClusterGeneration;

/// Bound on staleness for changes made by another process (e.g. the CLI).
pub const CROSS_PROCESS_TTL: Duration = Duration::seconds(5);

/// Entries kept at most per cache; past it the cache starts over (memory
/// stays bounded).
pub const MAX_ENTRIES: usize = 100_000;

/// Which generations a hit depends on.
#[derive(Clone)]
enum Mode {
    /// No caching: every check reads the database.
    Off,
    /// The local generation (one process owns the database).
    Local,
    /// The local and the Redis generation.
    Cluster(Arc<ClusterGeneration>),
}

/// The generations of one process, shared by all its caches (cheap to
/// clone; one Redis connection however many caches use it).
#[derive(Clone)]
pub struct Generations {
    mode: Mode,
}

/// The generations read before a database read: the tag of the entry that
/// read fills, and what a hit must still match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    local: u64,
    /// The cluster-wide generation (cluster mode), read with `local`.
    cluster: Option<u64>,
}

impl Generations {
    /// Embedded mode caches, cluster mode does not (no Redis).
    pub fn for_backend(kind: BackendKind) -> Self {
        Self {
            mode: match kind {
                BackendKind::Sqlite => Mode::Local,
                BackendKind::Postgres => Mode::Off,
            },
        }
    }

    /// What `config` allows for `db`: on PostgreSQL with `STOCKADE_REDIS_URL`,
    /// the cluster-wide generation, whose hook this installs on `db` (call
    /// it once per process and share the result). Connects lazily: an
    /// unreachable Redis leaves every check reading the database until it
    /// answers.
    pub fn new(config: &Config, db: &Db) -> Self {
        let url = config
            .redis_url
            .as_ref()
            .map(|u| secrecy::ExposeSecret::expose_secret(&u.value).to_owned());
        let (Some(url), Some(database)) = (url, db.postgres_database_name()) else {
            return Self::for_backend(db.kind());
        };
        let mode = match ClusterGeneration::connect(&url, &database) {
            Ok(cluster) => {
                db.set_liveness_hook(cluster.hook());
                Mode::Cluster(cluster)
            }
            Err(e) => {
                tracing::error!(error = %e, "STOCKADE_REDIS_URL unusable: caches off");
                Mode::Off
            }
        };
        Self { mode }
    }

    /// The cluster-wide generation, in cluster mode with Redis.
    pub fn cluster(&self) -> Option<&Arc<ClusterGeneration>> {
        match &self.mode {
            Mode::Cluster(c) => Some(c),
            Mode::Off | Mode::Local => None,
        }
    }

    /// The generations now, read before the database read the caller is
    /// about to make; `None` when this check must bypass the caches (caching
    /// off, or Redis unavailable: no hit, no fill).
    pub async fn read(&self, db: &Db) -> Option<Stamp> {
        // Local first: both must be read before the database read (see
        // `db::tx` on the ordering), and a later local read could only be
        // newer.
        let local = db.liveness_generation();
        let cluster = match &self.mode {
            Mode::Off => return None,
            Mode::Local => None,
            Mode::Cluster(c) => Some(c.current().await?),
        };
        Some(Stamp { local, cluster })
    }
}

struct Entry<V> {
    value: V,
    stamp: Stamp,
    filled_at: DateTime<Utc>,
}

/// Answers of one kind of check, by key, each tagged with the [`Stamp`] it
/// was filled under (see the module documentation).
pub struct LivenessCache<K, V> {
    generations: Generations,
    entries: Mutex<HashMap<K, Entry<V>>>,
    hits: AtomicU64,
}

impl<K: Eq + Hash, V: Clone> LivenessCache<K, V> {
    pub fn new(generations: Generations) -> Self {
        Self {
            generations,
            entries: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
        }
    }

    pub fn generations(&self) -> &Generations {
        &self.generations
    }

    /// Step one, before any database read: see [`Generations::read`].
    pub async fn stamp(&self, db: &Db) -> Option<Stamp> {
        self.generations.read(db).await
    }

    /// The entry for `key` if it was filled under `stamp`, less than
    /// [`CROSS_PROCESS_TTL`] ago, and `usable` accepts it (a check of its
    /// own, e.g. that the entry belongs to the same user). Counts the hit.
    pub fn get(
        &self,
        key: &K,
        stamp: Stamp,
        now: DateTime<Utc>,
        usable: impl FnOnce(&V) -> bool,
    ) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let e = entries.get(key)?;
        let fresh = e.stamp == stamp
            && now >= e.filled_at
            && now - e.filled_at < CROSS_PROCESS_TTL
            && usable(&e.value);
        if !fresh {
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(e.value.clone())
    }

    /// Stores what the database answered, tagged with the stamp read before
    /// that read.
    pub fn fill(&self, key: K, value: V, stamp: Stamp, now: DateTime<Utc>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            key,
            Entry {
                value,
                stamp,
                filled_at: now,
            },
        );
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    fn stamp(local: u64, cluster: Option<u64>) -> Stamp {
        Stamp { local, cluster }
    }

    #[test]
    fn a_hit_needs_the_same_generations_and_a_young_entry() {
        let cache = LivenessCache::new(Generations::for_backend(BackendKind::Sqlite));
        cache.fill("k", 7, stamp(3, Some(9)), at(0));
        assert_eq!(cache.get(&"k", stamp(3, Some(9)), at(4), |_| true), Some(7));
        assert_eq!(cache.hits(), 1);
        // Another generation, local or cluster-wide: a miss.
        assert_eq!(cache.get(&"k", stamp(4, Some(9)), at(1), |_| true), None);
        assert_eq!(cache.get(&"k", stamp(3, Some(10)), at(1), |_| true), None);
        assert_eq!(cache.get(&"k", stamp(3, None), at(1), |_| true), None);
        // Too old, from the future, refused by the caller, another key.
        assert_eq!(cache.get(&"k", stamp(3, Some(9)), at(5), |_| true), None);
        assert_eq!(cache.get(&"k", stamp(3, Some(9)), at(-1), |_| true), None);
        assert_eq!(cache.get(&"k", stamp(3, Some(9)), at(1), |v| *v != 7), None);
        assert_eq!(cache.get(&"j", stamp(3, Some(9)), at(1), |_| true), None);
        assert_eq!(cache.hits(), 1);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = LivenessCache::new(Generations::for_backend(BackendKind::Sqlite));
        for i in 0..=MAX_ENTRIES {
            cache.fill(i, (), stamp(0, None), at(0));
        }
        assert_eq!(cache.len(), 1);
    }
}
