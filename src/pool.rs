//! Spare threads for work that comes now and then: reading a connection
//! whose handler runs long, waiting for an admission permit, running the
//! `on_connect` hook. A job goes to an idle thread if there is one, else to
//! a new thread; a thread that has had no job for [`IDLE`] ends. So a
//! quiet server keeps no spare threads, and a busy one keeps as many as
//! its long handlers need at once.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

type Job = Box<dyn FnOnce() + Send>;

/// How long a spare thread waits for another job before it ends.
const IDLE: Duration = Duration::from_secs(5);

pub(crate) struct Pool {
    tx: Sender<Job>,
    rx: Receiver<Job>,
    /// Threads waiting for a job. Jobs are sent under this lock, so a
    /// thread that gives up waiting either finds the job or was not
    /// counted when it was sent.
    idle: Mutex<usize>,
    name: &'static str,
    stack_size: usize,
}

impl Pool {
    pub fn new(name: &'static str, stack_size: usize) -> Arc<Self> {
        let (tx, rx) = unbounded();
        Arc::new(Self {
            tx,
            rx,
            idle: Mutex::new(0),
            name,
            stack_size,
        })
    }

    /// Runs `job` on a spare thread. False if no thread could be started
    /// (the job is dropped).
    pub fn run(self: &Arc<Self>, job: impl FnOnce() + Send + 'static) -> bool {
        let job: Job = Box::new(job);
        {
            let mut idle = self.idle.lock();
            if *idle > 0 {
                *idle -= 1;
                return self.tx.send(job).is_ok();
            }
        }
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name(self.name.into())
            .stack_size(self.stack_size)
            .spawn(move || me.work(job))
            .is_ok()
    }

    fn work(&self, first: Job) {
        run_caught(first);
        loop {
            *self.idle.lock() += 1;
            match self.rx.recv_timeout(IDLE) {
                Ok(job) => run_caught(job),
                Err(RecvTimeoutError::Timeout) => {
                    let mut idle = self.idle.lock();
                    match self.rx.try_recv() {
                        // Sent to this thread just as it gave up waiting.
                        Ok(job) => {
                            drop(idle);
                            run_caught(job);
                        }
                        Err(_) => {
                            *idle -= 1;
                            return;
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// Jobs catch their handlers' panics themselves; this keeps a bug in the
/// library's own job code from ending a spare thread silently mid-count.
fn run_caught(job: Job) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
}
