//! The Lambda functions of `wandb_nexus._core`, used by `wandb_nexus.lambda_handler`.

use std::time::Duration;

use pyo3::prelude::*;

use crate::lambda::{self, snapstart, Delivery, Work};
use crate::py::run::RunCore;

/// Sets up delivery for this environment's execution model (during init). Returns how runs
/// are delivered ("extension", "background" or "before-return") and, when that falls short
/// of what the model calls for, why. Starts fetching an API key kept in AWS for runs in `mode`.
#[pyfunction]
#[pyo3(signature = (snapstart_hooks, mode=None))]
pub fn start_lambda_delivery(
    py: Python<'_>,
    snapstart_hooks: bool,
    mode: Option<String>,
) -> (&'static str, Option<String>) {
    let (delivery, why) = py.detach(|| lambda::start(snapstart_hooks, mode.as_deref()));
    let name = match delivery {
        Delivery::Extension => "extension",
        Delivery::Background => "background",
        Delivery::BeforeReturning => "before-return",
    };
    (name, why)
}

/// SnapStart's before-snapshot hook.
#[pyfunction]
pub fn before_snapshot(py: Python<'_>) {
    py.detach(snapstart::before_snapshot)
}

/// SnapStart's after-restore hook; returns what could not be set up, one line each.
#[pyfunction]
pub fn after_restore(py: Python<'_>) -> Vec<String> {
    py.detach(snapstart::after_restore)
}

/// Delivers what an invocation used: handed to the extension (given the invocation's
/// `request_id`) or the worker's delivery thread when one runs, returning at once; otherwise
/// delivered here before returning, within `remaining_ms`. Returns the problems met, one line
/// each; runs not delivered stay on disk to be synced.
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
        let Err(work) = lambda::hand_off(request_id.as_deref(), work) else {
            return Vec::new();
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
