//! The one tokio runtime of the process, built on first use. A forked child cannot use its
//! parent's runtime (its worker threads do not exist there), so the runtime is keyed by PID
//! and a child builds its own, leaking the parent's rather than joining threads that are gone.

use std::io;
use std::sync::{Arc, Mutex};

use tokio::runtime::{Builder, Runtime};

static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

pub fn runtime() -> io::Result<Arc<Runtime>> {
    let pid = crate::system::current_pid();
    let mut slot = RUNTIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((owner, rt)) = slot.as_ref() {
        if *owner == pid {
            return Ok(rt.clone());
        }
        std::mem::forget(slot.take());
    }
    // One worker: Lambda gives small functions a fraction of a vCPU, and the work is I/O.
    let rt = Arc::new(
        Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("wandb-nexus")
            .enable_io()
            .enable_time()
            .build()?,
    );
    *slot = Some((pid, rt.clone()));
    Ok(rt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_runtime_within_a_process() {
        let a = runtime().unwrap();
        let b = runtime().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }
}
