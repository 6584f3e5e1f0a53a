//! Awaitables for asyncio users. The futures run on the process's own runtime
//! (src/core/runtime.rs), so there is still one runtime; the blocking waits of finish and flush
//! move to its blocking pool, off the event loop.

use std::future::Future;
use std::pin::Pin;

use pyo3::prelude::*;
use pyo3_async_runtimes::generic::{self, ContextExt, Runtime};
use pyo3_async_runtimes::TaskLocals;

use crate::core::runtime::runtime;
use crate::error::Error;

/// Our runtime, as pyo3-async-runtimes sees it.
pub struct NexusRuntime;

impl Runtime for NexusRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        runtime().expect("the runtime was built before").spawn(fut)
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        runtime()
            .expect("the runtime was built before")
            .spawn_blocking(f)
    }
}

impl ContextExt for NexusRuntime {
    /// Our futures never call back into Python, so they need no task-local event loop.
    fn scope<F, R>(_locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        Box::pin(fut)
    }

    fn get_task_locals() -> Option<TaskLocals> {
        None
    }
}

/// Runs blocking `work` on the runtime's blocking pool and returns an asyncio awaitable of
/// its result.
pub fn awaitable<'py, T>(
    py: Python<'py>,
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> PyResult<Bound<'py, PyAny>>
where
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let rt = runtime()?;
    let locals = TaskLocals::with_running_loop(py)?.copy_context(py)?;
    generic::future_into_py_with_locals::<NexusRuntime, _, T>(py, locals, async move {
        let outcome = rt
            .spawn_blocking(work)
            .await
            .map_err(|e| Error::Comm(format!("the background task failed: {e}")))?;
        Ok(outcome?)
    })
}
