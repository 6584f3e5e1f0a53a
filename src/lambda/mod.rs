//! AWS Lambda: delivering runs after the response, without losing them to a freeze, a
//! timeout or a crash.
//!
//! The handler never waits for W&B. When it returns, the runs it used are handed to an
//! internal extension (`internal`): a native thread registered with the Extensions API
//! during init. The runtime posts the response while the thread delivers, and the thread asks
//! for its next event (which lets Lambda freeze the process) only when delivery is done or the
//! invocation's deadline is near. What is not delivered by then stays in its transaction log
//! under `/tmp` and is synced later (`spool`), exactly once: a sync resends a run whole, at
//! the offsets it had, so rows that arrived before are replaced, not repeated.
//!
//! Later means after a later invocation, or at once when the runtime dies: the external
//! extension (`external`, its own process in the layer) is told at SHUTDOWN (a timeout, a
//! crash, the environment's end) and delivers what the runtime left.
//!
//! Without the Extensions API (local runs, `sls invoke local`) the same delivery runs before
//! the handler returns.
//!
//! The execution model (`model`) changes two things. SnapStart clones INIT into every
//! environment, so the runtime hooks (`snapstart`) keep connections out of the snapshot and
//! give each copy its own threads. Managed Instances never freeze and give no extension
//! INVOKE events: each worker process delivers from a thread of its own (`managed`).

pub mod extensions_api;
pub mod external;
pub mod internal;
pub mod managed;
pub mod model;
pub mod shutdown;
pub mod snapstart;
pub mod spool;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::delivery::{self, SyncOverrides};
use crate::core::run::Run;
use crate::core::system;
use crate::error::Error;

use model::ExecutionModel;
use spool::HeldLogs;

/// Delivery in an invocation stops this long before its deadline, so the extension's
/// next-event call (and the runtime's) happens in time.
const INVOCATION_MARGIN: Duration = Duration::from_millis(300);
/// Delivery at SHUTDOWN stops this long before Lambda's SIGKILL: no call is due after it,
/// only the process's exit.
const SHUTDOWN_MARGIN: Duration = Duration::from_millis(100);
/// What a sweep after an invocation says of a run whose writer left it open: its process
/// ended (was killed at a timeout, crashed) before the run finished.
const LEFT_BY_ENDED_PROCESS: &str = "the runtime process ended before the run finished";

/// How a process delivers what its invocations leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The internal extension, after each response.
    Extension,
    /// The worker's own thread (Managed Instances).
    Background,
    /// The handler, before it returns: not on Lambda, or what Lambda needs is missing.
    BeforeReturning,
}

/// Sets up this process's delivery for its execution model; must run during INIT.
/// `snapstart_hooks` says the runtime hooks are registered: without them a SnapStart copy
/// cannot make its own threads. Returns the delivery, and why when it falls short of the one
/// the model calls for. Also starts fetching an API key kept in AWS (for runs in `mode`) where
/// INIT is followed by the first invocation.
pub fn start(snapstart_hooks: bool, mode: Option<&str>) -> (Delivery, Option<String>) {
    let fallback = |why: String| {
        let why = format!("{why}; runs are delivered before the handler returns");
        (Delivery::BeforeReturning, Some(why))
    };
    let env = |name: &str| std::env::var(name).ok();
    let model = ExecutionModel::current();
    if fetches_key_in_init(&model, &env) {
        crate::aws::secrets::prefetch(&env, mode);
    }
    match model {
        Err(why) => fallback(why),
        Ok(ExecutionModel::ManagedInstances { .. }) => match managed::start() {
            Ok(()) => (Delivery::Background, None),
            Err(err) => fallback(err.to_string()),
        },
        Ok(ExecutionModel::SnapStart) if !snapstart_hooks => {
            fallback("SnapStart without its runtime hooks".into())
        }
        Ok(_) => match internal::start() {
            Ok(true) => (Delivery::Extension, None),
            Ok(false) => (Delivery::BeforeReturning, None),
            Err(err) => fallback(format!("no Lambda extension ({err})")),
        },
    }
}

/// Whether the API key kept in AWS is fetched during INIT, off the first response's path. Not
/// where INIT may be frozen long before the first invocation (provisioned concurrency: the
/// request could be cut), nor into a SnapStart snapshot (every copy would hold the key).
fn fetches_key_in_init(
    model: &Result<ExecutionModel, String>,
    env: &impl Fn(&str) -> Option<String>,
) -> bool {
    let provisioned =
        env("AWS_LAMBDA_INITIALIZATION_TYPE").as_deref() == Some("provisioned-concurrency");
    matches!(
        model,
        Ok(ExecutionModel::OnDemand | ExecutionModel::ManagedInstances { .. })
    ) && !provisioned
}

/// Hands an invocation's work to what delivers it in this process (the extension, given the
/// invocation's `request_id`, or the worker's thread); gives it back when neither runs.
pub fn hand_off(request_id: Option<&str>, work: Work) -> Result<(), Work> {
    let work = match request_id {
        Some(id) => match internal::hand_off(id, work) {
            Ok(()) => return Ok(()),
            Err(work) => work,
        },
        None => work,
    };
    managed::hand_off(work)
}

/// What an invocation leaves to deliver: its runs, flushed if still open, synced if
/// finished. On Lambda, the runs earlier invocations could not deliver go out before them.
#[derive(Default)]
pub struct Work {
    pub runs: Vec<Arc<Run>>,
}

/// Delivers `work` until `deadline`; returns what went wrong, one line per problem. Runs
/// not delivered stay on disk for a later sweep or `sync`. On Lambda the runs earlier
/// invocations left go first, oldest first: the server numbers an artifact's versions in the
/// order they are committed, so a version an outage cut must be completed before a newer
/// one of the same name is saved, or it would take `latest`.
pub fn deliver(work: Work, deadline: Instant) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(run) = work.runs.first().filter(|run| run.settings.on_lambda) {
        let own: BTreeSet<_> = work
            .runs
            .iter()
            .filter_map(|r| r.info.dir.clone())
            .collect();
        spool::sweep(
            &run.settings,
            &own,
            LEFT_BY_ENDED_PROCESS,
            deadline,
            HeldLogs::Skip,
            &mut problems,
        );
    }
    for run in &work.runs {
        let result = if run.is_finished() {
            deliver_finished(run, deadline)
        } else {
            run.flush(Some(deadline))
                .and_then(|warning| warning.map_or(Ok(()), |w| Err(Error::Comm(w))))
        };
        if let Err(err) = result {
            if matches!(err, Error::Auth(_)) {
                // A key kept in AWS may have been rotated: the next run fetches it again,
                // and its sweep delivers this one.
                crate::aws::secrets::forget();
            }
            problems.push(format!("run {}: {err}", run.info.id));
        }
    }
    problems
}

fn deliver_finished(run: &Run, deadline: Instant) -> Result<(), Error> {
    let Some(log) = run.info.log_path().filter(|_| run.needs_sync()) else {
        return Ok(());
    };
    // An outcome of `Open`: another process's sweep is delivering it.
    let outcome = delivery::sync(
        &log,
        &run.settings,
        SyncOverrides::default(),
        Some(deadline),
    )?;
    if let delivery::SyncOutcome::Uploaded { url } = outcome {
        let _ = run.info.url.set(url);
    }
    Ok(())
}

/// A panic's message, from its payload (`panic!` makes a `&str` or a `String`).
fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The deadline for delivery in an invocation that ends at `deadline_ms` (Unix ms).
pub fn invocation_deadline(deadline_ms: u64) -> Instant {
    until_epoch_ms(deadline_ms, INVOCATION_MARGIN)
}

/// The deadline for delivery at a SHUTDOWN whose process is killed at `deadline_ms`.
pub fn shutdown_deadline(deadline_ms: u64) -> Instant {
    until_epoch_ms(deadline_ms, SHUTDOWN_MARGIN)
}

fn until_epoch_ms(deadline_ms: u64, margin: Duration) -> Instant {
    let now_ms = (system::unix_now() * 1000.0) as u64;
    let remaining = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    Instant::now() + remaining.saturating_sub(margin)
}

/// The deadline for delivery given the time an invocation has left.
pub fn deadline_from_remaining(remaining: Duration) -> Instant {
    Instant::now() + remaining.saturating_sub(INVOCATION_MARGIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_keep_a_margin_and_never_lie_in_the_future_when_passed() {
        let now = Instant::now();
        let soon = deadline_from_remaining(Duration::from_secs(2));
        let margin = Duration::from_millis(50);
        assert!(soon <= now + Duration::from_secs(2) - INVOCATION_MARGIN + margin);
        assert!(deadline_from_remaining(Duration::from_millis(100)) <= Instant::now());
        assert!(invocation_deadline(1) <= Instant::now());
        assert!(shutdown_deadline(1) <= Instant::now());
        let epoch_ms = (system::unix_now() * 1000.0) as u64;
        let later = invocation_deadline(epoch_ms + 5_000);
        assert!(later > Instant::now() + Duration::from_secs(4));
        let at_shutdown = shutdown_deadline(epoch_ms + 2_000);
        assert!(at_shutdown > Instant::now() + Duration::from_millis(1_800));
        assert!(
            at_shutdown < Instant::now() + Duration::from_millis(2_000) - SHUTDOWN_MARGIN + margin
        );
    }
}
