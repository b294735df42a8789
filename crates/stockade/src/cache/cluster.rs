//! The cluster-wide liveness generation, kept in Redis so that several
//! instances on one PostgreSQL database can each cache their session and
//! API-key checks. One per process, shared by every cache (see the parent
//! module).
//!
//! One counter per database, `stockade:liveness:<database name>`. Every
//! instance `INCR`s it after each commit that bumps its local liveness
//! generation (through the hook it installs on its `Db`), and reads it with
//! `GET` before each check it may answer from a cache. A missing or
//! small value (a fresh key, or Redis restarted without its data) is never
//! used: the reader bypasses the cache and moves the counter to a random value
//! at or above [`SEED_FLOOR`], so a reset counter cannot climb back to a
//! generation an old cache entry carries.
//!
//! Fail safe: a `GET` that errors or takes longer than [`REDIS_TIMEOUT`]
//! answers `None` and the caller reads the database; an `INCR` that fails is
//! logged as an error and other instances may then answer from their cache
//! for at most [`super::CROSS_PROCESS_TTL`].
//!
//! Concurrent readers share `GET`s (see [`Rounds`]): a reader is answered by
//! the first `GET` *sent after it asked*, never by one already in flight, so
//! every bump that completed before the reader asked is in its answer —
//! exactly what a `GET` of its own would give — at a fraction of the round
//! trips under load.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::db::LivenessHook;

/// Bound on every Redis round trip (connection and response).
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// Generations below this came from a fresh key and are not used.
pub const SEED_FLOOR: i64 = 1 << 32;

pub struct ClusterGeneration {
    conn: ConnectionManager,
    key: String,
    rounds: Rounds,
}

/// The shared `GET`s. Rounds are numbered; one runs at a time. A reader
/// that arrives while round `n` is in flight waits for round `n + 1`, which
/// starts only after `n` completes, so it is sent after the reader arrived.
struct Rounds {
    state: std::sync::Mutex<RoundState>,
    /// The last completed round and its answer.
    done: tokio::sync::watch::Sender<(u64, Option<u64>)>,
}

/// Held by a reader running a round itself: dropped before the round ends
/// (the request was cancelled), it hands the round to a task.
struct Handoff {
    this: Option<Arc<ClusterGeneration>>,
}

impl Drop for Handoff {
    fn drop(&mut self) {
        if let Some(this) = self.this.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(this.run_rounds());
        }
    }
}

#[derive(Default)]
struct RoundState {
    /// The newest round started.
    started: u64,
    running: bool,
    /// A reader waits for the round after the running one.
    wanted: bool,
}

/// The generation a `GET` answered, if it may tag cache entries.
fn usable(value: Option<i64>) -> Option<u64> {
    value
        .filter(|v| *v >= SEED_FLOOR)
        .and_then(|v| u64::try_from(v).ok())
}

/// A random amount that moves a fresh counter to `[SEED_FLOOR, 2^48)`.
fn seed() -> i64 {
    let mut buf = [0u8; 8];
    // Without randomness the floor alone still keeps small values unused.
    let _ = getrandom::fill(&mut buf);
    SEED_FLOOR + (i64::from_le_bytes(buf) & ((1 << 47) - 1))
}

impl ClusterGeneration {
    /// Prepares a connection (made lazily, re-made after failures) to the
    /// Redis at `url`, for the counter of database `database`. Fails only on
    /// a malformed URL.
    pub fn connect(url: &str, database: &str) -> Result<Arc<Self>, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(REDIS_TIMEOUT);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Arc::new(Self {
            conn,
            key: format!("stockade:liveness:{database}"),
            rounds: Rounds {
                state: std::sync::Mutex::new(RoundState::default()),
                done: tokio::sync::watch::Sender::new((0, None)),
            },
        }))
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(REDIS_TIMEOUT, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    }

    /// The current generation, or `None` when the cache must not be used for
    /// this request (Redis unreachable, slow, or the counter not yet seeded).
    /// Answered by a `GET` sent after this call began (shared with the other
    /// readers that asked meanwhile; see [`Rounds`]).
    pub async fn current(self: &Arc<Self>) -> Option<u64> {
        let mut answers = self.rounds.done.subscribe();
        let (need, start) = {
            let mut state = self.rounds.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.running {
                state.wanted = true;
                (state.started + 1, false)
            } else {
                state.running = true;
                state.started += 1;
                (state.started, true)
            }
        };
        if start {
            // The reader that starts a round sends its `GET` itself (no task
            // hop); if it is cancelled mid-round, `Handoff` gives the round
            // to a task so the others are still answered.
            let mut handoff = Handoff {
                this: Some(self.clone()),
            };
            let answer = self.get_once().await;
            handoff.this = None;
            self.end_round(need, answer);
            return answer;
        }
        let wait = async {
            loop {
                let (round, answer) = *answers.borrow_and_update();
                if round >= need {
                    return answer;
                }
                if answers.changed().await.is_err() {
                    return None;
                }
            }
        };
        // At most two rounds (the one in flight, then ours), each bounded.
        tokio::time::timeout(REDIS_TIMEOUT * 3, wait)
            .await
            .unwrap_or(None)
    }

    /// Publishes round `round`'s answer and, if readers wait for the next
    /// round, starts it in a task (the reader that ran this one returns).
    fn end_round(self: &Arc<Self>, round: u64, answer: Option<u64>) {
        if self.next_round(round, answer) {
            tokio::spawn(self.clone().run_rounds());
        }
    }

    /// Publishes `answer` for `round`; whether another round is due (then
    /// already counted as started).
    fn next_round(&self, round: u64, answer: Option<u64>) -> bool {
        self.rounds.done.send_replace((round, answer));
        let mut state = self.rounds.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.wanted {
            state.wanted = false;
            state.started += 1;
            true
        } else {
            state.running = false;
            false
        }
    }

    /// Runs the started round, then the next while readers want them.
    async fn run_rounds(self: Arc<Self>) {
        loop {
            let round = self
                .rounds
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .started;
            let answer = self.get_once().await;
            if !self.next_round(round, answer) {
                return;
            }
        }
    }

    /// One `GET` (seeding the counter when it is not usable).
    async fn get_once(&self) -> Option<u64> {
        let value = match self
            .query::<Option<i64>>(redis::cmd("GET").arg(&self.key))
            .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "Redis GET failed: this check bypasses the caches");
                return None;
            }
        };
        let generation = usable(value);
        if generation.is_none() {
            // Concurrent seeders each add a random amount: the result is
            // still a fresh value above the floor.
            let seeded = self
                .query::<i64>(redis::cmd("INCRBY").arg(&self.key).arg(seed()))
                .await;
            if let Err(e) = seeded {
                tracing::debug!(error = %e, "Redis INCRBY (seed) failed");
            }
        }
        generation
    }

    /// Publishes one bump. On failure, logs an error: other instances then
    /// see this process's change only once their entries expire.
    pub async fn bump(&self) {
        if let Err(e) = self.query::<i64>(redis::cmd("INCR").arg(&self.key)).await {
            tracing::error!(
                key = %self.key,
                error = %e,
                "cannot publish a liveness change to Redis: other instances may answer \
                 from their session and API-key caches for up to 5 s"
            );
        }
    }

    /// Whether Redis answers now (for the startup log line).
    pub async fn reachable(&self) -> Result<(), String> {
        self.query::<String>(&redis::cmd("PING")).await.map(|_| ())
    }

    /// The hook a `Db` runs after each commit that bumped its liveness
    /// generation. The `INCR` runs in its own task, so a request cancelled
    /// after its commit still publishes it.
    pub fn hook(self: &Arc<Self>) -> LivenessHook {
        let this = self.clone();
        Arc::new(move || {
            let this = this.clone();
            Box::pin(async move {
                let _ = tokio::spawn(async move { this.bump().await }).await;
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_seeded_generations_are_used() {
        assert_eq!(usable(None), None);
        assert_eq!(usable(Some(0)), None);
        assert_eq!(usable(Some(1)), None);
        assert_eq!(usable(Some(SEED_FLOOR - 1)), None);
        assert_eq!(usable(Some(-5)), None);
        assert_eq!(usable(Some(SEED_FLOOR)), Some(1 << 32));
        assert_eq!(usable(Some(SEED_FLOOR + 7)), Some((1 << 32) + 7));
    }

    #[test]
    fn seeds_land_above_the_floor_and_vary() {
        let seeds: Vec<i64> = (0..16).map(|_| seed()).collect();
        assert!(
            seeds
                .iter()
                .all(|s| (SEED_FLOOR..SEED_FLOOR + (1 << 47)).contains(s))
        );
        assert!(seeds.windows(2).any(|w| w.first() != w.get(1)));
    }
}
