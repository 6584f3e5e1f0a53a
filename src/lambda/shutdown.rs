//! SIGTERM: Lambda sends it to the runtime before retiring an environment with an extension
//! registered, and kills the process soon after (300 ms with an external extension). Open
//! runs are finished then, so that the extension delivers them whole, with their exit.
//!
//! The handler is native: on Python 3.10 and 3.11 a Python-level handler never runs while
//! the runtime waits for its next event. It only writes a byte to a pipe; a thread of ours
//! does the work, then hands the signal to whatever handled it before (a user's handler,
//! or the default, which ends the process).

use std::io;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::OnceLock;

use crate::core::run;
use crate::core::system;

/// The pipe's write end, read by the handler.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The process that installed the handler: a forked child has no thread to wake.
static OWNER: AtomicU32 = AtomicU32::new(0);
/// What handled SIGTERM before us.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// Installs the handler and its thread, once per process.
pub fn finish_runs_on_sigterm() -> io::Result<()> {
    if OWNER.load(Ordering::Acquire) == system::current_pid() {
        return Ok(());
    }
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [read_fd, write_fd] = fds;
    std::thread::Builder::new()
        .name("wandb-nexus-sigterm".into())
        .stack_size(256 * 1024)
        .spawn(move || wait_for_sigterm(read_fd))?;
    WAKE_FD.store(write_fd, Ordering::Release);
    OWNER.store(system::current_pid(), Ordering::Release);
    // SAFETY: a zeroed sigaction is a valid value to fill in; the handler is
    // async-signal-safe (it only calls write, getpid, sigaction and raise).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGTERM, &action, &mut previous) != 0 {
            return Err(io::Error::last_os_error());
        }
        let _ = PREVIOUS.set(previous);
    }
    Ok(())
}

extern "C" fn on_sigterm(_: libc::c_int) {
    // SAFETY: getpid and write are async-signal-safe.
    unsafe {
        if libc::getpid() as u32 == OWNER.load(Ordering::Relaxed) {
            let byte = 1u8;
            libc::write(WAKE_FD.load(Ordering::Relaxed), (&raw const byte).cast(), 1);
        } else {
            pass_on();
        }
    }
}

fn wait_for_sigterm(read_fd: libc::c_int) {
    let mut byte = 0u8;
    loop {
        // SAFETY: reads one byte into a local.
        let read = unsafe { libc::read(read_fd, (&raw mut byte).cast(), 1) };
        if read == 1 {
            break;
        }
        if read < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return;
    }
    for problem in run::finish_open_runs(0) {
        eprintln!("wandb-nexus: at SIGTERM: {problem}");
    }
    pass_on();
}

/// Gives SIGTERM to what handled it before us: restores that handler and raises the
/// signal again (the default ends the process; an ignored signal stays ignored).
fn pass_on() {
    let default = {
        // SAFETY: an all-zero sigaction is SIG_DFL with no flags.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = libc::SIG_DFL;
        action
    };
    let previous = PREVIOUS.get().unwrap_or(&default);
    // SAFETY: sigaction and raise are async-signal-safe; `previous` is what sigaction gave.
    unsafe {
        libc::sigaction(libc::SIGTERM, previous, std::ptr::null_mut());
        libc::raise(libc::SIGTERM);
    }
}
