//! The native run object behind `wandb_nexus.Run`, and `init`. Arguments are converted to
//! owned Rust data here; the core then works with the GIL released.

use std::ffi::CString;
use std::sync::Arc;

use pyo3::exceptions::{PyKeyError, PyUserWarning};
use pyo3::prelude::*;

use crate::artifact::names;
use crate::core::metrics::MetricDef;
use crate::core::run::{ProcessInfo, Run, RunFields};
use crate::core::settings::{InitArgs, Mode, Settings};
use crate::core::values::Value;
use crate::error::Error;
use crate::log::records::{AlertRecord, FilesItem};
use crate::py::artifact::{ArtifactCore, LoggedArtifactCore};
use crate::py::{aio, convert};

#[pyclass(module = "wandb_nexus._core", name = "RunCore", frozen)]
pub struct RunCore {
    pub(crate) run: Arc<Run>,
}

#[pyfunction]
#[pyo3(signature = (config=None, project=None, entity=None, name=None, id=None, tags=None,
    group=None, job_type=None, notes=None, mode=None, dir=None, resume=None,
    defer_delivery=false, base_url=None, api_key=None))]
#[allow(clippy::too_many_arguments)]
pub fn init(
    py: Python<'_>,
    config: Option<&Bound<'_, PyAny>>,
    project: Option<String>,
    entity: Option<String>,
    name: Option<String>,
    id: Option<String>,
    tags: Option<Vec<String>>,
    group: Option<String>,
    job_type: Option<String>,
    notes: Option<String>,
    mode: Option<String>,
    dir: Option<String>,
    resume: Option<String>,
    defer_delivery: bool,
    base_url: Option<String>,
    api_key: Option<String>,
) -> PyResult<RunCore> {
    let config = match config {
        Some(c) if !c.is_none() => Value::Map(convert::dict_items(
            c,
            "set config",
            convert::Target::Config,
        )?),
        _ => Value::Map(Vec::new()),
    };
    let args = InitArgs {
        project,
        entity,
        name,
        id,
        tags,
        group,
        job_type,
        notes,
        mode,
        dir,
        resume,
        defer_delivery,
        base_url,
        api_key,
    };
    let process = process_info(py)?;
    let run = py.detach(move || {
        let (settings, from_aws) = resolve_with_aws_key(args.clone())?;
        match Run::start(settings, config.clone(), process.clone()) {
            // A key kept in AWS that W&B refuses may have been rotated: fetched again, once.
            // (A refused run is refused before it writes anything.)
            Err(Error::Auth(_)) if from_aws => {
                crate::aws::secrets::forget();
                let (settings, _) = resolve_with_aws_key(args)?;
                Run::start(settings, config, process)
            }
            started => started,
        }
    })?;
    Ok(RunCore { run })
}

/// The interpreter facts a run records, from `sys` (always imported already).
fn process_info(py: Python<'_>) -> PyResult<ProcessInfo> {
    let sys = py.import("sys")?;
    let version = sys.getattr("version_info")?;
    let part = |i: usize| -> PyResult<u32> { version.get_item(i)?.extract() };
    let (major, minor, micro) = (part(0)?, part(1)?, part(2)?);
    let argv: Vec<String> = sys.getattr("argv")?.extract().unwrap_or_default();
    Ok(ProcessInfo {
        python_version: format!("{major}.{minor}.{micro}"),
        executable: sys.getattr("executable")?.extract().unwrap_or_default(),
        program: argv.first().cloned().unwrap_or_default(),
        args: argv.iter().skip(1).cloned().collect(),
    })
}

impl RunCore {
    /// Calls that change the run hold the GIL: they only update the run's state under its
    /// lock (a short, CPU-only section) and queue events. Only when the writer has fallen
    /// far behind do they wait for it, and that wait releases the GIL.
    fn wait_for_writer(&self, py: Python<'_>) {
        if self.run.writer_behind() {
            py.detach(|| self.run.wait_for_writer());
        }
    }

    /// What a call that changed the run returned, after any wait for the writer.
    fn after_change<T>(&self, py: Python<'_>, result: Result<T, Error>) -> PyResult<T> {
        self.wait_for_writer(py);
        Ok(result?)
    }
}

#[pymethods]
impl RunCore {
    /// Logs a row of metrics, with wandb's step semantics. This is `Run.log` itself, not
    /// wrapped in Python: a wrapper's frame cost a tenth of the call.
    #[pyo3(signature = (data, step=None, commit=None))]
    fn log(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        step: Option<i64>,
        commit: Option<bool>,
    ) -> PyResult<()> {
        let run = &self.run;
        let mut charts = Vec::new();
        let values = convert::row_values(data, &|| run.step(), &mut charts)?;
        for (key, config) in charts {
            self.after_change(py, self.run.visualize(key, config))?;
        }
        let timestamp = crate::core::system::unix_now();
        let logged = self.after_change(py, self.run.log(values, step, commit, timestamp))?;
        if let Some(warning) = logged.warning() {
            let message = CString::new(warning).expect("no NUL in the message");
            // Level 1 is the caller's own line: no Python frame of ours is in between.
            PyErr::warn(py, &py.get_type::<PyUserWarning>(), &message, 1)?;
        }
        Ok(())
    }

    fn config_update(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let items = convert::dict_items(data, "set config", convert::Target::Config)?;
        self.after_change(py, self.run.config_update(items))
    }

    fn summary_update(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let items = convert::dict_items(data, "set summary", convert::Target::Summary)?;
        self.after_change(py, self.run.summary_update(items))
    }

    fn summary_remove(&self, py: Python<'_>, key: String) -> PyResult<()> {
        if self.after_change(py, self.run.summary_remove(key.clone()))? {
            Ok(())
        } else {
            Err(PyKeyError::new_err(key))
        }
    }

    fn summary_get<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        match self.run.summary_get(key) {
            Some(value) => convert::to_python(py, &value),
            None => Err(PyKeyError::new_err(key.to_string())),
        }
    }

    fn summary_keys(&self) -> Vec<String> {
        self.run.summary_keys()
    }

    #[pyo3(signature = (name, step_metric=None, summary=None, goal=None))]
    fn define_metric(
        &self,
        py: Python<'_>,
        name: String,
        step_metric: Option<String>,
        summary: Option<&str>,
        goal: Option<&str>,
    ) -> PyResult<()> {
        let def = MetricDef::parse(name, step_metric, summary, goal)?;
        self.after_change(py, self.run.define_metric(def))
    }

    fn output(&self, py: Python<'_>, stderr: bool, text: String) {
        self.run.output(stderr, text);
        self.wait_for_writer(py);
    }

    /// Returns a warning when the data could not be delivered now (it stays queued).
    fn flush(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let run = &self.run;
        Ok(py.detach(|| run.flush(None))?)
    }

    fn flush_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let run = self.run.clone();
        aio::awaitable(py, move || run.flush(None))
    }

    #[pyo3(signature = (exit_code=0))]
    fn finish_async<'py>(&self, py: Python<'py>, exit_code: i32) -> PyResult<Bound<'py, PyAny>> {
        let run = self.run.clone();
        aio::awaitable(py, move || run.finish(exit_code))
    }

    /// Returns a warning when the run was stored but not fully delivered.
    #[pyo3(signature = (exit_code=0))]
    fn finish(&self, py: Python<'_>, exit_code: i32) -> PyResult<Option<String>> {
        let run = &self.run;
        Ok(py.detach(|| run.finish(exit_code))?)
    }

    #[getter]
    fn id(&self) -> &str {
        &self.run.info.id
    }

    #[getter]
    fn name(&self) -> Option<String> {
        self.run.display_name()
    }

    #[getter]
    fn notes(&self) -> Option<String> {
        self.run.fields().notes
    }

    #[getter]
    fn tags(&self) -> Vec<String> {
        self.run.fields().tags.unwrap_or_default()
    }

    #[getter]
    fn group(&self) -> Option<String> {
        self.run.fields().group
    }

    #[getter]
    fn job_type(&self) -> Option<String> {
        self.run.fields().job_type
    }

    /// Sets the fields given (the others stay) and records the run anew.
    #[pyo3(signature = (name=None, notes=None, tags=None, group=None, job_type=None))]
    fn set_fields(
        &self,
        py: Python<'_>,
        name: Option<String>,
        notes: Option<String>,
        tags: Option<Vec<String>>,
        group: Option<String>,
        job_type: Option<String>,
    ) -> PyResult<()> {
        let fields = RunFields {
            name,
            notes,
            tags,
            group,
            job_type,
        };
        self.after_change(py, self.run.set_fields(fields))
    }

    /// An alert; `level` is INFO, WARN or ERROR, `wait_duration_ms` in milliseconds.
    fn alert(
        &self,
        py: Python<'_>,
        title: String,
        text: String,
        level: String,
        wait_duration_ms: i64,
    ) -> PyResult<()> {
        let alert = AlertRecord {
            title,
            text,
            level,
            wait_duration: wait_duration_ms,
        };
        self.after_change(py, self.run.alert(alert))
    }

    /// Logs `artifact` under this run with `aliases` (and `latest`) and `tags`; from then on
    /// the artifact no longer changes. Returns the aliases it was logged with, and the
    /// client id that `wait_artifact` knows it by.
    fn log_artifact(
        &self,
        py: Python<'_>,
        artifact: &ArtifactCore,
        aliases: Vec<String>,
        tags: Vec<String>,
    ) -> PyResult<(Vec<String>, String)> {
        let name = artifact.draft().name().to_string();
        let aliases = names::aliases(&aliases, &name)?;
        let tags = names::tags(&tags, &name)?;
        let mut logged = artifact.draft().finalize()?;
        logged.aliases = aliases.clone();
        logged.tags = tags;
        let client_id = logged.client_id.clone();
        self.after_change(py, self.run.log_artifact(logged))?;
        Ok((aliases, client_id))
    }

    /// The artifact this run logged with `client_id`, as W&B holds it once saved (saving
    /// what the run logged now, within `timeout` seconds, if it was not yet); `name` names
    /// it in errors.
    #[pyo3(signature = (client_id, name, timeout=None))]
    fn wait_artifact(
        &self,
        py: Python<'_>,
        client_id: &str,
        name: &str,
        timeout: Option<f64>,
    ) -> PyResult<LoggedArtifactCore> {
        let timeout = timeout
            .map(|seconds| {
                std::time::Duration::try_from_secs_f64(seconds).map_err(|_| {
                    Error::Usage(format!("timeout must be seconds >= 0, not {seconds}"))
                })
            })
            .transpose()?;
        let (logged, transport) = py.detach(|| self.run.wait_artifact(client_id, name, timeout))?;
        Ok(LoggedArtifactCore::new(logged, transport))
    }

    /// The logged artifact `name` stands for, recorded as used by this run.
    #[pyo3(signature = (name, r#type=None))]
    fn use_artifact(
        &self,
        py: Python<'_>,
        name: &str,
        r#type: Option<&str>,
    ) -> PyResult<LoggedArtifactCore> {
        let (logged, transport) = py.detach(|| self.run.use_artifact(name, r#type))?;
        self.wait_for_writer(py);
        Ok(LoggedArtifactCore::new(logged, transport))
    }

    /// Files already copied under the run's `files/`, by relative path, with their policy
    /// ("now", "live" or "end").
    fn save_files(&self, py: Python<'_>, files: Vec<(String, String)>) -> PyResult<()> {
        let items = files
            .into_iter()
            .map(|(path, policy)| {
                let policy = match policy.as_str() {
                    "now" => 0,
                    "end" => 1,
                    "live" => 2,
                    other => {
                        return Err(Error::Usage(format!(
                            "policy must be 'live', 'now' or 'end', not {other:?}"
                        )))
                    }
                };
                Ok(FilesItem {
                    path,
                    policy,
                    r#type: 0,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        self.after_change(py, self.run.save_files(items))
    }

    #[getter]
    fn entity(&self) -> Option<&str> {
        self.run.info.entity.as_deref()
    }

    #[getter]
    fn project(&self) -> Option<&str> {
        self.run.info.project.as_deref()
    }

    #[getter]
    fn mode(&self) -> &'static str {
        match self.run.info.mode {
            Mode::Online => "online",
            Mode::Offline => "offline",
            Mode::Disabled => "disabled",
        }
    }

    /// The run directory (what `wandb sync` takes); None when disabled.
    #[getter]
    fn sync_dir(&self) -> Option<String> {
        self.run.info.dir.as_ref().map(|d| d.display().to_string())
    }

    /// The transaction log file; None when disabled.
    #[getter]
    fn log_path(&self) -> Option<String> {
        self.run.info.log_path().map(|p| p.display().to_string())
    }

    /// The run's page in the W&B UI; None for a run kept offline.
    #[getter]
    fn url(&self) -> Option<&str> {
        self.run.info.url.get().map(String::as_str)
    }

    /// The server asked to stop the run (the Stop button in the W&B UI).
    #[getter]
    fn stopped(&self) -> bool {
        self.run
            .info
            .stopped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Something the user should be told about this run, if anything.
    #[getter]
    fn notice(&self) -> Option<&str> {
        self.run.info.notice.as_deref()
    }

    /// Delivered after finish by whoever finished it (a Lambda handler), not by finish.
    #[getter]
    fn deferred(&self) -> bool {
        self.run.settings.defer_delivery
    }

    #[getter]
    fn step(&self) -> i64 {
        self.run.step()
    }

    #[getter]
    fn finished(&self) -> bool {
        self.run.is_finished()
    }

    fn __repr__(&self) -> String {
        format!("<RunCore id={:?} mode={}>", self.run.info.id, self.mode())
    }
}

/// Checks an API key against the server (the Viewer query); returns the key's default
/// entity. A refused key is an `AuthenticationError`.
#[pyfunction]
#[pyo3(signature = (key, base_url=None, timeout=None))]
pub fn verify_login(
    py: Python<'_>,
    key: String,
    base_url: Option<String>,
    timeout: Option<f64>,
) -> PyResult<Option<String>> {
    let entity = py.detach(move || {
        let args = InitArgs {
            base_url,
            api_key: Some(key),
            ..InitArgs::default()
        };
        let mut settings = Settings::resolve(args, |name| std::env::var(name).ok())?;
        if let Some(seconds) = timeout.filter(|s| s.is_finite() && *s > 0.0) {
            settings.retry.budget = std::time::Duration::from_secs_f64(seconds);
        }
        crate::api::delivery::verify_key(&settings)
    })?;
    Ok(entity)
}

/// The API key stored in netrc for the base URL's host (`WANDB_BASE_URL` when not given).
#[pyfunction]
#[pyo3(signature = (base_url=None))]
pub fn netrc_key(base_url: Option<String>) -> Option<String> {
    let env = |name: &str| std::env::var(name).ok();
    let base_url = base_url
        .or_else(|| env("WANDB_BASE_URL"))
        .unwrap_or_else(|| crate::core::settings::DEFAULT_BASE_URL.to_string());
    crate::core::settings::netrc_password(base_url.trim_end_matches('/'), &env)
}

/// Uploads a run directory written offline or not fully delivered. Returns the run's URL, or
/// None when it was already synced.
#[pyfunction]
#[pyo3(signature = (path, entity=None, project=None))]
pub fn sync(
    py: Python<'_>,
    path: String,
    entity: Option<String>,
    project: Option<String>,
) -> PyResult<Option<String>> {
    let outcome = py.detach(|| {
        let (settings, _) = resolve_with_aws_key(InitArgs::default())?;
        let overrides = crate::api::delivery::SyncOverrides {
            entity,
            project,
            ended_because: None,
        };
        crate::api::delivery::sync(std::path::Path::new(&path), &settings, overrides, None)
    })?;
    match outcome {
        crate::api::delivery::SyncOutcome::Uploaded { url } => Ok(Some(url)),
        crate::api::delivery::SyncOutcome::AlreadySynced => Ok(None),
        crate::api::delivery::SyncOutcome::Open => Err(Error::Usage(format!(
            "{path} is still being written by a running process (it holds the log's lock); \
             sync it once that run has finished"
        ))
        .into()),
    }
}

/// Settings from the arguments and the process environment, with the API key read from AWS
/// when the environment keeps it there (and nothing gave one); and whether it was.
fn resolve_with_aws_key(mut args: InitArgs) -> Result<(Settings, bool), Error> {
    let env = |name: &str| std::env::var(name).ok();
    let mut from_aws = false;
    if args.api_key.is_none() {
        args.api_key = crate::aws::secrets::api_key(&env, args.mode.as_deref())?;
        from_aws = args.api_key.is_some();
    }
    Ok((Settings::resolve(args, env)?, from_aws))
}
