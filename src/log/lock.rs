//! The lock on a run's transaction log, shared by every process that touches `/tmp`: the
//! process writing `run-<id>.wandb` holds `flock(LOCK_EX)` on it for as long as the run is
//! open, and a deliverer (a sweep, the external extension) syncs a log only while holding the
//! same lock through its own descriptor. A run still open anywhere, in another process or in
//! this one, is therefore never recovered or synced under its writer.
//!
//! `flock`, not `fcntl` locks: a flock belongs to the open file description, so it conflicts
//! with the writer's even within one process, and closing another descriptor of the same
//! file (the sync reads the log through its own) does not drop it. The kernel releases a dead
//! process's locks, so a log left by a killed runtime is free at once.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Takes `file`'s exclusive lock without waiting: false when another open file description
/// holds it. For the writer on the log it creates, and for `LogLock::try_acquire`.
pub fn try_lock(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: flock on a descriptor the File owns; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::WouldBlock => return Ok(false),
            io::ErrorKind::Interrupted => continue,
            _ => return Err(err),
        }
    }
}

/// Gives up `file`'s lock (the writer's, once its run is complete).
pub fn unlock(file: &File) -> io::Result<()> {
    // SAFETY: flock on a descriptor the File owns; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) } == 0 {
        return Ok(());
    }
    Err(io::Error::last_os_error())
}

/// A deliverer's hold on a log: the lock lasts as long as this value.
#[derive(Debug)]
pub struct LogLock {
    _file: File,
}

impl LogLock {
    /// Opens `log` (read-only: a flock needs no write access) and takes its lock; None when
    /// the run is still open somewhere.
    pub fn try_acquire(log: &Path) -> io::Result<Option<LogLock>> {
        let file = File::open(log)?;
        Ok(try_lock(&file)?.then_some(LogLock { _file: file }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_log() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wandb-nexus-lock-{}",
            crate::core::system::random_run_id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("run-x.wandb");
        std::fs::write(&log, b"").unwrap();
        log
    }

    #[test]
    fn a_writers_lock_keeps_deliverers_out_even_in_the_same_process() {
        let log = temp_log();
        let writer = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        assert!(try_lock(&writer).unwrap());
        assert!(LogLock::try_acquire(&log).unwrap().is_none());
        // Another descriptor of the file closing does not release the writer's lock.
        drop(File::open(&log).unwrap());
        assert!(LogLock::try_acquire(&log).unwrap().is_none());
        drop(writer);
        let held = LogLock::try_acquire(&log)
            .unwrap()
            .expect("free once the writer closed");
        assert!(LogLock::try_acquire(&log).unwrap().is_none());
        drop(held);
        assert!(LogLock::try_acquire(&log).unwrap().is_some());
        std::fs::remove_dir_all(log.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_missing_log_is_an_error_not_a_lock() {
        let log = temp_log();
        std::fs::remove_file(&log).unwrap();
        assert!(LogLock::try_acquire(&log).is_err());
        std::fs::remove_dir_all(log.parent().unwrap()).unwrap();
    }
}
