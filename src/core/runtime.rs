//! The one tokio runtime of the process, built on first use. A forked child cannot use its
//! parent's runtime (its worker threads do not exist there), so the runtime is keyed by PID
//! and a child builds its own, leaking the parent's rather than joining threads that are gone.

use std::sync::Arc;

use tokio::runtime::{Builder, Runtime};

use crate::core::system::ProcessLocal;
use crate::error::Error;

static RUNTIME: ProcessLocal<Arc<Runtime>> = ProcessLocal::new();

/// The process's runtime; its failure to start (no threads to be had) is an I/O error.
pub fn runtime() -> Result<Arc<Runtime>, Error> {
    RUNTIME.get_or_make(
        |_| true,
        || {
            // One worker: Lambda gives small functions a fraction of a vCPU, and the work is I/O.
            let rt = Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("wandb-nexus")
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| Error::io("cannot start the I/O runtime", e))?;
            Ok(Arc::new(rt))
        },
    )
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
