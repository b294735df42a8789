//! An in-memory cache of the per-request session check, so a request with a
//! live session costs a hash-map lookup instead of a database query.
//!
//! Correctness rests on the database's liveness generation
//! (`Db::liveness_generation`), bumped after every commit that changes a
//! session, user, membership or tenant row: an entry is used only while the
//! generation it was filled under is still current, so revocation in this
//! process takes effect on the next request. Changes made by *another*
//! process cannot bump our counter; for those the entry also expires after
//! [`CROSS_PROCESS_TTL`]. For that reason the cache is used only in
//! embedded mode; in cluster mode every request reads the database until
//! revocations fan out through Redis.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

use super::store::{self, Live, Refusal};
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
    filled_at: DateTime<Utc>,
}

pub struct SessionCache {
    enabled: bool,
    entries: Mutex<HashMap<(TenantId, SessionId), Entry>>,
}

impl SessionCache {
    pub fn for_backend(kind: BackendKind) -> Self {
        Self {
            enabled: kind == BackendKind::Sqlite,
            entries: Mutex::new(HashMap::new()),
        }
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
        if !self.enabled {
            return store::check(db, tenant, session, user, now).await;
        }
        // Read before the database read (see `db::tx` on the ordering).
        let generation = db.liveness_generation();
        let key = (tenant, session);
        if let Some(hit) = self.lookup(&key, user, generation, now) {
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
        now: DateTime<Utc>,
    ) -> Option<Live> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let e = entries.get(key)?;
        let fresh = e.generation == generation
            && e.user == user
            && now < e.live.live_until
            && now >= e.filled_at
            && now - e.filled_at < CROSS_PROCESS_TTL;
        fresh.then(|| e.live.clone())
    }
}
