//! Lambda Managed Instances: each worker process delivers its invocations' runs from a
//! thread of its own. Nothing freezes there and no extension gets INVOKE, so the handler hands
//! its work over and returns; the thread sends it in the background within the retry budget,
//! then sweeps what other workers (sharing `/tmp`) left undelivered. Runs are delivered by
//! the same code as elsewhere, under each transaction log's lock, so two workers never send
//! one run at once and a resend replaces rows rather than repeating them.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::time::Instant;

use super::{deliver, Work};
use crate::core::system::ProcessLocal;
use crate::error::Error;

/// The delivery thread of this worker process.
struct Background {
    queue: Mutex<VecDeque<Work>>,
    queued: Condvar,
}

static BACKGROUND: ProcessLocal<Arc<Background>> = ProcessLocal::new();

/// Starts this process's delivery thread, once per process.
pub fn start() -> Result<(), Error> {
    if let Err(err) = super::shutdown::finish_runs_on_sigterm() {
        eprintln!("wandb-nexus: runs open at SIGTERM are not finished ({err})");
    }
    BACKGROUND.get_or_make(
        |_| true,
        || {
            let background = Arc::new(Background {
                queue: Mutex::default(),
                queued: Condvar::new(),
            });
            let worker = background.clone();
            std::thread::Builder::new()
                .name("wandb-nexus-delivery".into())
                .spawn(move || worker.run())
                .map_err(|e| Error::io("cannot start the delivery thread", e))?;
            Ok::<_, Error>(background)
        },
    )?;
    Ok(())
}

/// Queues an invocation's work for this process's thread; gives it back when there is none.
pub fn hand_off(work: Work) -> Result<(), Work> {
    let Some(background) = BACKGROUND.get() else {
        return Err(work);
    };
    background.queue().push_back(work);
    background.queued.notify_one();
    Ok(())
}

impl Background {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Work>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self) {
        loop {
            let work = {
                let mut queue = self.queue();
                loop {
                    match queue.pop_front() {
                        Some(work) => break work,
                        None => queue = self.queued.wait(queue).unwrap_or_else(|p| p.into_inner()),
                    }
                }
            };
            // No invocation deadline binds it: the worker is never frozen, and one that
            // timed out keeps running.
            let budget = work.runs.first().map(|run| run.settings.retry.budget);
            let deadline = Instant::now() + budget.unwrap_or_default();
            for problem in deliver(work, deadline) {
                eprintln!("wandb-nexus: {problem}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn work_goes_to_the_thread_once_it_runs_and_back_to_the_caller_before() {
        assert!(hand_off(Work { runs: Vec::new() }).is_err());
        start().unwrap();
        assert!(hand_off(Work { runs: Vec::new() }).is_ok());
        let background = BACKGROUND.get().unwrap();
        let end = Instant::now() + Duration::from_secs(5);
        while !background.queue().is_empty() {
            assert!(Instant::now() < end, "the thread took nothing");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
