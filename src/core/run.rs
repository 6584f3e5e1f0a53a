//! A run: wandb's step semantics, the pending history row, the derived summary, the config
//! and defined metrics. It turns API calls into events for the writer (src/log/writer.rs).

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use crate::api::artifacts::{self, LoggedArtifact};
use crate::api::delivery::{self, Delivery, Finished, SavedArtifacts, StopFlag, UrlSlot};
use crate::api::file_stream::RunStream;
use crate::api::transport::Transport;
use crate::artifact::Artifact;
use crate::core::metrics::{MetricDef, Metrics};
use crate::core::resume::{self, Continuation};
use crate::core::runtime::runtime;
use crate::core::settings::{Mode, Resume, Settings};
use crate::core::system;
use crate::core::values::{Entry, Key, Tree, Value};
use crate::error::Error;
use crate::log::journal::{self, Journal};
use crate::log::records::{
    AlertRecord, ArtifactRecord, ConfigRecord, EnvironmentRecord, FilesItem, FilesRecord,
    HeaderRecord, Item, RecordType, Row, RunExitRecord, RunRecord, TelemetryFeature,
    TelemetryRecord, Timestamp, UseArtifactRecord, VersionInfo,
};
use crate::log::writer::{self, Event, EventSender, Online, Paths, RunFiles};
use crate::media::store::Owner;

/// About the Python process, gathered at the edge.
#[derive(Clone, Debug, Default)]
pub struct ProcessInfo {
    pub python_version: String,
    pub executable: String,
    pub program: String,
    pub args: Vec<String>,
}

/// Where and what a run is; fixed at init.
#[derive(Debug)]
pub struct RunInfo {
    pub id: String,
    pub display_name: Option<String>,
    pub entity: Option<String>,
    pub project: Option<String>,
    pub mode: Mode,
    /// The run directory (`.../wandb/offline-run-<ts>-<id>`); `None` when disabled.
    pub dir: Option<PathBuf>,
    /// The run's page in the W&B UI, once the server has named the run's entity.
    pub url: UrlSlot,
    /// Something the user should be told about this run (shown as a Python warning).
    pub notice: Option<String>,
    /// Set when the server asks to stop the run.
    pub stopped: StopFlag,
    /// What became of the artifacts it logged, as its delivery tells.
    pub saved_artifacts: SavedArtifacts,
}

impl RunInfo {
    pub fn log_path(&self) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("run-{}.wandb", self.id)))
    }
}

/// Fields of the run record that a script sets after init; `None` leaves one as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunFields {
    pub name: Option<String>,
    pub notes: Option<String>,
    pub tags: Option<Vec<String>>,
    pub group: Option<String>,
    pub job_type: Option<String>,
}

/// What `log()` did with the data it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Logged {
    Kept,
    /// The step was older than the current one; wandb drops such data with a warning.
    DroppedOldStep {
        step: i64,
        current: i64,
    },
}

impl Logged {
    /// What to warn the caller of, if anything.
    pub fn warning(&self) -> Option<String> {
        match self {
            Logged::Kept => None,
            Logged::DroppedOldStep { step, current } => Some(format!(
                "step {step} is older than the current step {current}; steps must increase, \
                 so this data was not logged"
            )),
        }
    }
}

pub struct Run {
    pub info: RunInfo,
    /// What the run was started with (its mode as it turned out), for a later sync.
    pub settings: Settings,
    /// The process that started the run and owns its writer thread.
    pid: u32,
    /// Unix seconds at start; rows and the exit derive the run's runtime from it with the
    /// clock reading log() takes anyway.
    started_unix: f64,
    /// `None` in disabled mode: every call succeeds and nothing is stored.
    events: Option<EventSender>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    finished: bool,
    step: i64,
    /// The row of the current step, until it is committed.
    pending: Option<PendingRow>,
    summary: Tree,
    config: Tree,
    metrics: Metrics,
    /// wandb-metadata.json, written at finish.
    metadata: Value,
    /// The `_wandb` entry of config.yaml.
    internal_config: Tree,
    /// When the summary was last recorded (Unix seconds), and whether rows changed it since.
    summary_recorded: Option<f64>,
    summary_unrecorded: bool,
    /// The run record as it is now: setting the name, tags, ... records it anew.
    run_record: RunRecord,
    /// Where committed rows are stored before the writer has them (None when they cannot
    /// be: then only the writer stores them).
    journal: Option<Journal>,
}

/// A row that log() calls are adding to.
struct PendingRow {
    values: Tree,
    /// The last call's clock reading (Unix seconds): the row's `_timestamp`...
    timestamp: f64,
    /// ...unless that call logged a `_timestamp` of its own, which is then in `values`.
    own_timestamp: bool,
}

impl PendingRow {
    /// Adds one call's values, which replace what is there (maps merge key by key).
    fn add(&mut self, values: Tree, timestamp: f64, own_timestamp: bool) {
        if self.own_timestamp && !own_timestamp {
            // The clock reading of the later call wins over an earlier call's own, as in wandb.
            self.values.remove_key("_timestamp");
        }
        self.values.merge_tree(values);
        self.timestamp = timestamp;
        self.own_timestamp = own_timestamp;
    }
}

/// Takes out of a call's values the keys a row gets from the run (`_step`, `_runtime`), and
/// says whether they hold a `_timestamp` of their own.
fn take_reserved_keys(values: &mut Tree) -> bool {
    if !values.keys().any(|key| key.starts_with('_')) {
        return false;
    }
    values.remove_key("_step");
    values.remove_key("_runtime");
    values.contains_key("_timestamp")
}

/// While rows stream in, the summary they derive is recorded this often.
const SUMMARY_EVERY_SECS: f64 = 1.0;

const PRODUCER: &str = concat!("wandb-nexus ", env!("CARGO_PKG_VERSION"));
/// The oldest wandb whose readers understand what we write.
const MIN_CONSUMER: &str = "0.70.0";

impl Run {
    /// Creates the run directory and transaction log and writes the opening records.
    pub fn start(
        settings: Settings,
        config: Value,
        process: ProcessInfo,
    ) -> Result<Arc<Self>, Error> {
        let run = Arc::new(Self::open(settings, config, process)?);
        let mut open = open_runs();
        // Runs dropped since: their entries would keep their memory allocated.
        open.retain(|run| run.strong_count() > 0);
        open.push(Arc::downgrade(&run));
        drop(open);
        Ok(run)
    }

    fn open(settings: Settings, config: Value, process: ProcessInfo) -> Result<Self, Error> {
        let now = SystemTime::now();
        let mut settings = settings;
        let id = settings
            .run_id
            .clone()
            .or_else(|| auto_resume_id(&settings))
            .unwrap_or_else(system::random_run_id);
        let mut info = RunInfo {
            id,
            display_name: settings.display_name.clone(),
            entity: settings.entity.clone(),
            project: settings.project.clone(),
            mode: settings.mode,
            dir: None,
            url: UrlSlot::default(),
            notice: settings.keyless.then(keyless_notice),
            stopped: StopFlag::default(),
            saved_artifacts: SavedArtifacts::default(),
        };
        let mut state = State::default();
        if let Value::Map(entries) = &config {
            for (key, value) in entries {
                state.config.merge(std::slice::from_ref(key), value.clone());
            }
        }
        if settings.mode == Mode::Disabled {
            return Ok(Self::assemble(info, settings, None, state, now, 0.0));
        }
        let start_time = Timestamp::at(now);
        let mut run = run_record(&settings, &info.id, &config, start_time, &process);
        let transport = match settings.mode {
            Mode::Online => Some(Arc::new(Transport::new(
                &settings.base_url,
                settings.api_key.as_ref().expect("online mode has a key"),
                settings.retry,
            )?)),
            _ => None,
        };
        let resumed = match &transport {
            Some(transport) => match continuation(&settings, &info.id, transport) {
                Err(Error::Unavailable(err)) if settings.defer_delivery => {
                    info.notice = Some(format!(
                        "cannot reach W&B at {} to resume run {} ({err}); its rows are \
                         numbered after the server's when it is delivered",
                        settings.base_url, info.id
                    ));
                    None
                }
                Err(Error::Unavailable(err)) => {
                    info.notice = Some(unreachable_notice(&settings, &err));
                    None
                }
                other => other?,
            },
            None => None,
        };
        // What the run continues from goes first into its record, config and summary.
        let mut opening_updates = Vec::new();
        if let Some(next) = &resumed {
            opening_updates = continue_from(next, &mut run, &mut state);
        }
        // A deferred run whose server could not say where to resume is still delivered
        // later: its sync resumes it then, renumbering its rows after the server's.
        let mut online = match transport {
            Some(transport) if info.notice.is_none() || settings.defer_delivery => {
                connect(&settings, transport, &run, &state.config, &mut info)?
            }
            _ => None,
        };
        if online.is_none() && settings.mode == Mode::Online {
            settings.mode = Mode::Offline;
            info.mode = Mode::Offline;
        }
        let server_lines = resumed.as_ref().and_then(|next| next.server_lines);
        let dir = create_run_dir(&settings, &info.id, now)?;
        info.dir = Some(dir.clone());
        if settings.resume == Some(Resume::Auto) {
            write_auto_resume_id(&settings, &info.id)?;
        }
        if let (Some(online), Some(lines)) = (online.as_mut(), server_lines) {
            online.delivery.continue_at(lines.history, lines.console);
            lines.pin(&info.log_path().expect("dir is set"))?;
        }
        let log = info.log_path().expect("dir is set");
        state.journal = Journal::create(&log)
            .inspect_err(|e| {
                eprintln!("wandb-nexus: run {}: rows are kept only in memory until written: cannot create the rows journal ({e})", info.id);
            })
            .ok();
        let environment = environment_record(&settings, &process, &info.id, start_time);
        state.metadata = metadata_json(&environment);
        state.internal_config.set(
            &["python_version".to_string()],
            Value::Str(process.python_version.clone()),
        );
        let opening = [
            RecordType::Header(HeaderRecord {
                version_info: Some(VersionInfo {
                    producer: PRODUCER.to_string(),
                    min_consumer: MIN_CONSUMER.to_string(),
                }),
            }),
            RecordType::Run(run.clone()),
            RecordType::Environment(environment),
        ];
        // Stored before init returns, so that a run whose process dies is still a run.
        let opening = opening
            .into_iter()
            .map(Event::record)
            .chain(opening_updates);
        let events = writer::start(
            Paths {
                log: log.clone(),
                files_dir: dir.join("files"),
                staging_dir: dir.join("staging"),
            },
            Owner {
                run_id: info.id.clone(),
                project: settings.project.clone().unwrap_or_default(),
                entity: settings.entity.clone().unwrap_or_default(),
            },
            online,
            state.journal.as_ref().map(Journal::progress),
            opening.collect(),
        )?;
        let runtime = f64::from(run.runtime);
        state.run_record = run;
        Ok(Self::assemble(
            info,
            settings,
            Some(events),
            state,
            now,
            runtime,
        ))
    }

    /// `earlier_runtime`: seconds a resumed run had run before this part.
    fn assemble(
        info: RunInfo,
        settings: Settings,
        events: Option<EventSender>,
        state: State,
        started: SystemTime,
        earlier_runtime: f64,
    ) -> Self {
        Self {
            info,
            settings,
            pid: system::current_pid(),
            started_unix: system::unix_seconds(started) - earlier_runtime,
            events,
            state: Mutex::new(state),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Refuses calls in a forked child: it has no writer thread, so what it sends would be
    /// lost (and a finish would wait for it forever).
    fn check_owner(&self, action: &str) -> Result<(), Error> {
        if system::current_pid() == self.pid {
            return Ok(());
        }
        Err(Error::Usage(format!(
            "cannot {action}: run {} belongs to process {}, not this forked one; start a new \
             run here with init(reinit=\"create_new\")",
            self.info.id, self.pid
        )))
    }

    /// A live (not finished) run's state, in the process that started the run.
    fn live_state(&self, action: &str) -> Result<MutexGuard<'_, State>, Error> {
        self.check_owner(action)?;
        let state = self.state();
        if state.finished {
            return Err(Error::Usage(format!(
                "cannot {action}: run {} has finished; start a new run with init()",
                self.info.id
            )));
        }
        Ok(state)
    }

    fn send(&self, event: Event) {
        if let Some(events) = &self.events {
            events.send(event);
        }
    }

    /// Calls that send events do not wait for the writer, so that they can run while the
    /// caller holds the GIL; they are followed by this, with the GIL released, when
    /// `writer_behind` says the writer has fallen too far behind.
    pub fn writer_behind(&self) -> bool {
        self.events.as_ref().is_some_and(EventSender::is_behind)
    }

    pub fn wait_for_writer(&self) {
        if let Some(events) = &self.events {
            events.wait_for_writer();
        }
    }

    pub fn step(&self) -> i64 {
        self.state().step
    }

    pub fn is_finished(&self) -> bool {
        self.state().finished
    }

    /// Seconds since the run started, at `now` (Unix seconds).
    fn runtime_at(&self, now: f64) -> f64 {
        (now - self.started_unix).max(0.0)
    }

    /// `run.log(data, step, commit)` with wandb's step semantics. `values` holds the row's
    /// keys; `timestamp` is the caller's wall clock (Unix seconds).
    pub fn log(
        &self,
        mut values: Tree,
        step: Option<i64>,
        commit: Option<bool>,
        timestamp: f64,
    ) -> Result<Logged, Error> {
        let mut state = self.live_state("log")?;
        if let Some(step) = step {
            let current = state.step;
            if step < current {
                return Ok(Logged::DroppedOldStep { step, current });
            }
            if step > current {
                self.flush_pending(&mut state, timestamp);
                state.step = step;
            }
        }
        let own_timestamp = take_reserved_keys(&mut values);
        match &mut state.pending {
            Some(pending) => pending.add(values, timestamp, own_timestamp),
            None => {
                state.pending = Some(PendingRow {
                    values,
                    timestamp,
                    own_timestamp,
                })
            }
        }
        let commit = commit.unwrap_or(step.is_none());
        if commit {
            self.flush_pending(&mut state, timestamp);
            state.step += 1;
        }
        Ok(Logged::Kept)
    }

    /// Emits the pending row at the current step (if there is one) and folds it into the
    /// summary, which is recorded at most once per `SUMMARY_EVERY_SECS` while rows stream in
    /// (and always before a flush or finish): one record per row would double the log.
    fn flush_pending(&self, state: &mut State, now: f64) {
        let Some(pending) = state.pending.take() else {
            return;
        };
        let mut row = Row {
            step: state.step,
            timestamp: (!pending.own_timestamp).then_some(pending.timestamp),
            runtime: self.runtime_at(now),
            values: pending.values,
        };
        state.metrics.complete_row(&mut row.values);
        state.metrics.fold_into_summary(&row, &mut state.summary);
        self.send_row(state, row);
        let due = state
            .summary_recorded
            .is_none_or(|at| now - at >= SUMMARY_EVERY_SECS);
        if due {
            self.record_summary(state, now);
        } else {
            state.summary_unrecorded = true;
        }
    }

    /// Hands a committed row to the writer, stored first in the rows journal so that it
    /// survives the death of the process.
    fn send_row(&self, state: &mut State, row: Row) {
        let seq = match state.journal.as_mut().map(|j| j.append(&row)) {
            Some(Ok(seq)) => seq,
            Some(Err(err)) => {
                eprintln!(
                    "wandb-nexus: run {}: rows are kept only in memory until written from now on ({err})",
                    self.info.id
                );
                state.journal = None;
                0
            }
            None => 0,
        };
        self.send(Event::History { row, seq });
    }

    /// Records the summary if rows changed it since it was last recorded.
    fn record_pending_summary(&self, state: &mut State, now: f64) {
        if state.summary_unrecorded {
            self.record_summary(state, now);
        }
    }

    /// Records the whole summary as it is now.
    fn record_summary(&self, state: &mut State, now: f64) {
        state.summary_recorded = Some(now);
        state.summary_unrecorded = false;
        let update = state
            .summary
            .to_entries()
            .into_iter()
            .map(|(key, value)| (vec![key], value))
            .collect();
        self.send(Event::Summary {
            update,
            remove: Vec::new(),
        });
    }

    /// `run.summary.update(...)` / `run.summary[key] = value`: each value replaces what is at
    /// its key.
    pub fn summary_update(&self, data: Vec<(String, Value)>) -> Result<(), Error> {
        let mut state = self.live_state("update the summary")?;
        let update: Vec<Entry> = data.into_iter().map(|(k, v)| (vec![k], v)).collect();
        for (path, value) in &update {
            state.summary.set(path, value.clone());
        }
        self.send(Event::Summary {
            update,
            remove: Vec::new(),
        });
        Ok(())
    }

    /// `del run.summary[key]`; false if the key was not there.
    pub fn summary_remove(&self, key: String) -> Result<bool, Error> {
        let mut state = self.live_state("update the summary")?;
        let path = vec![key];
        if !state.summary.remove(&path) {
            return Ok(false);
        }
        self.send(Event::Summary {
            update: Vec::new(),
            remove: vec![path],
        });
        Ok(true)
    }

    pub fn summary_get(&self, key: &str) -> Option<Value> {
        self.state()
            .summary
            .get(&[key.to_string()])
            .map(|node| node.to_value())
    }

    pub fn summary_keys(&self) -> Vec<String> {
        self.state().summary.keys().map(Key::to_string).collect()
    }

    /// `run.config.update(...)`: map values merge key by key into what is there.
    pub fn config_update(&self, data: Vec<(String, Value)>) -> Result<(), Error> {
        let mut state = self.live_state("update the config")?;
        for (key, value) in &data {
            state.config.merge(std::slice::from_ref(key), value.clone());
        }
        self.send(Event::Config {
            update: data.into_iter().map(|(k, v)| (vec![k], v)).collect(),
        });
        Ok(())
    }

    /// A custom chart's panel: kept in the config under `_wandb.visualize.<key>`, where the
    /// W&B UI looks for it.
    pub fn visualize(&self, key: String, panel: Value) -> Result<(), Error> {
        let mut state = self.live_state("log a chart")?;
        let path = ["visualize".to_string(), key.clone()];
        state.internal_config.set(&path, panel.clone());
        self.send(Event::Config {
            update: vec![(
                vec!["_wandb".to_string(), "visualize".to_string(), key],
                panel,
            )],
        });
        Ok(())
    }

    /// The display name: as set on the run, else as given at init or named by the server.
    pub fn display_name(&self) -> Option<String> {
        let state = self.state();
        let name = &state.run_record.display_name;
        if name.is_empty() {
            self.info.display_name.clone()
        } else {
            Some(name.clone())
        }
    }

    /// The run record's fields a script may read and set (name, notes, tags, group, job type).
    pub fn fields(&self) -> RunFields {
        let state = self.state();
        let run = &state.run_record;
        let text = |s: &String| (!s.is_empty()).then(|| s.clone());
        RunFields {
            name: text(&run.display_name),
            notes: text(&run.notes),
            tags: Some(run.tags.clone()),
            group: text(&run.run_group),
            job_type: text(&run.job_type),
        }
    }

    /// `run.name = ...`, `run.tags = ...` and the like: the fields given replace the run's,
    /// and the run record is written anew with the config as it is, as wandb writes it, so
    /// the server and a later sync learn of them.
    pub fn set_fields(&self, fields: RunFields) -> Result<(), Error> {
        let mut state = self.live_state("change the run")?;
        let run = &mut state.run_record;
        let set = |target: &mut String, value: Option<String>| {
            if let Some(value) = value {
                *target = value;
            }
        };
        set(&mut run.display_name, fields.name);
        set(&mut run.notes, fields.notes);
        set(&mut run.run_group, fields.group);
        set(&mut run.job_type, fields.job_type);
        if let Some(tags) = fields.tags {
            run.tags = tags;
        }
        let mut record = run.clone();
        record.config = Some(ConfigRecord {
            update: config_items(&state.config.to_value()),
            remove: Vec::new(),
        });
        self.send(Event::record(RecordType::Run(record)));
        Ok(())
    }

    /// `run.alert(...)`: recorded, and sent to W&B with the run's data.
    pub fn alert(&self, alert: AlertRecord) -> Result<(), Error> {
        let _state = self.live_state("send an alert")?;
        self.send(Event::record(RecordType::Alert(alert)));
        Ok(())
    }

    /// `run.save(...)`: files already placed under the run's `files/` directory, named by
    /// their paths relative to it, to be uploaded as their policy says.
    pub fn save_files(&self, files: Vec<FilesItem>) -> Result<(), Error> {
        let _state = self.live_state("save files")?;
        let now = files.iter().any(|file| file.policy == 0);
        self.send(Event::record(RecordType::Files(FilesRecord { files })));
        if now {
            self.send_soon();
        }
        Ok(())
    }

    /// Has a live run's delivery task send what is pending at once, without the caller
    /// waiting (a deferred run sends it when it is delivered).
    fn send_soon(&self) {
        if self.settings.mode == Mode::Online && !self.settings.defer_delivery {
            let (reply, _) = std_mpsc::sync_channel(1);
            self.send(Event::Flush {
                deadline: None,
                reply,
            });
        }
    }

    /// `run.log_artifact(...)`: the artifact, as logged by this run, into the log; sent with
    /// the run's next delivery (a live run's at once). Returns it as logged.
    pub fn log_artifact(&self, mut artifact: Artifact) -> Result<Artifact, Error> {
        let _state = self.live_state("log an artifact")?;
        artifact.run_id = self.info.id.clone();
        artifact.project = self.info.project.clone().unwrap_or_default();
        artifact.entity = self.info.entity.clone().unwrap_or_default();
        self.send(Event::record(RecordType::Artifact(ArtifactRecord::from(
            &artifact,
        ))));
        self.send_soon();
        Ok(artifact)
    }

    /// `run.use_artifact(name)`: the logged version `name` (`[[entity/]project/]collection[:alias]`)
    /// stands for, of `artifact_type` if given, recorded as used by this run (W&B is told with
    /// the run's next delivery). Returns it with a transport to read it through.
    pub fn use_artifact(
        &self,
        name: &str,
        artifact_type: Option<&str>,
    ) -> Result<(LoggedArtifact, Arc<Transport>), Error> {
        let _state = self.live_state("use an artifact")?;
        let transport = self.reader(&format!("use artifact {name:?}"))?;
        let (entity, project, version) = split_artifact_name(name);
        let rt = runtime()?;
        let entity = match entity.or(self.info.entity.as_deref()) {
            Some(entity) => entity.to_string(),
            None => rt.block_on(transport.viewer())?.entity.unwrap_or_default(),
        };
        let project = project
            .or(self.info.project.as_deref())
            .unwrap_or("uncategorized");
        let logged = rt.block_on(artifacts::resolve(&transport, &entity, project, &version))?;
        if let Some(wanted) = artifact_type.filter(|t| *t != logged.artifact_type) {
            return Err(Error::Usage(format!(
                "artifact {entity}/{project}/{version} is of type {:?}, not {wanted:?}",
                logged.artifact_type
            )));
        }
        self.send(Event::record(RecordType::UseArtifact(UseArtifactRecord {
            id: logged.id.clone(),
            r#type: logged.artifact_type.clone(),
            name: version,
        })));
        self.send_soon();
        Ok((logged, transport))
    }

    /// `artifact.wait()`: the artifact logged with `client_id` as W&B holds it once saved
    /// (saved now, with the rest of what the run logged, within `timeout` if given, if it
    /// was not yet), with a transport to read it through. `name` names it in errors.
    pub fn wait_artifact(
        &self,
        client_id: &str,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<(LoggedArtifact, Arc<Transport>), Error> {
        let transport = self.reader(&format!("wait for artifact {name:?}"))?;
        let outcome = || {
            let saved = self.info.saved_artifacts.lock();
            saved
                .unwrap_or_else(|p| p.into_inner())
                .get(client_id)
                .cloned()
        };
        let mut why_not = None;
        if !matches!(outcome(), Some(Ok(_))) && !self.is_finished() {
            why_not = self.flush(timeout.map(|t| tokio::time::Instant::now() + t))?;
        }
        let id = match outcome() {
            Some(Ok(id)) => id,
            Some(Err(problem)) => return Err(Error::Comm(problem)),
            None => {
                return Err(Error::Comm(format!(
                    "artifact {name:?} is not saved yet: {}",
                    why_not.as_deref().unwrap_or("the run has not sent it")
                )))
            }
        };
        let rt = runtime()?;
        let logged = rt.block_on(artifacts::by_id(&transport, &id))?;
        Ok((logged, transport))
    }

    /// A transport to read W&B through for `what`; an offline run has none.
    fn reader(&self, what: &str) -> Result<Arc<Transport>, Error> {
        match (&self.settings.api_key, self.settings.mode) {
            (Some(key), Mode::Online) => Ok(Arc::new(Transport::new(
                &self.settings.base_url,
                key,
                self.settings.retry,
            )?)),
            _ => Err(Error::Offline(format!(
                "cannot {what}: run {} is offline, and that needs W&B",
                self.info.id
            ))),
        }
    }

    pub fn define_metric(&self, def: MetricDef) -> Result<(), Error> {
        let mut state = self.live_state("define a metric")?;
        let record = def.to_record();
        state.metrics.define(def);
        self.send(Event::record(RecordType::Metric(record)));
        Ok(())
    }

    /// Console output captured from the process. Output after finish is not part of the run.
    pub fn output(&self, stderr: bool, text: String) {
        // Nor is a forked child's: it inherits the capture, but not the writer.
        if self.check_owner("record output").is_err() || self.is_finished() {
            return;
        }
        self.send(Event::Output {
            stderr,
            time: Timestamp::at(SystemTime::now()),
            text,
        });
    }

    /// Stores everything logged so far and, for a live run, sends it to the server now. The
    /// pending row of the current step stays pending, as in wandb. Returns a warning when the
    /// data could not be delivered (it stays queued).
    pub fn flush(&self, deadline: Option<tokio::time::Instant>) -> Result<Option<String>, Error> {
        let reply = {
            let mut state = self.live_state("flush")?;
            self.record_pending_summary(&mut state, system::unix_now());
            let Some(events) = &self.events else {
                return Ok(None);
            };
            let (reply_tx, reply_rx) = std_mpsc::sync_channel(1);
            events.send(Event::Flush {
                deadline,
                reply: reply_tx,
            });
            reply_rx
        };
        Ok(self.await_writer(reply)?.map(|err| {
            format!(
                "run {}: could not send its data to W&B now ({err}); it stays queued",
                self.info.id
            )
        }))
    }

    /// Waits for the writer's answer: storage failures are errors, a delivery failure is
    /// handed back for the caller to word as a warning.
    fn await_writer(&self, reply: std_mpsc::Receiver<Finished>) -> Result<Option<Error>, Error> {
        let done = reply.recv().map_err(|_| {
            Error::io(
                format!("run {}: the writer stopped", self.info.id),
                std::io::Error::other("writer thread ended unexpectedly"),
            )
        })?;
        if let Err(message) = done.stored {
            return Err(Error::io(
                format!("run {} was not stored completely", self.info.id),
                std::io::Error::other(message),
            ));
        }
        Ok(done.delivered.and_then(Result::err))
    }

    /// Flushes the pending row, records the exit and waits until the writer has stored
    /// everything (and, for a live run, delivered it). A second call does nothing.
    ///
    /// A run that was stored but not delivered is not an error: the returned warning says
    /// where it is and how to upload it later.
    pub fn finish(&self, exit_code: i32) -> Result<Option<String>, Error> {
        self.check_owner("finish")?;
        let reply = {
            let mut state = self.state();
            if state.finished {
                return Ok(None);
            }
            let now = system::unix_now();
            self.flush_pending(&mut state, now);
            self.record_pending_summary(&mut state, now);
            state.finished = true;
            let runtime = self.runtime_at(now) as i32;
            let runtime_items = vec![
                (
                    vec!["_wandb".to_string(), "runtime".to_string()],
                    Value::Int(runtime.into()),
                ),
                (vec!["_runtime".to_string()], Value::Int(runtime.into())),
            ];
            for (path, value) in &runtime_items {
                state.summary.set(path, value.clone());
            }
            self.send(Event::Summary {
                update: runtime_items,
                remove: Vec::new(),
            });
            self.send(Event::record(RecordType::Telemetry(TelemetryRecord {
                feature: Some(TelemetryFeature {
                    finish: true,
                    ..Default::default()
                }),
                ..Default::default()
            })));
            self.send(Event::record(RecordType::Exit(RunExitRecord {
                exit_code,
                runtime,
            })));
            let Some(events) = &self.events else {
                return Ok(None);
            };
            let (reply_tx, reply_rx) = std_mpsc::sync_channel(1);
            let mut config = state.config.clone();
            config.set(&["_wandb".to_string()], state.internal_config.to_value());
            let files = Box::new(RunFiles {
                config,
                summary: state.summary.clone(),
                metadata: std::mem::replace(&mut state.metadata, Value::Null),
            });
            events.send(Event::Finish {
                files,
                exit_code,
                reply: reply_tx,
            });
            (reply_rx, state.journal.take())
        };
        let (reply, journal) = reply;
        let stored = self.await_writer(reply);
        if let (Ok(_), Some(log)) = (&stored, journal.and(self.info.log_path())) {
            // The log is whole: its journal has nothing the log lacks.
            let _ = std::fs::remove_file(journal::path_for(&log));
        }
        if exit_code == 0 && self.settings.resume == Some(Resume::Auto) {
            // A run that ended well is not resumed by the next `resume="auto"` run.
            let _ = std::fs::remove_file(auto_resume_file(&self.settings));
        }
        Ok(stored?.map(|err| self.undelivered_notice(&err)))
    }

    /// A finished run whose delivery was left to a sync (a deferred run), or that did not
    /// reach the server whole.
    pub fn needs_sync(&self) -> bool {
        self.settings.mode == Mode::Online
            && self.is_finished()
            && self
                .info
                .log_path()
                .is_some_and(|log| !delivery::synced_marker(&log).exists())
    }
}

/// The runs started in this process, to finish those still open when it is told to end.
fn open_runs() -> MutexGuard<'static, Vec<Weak<Run>>> {
    static OPEN: Mutex<Vec<Weak<Run>>> = Mutex::new(Vec::new());
    OPEN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Finishes the runs this process still has open (storing them; a deferred run is left
/// for a sync) with `exit_code`; returns what went wrong, one line per run.
pub fn finish_open_runs(exit_code: i32) -> Vec<String> {
    let runs: Vec<Arc<Run>> = {
        let mut open = open_runs();
        open.retain(|run| run.upgrade().is_some_and(|run| !run.is_finished()));
        open.iter().filter_map(Weak::upgrade).collect()
    };
    runs.iter()
        .filter(|run| run.pid == system::current_pid())
        .filter_map(|run| match run.finish(exit_code) {
            Ok(warning) => warning,
            Err(err) => Some(format!("run {}: {err}", run.info.id)),
        })
        .collect()
}

impl Run {
    fn undelivered_notice(&self, err: &Error) -> String {
        let dir = self
            .info
            .dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        format!(
            "run {} was saved in {dir} but not fully delivered to W&B ({err}); upload it \
             with: python -m wandb_nexus sync {dir}",
            self.info.id
        )
    }
}

/// Creates the run on the server (one UpsertBucket) and prepares its delivery. A refused
/// key is an error; an unreachable server is not: the run is kept locally, to be synced. A
/// deferred run makes no request here: the server learns of it when it is first flushed or
/// synced.
fn connect(
    settings: &Settings,
    transport: Arc<Transport>,
    run: &RunRecord,
    config: &Tree,
    info: &mut RunInfo,
) -> Result<Option<Online>, Error> {
    let run_page = (info.url.clone(), settings.app_url.clone());
    if settings.defer_delivery {
        let mut delivery = Delivery::new(
            transport,
            None,
            run_page,
            info.stopped.clone(),
            settings.heartbeat,
        );
        delivery.report_saves_to(info.saved_artifacts.clone());
        return Ok(Some(Online {
            delivery,
            interval: None,
            deliver_at_finish: false,
        }));
    }
    let rt = runtime()?;
    let first = delivery::run_upsert(&RunStream::for_run(run, config));
    let target = match rt.block_on(transport.upsert_run(&first)) {
        Ok(target) => target,
        Err(Error::Unavailable(err)) => {
            info.notice = Some(unreachable_notice(settings, &err));
            return Ok(None);
        }
        Err(err) => return Err(err),
    };
    info.entity = Some(target.entity.clone());
    info.project = Some(target.project.clone());
    if target.display_name.is_some() {
        info.display_name = target.display_name.clone();
    }
    let mut delivery = Delivery::new(
        transport,
        Some(target),
        run_page,
        info.stopped.clone(),
        settings.heartbeat,
    );
    delivery.report_saves_to(info.saved_artifacts.clone());
    Ok(Some(Online {
        delivery,
        interval: Some(settings.transmit_interval),
        deliver_at_finish: true,
    }))
}

/// `<root>/wandb/wandb-resume.json`: the id of the last `resume="auto"` run that did not end
/// well, which the next one resumes (as in wandb).
fn auto_resume_file(settings: &Settings) -> PathBuf {
    settings.root_dir.join("wandb").join("wandb-resume.json")
}

fn auto_resume_id(settings: &Settings) -> Option<String> {
    if settings.resume != Some(Resume::Auto) {
        return None;
    }
    let text = std::fs::read_to_string(auto_resume_file(settings)).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let id = value["run_id"].as_str()?.to_string();
    crate::core::settings::check_run_id(Some(&id)).ok()?;
    Some(id)
}

fn write_auto_resume_id(settings: &Settings, id: &str) -> Result<(), Error> {
    let path = auto_resume_file(settings);
    let text = serde_json::json!({ "run_id": id }).to_string();
    std::fs::write(&path, text)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// Entity, project and `collection:alias` of an artifact name (`latest` when no alias).
fn split_artifact_name(name: &str) -> (Option<&str>, Option<&str>, String) {
    let parts: Vec<&str> = name.splitn(3, '/').collect();
    let (entity, project, rest) = match parts[..] {
        [entity, project, rest] => (Some(entity), Some(project), rest),
        [project, rest] => (None, Some(project), rest),
        _ => (None, None, name),
    };
    let version = match rest.contains(':') {
        true => rest.to_string(),
        false => format!("{rest}:latest"),
    };
    (entity, project, version)
}

fn keyless_notice() -> String {
    "no W&B API key (set WANDB_API_KEY, or name a secret holding it in \
     WANDB_API_KEY_SECRET_ARN or WANDB_API_KEY_SSM_NAME), so the run is kept offline: upload \
     it later with `python -m wandb_nexus sync <run.sync_dir>`"
        .into()
}

fn unreachable_notice(settings: &Settings, err: &str) -> String {
    format!(
        "cannot reach W&B at {} ({err}); the run is kept offline: upload it later with \
         `python -m wandb_nexus sync <run.sync_dir>`",
        settings.base_url
    )
}

/// Where a run with `resume` set continues, if it does. A deferred (Lambda) run continues
/// from this environment's own log of the run when there is one: it may hold rows not yet
/// delivered, and reading it costs no request while the handler runs. Otherwise the server
/// is asked (RunResumeStatus), before the run is created there.
fn continuation(
    settings: &Settings,
    id: &str,
    transport: &Transport,
) -> Result<Option<Continuation>, Error> {
    let Some(mode) = settings.resume else {
        return Ok(None);
    };
    if settings.defer_delivery && mode != Resume::Never {
        if let Some(log) = resume::latest_local_log(&settings.root_dir.join("wandb"), id) {
            return resume::from_local_log(&log).map(Some);
        }
    }
    let rt = runtime()?;
    let status = rt.block_on(transport.resume_status(
        settings.entity.as_deref(),
        settings.project.as_deref(),
        id,
    ))?;
    resume::decide(mode, id, status)
}

/// Makes a new run continue `next`: its record says where it starts and keeps the tags and
/// notes when none were given; config keys not set here are taken over, and the summary so
/// far becomes its first summary. Returns the records that say so, to follow the run record.
fn continue_from(next: &Continuation, run: &mut RunRecord, state: &mut State) -> Vec<Event> {
    run.resumed = true;
    run.starting_step = next.starting_step;
    run.runtime = next.runtime as i32;
    if let Some(feature) = run.telemetry.as_mut().and_then(|t| t.feature.as_mut()) {
        feature.resumed = true;
    }
    if run.tags.is_empty() {
        run.tags = next.tags.clone();
    }
    if run.notes.is_empty() {
        run.notes = next.notes.clone().unwrap_or_default();
    }
    state.step = next.starting_step;
    let taken: Vec<Entry> = next
        .config
        .iter()
        .filter(|(key, _)| key != "_wandb" && !state.config.contains_key(key))
        .map(|(key, value)| (vec![key.clone()], value.clone()))
        .collect();
    for (path, value) in &taken {
        state.config.merge(path, value.clone());
    }
    let summary: Vec<Entry> = next
        .summary
        .iter()
        .map(|(key, value)| (vec![key.clone()], value.clone()))
        .collect();
    for (path, value) in &summary {
        state.summary.set(path, value.clone());
    }
    let mut events = Vec::new();
    if !summary.is_empty() {
        events.push(Event::Summary {
            update: summary,
            remove: Vec::new(),
        });
    }
    if !taken.is_empty() {
        events.push(Event::Config { update: taken });
    }
    events
}

/// `<root>/wandb/offline-run-<local time>-<id>/files`, created fresh. A second run of the
/// same id in the same second (a resumed run) takes the next free second.
fn create_run_dir(settings: &Settings, id: &str, now: SystemTime) -> Result<PathBuf, Error> {
    let wandb_dir = settings.root_dir.join("wandb");
    let prefix = match settings.mode {
        Mode::Online => "run",
        _ => "offline-run",
    };
    std::fs::create_dir_all(&wandb_dir)
        .map_err(|e| Error::io(format!("cannot create {}", wandb_dir.display()), e))?;
    let mut second = 0;
    let dir = loop {
        let time = now + Duration::from_secs(second);
        let dir = wandb_dir.join(format!("{prefix}-{}-{id}", system::local_time_stamp(time)));
        match std::fs::create_dir(&dir) {
            Ok(()) => break dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && second < 1000 => {
                second += 1;
            }
            Err(e) => {
                return Err(Error::io(
                    format!("cannot create run directory {}", dir.display()),
                    e,
                ))
            }
        }
    };
    let files = dir.join("files");
    std::fs::create_dir(&files)
        .map_err(|e| Error::io(format!("cannot create {}", files.display()), e))?;
    Ok(dir)
}

fn config_items(config: &Value) -> Vec<Item> {
    let mut items = vec![Item {
        key: "_wandb".to_string(),
        nested_key: Vec::new(),
        value_json: "{}".to_string(),
    }];
    if let Value::Map(entries) = config {
        items.extend(entries.iter().map(|(key, value)| Item {
            key: key.clone(),
            nested_key: Vec::new(),
            value_json: value.to_json(),
        }));
    }
    items
}

fn run_record(
    settings: &Settings,
    id: &str,
    config: &Value,
    start_time: Timestamp,
    process: &ProcessInfo,
) -> RunRecord {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    RunRecord {
        run_id: id.to_string(),
        entity: text(&settings.entity),
        project: text(&settings.project),
        config: Some(ConfigRecord {
            update: config_items(config),
            remove: Vec::new(),
        }),
        run_group: text(&settings.group),
        job_type: text(&settings.job_type),
        display_name: text(&settings.display_name),
        notes: text(&settings.notes),
        tags: settings.tags.clone(),
        host: system::hostname(),
        starting_step: 0,
        storage_id: String::new(),
        start_time: Some(start_time),
        resumed: false,
        runtime: 0,
        resume: settings.resume.is_some_and(Resume::marks_record),
        telemetry: Some(TelemetryRecord {
            feature: Some(TelemetryFeature {
                offline: settings.mode != Mode::Online,
                ..Default::default()
            }),
            python_version: process.python_version.clone(),
            platform: system::platform(),
        }),
    }
}

fn environment_record(
    settings: &Settings,
    process: &ProcessInfo,
    id: &str,
    started_at: Timestamp,
) -> EnvironmentRecord {
    EnvironmentRecord {
        os: system::os_description(),
        python: format!("CPython {}", process.python_version),
        started_at: Some(started_at),
        args: process.args.clone(),
        program: process.program.clone(),
        root: settings.root_dir.display().to_string(),
        host: system::hostname(),
        executable: process.executable.clone(),
        cpu_count_logical: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        writer_id: id.to_string(),
    }
}

/// wandb-metadata.json: the environment record in protojson's camelCase form.
fn metadata_json(env: &EnvironmentRecord) -> Value {
    let text = |s: &String| Value::Str(s.clone());
    let started = env
        .started_at
        .map(|t| system::utc_rfc3339(t.seconds, t.nanos))
        .unwrap_or_default();
    Value::Map(vec![
        ("os".into(), text(&env.os)),
        ("python".into(), text(&env.python)),
        ("startedAt".into(), Value::Str(started)),
        (
            "args".into(),
            Value::List(env.args.iter().map(text).collect()),
        ),
        ("program".into(), text(&env.program)),
        ("root".into(), text(&env.root)),
        ("host".into(), text(&env.host)),
        ("executable".into(), text(&env.executable)),
        (
            "cpu_count_logical".into(),
            Value::Int(env.cpu_count_logical.into()),
        ),
        ("writerId".into(), text(&env.writer_id)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_names_with_their_entity_project_and_alias() {
        assert_eq!(split_artifact_name("ds"), (None, None, "ds:latest".into()));
        assert_eq!(
            split_artifact_name("p/ds:v2"),
            (None, Some("p"), "ds:v2".into())
        );
        let full = split_artifact_name("e/p/ds:best");
        assert_eq!(full, (Some("e"), Some("p"), "ds:best".into()));
    }
    use crate::core::settings::InitArgs;
    use crate::log::records::Record;
    use prost::Message;

    fn temp_root() -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("wandb-nexus-test-{}", system::random_run_id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn offline_run(root: &std::path::Path) -> Arc<Run> {
        let args = InitArgs {
            project: Some("p".into()),
            dir: Some(root.display().to_string()),
            ..Default::default()
        };
        let settings = Settings::resolve(args, |_| None).unwrap();
        let config = Value::Map(vec![("lr".into(), Value::Float(0.1))]);
        Run::start(settings, config, ProcessInfo::default()).unwrap()
    }

    fn read_back(run: &Run) -> Vec<Record> {
        crate::log::txlog::read_file(&run.info.log_path().unwrap())
            .unwrap()
            .into_iter()
            .map(|bytes| Record::decode(bytes.as_slice()).unwrap())
            .collect()
    }

    fn kind(record: &Record) -> &'static str {
        match record.record_type.as_ref().unwrap() {
            RecordType::Header(_) => "header",
            RecordType::Run(_) => "run",
            RecordType::Environment(_) => "environment",
            RecordType::History(_) => "history",
            RecordType::Summary(_) => "summary",
            RecordType::Config(_) => "config",
            RecordType::Telemetry(_) => "telemetry",
            RecordType::Exit(_) => "exit",
            RecordType::Metric(_) => "metric",
            RecordType::OutputRaw(_) => "output_raw",
            RecordType::Files(_) => "files",
            RecordType::Alert(_) => "alert",
            RecordType::Artifact(_) => "artifact",
            RecordType::UseArtifact(_) => "use_artifact",
        }
    }

    fn values(entries: Vec<(&str, Value)>) -> Tree {
        let mut tree = Tree::default();
        for (key, value) in entries {
            tree.merge_new_key(key.into(), value);
        }
        tree
    }

    #[test]
    fn writer_output_reads_back_in_order() {
        let root = temp_root();
        let run = offline_run(&root);
        for i in 0..3 {
            let row = values(vec![("loss", Value::Float(f64::from(i)))]);
            assert_eq!(run.log(row, None, None, 1.0).unwrap(), Logged::Kept);
        }
        run.output(false, "hello\n".into());
        run.config_update(vec![("extra".into(), Value::Int(1))])
            .unwrap();
        run.finish(0).unwrap();
        let records = read_back(&run);
        let kinds: Vec<_> = records.iter().map(kind).collect();
        assert_eq!(&kinds[..3], &["header", "run", "environment"]);
        assert_eq!(kinds.last(), Some(&"exit"));
        assert_eq!(kinds.iter().filter(|k| **k == "history").count(), 3);
        let nums: Vec<i64> = records.iter().map(|r| r.num).collect();
        assert_eq!(nums, (1..=records.len() as i64).collect::<Vec<_>>());
        let steps: Vec<i64> = records
            .iter()
            .filter_map(|r| match &r.record_type {
                Some(RecordType::History(h)) => h.step.map(|s| s.num),
                _ => None,
            })
            .collect();
        assert_eq!(steps, vec![0, 1, 2]);
        let output =
            std::fs::read_to_string(run.info.dir.as_ref().unwrap().join("files/output.log"));
        assert_eq!(output.unwrap(), "hello\n");
        std::fs::remove_dir_all(root).unwrap();
    }

    /// A row's `_timestamp` is the last call's: its own, or else its clock reading, as in
    /// wandb; `_step` and `_runtime` are the run's whatever a call logs under those keys.
    #[test]
    fn a_rows_reserved_keys_come_from_its_last_call_and_the_run() {
        let root = temp_root();
        let run = offline_run(&root);
        let calls: [&[(&str, Value)]; 4] = [
            &[("_timestamp", Value::Float(5.0)), ("a", Value::Int(1))],
            &[("b", Value::Int(2)), ("_step", Value::Int(9))],
            &[("c", Value::Int(3))],
            &[("_timestamp", Value::Int(7)), ("_runtime", Value::Int(-1))],
        ];
        for (i, call) in calls.iter().enumerate() {
            let commit = Some(i % 2 == 1);
            let clock = 100.0 + i as f64;
            run.log(values(call.to_vec()), None, commit, clock).unwrap();
        }
        run.finish(0).unwrap();
        let rows: Vec<Vec<(String, String)>> = read_back(&run)
            .into_iter()
            .filter_map(|r| match r.record_type {
                Some(RecordType::History(h)) => Some(h.item),
                _ => None,
            })
            .map(|items| {
                let mut pairs: Vec<_> = items
                    .into_iter()
                    .filter(|item| item.key != "_runtime" || item.value_json == "-1")
                    .map(|item| (item.key, item.value_json))
                    .collect();
                pairs.sort();
                pairs
            })
            .collect();
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            rows,
            vec![
                pairs(&[
                    ("_step", "0"),
                    ("_timestamp", "101.0"),
                    ("a", "1"),
                    ("b", "2")
                ]),
                pairs(&[("_step", "1"), ("_timestamp", "7"), ("c", "3")]),
            ]
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn large_records_survive_the_round_trip() {
        let root = temp_root();
        let run = offline_run(&root);
        let text = "y".repeat(200_000);
        run.log(
            values(vec![("text", Value::Str(text.clone()))]),
            None,
            None,
            1.0,
        )
        .unwrap();
        run.finish(0).unwrap();
        let history = read_back(&run)
            .into_iter()
            .find_map(|r| match r.record_type {
                Some(RecordType::History(h)) => Some(h),
                _ => None,
            })
            .unwrap();
        let item = history.item.iter().find(|i| i.path() == ["text"]).unwrap();
        assert_eq!(item.value_json, format!("\"{text}\""));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn finished_run_refuses_updates_and_old_steps_are_dropped() {
        let root = temp_root();
        let run = offline_run(&root);
        run.log(values(vec![("a", Value::Int(1))]), Some(5), None, 1.0)
            .unwrap();
        assert_eq!(
            run.log(values(vec![("a", Value::Int(1))]), Some(2), None, 1.0)
                .unwrap(),
            Logged::DroppedOldStep {
                step: 2,
                current: 5
            }
        );
        run.finish(1).unwrap();
        assert!(run.finish(0).is_ok());
        assert!(matches!(
            run.log(Tree::default(), None, None, 1.0),
            Err(Error::Usage(_))
        ));
        let exit = read_back(&run)
            .into_iter()
            .find_map(|r| match r.record_type {
                Some(RecordType::Exit(e)) => Some(e),
                _ => None,
            });
        assert_eq!(exit.unwrap().exit_code, 1);
        std::fs::remove_dir_all(root).unwrap();
    }
}
