//! Runs left under the root directory that no invocation delivered: found oldest first, and
//! each delivered under its transaction log's lock (`crate::log::lock`), so a run still being
//! written, by this process or another, is never touched. The one sweep of both extensions:
//! the internal one after an invocation's own runs, the external one at SHUTDOWN.

use std::collections::BTreeSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::api::delivery::{self, SyncOverrides};
use crate::core::settings::Settings;
use crate::error::Error;

/// How often a held log is tried again while waiting for it.
const LOCK_RETRY: Duration = Duration::from_millis(5);

/// What a sweep does with a log whose lock is held (its run still open elsewhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldLogs {
    /// Leave it: its writer delivers it, or a later sweep does.
    Skip,
    /// Try it again every few ms until the deadline: at SHUTDOWN the runtime is being
    /// killed, and the kernel frees a dead process's locks.
    WaitUntilDeadline,
}

/// Delivers the undelivered runs under the settings' root (oldest first) until `deadline`,
/// except those in `skip` (run directories). A log its writer left without an end is first
/// made whole, with `left_by` ("the invocation timed out") as the reason in its console.
/// A server that cannot be reached ends the sweep; a run that cannot be delivered (refused,
/// unreadable, from another version) is left in place for `sync`, reported once in
/// `problems`, and not tried again by this process.
pub fn sweep(
    settings: &Settings,
    skip: &BTreeSet<PathBuf>,
    left_by: &str,
    deadline: Instant,
    held: HeldLogs,
    problems: &mut Vec<String>,
) {
    if settings.api_key.is_none() {
        return;
    }
    let logs = undelivered_logs(&settings.root_dir.join("wandb"), problems);
    let mut waiting = Vec::new();
    for log in logs {
        let dir = log.parent().unwrap_or(Path::new("")).to_path_buf();
        if skip.contains(&dir) || skipped().contains(&log) {
            continue;
        }
        if Instant::now() >= deadline {
            return;
        }
        match attempt(&log, settings, left_by, deadline, problems) {
            Step::Next => {}
            Step::Held => waiting.push(log),
            Step::Stop => return,
        }
    }
    if held == HeldLogs::Skip {
        return;
    }
    while !waiting.is_empty() && Instant::now() + LOCK_RETRY < deadline {
        std::thread::sleep(LOCK_RETRY);
        let mut still = Vec::new();
        for log in waiting {
            match attempt(&log, settings, left_by, deadline, problems) {
                Step::Next => {}
                Step::Held => still.push(log),
                Step::Stop => return,
            }
        }
        waiting = still;
    }
    for log in waiting {
        problems.push(format!(
            "{} was still open in another process at the deadline; it is left in place",
            run_dir(&log).display()
        ));
    }
}

enum Step {
    Next,
    Held,
    Stop,
}

/// One log's delivery, with its outcome reported. A panic (a bug, met on some odd log) is
/// caught here: it costs that run, not the sweep or the process.
fn attempt(
    log: &Path,
    settings: &Settings,
    left_by: &str,
    deadline: Instant,
    problems: &mut Vec<String>,
) -> Step {
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        deliver(log, settings, left_by, deadline)
    }))
    .unwrap_or_else(|panic| {
        let text = super::panic_text(panic.as_ref());
        Err(Error::invalid(format!(
            "a bug stopped its delivery: {text}"
        )))
    });
    let dir = run_dir(log);
    match outcome {
        Ok(true) => Step::Next,
        Ok(false) => Step::Held,
        // Neither is this run's fault: a key rotated since (the invocation's own delivery
        // fetches it again) or a server down. Every other run would meet the same.
        Err(err @ (Error::Unavailable(_) | Error::Auth(_))) => {
            problems.push(format!("{} stays queued: {err}", dir.display()));
            Step::Stop
        }
        Err(err) => {
            problems.push(format!(
                "{} was not delivered ({err}); it is left in place: upload it with: \
                 python -m wandb_nexus sync {}",
                dir.display(),
                dir.display()
            ));
            skipped().insert(log.to_path_buf());
            Step::Next
        }
    }
}

/// Syncs `log` (which completes a log its writer left without an end, under the log's
/// lock); false when the lock is held elsewhere.
fn deliver(
    log: &Path,
    settings: &Settings,
    left_by: &str,
    deadline: Instant,
) -> Result<bool, Error> {
    let overrides = SyncOverrides {
        ended_because: Some(left_by.to_string()),
        ..SyncOverrides::default()
    };
    let outcome = delivery::sync(log, settings, overrides, Some(deadline))?;
    Ok(outcome != delivery::SyncOutcome::Open)
}

fn run_dir(log: &Path) -> &Path {
    log.parent().unwrap_or(log)
}

/// Logs (and run directories) this process has given up on, each reported once.
fn skipped() -> MutexGuard<'static, BTreeSet<PathBuf>> {
    static SKIPPED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
    SKIPPED.lock().unwrap_or_else(|p| p.into_inner())
}

/// The transaction logs in `run-*` directories (runs meant to be online) not marked synced,
/// oldest first: run directory names start with the local start time. A run directory that
/// cannot be read is reported once.
fn undelivered_logs(wandb_dir: &Path, problems: &mut Vec<String>) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(wandb_dir) else {
        return Vec::new();
    };
    let mut logs = Vec::new();
    for entry in entries.flatten() {
        let is_run_dir = entry.file_name().to_string_lossy().starts_with("run-")
            && entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_run_dir {
            continue;
        }
        let dir = entry.path();
        match std::fs::read_dir(&dir) {
            Ok(files) => logs.extend(files.flatten().map(|f| f.path()).filter(|path| {
                path.extension().is_some_and(|ext| ext == "wandb")
                    && !delivery::synced_marker(path).exists()
            })),
            Err(err) => {
                if skipped().insert(dir.clone()) {
                    problems.push(format!(
                        "cannot read {}: {err}; it is left in place",
                        dir.display()
                    ));
                }
            }
        }
    }
    logs.sort();
    logs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::settings::InitArgs;
    use crate::log::lock;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wandb-nexus-spool-{}",
            crate::core::system::random_run_id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn run_log(root: &Path, name: &str, contents: &[u8], synced: bool) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("run-x.wandb");
        std::fs::write(&log, contents).unwrap();
        if synced {
            std::fs::write(delivery::synced_marker(&log), b"").unwrap();
        }
        log
    }

    /// Settings that give up on a request at once (so no retry budget to wait out).
    fn settings(root: &Path, base_url: &str) -> Settings {
        settings_retrying(root, base_url, "0")
    }

    fn settings_retrying(root: &Path, base_url: &str, seconds: &str) -> Settings {
        let env = |name: &str| match name {
            "WANDB_API_KEY" => Some("k".repeat(40)),
            "WANDB_BASE_URL" => Some(base_url.to_string()),
            "WANDB_DIR" => Some(root.display().to_string()),
            "WANDB_NEXUS_RETRY_SECONDS" => Some(seconds.into()),
            _ => None,
        };
        Settings::resolve(InitArgs::default(), env).unwrap()
    }

    /// The problems a sweep of every run (none skipped) reports.
    fn sweep_all(
        settings: &Settings,
        reason: &str,
        deadline: Instant,
        held: HeldLogs,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        sweep(
            settings,
            &BTreeSet::new(),
            reason,
            deadline,
            held,
            &mut problems,
        );
        problems
    }

    #[test]
    fn undelivered_logs_are_unsynced_online_runs_oldest_first() {
        let root = temp_dir();
        let newer = run_log(&root, "run-20261125_120000-b", b"", false);
        let older = run_log(&root, "run-20261125_110000-a", b"", false);
        run_log(&root, "run-20261125_100000-c", b"", true);
        run_log(&root, "offline-run-20261125_100000-d", b"", false);
        std::fs::create_dir_all(root.join("run-20261125_090000-empty")).unwrap();
        std::fs::write(root.join("run-not-a-dir"), b"").unwrap();
        let mut problems = Vec::new();
        assert_eq!(undelivered_logs(&root, &mut problems), vec![older, newer]);
        assert!(undelivered_logs(&root.join("missing"), &mut problems).is_empty());
        assert!(problems.is_empty());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn an_unreadable_run_dir_is_reported_once() {
        if unsafe { libc::geteuid() } == 0 {
            return; // root reads any directory
        }
        let root = temp_dir();
        let log = run_log(&root, "run-20261125_120000-b", b"", false);
        let dir = log.parent().unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o000)).unwrap();
        let mut problems = Vec::new();
        assert!(undelivered_logs(&root, &mut problems).is_empty());
        assert!(undelivered_logs(&root, &mut problems).is_empty());
        assert_eq!(problems.len(), 1, "{problems:?}");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn held_logs_are_left_alone_and_bad_logs_left_in_place_once() {
        let root = temp_dir();
        let wandb = root.join("wandb");
        // Nothing listens on this port: a sweep that got as far as the network would end.
        let settings = settings(&root, "http://127.0.0.1:9");
        let open = run_log(&wandb, "run-20261125_100000-a", b"", false);
        let writer = std::fs::File::open(&open).unwrap();
        assert!(lock::try_lock(&writer).unwrap());
        let truncated = run_log(&wandb, "run-20261125_110000-b", b":W&", false);
        let other_version = run_log(&wandb, "run-20261125_120000-c", b":W&B\xe1\xbe\x09", false);
        let deadline = Instant::now() + Duration::from_secs(5);
        let problems = sweep_all(
            &settings,
            "the invocation timed out",
            deadline,
            HeldLogs::Skip,
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        for (problem, log) in problems.iter().zip([&truncated, &other_version]) {
            assert!(
                problem.contains(&run_dir(log).display().to_string()),
                "{problem}"
            );
            assert!(problem.contains("left in place"), "{problem}");
            assert!(log.exists());
        }
        // Said once: this process does not try them again.
        let problems = sweep_all(
            &settings,
            "the invocation timed out",
            deadline,
            HeldLogs::Skip,
        );
        assert!(problems.is_empty(), "{problems:?}");

        // Waiting for a held log ends at the deadline, with the run left in place.
        let soon = Instant::now() + Duration::from_millis(50);
        let problems = sweep_all(
            &settings,
            "the invocation timed out",
            soon,
            HeldLogs::WaitUntilDeadline,
        );
        assert!(Instant::now() >= soon - LOCK_RETRY);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("still open"), "{}", problems[0]);
        drop(writer);
        std::fs::remove_dir_all(root).unwrap();
    }

    /// A log with a run record, as a writer that died would leave it.
    fn valid_log(root: &Path, name: &str) -> PathBuf {
        use crate::log::records::{Record, RecordType, RunRecord};
        use prost::Message;
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("run-a.wandb");
        let run = RunRecord {
            run_id: "a".into(),
            project: "p".into(),
            ..Default::default()
        };
        let record = Record {
            record_type: Some(RecordType::Run(run)),
            ..Default::default()
        };
        let mut writer = crate::log::txlog::LogWriter::create(&log).unwrap();
        writer.append(&record.encode_to_vec()).unwrap();
        writer.sync().unwrap();
        log
    }

    #[test]
    fn a_log_freed_while_waiting_is_tried_at_once() {
        let root = temp_dir();
        let settings = settings(&root, "http://127.0.0.1:9");
        let log = run_log(&root.join("wandb"), "run-20261125_100000-a", b"", false);
        let writer = std::fs::File::open(&log).unwrap();
        assert!(lock::try_lock(&writer).unwrap());
        let freed = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            drop(writer);
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let wait = HeldLogs::WaitUntilDeadline;
        let problems = sweep_all(&settings, "x", deadline, wait);
        freed.join().unwrap();
        // Free now, and empty (no run record): left in place, long before the deadline.
        assert!(Instant::now() + Duration::from_secs(4) < deadline);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("left in place"), "{}", problems[0]);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn an_unreachable_server_ends_the_sweep_and_leaves_the_runs_queued() {
        let root = temp_dir();
        let wandb = root.join("wandb");
        let settings = settings(&root, "http://127.0.0.1:9");
        let older = valid_log(&wandb, "run-20261125_100000-a");
        let newer = valid_log(&wandb, "run-20261125_110000-b");
        let deadline = Instant::now() + Duration::from_secs(20);
        let reason = "the runtime process failed";
        let problems = sweep_all(&settings, reason, deadline, HeldLogs::Skip);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("stays queued"), "{}", problems[0]);
        assert!(problems[0].contains("100000-a"), "{}", problems[0]);
        for log in [&older, &newer] {
            assert!(!delivery::synced_marker(log).exists());
        }
        // Not given up on: the next sweep tries again.
        let problems = sweep_all(&settings, reason, deadline, HeldLogs::Skip);
        assert_eq!(problems.len(), 1, "{problems:?}");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_refused_key_ends_the_sweep_and_leaves_the_runs_queued() {
        use crate::lambda::extensions_api::fake::{answer, http_server};
        let refused = answer("401 Unauthorized", "Connection: close\r\n", "");
        let (host, _requests) = http_server(vec![refused; 8]);
        let root = temp_dir();
        let wandb = root.join("wandb");
        // A refusal is not retried: the budget is never waited out.
        let settings = settings_retrying(&root, &format!("http://{host}"), "30");
        let logs = [
            valid_log(&wandb, "run-20261125_100000-a"),
            valid_log(&wandb, "run-20261125_110000-b"),
        ];
        let deadline = Instant::now() + Duration::from_secs(20);
        for _ in 0..2 {
            // Not given up on: once the key is fetched again, these runs go out.
            let problems = sweep_all(&settings, "x", deadline, HeldLogs::Skip);
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(problems[0].contains("stays queued"), "{}", problems[0]);
            assert!(problems[0].contains("401"), "{}", problems[0]);
        }
        assert!(logs
            .iter()
            .all(|log| !delivery::synced_marker(log).exists()));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn without_a_key_nothing_is_swept() {
        let root = temp_dir();
        let settings = Settings::resolve(InitArgs::default(), |name| {
            (name == "WANDB_DIR").then(|| root.display().to_string())
        })
        .unwrap();
        run_log(&root.join("wandb"), "run-20261125_100000-a", b"", false);
        let deadline = Instant::now() + Duration::from_secs(1);
        let problems = sweep_all(&settings, "x", deadline, HeldLogs::Skip);
        assert!(problems.is_empty());
        std::fs::remove_dir_all(root).unwrap();
    }
}
