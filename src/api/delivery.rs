//! Delivering a run to the W&B API: a task that streams what the writer logs, and the finish
//! sequence shared by live runs and `sync`.
//!
//! Round trips are few by design: nothing is sent while a short run is open (data gathers
//! until the transmit interval), and finish takes three sequential rounds: the config update
//! and the upload URLs together, then every file upload at once, then one file_stream request
//! that carries all remaining rows, the summary, the console, the uploaded files and the exit
//! code (more requests only for data beyond W&B's 10 MiB per request).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

use crate::api::file_stream::{
    config_json, line_cost, Batch, RunStream, CONSOLE_FILE, REQUEST_LINE_BYTES,
};
use crate::api::transport::{RunTarget, RunUpsert, Transport};
use crate::core::settings::Settings;
use crate::core::values::Value;
use crate::error::Error;
use crate::log::records::{Record, RecordType, RunRecord};

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
        files_dir: PathBuf,
        exit_code: i32,
        reply: oneshot::Sender<Result<(), Error>>,
    },
}

/// Shared with the run: the server asked to stop it (the Stop button in the W&B UI).
pub type StopFlag = Arc<AtomicBool>;

/// Shared with the run: its page in the W&B UI, once known.
pub type UrlSlot = Arc<std::sync::OnceLock<String>>;

pub struct Delivery {
    transport: Arc<Transport>,
    /// Where the run lives on the server; `None` until the first request creates it (a
    /// deferred run connects when it is first flushed).
    target: Option<RunTarget>,
    /// Filled with the run's page once the server has named its entity.
    url: UrlSlot,
    app_url: String,
    stream: RunStream,
    /// History continues after the lines the server holds (a live run), or is sent whole
    /// from line 0 (a sync, which may repeat lines the server has: same offsets, no
    /// duplicates).
    continue_history: bool,
    stopped: StopFlag,
    last_request: Instant,
    /// After this long without a request, a live run sends an empty one so the server does
    /// not take it for crashed.
    heartbeat: Duration,
}

/// What the first UpsertBucket of a run sends: everything the run record says.
pub fn run_upsert(run: &RunRecord, config: &crate::core::values::Tree) -> RunUpsert {
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    RunUpsert {
        storage_id: None,
        run_id: run.run_id.clone(),
        entity: text(&run.entity),
        project: text(&run.project),
        display_name: text(&run.display_name),
        notes: text(&run.notes),
        group: text(&run.run_group),
        job_type: text(&run.job_type),
        tags: Some(run.tags.clone()),
        host: text(&run.host),
        program: None,
        config: Some(server_config(run, config)),
    }
}

/// The config as the server keeps it, with `_wandb.t` (telemetry by field number: python
/// version and platform) so the server counts the run as started.
fn server_config(run: &RunRecord, config: &crate::core::values::Tree) -> String {
    let mut config = config.clone();
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
            ("m".to_string(), Value::List(Vec::new())),
        ]),
    );
    config_json(&config)
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
            continue_history: true,
            transport,
            target,
            url,
            app_url,
            stopped,
            last_request: Instant::now(),
            heartbeat,
        }
    }

    pub fn apply(&mut self, record: &Record) {
        self.stream.apply(record);
        if matches!(record.record_type, Some(RecordType::Run(_))) {
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
                    Some(Upload::Finish { files_dir, exit_code, reply }) => {
                        let _ = reply.send(self.finish(&files_dir, exit_code).await);
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
        let run = self.stream.run.clone().unwrap_or_default();
        let target = self
            .transport
            .upsert_run(&run_upsert(&run, &self.stream.config))
            .await?;
        if self.continue_history {
            self.stream.start_history_at(target.history_line_count);
        }
        self.stream.config_sent();
        let _ = self.url.set(run_url(&self.app_url, &target));
        self.target = Some(target.clone());
        Ok(target)
    }

    fn config_update(&self, target: &RunTarget) -> RunUpsert {
        let run = self.stream.run.clone().unwrap_or_default();
        RunUpsert {
            run_id: target.run_id.clone(),
            entity: Some(target.entity.clone()),
            project: Some(target.project.clone()),
            config: Some(server_config(&run, &self.stream.config)),
            ..Default::default()
        }
    }

    /// One round: a changed config, then the gathered data (in as many requests as its size
    /// needs); on a periodic round with nothing to send, a heartbeat when the run has been
    /// quiet for a while.
    async fn transmit(&mut self, periodic: bool) -> Result<(), Error> {
        let target = self.connect().await?;
        if self.stream.config_changed() {
            self.transport
                .upsert_run(&self.config_update(&target))
                .await?;
            self.stream.config_sent();
        }
        let mut heartbeat_due = periodic && self.last_request.elapsed() >= self.heartbeat;
        loop {
            let batch = self.stream.pending(REQUEST_LINE_BYTES);
            if batch.is_empty() && !heartbeat_due {
                return Ok(());
            }
            self.stream_batch(&target, &batch, &[], None).await?;
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

    /// Uploads the run files and sends everything that remains with the exit code.
    pub async fn finish(&mut self, files_dir: &Path, exit_code: i32) -> Result<(), Error> {
        let target = self.connect().await?;
        let names = run_files(files_dir);
        let config = self
            .stream
            .config_changed()
            .then(|| self.config_update(&target));
        let transport = &self.transport;
        let (config_sent, upload_targets) = tokio::join!(
            async {
                match &config {
                    Some(update) => transport.upsert_run(update).await.map(drop),
                    None => Ok(()),
                }
            },
            async {
                if names.is_empty() {
                    Ok(Vec::new())
                } else {
                    transport.create_run_files(&target, &names).await
                }
            }
        );
        let mut problems = Vec::new();
        let mut uploads = JoinSet::new();
        match upload_targets {
            Ok(targets) => {
                for target in targets {
                    let transport = self.transport.clone();
                    let path = files_dir.join(&target.name);
                    uploads.spawn(async move {
                        let contents = tokio::task::spawn_blocking(move || std::fs::read(path))
                            .await
                            .map_err(|e| Error::Comm(format!("reading {}: {e}", target.name)))?
                            .map_err(|e| Error::io(format!("reading {}", target.name), e))?;
                        transport.upload(&target, contents).await?;
                        Ok::<_, Error>(target.name)
                    });
                }
            }
            Err(err) => problems.push(err.to_string()),
        }
        let mut uploaded = Vec::new();
        while let Some(joined) = uploads.join_next().await {
            match joined {
                Ok(Ok(name)) => uploaded.push(name),
                Ok(Err(err)) => problems.push(err.to_string()),
                Err(err) => problems.push(format!("an upload task failed: {err}")),
            }
        }
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
        match config_sent {
            Ok(()) => self.stream.config_sent(),
            Err(err) => problems.push(err.to_string()),
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
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => dirs.push(path),
                Ok(kind) if kind.is_file() => {
                    if let Ok(relative) = path.strip_prefix(files_dir) {
                        let parts: Vec<_> = relative
                            .components()
                            .map(|c| c.as_os_str().to_string_lossy().into_owned())
                            .collect();
                        let name = parts.join("/");
                        // A run that printed nothing has no console to upload, as in wandb.
                        let silent = name == CONSOLE_FILE
                            && entry.metadata().is_ok_and(|file| file.len() == 0);
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
    Uploaded { url: String },
    AlreadySynced,
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
    let records = crate::log::txlog::read_file(&log)
        .map_err(|e| Error::io(format!("cannot read {}", log.display()), e))?;
    let mut stream = RunStream::default();
    for bytes in &records {
        // Records of kinds we do not know decode with their unknown fields skipped.
        if let Ok(record) = Record::decode(bytes.as_slice()) {
            stream.apply(&record);
        }
    }
    let Some(run) = stream.run.as_mut() else {
        return Err(Error::Usage(format!(
            "{} holds no run record; it is not a run's transaction log",
            log.display()
        )));
    };
    if let Some(entity) = overrides.entity {
        run.entity = entity;
    }
    if let Some(project) = overrides.project {
        run.project = project;
    }
    let Some(api_key) = &settings.api_key else {
        return Err(Error::Usage(
            "sync needs an API key: set WANDB_API_KEY or run `wandb login`".into(),
        ));
    };
    let transport = Arc::new(Transport::new(&settings.base_url, api_key, settings.retry)?);
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
    delivery.continue_history = false;
    let rt = crate::core::runtime::runtime()
        .map_err(|e| Error::io("cannot start the I/O runtime", e))?;
    rt.block_on(by_deadline(
        deadline,
        delivery.finish(&files_dir, exit_code),
    ))?;
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

/// Where `sync` puts a run, if not where it was logged to.
#[derive(Debug, Default)]
pub struct SyncOverrides {
    pub entity: Option<String>,
    pub project: Option<String>,
}

/// Runs `work` to its end, or until `deadline`, when it is dropped mid-way (safe for
/// delivery: nothing counts as sent until the server acknowledged it).
async fn by_deadline(
    deadline: Option<Instant>,
    work: impl std::future::Future<Output = Result<(), Error>>,
) -> Result<(), Error> {
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
