//! Delivering a run to the W&B API: a task that streams what the writer logs, and the finish
//! sequence shared by live runs and `sync`.
//!
//! Round trips are few by design: nothing is sent while a short run is open (data gathers
//! until the transmit interval), and finish takes three sequential rounds: the config update
//! and the upload URLs together, then every file upload at once, then one file_stream request
//! that carries all remaining rows, the summary, the console, the uploaded files and the exit
//! code (more requests only for data beyond W&B's 10 MiB per request).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

use crate::api::artifacts;
use crate::api::file_stream::{
    config_json, line_cost, Batch, RunStream, CONSOLE_FILE, REQUEST_LINE_BYTES,
};
use crate::api::non_empty;
use crate::api::transport::{RunTarget, RunUpsert, Transport};
use crate::artifact::Artifact;
use crate::core::resume::{self, Continuation, LineCounts};
use crate::core::settings::{Resume, Settings};
use crate::core::values::Value;
use crate::error::Error;
use crate::log::journal;
use crate::log::lock::LogLock;
use crate::log::records::{MetricRecord, Record, RecordType};
use crate::log::txlog;

/// How a flush or finish went: whether everything was stored on disk, and (for a live run)
/// whether it reached the server.
pub struct Finished {
    pub stored: Result<(), String>,
    pub delivered: Option<Result<(), Error>>,
}

pub enum Upload {
    Record(Box<Record>),
    /// Send what has gathered now (config and data), giving up at the deadline, and reply
    /// with how storing (`stored`, from the writer) and sending went.
    Flush {
        stored: Result<(), String>,
        deadline: Option<Instant>,
        reply: std::sync::mpsc::SyncSender<Finished>,
    },
    Finish {
        exit_code: i32,
        reply: oneshot::Sender<Result<(), Error>>,
    },
}

/// Shared with the run: the server asked to stop it (the Stop button in the W&B UI).
pub type StopFlag = Arc<AtomicBool>;

/// Shared with the run: its page in the W&B UI, once known.
pub type UrlSlot = Arc<std::sync::OnceLock<String>>;

/// Shared with the run: what became of each artifact it logged, by client id: its id on
/// the server, or why it is not saved yet (it stays queued). What `artifact.wait()` reads.
pub type SavedArtifacts = Arc<std::sync::Mutex<HashMap<String, Result<String, String>>>>;

pub struct Delivery {
    transport: Arc<Transport>,
    /// Where the run lives on the server; `None` until the first request creates it (a
    /// deferred run connects when it is first flushed).
    target: Option<RunTarget>,
    /// Filled with the run's page once the server has named its entity.
    url: UrlSlot,
    app_url: String,
    stream: RunStream,
    /// The run's `files/` directory, whose files are uploaded.
    files_dir: PathBuf,
    /// Saved files as last uploaded while the run is live (see `file_version`).
    uploaded_versions: HashMap<String, FileVersion>,
    /// History continues after the lines the server holds (a live run), or is sent whole
    /// from line 0 (a sync, which may repeat lines the server has: same offsets, no
    /// duplicates).
    continue_history: bool,
    stopped: StopFlag,
    saved: SavedArtifacts,
    last_request: Instant,
    /// After this long without a request, a live run sends an empty one so the server does
    /// not take it for crashed.
    heartbeat: Duration,
}

/// What the first UpsertBucket of a run sends: everything the run record says.
pub fn run_upsert(stream: &RunStream) -> RunUpsert {
    let run = stream.run.clone().unwrap_or_default();
    RunUpsert {
        storage_id: None,
        run_id: run.run_id.clone(),
        entity: non_empty(&run.entity),
        project: non_empty(&run.project),
        display_name: non_empty(&run.display_name),
        notes: non_empty(&run.notes),
        group: non_empty(&run.run_group),
        job_type: non_empty(&run.job_type),
        tags: Some(run.tags.clone()),
        host: non_empty(&run.host),
        program: None,
        config: Some(server_config(stream)),
    }
}

/// The config as the server keeps it, with `_wandb.t` (telemetry by field number: python
/// version and platform) so the server counts the run as started, and `_wandb.m` (the
/// defined metrics by field number) from which the UI takes x axes and summaries.
fn server_config(stream: &RunStream) -> String {
    let mut config = stream.config.clone();
    let run = stream.run.clone().unwrap_or_default();
    let telemetry = run.telemetry.clone().unwrap_or_default();
    let mut t = Vec::new();
    if !telemetry.python_version.is_empty() {
        t.push(("4".to_string(), Value::Str(telemetry.python_version)));
    }
    if !telemetry.platform.is_empty() {
        t.push(("13".to_string(), Value::Str(telemetry.platform)));
    }
    config.merge(
        &["_wandb".to_string()],
        Value::Map(vec![
            ("t".to_string(), Value::Map(t)),
            ("m".to_string(), metrics_by_field_number(&stream.metrics)),
        ]),
    );
    config_json(&config)
}

/// The defined metrics as wandb's config lists them (`_wandb.m`): each by field number,
/// messages of bools as the list of the numbers of those that are true, the step metric as
/// the 1-based index of its own entry (added before the first metric that uses it), and
/// glob metrics last.
fn metrics_by_field_number(metrics: &[MetricRecord]) -> Value {
    let (globs, named): (Vec<&MetricRecord>, Vec<&MetricRecord>) =
        metrics.iter().partition(|m| !m.glob_name.is_empty());
    let mut names: Vec<&str> = Vec::new();
    let mut entries: Vec<Value> = Vec::new();
    for metric in named.into_iter().chain(globs) {
        let step_index = (!metric.step_metric.is_empty()).then(|| {
            let position = names.iter().position(|n| *n == metric.step_metric);
            position.unwrap_or_else(|| {
                let step = MetricRecord {
                    name: metric.step_metric.clone(),
                    options: Some(crate::log::records::MetricOptions {
                        defined: true,
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                names.push(&metric.step_metric);
                entries.push(metric_entry(&step, None));
                names.len() - 1
            }) + 1
        });
        names.push(&metric.name);
        entries.push(metric_entry(metric, step_index));
    }
    Value::List(entries)
}

fn metric_entry(metric: &MetricRecord, step_index: Option<usize>) -> Value {
    let mut fields = Vec::new();
    let glob = !metric.glob_name.is_empty();
    if glob {
        fields.push(("2".into(), Value::Str(metric.glob_name.clone())));
    } else {
        fields.push(("1".into(), Value::Str(metric.name.clone())));
    }
    if let Some(index) = step_index {
        fields.push(("5".into(), Value::Int(index as i64)));
    }
    let flags = |pairs: &[(i64, bool)]| -> Value {
        let set = pairs.iter().filter(|(_, set)| *set);
        Value::List(set.map(|(number, _)| Value::Int(*number)).collect())
    };
    let options = metric.options.unwrap_or_default();
    // A glob is a pattern, not a defined metric: wandb lists it without `defined`.
    fields.push((
        "6".into(),
        flags(&[
            (1, options.step_sync),
            (2, options.hidden),
            (3, options.defined && !glob),
        ]),
    ));
    let summary = metric.summary.unwrap_or_default();
    fields.push((
        "7".into(),
        flags(&[
            (1, summary.min),
            (2, summary.max),
            (3, summary.mean),
            (4, summary.best),
            (5, summary.last),
            (6, summary.none),
            (8, summary.first),
        ]),
    ));
    if metric.goal != 0 {
        fields.push(("8".into(), Value::Int(metric.goal.into())));
    }
    Value::Map(fields)
}

impl Delivery {
    /// A delivery for a run the server already holds (`target`), or, with `None`, for one
    /// it creates on the first request.
    pub fn new(
        transport: Arc<Transport>,
        target: Option<RunTarget>,
        run_page: (UrlSlot, String),
        stopped: StopFlag,
        heartbeat: Duration,
    ) -> Self {
        let (url, app_url) = run_page;
        let mut stream = RunStream::default();
        if let Some(target) = &target {
            // A live run's rows follow any the server already holds for this run id.
            stream.start_history_at(target.history_line_count);
            let _ = url.set(run_url(&app_url, target));
        }
        Self {
            stream,
            files_dir: PathBuf::new(),
            uploaded_versions: HashMap::new(),
            continue_history: true,
            transport,
            target,
            url,
            app_url,
            stopped,
            saved: SavedArtifacts::default(),
            last_request: Instant::now(),
            heartbeat,
        }
    }

    /// Where what becomes of the run's artifacts is told.
    pub fn report_saves_to(&mut self, saved: SavedArtifacts) {
        self.saved = saved;
    }

    /// Where the run's files are (known once its directory is made).
    pub fn set_files_dir(&mut self, files_dir: PathBuf) {
        self.files_dir = files_dir;
    }

    /// Continues the history and console after the lines the server holds (a resumed run).
    pub fn continue_at(&mut self, history_lines: u64, console_lines: u64) {
        self.stream.start_history_at(history_lines);
        self.stream.start_console_at(console_lines);
    }

    pub fn apply(&mut self, record: &Record) {
        let first_run_record =
            self.stream.run.is_none() && matches!(record.record_type, Some(RecordType::Run(_)));
        self.stream.apply(record);
        if first_run_record {
            // The run's first UpsertBucket carries this config.
            self.stream.config_sent();
        }
    }

    /// Streams records as they come, sending every `interval` (if any), until Finish.
    pub async fn run(
        mut self,
        mut inbox: mpsc::UnboundedReceiver<Upload>,
        interval: Option<Duration>,
    ) {
        let mut ticks = interval.map(|interval| {
            let mut ticks = interval_at(Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticks
        });
        loop {
            tokio::select! {
                message = inbox.recv() => match message {
                    Some(Upload::Record(record)) => self.apply(&record),
                    Some(Upload::Flush { stored, deadline, reply }) => {
                        let delivered = Some(self.transmit_by(deadline).await);
                        let _ = reply.send(Finished { stored, delivered });
                    }
                    Some(Upload::Finish { exit_code, reply }) => {
                        let _ = reply.send(self.finish(exit_code).await);
                        return;
                    }
                    None => return,
                },
                () = next_tick(&mut ticks) => {
                    // A failed send leaves the data pending: the next tick or finish resends
                    // it at the same offsets.
                    let _ = self.transmit(true).await;
                }
            }
        }
    }

    /// A flush, abandoned at the deadline: nothing is marked sent unless the server
    /// acknowledged it, so an abandoned round is resent whole, at the same offsets.
    async fn transmit_by(&mut self, deadline: Option<Instant>) -> Result<(), Error> {
        by_deadline(deadline, self.transmit(false)).await
    }

    /// The server's name for the run, creating the run there on first use.
    async fn connect(&mut self) -> Result<RunTarget, Error> {
        if let Some(target) = &self.target {
            return Ok(target.clone());
        }
        let target = self.transport.upsert_run(&run_upsert(&self.stream)).await?;
        if self.continue_history {
            self.stream.start_history_at(target.history_line_count);
        }
        self.stream.config_sent();
        self.stream.run_sent();
        let _ = self.url.set(run_url(&self.app_url, &target));
        self.target = Some(target.clone());
        Ok(target)
    }

    /// An UpsertBucket with what changed since the server last heard: the config, and the
    /// fields a script set (only those, so that nothing else is cleared); `None` if nothing.
    fn run_update(&self, target: &RunTarget) -> Option<RunUpsert> {
        let (config, fields) = (self.stream.config_changed(), self.stream.run_changed());
        if !config && !fields {
            return None;
        }
        let mut update = RunUpsert {
            run_id: target.run_id.clone(),
            entity: Some(target.entity.clone()),
            project: Some(target.project.clone()),
            config: config.then(|| server_config(&self.stream)),
            ..Default::default()
        };
        if let Some(run) = self.stream.run.as_ref().filter(|_| fields) {
            update.display_name = non_empty(&run.display_name);
            update.notes = Some(run.notes.clone());
            update.tags = Some(run.tags.clone());
            update.group = non_empty(&run.run_group);
            update.job_type = non_empty(&run.job_type);
        }
        Some(update)
    }

    /// The server has what `run_update` sent.
    fn run_updated(&mut self) {
        self.stream.config_sent();
        self.stream.run_sent();
    }

    /// Uploads the files saved with policy `now` since the last round, and those saved with
    /// policy `live` that changed since they were last uploaded; they are named as uploaded
    /// in the next file_stream request.
    async fn upload_saved_files(&mut self, target: &RunTarget) -> Result<Vec<String>, Error> {
        let mut names = std::mem::take(&mut self.stream.files_now);
        for name in &self.stream.files_live {
            let version = file_version(&self.files_dir.join(name));
            let changed = version.is_some() && self.uploaded_versions.get(name) != Some(&version);
            if changed && !names.contains(name) {
                names.push(name.clone());
            }
        }
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let versions: Vec<_> = names
            .iter()
            .map(|name| (name.clone(), file_version(&self.files_dir.join(name))))
            .collect();
        let (uploaded, problems) =
            upload_files(&self.transport, target, &self.files_dir, &names).await;
        for (name, version) in versions {
            if uploaded.contains(&name) {
                self.uploaded_versions.insert(name, version);
            }
        }
        match problems.is_empty() {
            true => Ok(uploaded),
            false => Err(Error::Comm(problems.join("; "))),
        }
    }

    /// Saves the artifacts logged since the last round; those not saved stay for the next.
    async fn save_artifacts(&mut self, target: &RunTarget) -> Result<(), Error> {
        let pending = std::mem::take(&mut self.stream.artifacts);
        let (kept, saved) = save_artifacts(&self.transport, target, pending, &self.saved).await;
        self.stream.artifacts = kept;
        saved
    }

    /// One round: what changed of the run (config, fields), alerts and saved files, then the
    /// gathered data (in as many requests as its size needs); on a periodic round with
    /// nothing to send, a heartbeat when the run has been quiet for a while.
    async fn transmit(&mut self, periodic: bool) -> Result<(), Error> {
        let target = self.connect().await?;
        if let Some(update) = self.run_update(&target) {
            self.transport.upsert_run(&update).await?;
            self.run_updated();
        }
        send_notices(&self.transport, &target, &self.stream).await?;
        self.stream.notices_sent();
        self.save_artifacts(&target).await?;
        let mut uploaded = self.upload_saved_files(&target).await?;
        let mut heartbeat_due = periodic && self.last_request.elapsed() >= self.heartbeat;
        loop {
            let batch = self.stream.pending(REQUEST_LINE_BYTES);
            if batch.is_empty() && uploaded.is_empty() && !heartbeat_due {
                return Ok(());
            }
            self.stream_batch(&target, &batch, &uploaded, None).await?;
            uploaded.clear();
            heartbeat_due = false;
        }
    }

    /// One file_stream request; once the server has it, its lines count as sent.
    async fn stream_batch(
        &mut self,
        target: &RunTarget,
        batch: &Batch,
        uploaded: &[String],
        exit_code: Option<i32>,
    ) -> Result<(), Error> {
        let reply = self
            .transport
            .file_stream(target, batch, uploaded, exit_code)
            .await?;
        self.last_request = Instant::now();
        self.stream.acknowledge(batch);
        if reply.stopped {
            self.stopped.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Uploads the run files and sends everything that remains with the exit code, in three
    /// rounds: the run's changes, alerts and upload URLs together; the uploads; file_stream.
    pub async fn finish(&mut self, exit_code: i32) -> Result<(), Error> {
        let target = self.connect().await?;
        let pending_artifacts = std::mem::take(&mut self.stream.artifacts);
        let names: Vec<String> = run_files(&self.files_dir)
            .into_iter()
            .filter(|name| {
                // Media uploaded while the run was live are not sent again.
                let version = file_version(&self.files_dir.join(name));
                version.is_none() || self.uploaded_versions.get(name) != Some(&version)
            })
            .collect();
        let update = self.run_update(&target);
        let transport = &self.transport;
        // Artifacts are saved beside the other requests of the round, not before them.
        let (updated, alerted, (mut uploaded, mut problems), (kept, artifacts_saved)) = tokio::join!(
            async {
                match &update {
                    Some(update) => transport.upsert_run(update).await.map(drop),
                    None => Ok(()),
                }
            },
            send_notices(transport, &target, &self.stream),
            upload_files(transport, &target, &self.files_dir, &names),
            save_artifacts(transport, &target, pending_artifacts, &self.saved),
        );
        self.stream.artifacts = kept;
        uploaded.sort();
        // The last request carries the uploaded files and the exit code; what does not fit
        // in it with them goes first.
        let last_room = REQUEST_LINE_BYTES
            .saturating_sub(uploaded.iter().map(|name| line_cost(name)).sum::<usize>());
        loop {
            let last = self.stream.pending(last_room);
            if !self.stream.holds_more_than(&last) {
                self.stream_batch(&target, &last, &uploaded, Some(exit_code))
                    .await?;
                break;
            }
            let batch = self.stream.pending(REQUEST_LINE_BYTES);
            self.stream_batch(&target, &batch, &[], None).await?;
        }
        match updated {
            Ok(()) => self.run_updated(),
            Err(err) => problems.push(err.to_string()),
        }
        match alerted {
            Ok(()) => self.stream.notices_sent(),
            Err(err) => problems.push(err.to_string()),
        }
        if let Err(err) = artifacts_saved {
            problems.push(err.to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Comm(format!(
                "the run arrived, but not all of it: {}",
                problems.join("; ")
            )))
        }
    }
}

/// Saves artifacts one after another (each one's files go in parallel), telling `outcomes`
/// what became of each; returns those not saved, and what went wrong with them.
async fn save_artifacts(
    transport: &Arc<Transport>,
    target: &RunTarget,
    pending: Vec<Artifact>,
    outcomes: &SavedArtifacts,
) -> (Vec<Artifact>, Result<(), Error>) {
    let mut problems = Vec::new();
    let mut kept = Vec::new();
    for artifact in pending {
        let client_id = artifact.client_id.clone();
        let saved = artifacts::save(transport, target, &artifact).await;
        let outcome = match saved {
            Ok(id) => {
                artifact.remove_staged();
                Ok(id)
            }
            Err(err) => {
                let problem = format!("artifact {}: {err}", artifact.name);
                problems.push(problem.clone());
                kept.push(artifact);
                Err(problem)
            }
        };
        let mut told = outcomes.lock().unwrap_or_else(|p| p.into_inner());
        told.insert(client_id, outcome);
    }
    let saved = match problems.is_empty() {
        true => Ok(()),
        false => Err(Error::Comm(problems.join("; "))),
    };
    (kept, saved)
}

/// Sends alerts one after another, in the order they were raised, then the artifacts the run
/// used (its lineage).
async fn send_notices(
    transport: &Transport,
    target: &RunTarget,
    stream: &RunStream,
) -> Result<(), Error> {
    for alert in &stream.alerts {
        transport.notify_alert(target, alert).await?;
    }
    for artifact_id in &stream.uses {
        artifacts::record_use(transport, target, artifact_id).await?;
    }
    Ok(())
}

/// Uploads run files (paths relative to `files_dir`): one CreateRunFiles for them all, then
/// every PUT at once. Returns the names uploaded and the problems met.
async fn upload_files(
    transport: &Arc<Transport>,
    target: &RunTarget,
    files_dir: &Path,
    names: &[String],
) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut uploads = JoinSet::new();
    let limit = Arc::new(Semaphore::new(artifacts::MAX_PARALLEL_UPLOADS));
    if !names.is_empty() {
        match transport.create_run_files(target, names).await {
            Ok(targets) => {
                for target in targets {
                    let (transport, limit) = (transport.clone(), limit.clone());
                    let path = files_dir.join(&target.name);
                    uploads.spawn(async move {
                        let _permit = limit.acquire_owned().await;
                        transport.upload_file(&target, path).await?;
                        Ok::<_, Error>(target.name)
                    });
                }
            }
            Err(err) => problems.push(err.to_string()),
        }
    }
    let mut uploaded = Vec::new();
    while let Some(joined) = uploads.join_next().await {
        match joined {
            Ok(Ok(name)) => uploaded.push(name),
            Ok(Err(err)) => problems.push(err.to_string()),
            Err(err) => problems.push(format!("an upload task failed: {err}")),
        }
    }
    (uploaded, problems)
}

/// Regular files under the files directory, as `/`-separated relative paths; not an empty
/// output.log.
fn run_files(files_dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut dirs = vec![files_dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // Saved files are links to the user's files: follow them.
            match std::fs::metadata(&path) {
                Ok(kind) if kind.is_dir() => dirs.push(path),
                Ok(kind) if kind.is_file() => {
                    if let Ok(relative) = path.strip_prefix(files_dir) {
                        let parts: Vec<_> = relative
                            .components()
                            .map(|c| c.as_os_str().to_string_lossy().into_owned())
                            .collect();
                        let name = parts.join("/");
                        // A run that printed nothing has no console to upload, as in wandb.
                        let silent = name == CONSOLE_FILE && kind.len() == 0;
                        if !silent {
                            names.push(name);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    names.sort();
    names
}

/// A file's modification time and size (through a saved file's link): when they change,
/// a `live` file is uploaded again. `None` for a file that is gone.
type FileVersion = Option<(std::time::SystemTime, u64)>;

fn file_version(path: &Path) -> FileVersion {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// The marker written next to a transaction log once the whole run has been delivered; the
/// official `wandb sync` uses the same name.
pub fn synced_marker(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".synced");
    PathBuf::from(name)
}

/// How a `sync` of one run went.
#[derive(Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    Uploaded {
        url: String,
    },
    AlreadySynced,
    /// Another process still writes the run (it holds the log's lock): not touched.
    Open,
}

/// Uploads a run directory (or its `.wandb` file) written offline or not fully delivered.
/// History goes from line 0, so rows that already arrived are replaced by the same rows,
/// never duplicated; running it twice is safe, and so is stopping it at `deadline` (a Lambda
/// invocation's end): the run stays unmarked and the next sync sends it whole.
pub fn sync(
    path: &Path,
    settings: &Settings,
    overrides: SyncOverrides,
    deadline: Option<Instant>,
) -> Result<SyncOutcome, Error> {
    let log = find_log(path)?;
    let marker = synced_marker(&log);
    if marker.exists() {
        return Ok(SyncOutcome::AlreadySynced);
    }
    // Held until the sync ends: no one else completes or delivers the run meanwhile.
    let Some(_lock) = LogLock::try_acquire(&log)
        .map_err(|e| Error::io(format!("cannot lock {}", log.display()), e))?
    else {
        return Ok(SyncOutcome::Open);
    };
    let ended_because = overrides.ended_because.as_deref();
    journal::recover(
        &log,
        ended_because.unwrap_or("the process writing the run ended before finishing it"),
    )?;
    let records: Vec<Record> = txlog::read_file(&log)
        .map_err(|e| Error::io(format!("cannot read {}", log.display()), e))?
        .iter()
        // Records of kinds we do not know decode with their unknown fields skipped.
        .filter_map(|bytes| Record::decode(bytes.as_slice()).ok())
        .collect();
    let Some(mut run) = records.iter().find_map(|record| match &record.record_type {
        Some(RecordType::Run(run)) => Some(run.clone()),
        _ => None,
    }) else {
        return Err(Error::Usage(format!(
            "{} holds no run record; it is not a run's transaction log",
            log.display()
        )));
    };
    if let Some(entity) = &overrides.entity {
        run.entity.clone_from(entity);
    }
    if let Some(project) = &overrides.project {
        run.project.clone_from(project);
    }
    let Some(api_key) = &settings.api_key else {
        return Err(Error::Usage(
            "sync needs an API key: set WANDB_API_KEY or run `wandb login`".into(),
        ));
    };
    let transport = Arc::new(Transport::new(&settings.base_url, api_key, settings.retry)?);
    let rt = crate::core::runtime::runtime()?;
    let mut stream = RunStream::default();
    let mut resumed = None;
    if run.resume || run.resumed {
        sync_earlier_parts(&log, &run.run_id, settings, &overrides, deadline)?;
        resumed = rt.block_on(by_deadline(deadline, resumed_part(&transport, &run, &log)))?;
        if let Some((lines, next)) = &resumed {
            stream.start_history_at(lines.history);
            stream.start_console_at(lines.console);
            stream.renumber_steps_from(next.starting_step);
            let taken = next.config.iter().filter(|(key, _)| key != "_wandb");
            for (key, value) in taken {
                stream
                    .config
                    .merge(std::slice::from_ref(key), value.clone());
            }
        }
    }
    for record in &records {
        stream.apply(record);
    }
    if let Some(first) = stream.run.as_mut() {
        first.entity.clone_from(&run.entity);
        first.project.clone_from(&run.project);
        // As wandb's sync: a resumed part without tags or notes keeps the run's.
        if let Some((_, next)) = resumed {
            if first.tags.is_empty() {
                first.tags = next.tags;
            }
            if first.notes.is_empty() {
                first.notes = next.notes.unwrap_or_default();
            }
        }
    }
    let files_dir = log.parent().unwrap_or(Path::new(".")).join("files");
    // A log without an exit record is a run that died: W&B marks such runs failed.
    let exit_code = stream.exit_code.unwrap_or(1);
    let url = UrlSlot::default();
    let mut delivery = Delivery::new(
        transport,
        None,
        (url.clone(), settings.app_url.clone()),
        StopFlag::default(),
        settings.heartbeat,
    );
    delivery.stream = stream;
    delivery.files_dir = files_dir;
    delivery.continue_history = false;
    rt.block_on(by_deadline(deadline, delivery.finish(exit_code)))?;
    std::fs::write(&marker, b"").map_err(|e| {
        Error::io(
            format!("uploaded, but cannot write {}", marker.display()),
            e,
        )
    })?;
    Ok(SyncOutcome::Uploaded {
        url: url.get().cloned().unwrap_or_default(),
    })
}

/// Checks the settings' API key against the server; returns the key's default entity.
pub fn verify_key(settings: &Settings) -> Result<Option<String>, Error> {
    let Some(api_key) = &settings.api_key else {
        return Err(Error::Usage("no API key to verify".into()));
    };
    let transport = Transport::new(&settings.base_url, api_key, settings.retry)?;
    let rt = crate::core::runtime::runtime()?;
    Ok(rt.block_on(transport.viewer())?.entity)
}

/// Delivers the earlier parts of a resumed run logged here that are not delivered yet,
/// oldest first, so that the server gets the run's rows in order.
fn sync_earlier_parts(
    log: &Path,
    run_id: &str,
    settings: &Settings,
    overrides: &SyncOverrides,
    deadline: Option<Instant>,
) -> Result<(), Error> {
    let (Some(run_dir), Some(wandb_dir)) = (log.parent(), log.parent().and_then(Path::parent))
    else {
        return Ok(());
    };
    for earlier in resume::local_logs(wandb_dir, run_id) {
        if earlier.parent() == Some(run_dir) {
            break;
        }
        if !synced_marker(&earlier).exists() {
            sync(&earlier, settings, overrides.clone(), deadline)?;
        }
    }
    Ok(())
}

/// Where a resumed part of a run goes on the server: after the lines it holds, pinned at
/// the first attempt so that a retry sends the same lines to the same place; and where the
/// run stands there (step, config, tags, notes), as wandb's sync takes it. `None` when the
/// server holds no such run (the part is then the run's start).
async fn resumed_part(
    transport: &Transport,
    run: &crate::log::records::RunRecord,
    log: &Path,
) -> Result<Option<(LineCounts, Continuation)>, Error> {
    let status = transport
        .resume_status(
            non_empty(&run.entity).as_deref(),
            non_empty(&run.project).as_deref(),
            &run.run_id,
        )
        .await?;
    let Some(next) = resume::decide(Resume::Allow, &run.run_id, status)? else {
        return Ok(None);
    };
    let lines = match LineCounts::pinned(log) {
        Some(pinned) => pinned,
        None => {
            let lines = next.server_lines.unwrap_or_default();
            lines.pin(log)?;
            lines
        }
    };
    Ok(Some((lines, next)))
}

/// Where `sync` puts a run, if not where it was logged to.
#[derive(Clone, Debug, Default)]
pub struct SyncOverrides {
    pub entity: Option<String>,
    pub project: Option<String>,
    /// Why a run left without an exit record ended (its console says so); a sync from the
    /// command line does not know.
    pub ended_because: Option<String>,
}

/// Runs `work` to its end, or until `deadline`, when it is dropped mid-way (safe for
/// delivery: nothing counts as sent until the server acknowledged it).
async fn by_deadline<T>(
    deadline: Option<Instant>,
    work: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match deadline {
        None => work.await,
        Some(deadline) => tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Unavailable(
                    "delivery was stopped at the invocation's deadline".into(),
                ))
            }),
    }
}

/// Waits for the next tick, or forever when there are no ticks.
async fn next_tick(ticks: &mut Option<Interval>) {
    match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// `{app}/{entity}/{project}/runs/{id}`.
pub fn run_url(app_url: &str, target: &RunTarget) -> String {
    format!(
        "{app_url}/{}/{}/runs/{}",
        target.entity, target.project, target.run_id
    )
}

fn find_log(path: &Path) -> Result<PathBuf, Error> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    entries
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|ext| ext == "wandb")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("run-"))
        })
        .ok_or_else(|| {
            Error::Usage(format!(
                "{} holds no run-<id>.wandb transaction log",
                path.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::records::{MetricOptions, MetricSummary};

    fn metric(name: &str, step: &str, summary: MetricSummary) -> MetricRecord {
        let glob = name.contains('*');
        MetricRecord {
            name: if glob { String::new() } else { name.into() },
            glob_name: if glob { name.into() } else { String::new() },
            step_metric: step.into(),
            options: Some(MetricOptions {
                step_sync: !step.is_empty(),
                hidden: false,
                defined: true,
            }),
            summary: Some(summary),
            goal: 0,
        }
    }

    /// As wandb 0.31 lists them (seen in its config.yaml): the step metric by index, its own
    /// entry added where first needed, globs last and without `defined`.
    #[test]
    fn defined_metrics_are_listed_as_wandb_lists_them() {
        let min = MetricSummary {
            min: true,
            ..Default::default()
        };
        let metrics = [
            metric("train/*", "epoch", MetricSummary::default()),
            metric("val/loss", "epoch", min),
        ];
        assert_eq!(
            metrics_by_field_number(&metrics).to_json(),
            concat!(
                r#"[{"1":"epoch","6":[3],"7":[]},{"1":"val/loss","5":1,"6":[1,3],"7":[1]},"#,
                r#"{"2":"train/*","5":1,"6":[1],"7":[]}]"#
            )
        );
    }
}
