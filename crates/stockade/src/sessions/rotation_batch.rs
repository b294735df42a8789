//! Group commit of refresh rotations on SQLite.
//!
//! SQLite has one writer, and with `synchronous=FULL` every commit waits for
//! a WAL fsync (≈ 0.4 ms on the benchmark disk): one transaction per
//! rotation caps refreshes at the disk's synced writes per second, however
//! short the transaction. Here concurrent rotations queue for one writer
//! task, which runs every rotation waiting (up to [`MAX_BATCH`]) in one
//! transaction — each inside its own savepoint, under its own tenant — and
//! commits once. Durability is unchanged: a caller is answered only after
//! the commit that holds its rotation has returned, and if that commit fails
//! every caller of the batch gets an error (none of them got a token).
//!
//! Each unit behaves as its own transaction would, in arrival order: a unit
//! sees the units before it (two presentations of one token in one batch:
//! the first rotates, the second is a reuse, exactly as in two transactions
//! one after the other), and a unit whose outcome keeps nothing (an unknown
//! token, a database error) is rolled back to its savepoint without touching
//! the others. A savepoint that cannot be opened or closed leaves the
//! transaction in doubt, so the whole batch is rolled back and fails.
//!
//! PostgreSQL runs concurrent transactions and needs none of this: there
//! [`RotationBatcher::rotate`] is [`store::rotate`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::model::{RefreshToken, SessionPolicy};
use super::store::{self, RefreshError, Rotated};
use crate::audit::RequestContext;
use crate::clock::{Clock, SharedClock};
use crate::db::{BackendKind, Db, DbError, TenantTx};

/// Rotations in one transaction at most (bounds a caller's wait).
const MAX_BATCH: usize = 64;

/// Rotations waiting for the writer task at most; past it callers wait to
/// enqueue.
const QUEUE: usize = 1024;

struct Job {
    presented: RefreshToken,
    context: RequestContext,
    reply: oneshot::Sender<Result<Rotated, RefreshError>>,
}

type Outcome = Result<Rotated, RefreshError>;

/// The rotation queue of one process (in `SessionsState`); its writer task
/// starts on first use and ends when this is dropped.
pub struct RotationBatcher {
    db: Db,
    clock: SharedClock,
    policy: SessionPolicy,
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    stats: Arc<Stats>,
}

/// Committed batches and the rotations they held, since start.
#[derive(Default)]
struct Stats {
    batches: AtomicU64,
    rotations: AtomicU64,
}

impl RotationBatcher {
    /// Rotations of `db`'s tokens under `policy`.
    pub fn new(db: Db, clock: SharedClock, policy: SessionPolicy) -> Self {
        Self {
            db,
            clock,
            policy,
            queue: Mutex::new(None),
            stats: Arc::default(),
        }
    }

    /// Rotates `presented` (see [`store::rotate`]); on SQLite in a group
    /// commit with the rotations that arrive meanwhile.
    pub async fn rotate(&self, presented: RefreshToken, context: RequestContext) -> Outcome {
        if self.db.kind() != BackendKind::Sqlite {
            return store::rotate(
                &self.db,
                self.clock.as_ref(),
                &presented,
                &self.policy,
                &context,
            )
            .await;
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            presented,
            context,
            reply,
        };
        self.queue()
            .send(job)
            .await
            .map_err(|_| RefreshError::Internal("the rotation writer stopped".to_owned()))?;
        answer.await.map_err(|_| {
            RefreshError::Internal("the rotation writer dropped a rotation".to_owned())
        })?
    }

    /// Group commits made since start (SQLite).
    pub fn batches(&self) -> u64 {
        self.stats.batches.load(Ordering::Relaxed)
    }

    /// Rotations those group commits held.
    pub fn rotations(&self) -> u64 {
        self.stats.rotations.load(Ordering::Relaxed)
    }

    /// The queue, starting its writer task if none runs.
    fn queue(&self) -> mpsc::Sender<Job> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = queue.as_ref().filter(|s| !s.is_closed()) {
            return sender.clone();
        }
        let (sender, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(write(
            self.db.clone(),
            self.clock.clone(),
            self.policy,
            jobs,
            self.stats.clone(),
        ));
        *queue = Some(sender.clone());
        sender
    }
}

/// The writer task: every rotation waiting, one transaction, until the
/// queue closes.
async fn write(
    db: Db,
    clock: SharedClock,
    policy: SessionPolicy,
    mut jobs: mpsc::Receiver<Job>,
    stats: Arc<Stats>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let jobs = std::mem::take(&mut batch);
        commit_batch(&db, clock.as_ref(), &policy, jobs, &stats).await;
    }
}

/// Runs `jobs` in one transaction and answers each after its commit.
async fn commit_batch(
    db: &Db,
    clock: &dyn Clock,
    policy: &SessionPolicy,
    jobs: Vec<Job>,
    stats: &Stats,
) {
    let Some(first) = jobs.first() else {
        return;
    };
    let mut tx = match db.tenant_tx(first.presented.tenant()).await {
        Ok(tx) => tx,
        Err(e) => return fail(jobs, &e),
    };
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let outcome = match tx.rescope(job.presented.tenant()).await {
            Ok(rescoped) => {
                tx = rescoped;
                unit(&mut tx, clock, policy, job).await
            }
            // `tx` is gone: the transaction rolled back.
            Err(e) => return fail(jobs, &e),
        };
        match outcome {
            Ok(outcome) => outcomes.push(outcome),
            // Dropping `tx` rolls every unit back.
            Err(e) => return fail(jobs, &e),
        }
    }
    if let Err(e) = tx.commit().await {
        return fail(jobs, &e);
    }
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.rotations.fetch_add(
        u64::try_from(jobs.len()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    for (job, outcome) in jobs.into_iter().zip(outcomes) {
        // A caller that went away (its request was cancelled) is not waiting.
        let _ = job.reply.send(outcome);
    }
}

/// One rotation in its own savepoint (`tx` is already in its tenant); the
/// outer error means the transaction itself is in doubt.
async fn unit(
    tx: &mut TenantTx,
    clock: &dyn Clock,
    policy: &SessionPolicy,
    job: &Job,
) -> Result<Outcome, DbError> {
    tx.savepoint().await?;
    let outcome = store::rotate_in(tx, clock, &job.presented, policy, &job.context).await;
    tx.end_savepoint(store::keeps_writes(&outcome)).await?;
    Ok(outcome)
}

/// Answers every job of a batch that was not committed with an error.
fn fail(jobs: Vec<Job>, error: &DbError) {
    tracing::error!(error = %error, rotations = jobs.len(), "a batch of refresh rotations failed");
    for job in jobs {
        let _ = job.reply.send(Err(RefreshError::Internal(
            "the refresh rotation could not be committed".to_owned(),
        )));
    }
}
