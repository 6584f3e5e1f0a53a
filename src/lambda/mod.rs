//! AWS Lambda: delivering runs after the response, without losing them to a freeze.
//!
//! The handler never waits for W&B. When it returns, the runs it used are handed to an
//! internal extension: a native thread registered with the Extensions API during init. The
//! runtime posts the response while the thread delivers, and the thread asks for its next
//! event (which lets Lambda freeze the process) only when delivery is done or the
//! invocation's deadline is near. What is not delivered by then stays in its transaction log
//! under `/tmp` and is synced after a later invocation, exactly once: a sync resends a run
//! whole, at the offsets it had, so rows that arrived before are replaced, not repeated.
//!
//! Without the Extensions API (local runs, `sls invoke local`) the same delivery runs before
//! the handler returns.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use reqwest::Url;
use serde_json::Value as Json;
use tokio::time::Instant;

use crate::api::delivery::{self, SyncOverrides};
use crate::api::transport;
use crate::core::run::{self, Run};
use crate::core::runtime::runtime;
use crate::core::settings::Settings;
use crate::core::system::{self, ProcessLocal};
use crate::error::Error;

/// Delivery stops this long before the invocation's deadline, so the extension's next-event
/// call (and the runtime's) happens in time.
const DEADLINE_MARGIN: Duration = Duration::from_millis(300);
const EXTENSION_NAME: &str = "wandb-nexus";
const EXTENSION_ID_HEADER: &str = "Lambda-Extension-Identifier";

/// What an invocation leaves to deliver: its runs, flushed if still open, synced if
/// finished. On Lambda, the runs earlier invocations could not deliver go out after them.
#[derive(Default)]
pub struct Work {
    pub runs: Vec<Arc<Run>>,
}

/// Delivers `work` until `deadline`; returns what went wrong, one line per problem. Runs
/// not delivered stay on disk for a later sweep or `sync`.
pub fn deliver(work: Work, deadline: Instant) -> Vec<String> {
    let mut problems = Vec::new();
    let mut done = BTreeSet::new();
    for run in &work.runs {
        let result = if run.is_finished() {
            deliver_finished(run, deadline)
        } else {
            run.flush(Some(deadline))
                .and_then(|warning| warning.map_or(Ok(()), |w| Err(Error::Comm(w))))
        };
        if let Err(err) = result {
            problems.push(format!("run {}: {err}", run.info.id));
        }
        done.extend(run.info.dir.clone());
    }
    if let Some(run) = work.runs.first().filter(|run| run.settings.on_lambda) {
        sweep(&run.settings, &done, deadline, &mut problems);
    }
    problems
}

fn deliver_finished(run: &Run, deadline: Instant) -> Result<(), Error> {
    if let Some(dir) = run.info.dir.as_ref().filter(|_| run.needs_sync()) {
        let outcome = delivery::sync(dir, &run.settings, SyncOverrides::default(), Some(deadline))?;
        if let delivery::SyncOutcome::Uploaded { url } = outcome {
            let _ = run.info.url.set(url);
        }
    }
    Ok(())
}

/// Syncs the runs under the root that no invocation delivered (oldest first), skipping runs
/// still open here. A server that cannot be reached ends the sweep; a run the server refuses
/// is left for `sync` and not tried again by this process.
fn sweep(
    settings: &Settings,
    done: &BTreeSet<PathBuf>,
    deadline: Instant,
    problems: &mut Vec<String>,
) {
    if settings.api_key.is_none() {
        return;
    }
    for dir in undelivered_runs(&settings.root_dir.join("wandb")) {
        if done.contains(&dir) || run::is_open_here(&dir) || refused_runs().contains(&dir) {
            continue;
        }
        if Instant::now() >= deadline {
            return;
        }
        match delivery::sync(&dir, settings, SyncOverrides::default(), Some(deadline)) {
            Ok(_) => {}
            Err(Error::Unavailable(err)) => {
                problems.push(format!("{} stays queued: {err}", dir.display()));
                return;
            }
            Err(err) => {
                problems.push(format!(
                    "{} was refused ({err}); upload it with: python -m wandb_nexus sync {}",
                    dir.display(),
                    dir.display()
                ));
                refused_runs().insert(dir);
            }
        }
    }
}

fn refused_runs() -> MutexGuard<'static, BTreeSet<PathBuf>> {
    static REFUSED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
    REFUSED.lock().unwrap_or_else(|p| p.into_inner())
}

/// `run-*` directories (runs meant to be online) whose log is not marked synced, oldest
/// first: their names start with the local start time.
fn undelivered_runs(wandb_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(wandb_dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("run-"))
        .map(|e| e.path())
        .filter(|dir| {
            std::fs::read_dir(dir).is_ok_and(|mut files| {
                files.any(|file| {
                    let path = file.map(|f| f.path()).unwrap_or_default();
                    path.extension().is_some_and(|ext| ext == "wandb")
                        && !delivery::synced_marker(&path).exists()
                })
            })
        })
        .collect();
    dirs.sort();
    dirs
}

/// The deadline for delivery in an invocation that ends at `deadline_ms` (Unix ms).
pub fn deadline_from_epoch_ms(deadline_ms: u64) -> Instant {
    let now_ms = (system::unix_now() * 1000.0) as u64;
    let remaining = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    Instant::now() + remaining.saturating_sub(DEADLINE_MARGIN)
}

/// The deadline for delivery given the time an invocation has left.
pub fn deadline_from_remaining(remaining: Duration) -> Instant {
    Instant::now() + remaining.saturating_sub(DEADLINE_MARGIN)
}

/// The internal extension of this process.
pub struct Extension {
    api: String,
    id: String,
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

/// Registers the internal extension and starts its thread, once per process. Must run during
/// init (module import), before the runtime asks for its first event. Returns false when
/// there is no Extensions API (not on Lambda).
pub fn start_extension() -> Result<bool, Error> {
    let Some(api) = std::env::var("AWS_LAMBDA_RUNTIME_API")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        return Ok(false);
    };
    EXTENSION.get_or_make(
        |_| true,
        || {
            let rt = runtime().map_err(|e| Error::io("cannot start the I/O runtime", e))?;
            let id = rt.block_on(register(&api))?;
            let extension = Arc::new(Extension {
                api,
                id,
                handoff: Mutex::default(),
                handed_off: Condvar::new(),
            });
            let worker = extension.clone();
            std::thread::Builder::new()
                .name("wandb-nexus-extension".into())
                .spawn(move || worker.run())
                .map_err(|e| Error::io("cannot start the Lambda extension thread", e))?;
            Ok::<_, Error>(extension)
        },
    )?;
    Ok(true)
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

enum Event {
    Invoke {
        request_id: String,
        deadline_ms: u64,
    },
    Shutdown,
}

impl Extension {
    fn handoff(&self) -> MutexGuard<'_, Handoff> {
        self.handoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self) {
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(err) => return self.stop(&format!("cannot start the I/O runtime: {err}")),
        };
        loop {
            // Lambda freezes the process once this call and the runtime's are both waiting.
            let event = match rt.block_on(self.next_event()) {
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
            let deadline = deadline_from_epoch_ms(deadline_ms);
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

    async fn next_event(&self) -> Result<Event, Error> {
        let url = extension_url(&self.api, "event/next")?;
        // No timeout: the call returns when the next invocation starts.
        let response = transport::client()?
            .get(url)
            .header(EXTENSION_ID_HEADER, &self.id)
            .send()
            .await
            .map_err(|e| Error::Comm(format!("Extensions API event/next: {e}")))?;
        let body = answer(response, "event/next").await?;
        match body["eventType"].as_str() {
            Some("INVOKE") => Ok(Event::Invoke {
                request_id: body["requestId"].as_str().unwrap_or_default().to_string(),
                deadline_ms: body["deadlineMs"].as_u64().unwrap_or_default(),
            }),
            Some("SHUTDOWN") => Ok(Event::Shutdown),
            other => Err(Error::Comm(format!(
                "Extensions API event/next: unknown event type {other:?}"
            ))),
        }
    }
}

/// `POST /register` for INVOKE events (all an internal extension may have); returns the
/// extension's identifier.
async fn register(api: &str) -> Result<String, Error> {
    let response = transport::client()?
        .post(extension_url(api, "register")?)
        .header("Lambda-Extension-Name", EXTENSION_NAME)
        .body(r#"{"events":["INVOKE"]}"#)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(|e| Error::Comm(format!("Extensions API register: {e}")))?;
    let id = response
        .headers()
        .get(EXTENSION_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    answer(response, "register").await?;
    id.ok_or_else(|| Error::Comm("Extensions API register: no extension identifier".into()))
}

async fn answer(response: reqwest::Response, what: &str) -> Result<Json, Error> {
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| Error::Comm(format!("Extensions API {what}: {e}")))?;
    if !status.is_success() {
        return Err(Error::Comm(format!(
            "Extensions API {what}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    serde_json::from_slice(&body)
        .map_err(|e| Error::Comm(format!("Extensions API {what}: bad JSON: {e}")))
}

fn extension_url(api: &str, path: &str) -> Result<Url, Error> {
    Url::parse(&format!("http://{api}/2020-01-01/extension/{path}")).map_err(|e| {
        Error::Usage(format!(
            "AWS_LAMBDA_RUNTIME_API {api:?} is not host:port: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wandb-nexus-lambda-{}",
            crate::core::system::random_run_id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn run_dir(root: &Path, name: &str, synced: bool) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("run-x.wandb");
        std::fs::write(&log, b"").unwrap();
        if synced {
            std::fs::write(delivery::synced_marker(&log), b"").unwrap();
        }
        dir
    }

    #[test]
    fn undelivered_runs_are_unsynced_online_runs_oldest_first() {
        let root = temp_dir();
        let newer = run_dir(&root, "run-20261125_120000-b", false);
        let older = run_dir(&root, "run-20261125_110000-a", false);
        run_dir(&root, "run-20261125_100000-c", true);
        run_dir(&root, "offline-run-20261125_100000-d", false);
        std::fs::create_dir_all(root.join("run-20261125_090000-empty")).unwrap();
        assert_eq!(undelivered_runs(&root), vec![older, newer]);
        assert!(undelivered_runs(&root.join("missing")).is_empty());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn deadlines_keep_a_margin_and_never_lie_in_the_future_when_passed() {
        let now = Instant::now();
        let soon = deadline_from_remaining(Duration::from_secs(2));
        assert!(soon <= now + Duration::from_secs(2) - DEADLINE_MARGIN + Duration::from_millis(50));
        assert!(deadline_from_remaining(Duration::from_millis(100)) <= Instant::now());
        assert!(deadline_from_epoch_ms(1) <= Instant::now());
        let epoch_ms = (system::unix_now() * 1000.0) as u64;
        let later = deadline_from_epoch_ms(epoch_ms + 5_000);
        assert!(later > Instant::now() + Duration::from_secs(4));
    }

    #[test]
    fn without_an_extension_work_comes_back_to_the_caller() {
        let work = Work { runs: Vec::new() };
        assert!(hand_off("request", work).is_err());
    }

    #[test]
    fn bad_runtime_api_addresses_are_usage_errors() {
        assert!(extension_url("127.0.0.1:9001", "register").is_ok());
        assert!(matches!(
            extension_url("not a host", "register"),
            Err(Error::Usage(_))
        ));
    }
}
