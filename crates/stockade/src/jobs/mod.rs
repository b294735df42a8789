//! Scheduled work of a serving instance. Every periodic task is a [`Job`]:
//! a stable name, a period, whether it needs the cluster leader, when it
//! first runs, and a closure doing one run that returns a one-line summary
//! or an error. Jobs register with the [`Scheduler`], which runs each on its
//! own task and remembers, per job, its last run and outcome
//! ([`Scheduler::status`]: `/readyz` shows it; metrics and the trust page
//! will). This module owns *when* jobs run and what is remembered of their
//! runs; it must not know what any job does (the work lives in its room, and
//! the closure calling it is written where the job is registered,
//! `app::spawn_jobs`), and it must not read the wall clock (timestamps come
//! from the injected clock, durations from tokio's, which tests pause).
//!
//! A job marked [`Job::leader_only`] is cluster-wide work: it runs only on
//! the instance that leads ([`leader`]: always the one instance in embedded
//! mode; elected with a PostgreSQL advisory lock in cluster mode). On the
//! others its ticks pass as standby (`JobStatus::standby_ticks`).

pub mod leader;
mod scheduler;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use leader::Leadership;
pub use scheduler::{JobBoard, Scheduler};

/// One run's result: a short summary of what it did, or why it failed.
/// Failures are logged by the run itself (in its room, with its own fields);
/// the scheduler only records them.
pub type RunResult = anyhow::Result<String>;

type RunFuture = Pin<Box<dyn Future<Output = RunResult> + Send>>;
type RunFn = Arc<dyn Fn() -> RunFuture + Send + Sync>;

/// When a job first runs after it is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstRun {
    /// At once, then every period (the default).
    AtStart,
    /// One period after registration (e.g. the keyring reload: the keys
    /// were just loaded).
    AfterOnePeriod,
}

/// A periodic task: what the [`Scheduler`] needs to know to run it.
pub struct Job {
    name: &'static str,
    period: Duration,
    leader_only: bool,
    first_run: FirstRun,
    run: RunFn,
}

impl Job {
    /// A job named `name` (stable: it is shown in `/readyz` and will name
    /// metrics) running `run` every `period`, first at start, on every
    /// instance. A run that is late (the previous one overran) is delayed,
    /// never doubled up (`MissedTickBehavior::Delay`).
    pub fn new<F, Fut>(name: &'static str, period: Duration, run: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = RunResult> + Send + 'static,
    {
        Self {
            name,
            period,
            leader_only: false,
            first_run: FirstRun::AtStart,
            run: Arc::new(move || Box::pin(run())),
        }
    }

    /// Marks the job as cluster-wide work, for the leader alone (see
    /// [`leader`]).
    #[must_use]
    pub fn leader_only(mut self) -> Self {
        self.leader_only = true;
        self
    }

    /// Sets when the job first runs.
    #[must_use]
    pub fn first_run(mut self, first_run: FirstRun) -> Self {
        self.first_run = first_run;
        self
    }
}

/// How a finished run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The run's summary.
    Ok(String),
    /// The run's error, as text (its cause chain included).
    Failed(String),
}

/// What is known of one job: its schedule and its last run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    pub name: &'static str,
    pub period: Duration,
    pub leader_only: bool,
    pub first_run: FirstRun,
    /// Runs finished since start.
    pub runs: u64,
    /// Ticks of a leader-only job that passed because another instance
    /// leads.
    pub standby_ticks: u64,
    /// When the last run started (a run in progress started after the last
    /// one finished).
    pub last_started_at: Option<DateTime<Utc>>,
    pub last_finished_at: Option<DateTime<Utc>>,
    /// How long the last finished run took.
    pub last_duration: Option<Duration>,
    pub last_outcome: Option<Outcome>,
}

impl JobStatus {
    fn of(job: &Job) -> Self {
        Self {
            name: job.name,
            period: job.period,
            leader_only: job.leader_only,
            first_run: job.first_run,
            runs: 0,
            standby_ticks: 0,
            last_started_at: None,
            last_finished_at: None,
            last_duration: None,
            last_outcome: None,
        }
    }
}
