//! The running side of `jobs`: the [`Scheduler`] spawns each registered job
//! on its own tokio task (an interval, `MissedTickBehavior::Delay`, so a run
//! that overran is followed by the next at once and runs never overlap),
//! records each run's start, end, duration and outcome on the [`JobBoard`],
//! and aborts every job when it is shut down or dropped. It must not decide
//! anything about a job's work: a failure is the run's to log, and a job
//! keeps its period whatever its runs return.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::{FirstRun, Job, JobStatus, Leadership, Outcome};
use crate::clock::SharedClock;

/// The jobs of one [`Scheduler`] and their last runs, and whether this
/// instance leads; cheap to clone and to read (a snapshot of a few small
/// records under a short lock).
#[derive(Clone)]
pub struct JobBoard {
    jobs: Arc<Mutex<Vec<JobStatus>>>,
    leadership: Leadership,
}

impl JobBoard {
    /// Every registered job, in registration order.
    pub fn status(&self) -> Vec<JobStatus> {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How this instance learns whether it runs the leader-only jobs.
    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    fn add(&self, status: JobStatus) -> usize {
        let mut all = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        all.push(status);
        all.len().saturating_sub(1)
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut JobStatus)) {
        let mut all = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(status) = all.get_mut(index) {
            change(status);
        }
    }
}

/// Runs registered jobs until it is shut down or dropped.
pub struct Scheduler {
    clock: SharedClock,
    board: JobBoard,
    tasks: JoinSet<()>,
}

impl Scheduler {
    /// A scheduler with no jobs that always leads (one instance: embedded
    /// mode, tests); `clock` stamps the runs.
    pub fn new(clock: SharedClock) -> Self {
        Self::with_leadership(clock, Leadership::Always)
    }

    /// A scheduler whose leader-only jobs run only while `leadership` says
    /// this instance leads (see `jobs::leader`); the caller runs the
    /// election (e.g. [`Self::spawn`] of [`Leadership::election_loop`]).
    pub fn with_leadership(clock: SharedClock, leadership: Leadership) -> Self {
        Self {
            clock,
            board: JobBoard {
                jobs: Arc::default(),
                leadership,
            },
            tasks: JoinSet::new(),
        }
    }

    /// Runs `task` (e.g. the election loop) beside the jobs: it is aborted
    /// with them.
    pub fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Registers `job` and starts it (on the current tokio runtime).
    pub fn register(&mut self, job: Job) {
        let index = self.board.add(JobStatus::of(&job));
        let board = self.board.clone();
        let clock = self.clock.clone();
        self.tasks.spawn(run(job, index, board, clock));
    }

    /// Every registered job and its last run.
    pub fn status(&self) -> Vec<JobStatus> {
        self.board.status()
    }

    /// A handle on the status that outlives no job: readable elsewhere
    /// (`/readyz`) while the scheduler is owned by whoever serves.
    pub fn board(&self) -> JobBoard {
        self.board.clone()
    }

    /// Aborts every job (a run in progress stops at its next await); the
    /// same happens when the scheduler is dropped.
    pub fn shutdown(&mut self) {
        self.tasks.abort_all();
    }
}

/// One job's loop: wait for the tick, run, record.
async fn run(job: Job, index: usize, board: JobBoard, clock: SharedClock) {
    // A zero period would make `interval` panic.
    let mut tick = tokio::time::interval(job.period.max(std::time::Duration::from_millis(1)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    if job.first_run == FirstRun::AfterOnePeriod {
        // The first tick of an interval completes at once.
        tick.tick().await;
    }
    loop {
        tick.tick().await;
        if job.leader_only && !board.leadership.is_leader() {
            // Another instance leads: it runs this one.
            board.update(index, |s| {
                s.standby_ticks = s.standby_ticks.saturating_add(1)
            });
            continue;
        }
        board.update(index, |s| s.last_started_at = Some(clock.now()));
        let started = Instant::now();
        let outcome = match (job.run)().await {
            Ok(summary) => Outcome::Ok(summary),
            Err(e) => Outcome::Failed(format!("{e:#}")),
        };
        let took = started.elapsed();
        let finished = clock.now();
        crate::ops::metrics::job_run(job.name, matches!(outcome, Outcome::Ok(_)), finished);
        board.update(index, |s| {
            s.runs = s.runs.saturating_add(1);
            s.last_finished_at = Some(finished);
            s.last_duration = Some(took);
            s.last_outcome = Some(outcome);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::clock::ManualClock;

    const PERIOD: Duration = Duration::from_secs(10);

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn scheduler() -> (Scheduler, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(t0()));
        (Scheduler::new(clock.clone()), clock)
    }

    /// A job that counts its runs.
    fn counting(name: &'static str, runs: &Arc<AtomicU64>) -> Job {
        let runs = runs.clone();
        Job::new(name, PERIOD, move || {
            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok(format!("run {n}")) }
        })
    }

    /// Lets virtual time pass (the runtime's clock is paused: timers fire in
    /// order, nothing waits for real).
    async fn at(since_start: Duration, start: Instant) {
        tokio::time::sleep_until(start + since_start).await;
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[tokio::test(start_paused = true)]
    async fn periods_are_honoured_from_the_first_run_at_start() {
        let start = Instant::now();
        let (mut s, _clock) = scheduler();
        let runs = Arc::new(AtomicU64::new(0));
        s.register(counting("count", &runs));
        at(secs(0.5), start).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "first run at start");
        at(secs(9.5), start).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        at(secs(10.5), start).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        at(secs(40.5), start).await;
        assert_eq!(runs.load(Ordering::SeqCst), 5);
        assert_eq!(s.status()[0].runs, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_can_wait_one_period_before_its_first_run() {
        let start = Instant::now();
        let (mut s, _clock) = scheduler();
        let runs = Arc::new(AtomicU64::new(0));
        s.register(counting("later", &runs).first_run(FirstRun::AfterOnePeriod));
        at(secs(9.5), start).await;
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        let status = &s.status()[0];
        assert_eq!((status.runs, status.last_started_at), (0, None));
        at(secs(10.5), start).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        at(secs(20.5), start).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_run_is_recorded_and_the_job_runs_again_next_period() {
        let start = Instant::now();
        let (mut s, _clock) = scheduler();
        let runs = Arc::new(AtomicU64::new(0));
        let counter = runs.clone();
        s.register(Job::new("flaky", PERIOD, move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                match n {
                    1 => Err(anyhow::anyhow!("database unreachable").context("run failed")),
                    _ => Ok("fine".to_owned()),
                }
            }
        }));
        at(secs(0.5), start).await;
        let status = &s.status()[0];
        assert_eq!(status.runs, 1);
        assert_eq!(
            status.last_outcome,
            Some(Outcome::Failed(
                "run failed: database unreachable".to_owned()
            ))
        );
        at(secs(10.5), start).await;
        let status = &s.status()[0];
        assert_eq!(status.runs, 2);
        assert_eq!(status.last_outcome, Some(Outcome::Ok("fine".to_owned())));
    }

    #[tokio::test(start_paused = true)]
    async fn the_status_snapshot_shows_schedule_and_last_run() {
        let start = Instant::now();
        let (mut s, clock) = scheduler();
        let runs = Arc::new(AtomicU64::new(0));
        s.register(counting("every", &runs));
        s.register(
            Job::new("slow", PERIOD, || async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok("slept".to_owned())
            })
            .leader_only()
            .first_run(FirstRun::AfterOnePeriod),
        );
        let board = s.board();
        at(secs(0.5), start).await;
        let all = board.status();
        assert_eq!(all.len(), 2);
        let (every, slow) = (&all[0], &all[1]);
        assert_eq!(
            (every.name, every.period, every.leader_only),
            ("every", PERIOD, false)
        );
        assert_eq!(every.first_run, FirstRun::AtStart);
        assert_eq!(every.last_started_at, Some(t0()));
        assert_eq!(every.last_finished_at, Some(t0()));
        assert_eq!(every.last_duration, Some(Duration::ZERO));
        assert_eq!(every.last_outcome, Some(Outcome::Ok("run 1".to_owned())));
        assert_eq!((slow.name, slow.leader_only), ("slow", true));
        assert_eq!(slow.first_run, FirstRun::AfterOnePeriod);
        assert_eq!(
            (slow.runs, slow.last_started_at, &slow.last_outcome),
            (0, None, &None)
        );
        // The slow job's first run starts at 10 s and takes 3 s: while it
        // runs, it shows its start and its finish is still to come.
        clock.advance(chrono::Duration::minutes(1));
        at(secs(11.0), start).await;
        let slow = &board.status()[1];
        let started = t0() + chrono::Duration::minutes(1);
        assert_eq!(
            (slow.runs, slow.last_started_at, slow.last_finished_at),
            (0, Some(started), None)
        );
        clock.advance(chrono::Duration::minutes(1));
        at(secs(13.5), start).await;
        let slow = &board.status()[1];
        assert_eq!(slow.runs, 1);
        assert_eq!(slow.last_started_at, Some(started));
        assert_eq!(
            slow.last_finished_at,
            Some(started + chrono::Duration::minutes(1))
        );
        assert_eq!(slow.last_duration, Some(Duration::from_secs(3)));
        assert_eq!(slow.last_outcome, Some(Outcome::Ok("slept".to_owned())));
        assert_eq!(s.status(), board.status());
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_overruns_its_period_delays_the_next_and_never_overlaps() {
        let start = Instant::now();
        let (mut s, _clock) = scheduler();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let seen = starts.clone();
        s.register(Job::new("overrun", PERIOD, move || {
            let mut starts = seen.lock().unwrap();
            starts.push(start.elapsed());
            // The first run takes 25 s (two and a half periods), the others
            // no time at all.
            let first = starts.len() == 1;
            async move {
                if first {
                    tokio::time::sleep(Duration::from_secs(25)).await;
                }
                Ok(String::new())
            }
        }));
        at(secs(59.0), start).await;
        let starts = starts.lock().unwrap().clone();
        // The missed ticks of 10 s and 20 s become one run at 25 s, and the
        // period counts from there (not 25, 25, 30, 40: a burst; nor 25, 30,
        // 40: the old grid).
        let want: Vec<Duration> = [0.0, 25.0, 35.0, 45.0, 55.0].map(secs).into();
        assert_eq!(starts, want);
    }

    /// A leader-only job runs only while the instance leads; the others run
    /// everywhere. Losing the lead stops it at its next tick; winning it
    /// starts it at its next tick (within one period).
    #[tokio::test(start_paused = true)]
    async fn leader_only_jobs_run_only_while_this_instance_leads() {
        let start = Instant::now();
        let clock = Arc::new(ManualClock::new(t0()));
        let election = Arc::new(crate::jobs::leader::Election::default());
        let mut s = Scheduler::with_leadership(clock, Leadership::Elected(election.clone()));
        let (everywhere, leader) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        s.register(counting("everywhere", &everywhere));
        s.register(counting("cluster", &leader).leader_only());
        at(secs(0.5), start).await;
        assert_eq!(everywhere.load(Ordering::SeqCst), 1);
        assert_eq!(leader.load(Ordering::SeqCst), 0, "a follower ran it");
        let cluster = &s.status()[1];
        assert_eq!((cluster.runs, cluster.standby_ticks), (0, 1));
        assert_eq!(cluster.last_started_at, None);
        election.set(true);
        at(secs(10.5), start).await;
        assert_eq!(leader.load(Ordering::SeqCst), 1, "the new leader waited");
        election.set(false);
        at(secs(30.5), start).await;
        assert_eq!(leader.load(Ordering::SeqCst), 1, "a former leader ran it");
        assert_eq!(everywhere.load(Ordering::SeqCst), 4);
        let cluster = &s.status()[1];
        assert_eq!((cluster.runs, cluster.standby_ticks), (1, 3));
        assert!(s.board().leadership().method() == "postgres-advisory-lock");
        assert!(!s.board().leadership().is_leader());
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_or_shutting_down_the_scheduler_stops_every_job() {
        let start = Instant::now();
        let runs = Arc::new(AtomicU64::new(0));
        let (mut dropped, _clock) = scheduler();
        dropped.register(counting("a", &runs));
        let (mut shut, _clock) = scheduler();
        shut.register(counting("b", &runs));
        at(secs(0.5), start).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        drop(dropped);
        shut.shutdown();
        at(secs(100.0), start).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        // A shut-down scheduler still tells what its jobs did.
        assert_eq!(shut.status()[0].runs, 1);
    }
}
