//! Resuming a run (`init(id=..., resume=...)`): whether it may, and where it continues. The
//! server's RunResumeStatus answer decides as in wandb (wandb-artifacts-resume.md §2.3-2.4);
//! a deferred (Lambda) run may continue from this environment's own log of the run instead,
//! which holds rows the server may not have yet and costs no request.

use std::path::{Path, PathBuf};

use prost::Message;

use crate::api::transport::ResumeStatus;
use crate::core::settings::Resume;
use crate::core::values::{Tree, Value};
use crate::error::Error;
use crate::log::records::{usable, Record, RecordType};

/// Where a resumed run continues.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Continuation {
    /// The step of the next row.
    pub starting_step: i64,
    /// Seconds the run has run so far; `_runtime` continues from it.
    pub runtime: f64,
    /// The summary so far, by top-level key.
    pub summary: Vec<(String, Value)>,
    /// The config the run had, by top-level key; keys set locally win.
    pub config: Vec<(String, Value)>,
    pub tags: Vec<String>,
    pub notes: Option<String>,
    /// The server's history and console line counts, where this part's lines go; `None`
    /// when continuing from a local log (a sync asks the server when it delivers).
    pub server_lines: Option<LineCounts>,
}

/// Lines the server holds of a run's history and console: a resumed part's lines follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineCounts {
    pub history: u64,
    pub console: u64,
}

impl LineCounts {
    /// The side file that pins a resumed part's offsets, so a retried or later delivery
    /// sends its lines where the first attempt did (never twice, never over other lines).
    pub fn pin_path(log: &Path) -> PathBuf {
        let mut name = log.as_os_str().to_owned();
        name.push(".resume");
        PathBuf::from(name)
    }

    pub fn pin(self, log: &Path) -> Result<(), Error> {
        let path = Self::pin_path(log);
        let text = format!(
            "{{\"history_offset\": {}, \"console_offset\": {}}}\n",
            self.history, self.console
        );
        std::fs::write(&path, text)
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
    }

    pub fn pinned(log: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(Self::pin_path(log)).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some(Self {
            history: value["history_offset"].as_u64()?,
            console: value["console_offset"].as_u64()?,
        })
    }
}

/// What `resume` says to do about a run that does (`Some`) or does not exist on the server:
/// continue it, start it fresh, or refuse with wandb's message.
pub fn decide(
    mode: Resume,
    run_id: &str,
    status: Option<ResumeStatus>,
) -> Result<Option<Continuation>, Error> {
    match (mode, status) {
        (Resume::Never, Some(_)) => Err(Error::Usage(format!(
            "Run ({run_id}) already exists, but your `resume` setting does not allow resuming \
             an existing run. Verify the run ID is correct. To resume this run, set `resume` \
             in init() or `WANDB_RESUME` to `allow` or `must`. To start a new run, use a \
             different run ID."
        ))),
        (Resume::Must, None) => Err(Error::Usage(format!(
            "Run ({run_id}) does not exist or has not been initialized, but your `resume` \
             setting requires an existing run to resume. Verify the run ID is correct. If you \
             are starting a new run, omit `resume` in init() or set `resume` or \
             `WANDB_RESUME` to `allow` or `never`."
        ))),
        (Resume::Never, None) | (_, None) => Ok(None),
        (_, Some(status)) => Ok(Some(from_server(status))),
    }
}

fn from_server(status: ResumeStatus) -> Continuation {
    let starting_step = status.last_step.unwrap_or(0) + i64::from(status.history_lines > 0);
    let entries = |map: serde_json::Map<String, serde_json::Value>| -> Vec<(String, Value)> {
        map.into_iter()
            .map(|(key, value)| (key, Value::from_json(&value)))
            .collect()
    };
    Continuation {
        starting_step,
        runtime: status.runtime,
        summary: entries(status.summary),
        config: entries(status.config),
        tags: status.tags,
        notes: status.notes,
        server_lines: Some(LineCounts {
            history: status.history_lines,
            console: status.console_lines,
        }),
    }
}

/// The newest transaction log of run `run_id` under `wandb_dir` (its earlier parts, written
/// by this environment), if any.
pub fn latest_local_log(wandb_dir: &Path, run_id: &str) -> Option<PathBuf> {
    local_logs(wandb_dir, run_id).pop()
}

/// Every transaction log of run `run_id` under `wandb_dir`, oldest first (run directories
/// are named by their start time).
pub fn local_logs(wandb_dir: &Path, run_id: &str) -> Vec<PathBuf> {
    let suffix = format!("-{run_id}");
    let log_name = format!("run-{run_id}.wandb");
    let Ok(entries) = std::fs::read_dir(wandb_dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|dir| {
            dir.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&suffix) && n.contains("run-"))
        })
        .collect();
    // `run-<time>` and `offline-run-<time>` sort by their time stamp, not their prefix.
    dirs.sort_by_key(|dir| {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        name.trim_start_matches("offline-").to_string()
    });
    dirs.into_iter()
        .map(|dir| dir.join(&log_name))
        .filter(|log| log.is_file())
        .collect()
}

/// Where a run continues after the part in `log` (its last row, runtime, summary, tags and
/// notes, and config).
pub fn from_local_log(log: &Path) -> Result<Continuation, Error> {
    let records = crate::log::txlog::read_file(log)
        .map_err(|e| Error::io(format!("cannot read {}", log.display()), e))?;
    let mut next = Continuation::default();
    let mut summary = Tree::default();
    let mut config = Tree::default();
    for bytes in &records {
        let Ok(Record {
            record_type: Some(kind),
            ..
        }) = Record::decode(bytes.as_slice())
        else {
            continue;
        };
        match kind {
            RecordType::Run(run) => {
                next.tags = run.tags;
                next.notes = Some(run.notes).filter(|n| !n.is_empty());
                if next.starting_step == 0 {
                    next.starting_step = run.starting_step;
                }
                next.runtime = next.runtime.max(f64::from(run.runtime));
                for item in run.config.iter().flat_map(|c| usable(&c.update)) {
                    config.merge(&item.path(), item.value());
                }
            }
            RecordType::Config(update) => {
                for item in usable(&update.update) {
                    config.merge(&item.path(), item.value());
                }
            }
            RecordType::Summary(update) => {
                for item in usable(&update.update) {
                    summary.set(&item.path(), item.value());
                }
                for item in usable(&update.remove) {
                    summary.remove(&item.path());
                }
            }
            RecordType::History(history) => {
                for item in &history.item {
                    match item.path().as_slice() {
                        [key] if key == "_step" => {
                            if let Ok(step) = item.value_json.parse::<i64>() {
                                next.starting_step = step + 1;
                            }
                        }
                        [key] if key == "_runtime" => {
                            if let Ok(runtime) = item.value_json.parse::<f64>() {
                                next.runtime = next.runtime.max(runtime);
                            }
                        }
                        _ => {}
                    }
                }
            }
            RecordType::Exit(exit) => next.runtime = next.runtime.max(f64::from(exit.runtime)),
            _ => {}
        }
    }
    next.runtime = next.runtime.trunc();
    next.summary = summary.to_entries();
    next.config = config.to_entries();
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(history_lines: u64, last_step: Option<i64>) -> ResumeStatus {
        ResumeStatus {
            storage_id: "UnVu".into(),
            history_lines,
            last_step,
            runtime: 44.0,
            ..Default::default()
        }
    }

    #[test]
    fn the_next_step_follows_the_servers_last() {
        let next = decide(Resume::Allow, "r", Some(status(10, Some(9))))
            .unwrap()
            .unwrap();
        assert_eq!((next.starting_step, next.runtime), (10, 44.0));
        // No history lines: the summary's step is the next one, as wandb counts it.
        let next = decide(Resume::Must, "r", Some(status(0, Some(3))))
            .unwrap()
            .unwrap();
        assert_eq!(next.starting_step, 3);
    }

    #[test]
    fn must_and_never_refuse_with_wandbs_meaning() {
        let must = decide(Resume::Must, "r1", None).unwrap_err().to_string();
        assert!(must.contains("Run (r1) does not exist"), "{must}");
        let never = decide(Resume::Never, "r1", Some(status(1, Some(0))));
        assert!(never
            .unwrap_err()
            .to_string()
            .contains("Run (r1) already exists"));
        assert_eq!(decide(Resume::Allow, "r1", None).unwrap(), None);
        assert_eq!(decide(Resume::Never, "r1", None).unwrap(), None);
    }

    #[test]
    fn local_logs_sort_by_time_whatever_their_mode() {
        let root = std::env::temp_dir().join(format!(
            "wandb-nexus-resume-{}",
            crate::core::system::random_run_id()
        ));
        for name in [
            "run-20260101_000002-abc",
            "offline-run-20260101_000001-abc",
            "run-20260101_000003-other",
        ] {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let id = name.rsplit('-').next().unwrap();
            std::fs::write(dir.join(format!("run-{id}.wandb")), b"").unwrap();
        }
        let logs = local_logs(&root, "abc");
        let names: Vec<_> = logs
            .iter()
            .map(|l| l.parent().unwrap().file_name().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            ["offline-run-20260101_000001-abc", "run-20260101_000002-abc"]
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
