//! The Lambda functions of `wandb_nexus._core`, used by `wandb_nexus.lambda_handler`.

use std::time::Duration;

use pyo3::prelude::*;

use crate::lambda::{self, internal, Work};
use crate::py::run::RunCore;

/// Registers the internal extension (during init); False when there is no Extensions API.
#[pyfunction]
pub fn start_lambda_extension(py: Python<'_>) -> PyResult<bool> {
    Ok(py.detach(internal::start)?)
}

/// Delivers what an invocation used: handed to the extension when one runs (returns at
/// once), otherwise delivered here before returning, within `remaining_ms`. Returns the
/// problems met, one line each; runs not delivered stay on disk to be synced.
#[pyfunction]
#[pyo3(signature = (runs, request_id=None, remaining_ms=None))]
pub fn deliver_invocation(
    py: Python<'_>,
    runs: Vec<PyRef<'_, RunCore>>,
    request_id: Option<String>,
    remaining_ms: Option<u64>,
) -> Vec<String> {
    let work = Work {
        runs: runs.iter().map(|core| core.run.clone()).collect(),
    };
    py.detach(move || {
        let work = match request_id {
            Some(id) => match internal::hand_off(&id, work) {
                Ok(()) => return Vec::new(),
                Err(work) => work,
            },
            None => work,
        };
        let window = match remaining_ms {
            Some(ms) => Duration::from_millis(ms),
            None => work
                .runs
                .first()
                .map_or(Duration::ZERO, |run| run.settings.retry.budget),
        };
        lambda::deliver(work, lambda::deadline_from_remaining(window))
    })
}
