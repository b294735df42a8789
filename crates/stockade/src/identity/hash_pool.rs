//! The threads that run password hashes: a fixed set, one per permitted
//! concurrent hash, instead of tokio's blocking pool.
//!
//! An argon2id run allocates 19 MiB. On the blocking pool each run may land on
//! a different (possibly new) thread, and the C allocator keeps a separate
//! arena per thread, so after a burst of sign-ins the process held up to
//! (arenas × 19 MiB) it never returned — hundreds of MiB. On a fixed set of
//! threads that memory is bounded by the set's size and reused run after run.
//! Threads start on first use (an idle server holds none) and end when the
//! last `Hasher` sharing the pool is dropped.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

pub(super) struct HashPool {
    size: usize,
    state: Mutex<Option<Sender<Job>>>,
}

impl HashPool {
    pub(super) fn new(size: usize) -> Self {
        Self {
            size: size.max(1),
            state: Mutex::new(None),
        }
    }

    /// Runs `job` on one of the pool's threads. Fails only if no thread
    /// could be started or the pool's threads are gone.
    pub(super) fn execute(&self, job: Job) -> Result<(), ()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.is_none() {
            *state = Some(self.start()?);
        }
        match state.as_ref() {
            Some(sender) => sender.send(job).map_err(|_| ()),
            None => Err(()),
        }
    }

    fn start(&self) -> Result<Sender<Job>, ()> {
        let (sender, receiver) = channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let mut started = 0;
        for n in 0..self.size {
            let receiver = Arc::clone(&receiver);
            let spawned = std::thread::Builder::new()
                .name(format!("stockade-hash-{n}"))
                .spawn(move || work(&receiver));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::error!(error = %e, "could not start a password-hashing thread"),
            }
        }
        if started == 0 { Err(()) } else { Ok(sender) }
    }
}

/// One thread: runs jobs until every sender is gone.
fn work(receiver: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let guard = receiver.lock().unwrap_or_else(|p| p.into_inner());
            guard.recv()
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}
