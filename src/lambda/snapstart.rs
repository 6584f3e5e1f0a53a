//! SnapStart: Lambda snapshots the environment after INIT and starts every later environment
//! from a copy of that snapshot. Whatever INIT made is cloned into each copy, so the runtime
//! hooks keep what must not be shared out of it: no pooled connection goes into the snapshot,
//! and each copy makes its own connections, signal thread and extension thread.
//!
//! Nothing else needs care here: runs are refused during a SnapStart INIT (by the Python
//! package), so no run id, file or clock reading exists before the snapshot, and every run
//! id is drawn from the OS's random source when its run starts.

use super::{internal, shutdown};
use crate::api::transport;

/// Before the snapshot: connections made during INIT are dropped from the pool.
pub fn before_snapshot() {
    transport::reset_connections();
}

/// After a restore: fresh connections, and this copy's own threads (the extension's, and the
/// SIGTERM handler's that INIT started with it). Returns what could not be set up, one line
/// each (runs are then delivered before the handler returns).
pub fn after_restore() -> Vec<String> {
    transport::reset_connections();
    match internal::resume() {
        Ok(false) => Vec::new(),
        Ok(true) => match shutdown::finish_runs_on_sigterm() {
            Ok(()) => Vec::new(),
            Err(err) => vec![format!("runs open at SIGTERM are not finished ({err})")],
        },
        Err(err) => vec![format!(
            "the Lambda extension does not run after the restore ({err}); runs are delivered before the handler returns"
        )],
    }
}
