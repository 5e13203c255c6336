//! A thread that owns one PostgreSQL connection and runs jobs on it, one at a time.
//!
//! `postgres::Client` drives its connection on a runtime of its own and panics when it is used,
//! or dropped, on a thread that is inside a tokio runtime: the relay commits from a plain thread
//! but reads [`Contents`](crate::storage::Contents) from its core task, and may drop a store from
//! async code. A client that lives and dies on its own thread is safe from every caller.

use std::sync::mpsc;
use std::time::Duration;

use super::super::StoreError;

type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// The sending end of a thread that owns `S` (a connection and its prepared statements). The
/// thread ends, closing the connection, when this is dropped.
pub(super) struct Worker<S> {
    jobs: mpsc::Sender<Job<S>>,
}

impl<S: 'static> Worker<S> {
    /// Starts a thread named `name` that makes its `S` with `init` (connecting there, so the
    /// connection never touches the caller's thread), and returns once `init` has succeeded.
    pub(super) fn start(name: &str, init: impl FnOnce() -> Result<S, StoreError> + Send + 'static) -> Result<Worker<S>, StoreError> {
        let (jobs, queue) = mpsc::channel::<Job<S>>();
        let (ready, started) = mpsc::channel();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut state = match init() {
                    Ok(state) => state,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                if ready.send(Ok(())).is_err() {
                    return;
                }
                while let Ok(job) = queue.recv() {
                    job(&mut state);
                }
            })
            .map_err(|error| StoreError::backend("starting the PostgreSQL thread", error))?;
        started.recv().map_err(|_| StoreError::new("the PostgreSQL thread ended while connecting"))??;
        Ok(Worker { jobs })
    }

    /// Runs `job` on the thread and waits for its answer, up to `limit`: the caller blocks for
    /// one round trip (or a few) to the database. No answer in time is an error (a server that
    /// went silent, a network that drops everything): the job may still be running, and jobs
    /// after it wait behind it, so the caller must treat the connection as lost (the relay
    /// stops on any store error).
    pub(super) fn run<T: Send + 'static>(
        &self,
        limit: Duration,
        job: impl FnOnce(&mut S) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.submit(job).wait(limit)
    }

    /// Queues `job` on the thread without waiting: [`Pending::wait`] takes its answer, as
    /// [`Self::run`] does. Several workers' jobs then run at once.
    pub(super) fn submit<T: Send + 'static>(&self, job: impl FnOnce(&mut S) -> Result<T, StoreError> + Send + 'static) -> Pending<T> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job<S> = Box::new(move |state| {
            let _ = reply.send(job(state));
        });
        match self.jobs.send(job) {
            Ok(()) => Pending(Some(answer)),
            Err(_) => Pending(None),
        }
    }
}

/// The answer to come of a job [`Worker::submit`] queued.
pub(super) struct Pending<T>(Option<mpsc::Receiver<Result<T, StoreError>>>);

impl<T> Pending<T> {
    /// Waits for the job's answer up to `limit` (see [`Worker::run`]).
    pub(super) fn wait(self, limit: Duration) -> Result<T, StoreError> {
        let Some(answer) = self.0 else { return Err(StoreError::new("the PostgreSQL thread has ended")) };
        // A job that panicked drops its reply: an error, not a hang.
        match answer.recv_timeout(limit) {
            Ok(answer) => answer,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(StoreError::new(format!("no answer from PostgreSQL within {} s", limit.as_secs()))),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(StoreError::new("the PostgreSQL thread has ended")),
        }
    }
}
