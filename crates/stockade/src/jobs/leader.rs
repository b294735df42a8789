//! Who runs the cluster-wide jobs (those marked [`super::Job::leader_only`]).
//!
//! - Embedded mode (SQLite): one process owns the database file, so it is
//!   always the leader ([`Leadership::Always`]).
//! - Cluster mode (PostgreSQL): the instances elect one with a
//!   **session-level advisory lock** ([`LEADER_LOCK`]) held on a dedicated
//!   connection, taken out of the serving pool ([`Leadership::elect`]). The
//!   lock lives exactly as long as that session: a leader that stops, or is
//!   killed (`kill -9`), or whose connection breaks, loses it at once on the
//!   database's side, and another instance's next attempt (every
//!   [`CHECK_EVERY`]) takes it. A leader pings its connection at the same
//!   pace and steps down as soon as the ping fails, so the window in which
//!   two instances might both believe they lead is at most one
//!   [`CHECK_EVERY`]; every leader-only job is idempotent across instances
//!   anyway (`docs/controls.md` §1), the election only keeps the work from
//!   being done N times.
//!
//! This module decides who leads; the scheduler asks it at each tick of a
//! leader-only job ([`Leadership::is_leader`]), and the election loop runs
//! as one of the scheduler's tasks, so it stops (and the lock is released
//! with its connection) when the scheduler does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};

/// The advisory lock key: the ASCII bytes of `Stockade` as one `bigint`.
/// Advisory locks are per database, so deployments on different databases
/// of one server do not contend.
pub const LEADER_LOCK: i64 = 0x5374_6f63_6b61_6465;

/// How often a follower tries to take the lock and a leader checks it
/// still holds its connection.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// How the instance learns whether it leads.
#[derive(Clone)]
pub enum Leadership {
    /// The only instance (embedded mode): always the leader.
    Always,
    /// Elected through the PostgreSQL advisory lock.
    Elected(Arc<Election>),
}

/// The state of one instance's election: whether it holds the lock now.
#[derive(Default)]
pub struct Election {
    leader: AtomicBool,
}

impl Election {
    /// Whether this instance holds the lock (as of the last check).
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    pub(crate) fn set(&self, leader: bool) {
        let was = self.leader.swap(leader, Ordering::AcqRel);
        match (was, leader) {
            (false, true) => tracing::info!(
                lock = LEADER_LOCK,
                "this instance is now the leader: it runs the cluster-wide jobs"
            ),
            (true, false) => tracing::warn!(
                "this instance lost the leadership: its cluster-wide jobs wait for the next election"
            ),
            _ => {}
        }
    }
}

impl Leadership {
    /// Whether leader-only jobs run here now.
    pub fn is_leader(&self) -> bool {
        match self {
            Self::Always => true,
            Self::Elected(e) => e.is_leader(),
        }
    }

    /// How the leader is chosen, as `/readyz` and the trust page say it.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Always => "single-instance",
            Self::Elected(_) => "postgres-advisory-lock",
        }
    }

    /// A follower until the election loop ([`Self::election_loop`]) takes
    /// the lock.
    pub fn elect() -> Self {
        Self::Elected(Arc::default())
    }

    /// The election: every [`CHECK_EVERY`], a follower tries the lock on its
    /// dedicated connection (opened from `pool` and detached from it, so
    /// the pool's recycling never ends the session that holds the lock) and
    /// a leader pings that connection. Any failure drops the connection and
    /// the leadership; the next round reconnects. Returns never (it is
    /// aborted with the scheduler; dropping the connection releases the
    /// lock). Does nothing for [`Leadership::Always`].
    pub async fn election_loop(self, pool: PgPool) {
        let Self::Elected(election) = self else {
            return;
        };
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut held: Option<PgConnection> = None;
        loop {
            tick.tick().await;
            let conn = match held.as_mut() {
                Some(conn) => conn,
                None => match pool.acquire().await {
                    Ok(conn) => held.insert(conn.detach()),
                    Err(e) => {
                        tracing::debug!(error = %e, "leader election: database unreachable");
                        election.set(false);
                        continue;
                    }
                },
            };
            match round(conn, election.is_leader()).await {
                Ok(leader) => election.set(leader),
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: connection lost; retrying");
                    election.set(false);
                    if let Some(conn) = held.take() {
                        // Best effort: a broken connection may not answer.
                        let _ = tokio::time::timeout(CHECK_EVERY, conn.close()).await;
                    }
                }
            }
        }
    }
}

/// One round on the lock's connection: a leader checks its session still
/// answers (the lock lives as long as the session); a follower tries to
/// take the lock. Bounded by [`CHECK_EVERY`] so a hung connection cannot
/// keep a leader believing it leads.
async fn round(conn: &mut PgConnection, leader: bool) -> Result<bool, sqlx::Error> {
    let attempt = async {
        if leader {
            conn.ping().await.map(|()| true)
        } else {
            sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                .bind(LEADER_LOCK)
                .fetch_one(&mut *conn)
                .await
        }
    };
    match tokio::time::timeout(CHECK_EVERY, attempt).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}
