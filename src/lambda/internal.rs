//! The internal extension: a thread of the runtime process, registered for INVOKE during init
//! (module import). Handlers hand it their invocation's work and return at once; it delivers
//! after the response, and asks for its next event (which lets Lambda freeze the process)
//! when delivery is done or the invocation's deadline is near.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::time::Instant;

use super::extensions_api::{Event, EventType, ExtensionsApi, Registration};
use super::{deliver, invocation_deadline, Work};
use crate::api::transport;
use crate::core::system::ProcessLocal;
use crate::error::Error;

/// Not `wandb-nexus`: an external extension's name must be its file's, and names are unique
/// within an environment, so that one is the layer's external extension's.
const NAME: &str = "wandb-nexus-internal";

/// The internal extension of this process.
pub struct Extension {
    registration: Registration,
    handoff: Mutex<Handoff>,
    handed_off: Condvar,
}

#[derive(Default)]
struct Handoff {
    /// Work handed over by invocations, by request id.
    pending: Vec<(String, Work)>,
    /// The thread stopped (the Extensions API failed); handlers deliver for themselves.
    stopped: bool,
}

static EXTENSION: ProcessLocal<Arc<Extension>> = ProcessLocal::new();
/// The registration made during INIT, kept beyond its process: a copy of the process
/// restored from a snapshot without its threads (see `resume`) carries on with it.
static REGISTERED: Mutex<Option<Registration>> = Mutex::new(None);

/// Registers the internal extension and starts its thread, once per process. Must run during
/// init (module import), before the runtime asks for its first event. Returns false when
/// there is no Extensions API (not on Lambda).
pub fn start() -> Result<bool, Error> {
    let Some(api) = ExtensionsApi::from_env()? else {
        return Ok(false);
    };
    if let Err(err) = super::shutdown::finish_runs_on_sigterm() {
        eprintln!("wandb-nexus: runs open at SIGTERM are not finished ({err})");
    }
    EXTENSION.get_or_make(
        |_| true,
        || {
            // Internal extensions may not register for SHUTDOWN.
            let registration = api.register(NAME, &[EventType::Invoke])?;
            *registered() = Some(registration.clone());
            spawn(registration)
        },
    )?;
    Ok(true)
}

/// After a restore from a snapshot: the extension's thread goes on where this process
/// registered it. It is started again when this process is a copy that has the registration
/// but not the thread (a snapshot taken by forking, as tests take one; Lambda's snapshot of
/// the whole machine keeps threads, and then nothing is done). Returns whether the
/// extension runs.
pub fn resume() -> Result<bool, Error> {
    if EXTENSION.get().is_some() {
        return Ok(true);
    }
    let Some(registration) = registered().clone() else {
        return Ok(false);
    };
    let Some(api) = ExtensionsApi::from_env()? else {
        return Ok(false);
    };
    EXTENSION.get_or_make(|_| true, || spawn(registration.on(api)))?;
    Ok(true)
}

fn registered() -> MutexGuard<'static, Option<Registration>> {
    REGISTERED.lock().unwrap_or_else(|p| p.into_inner())
}

fn spawn(registration: Registration) -> Result<Arc<Extension>, Error> {
    let extension = Arc::new(Extension {
        registration,
        handoff: Mutex::default(),
        handed_off: Condvar::new(),
    });
    let worker = extension.clone();
    std::thread::Builder::new()
        .name("wandb-nexus-extension".into())
        .spawn(move || worker.run())
        .map_err(|e| Error::io("cannot start the Lambda extension thread", e))?;
    Ok(extension)
}

/// Hands an invocation's work to the extension; gives it back when there is no running
/// extension in this process, for the caller to deliver itself.
pub fn hand_off(request_id: &str, work: Work) -> Result<(), Work> {
    let Some(extension) = EXTENSION.get() else {
        return Err(work);
    };
    let mut handoff = extension.handoff();
    if handoff.stopped {
        return Err(work);
    }
    handoff.pending.push((request_id.to_string(), work));
    extension.handed_off.notify_all();
    Ok(())
}

impl Extension {
    fn handoff(&self) -> MutexGuard<'_, Handoff> {
        self.handoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self) {
        loop {
            // Lambda freezes the process once this call and the runtime's are both waiting.
            let event = match self.registration.next_event() {
                Ok(event) => event,
                Err(err) => return self.stop(&err.to_string()),
            };
            let Event::Invoke {
                request_id,
                deadline_ms,
            } = event
            else {
                return;
            };
            // Thawed: pooled connections may have died during the freeze.
            transport::reset_connections();
            let deadline = invocation_deadline(deadline_ms);
            if let Some(work) = self.wait_for(&request_id, deadline) {
                for problem in deliver(work, deadline) {
                    eprintln!("wandb-nexus: {problem}");
                }
            }
        }
    }

    /// The work of the invocation `request_id`, once its handler has returned; None if it
    /// does not come before the deadline (a handler without the decorator). Work left by
    /// earlier invocations that ran out of time is dropped: their runs are on disk, and the
    /// sweep picks them up.
    fn wait_for(&self, request_id: &str, deadline: Instant) -> Option<Work> {
        let mut handoff = self.handoff();
        loop {
            if let Some(at) = handoff.pending.iter().position(|(id, _)| id == request_id) {
                let (_, work) = handoff.pending.swap_remove(at);
                handoff.pending.clear();
                return Some(work);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            handoff = self
                .handed_off
                .wait_timeout(handoff, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn stop(&self, reason: &str) {
        eprintln!("wandb-nexus: the Lambda extension stopped ({reason}); runs are delivered before the handler returns");
        let mut handoff = self.handoff();
        handoff.stopped = true;
        handoff.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_extension_work_comes_back_to_the_caller() {
        let work = Work { runs: Vec::new() };
        assert!(hand_off("request", work).is_err());
    }

    #[test]
    fn a_process_that_never_registered_resumes_nothing() {
        assert!(!resume().unwrap());
        assert!(EXTENSION.get().is_none());
    }
}
