//! The native half of `wandb_nexus.Artifact`: the artifact being put together, whose files are
//! hashed and staged, and whose references are read, with the GIL released.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use pyo3::prelude::*;

use crate::api::artifacts::{self, LoggedArtifact};
use crate::api::transport::Transport;
use crate::artifact::draft::{Draft, Policy};
use crate::artifact::{download, reference, Entry};
use crate::core::runtime::runtime;
use crate::core::settings::{artifact_download_dir, artifact_staging_dir, cache_dir};
use crate::core::values::Value;
use crate::py::convert;

#[pyclass(module = "wandb_nexus._core", name = "ArtifactCore", frozen)]
pub struct ArtifactCore {
    draft: Mutex<Draft>,
}

/// An entry as Python sees it: path, digest, size, ref, local path, extra (JSON text).
type EntryTuple = (
    String,
    String,
    Option<u64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn entry_tuple(entry: &Entry) -> EntryTuple {
    let extra = (!entry.extra.is_empty())
        .then(|| crate::core::values::Value::Map(entry.extra.clone()).to_json());
    (
        entry.path.clone(),
        entry.digest.clone(),
        entry.size,
        entry.reference.clone(),
        entry
            .local_path
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
        extra,
    )
}

impl ArtifactCore {
    pub(crate) fn draft(&self) -> MutexGuard<'_, Draft> {
        self.draft.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl ArtifactCore {
    #[new]
    #[pyo3(signature = (name, r#type, description=None, metadata=None))]
    fn new(
        name: &str,
        r#type: &str,
        description: Option<String>,
        metadata: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let metadata = match metadata {
            Some(m) if !m.is_none() => Some(Value::Map(convert::dict_items(
                m,
                "set artifact metadata",
                convert::Target::Config,
            )?)),
            _ => None,
        };
        let staging = artifact_staging_dir(|name| std::env::var(name).ok());
        let draft = Draft::new(name, r#type, description, metadata, staging)?;
        Ok(Self {
            draft: Mutex::new(draft),
        })
    }

    #[getter]
    fn name(&self) -> String {
        self.draft().name().to_string()
    }

    /// The artifact's digest over its entries, as W&B computes it.
    #[getter]
    fn digest(&self) -> String {
        self.draft().artifact().digest()
    }

    #[getter]
    fn entries(&self) -> Vec<EntryTuple> {
        self.draft()
            .artifact()
            .entries
            .iter()
            .map(entry_tuple)
            .collect()
    }

    fn get_entry(&self, path: &str) -> Option<EntryTuple> {
        self.draft().entry(path).map(entry_tuple)
    }

    #[pyo3(signature = (local_path, name=None, is_tmp=false, policy="mutable", overwrite=false))]
    fn add_file(
        &self,
        py: Python<'_>,
        local_path: PathBuf,
        name: Option<String>,
        is_tmp: bool,
        policy: &str,
        overwrite: bool,
    ) -> PyResult<EntryTuple> {
        let policy = Policy::parse(policy)?;
        let entry = py.detach(|| {
            self.draft()
                .add_file(&local_path, name.as_deref(), is_tmp, policy, overwrite)
        })?;
        Ok(entry_tuple(&entry))
    }

    #[pyo3(signature = (local_path, name=None, policy="mutable"))]
    fn add_dir(
        &self,
        py: Python<'_>,
        local_path: PathBuf,
        name: Option<String>,
        policy: &str,
    ) -> PyResult<usize> {
        let policy = Policy::parse(policy)?;
        Ok(py.detach(|| self.draft().add_dir(&local_path, name.as_deref(), policy))?)
    }

    #[pyo3(signature = (uri, name=None, checksum=true, max_objects=None))]
    fn add_reference(
        &self,
        py: Python<'_>,
        uri: String,
        name: Option<String>,
        checksum: bool,
        max_objects: Option<usize>,
    ) -> PyResult<Vec<EntryTuple>> {
        let artifact_name = self.name();
        let entries = py.detach(|| {
            let env = |name: &str| std::env::var(name).ok();
            reference::entries(&uri, name.as_deref(), checksum, max_objects, &env)
        });
        let entries = entries.map_err(|err| err.within(&format!("artifact {artifact_name:?}")))?;
        let tuples = entries.iter().map(entry_tuple).collect();
        self.draft().add_entries(entries)?;
        Ok(tuples)
    }
}

/// The native half of an artifact read back from W&B (`use_artifact`).
#[pyclass(module = "wandb_nexus._core", name = "LoggedArtifactCore", frozen)]
pub struct LoggedArtifactCore {
    logged: LoggedArtifact,
    transport: Arc<Transport>,
    /// Its manifest, read once: a version's never changes.
    manifest: OnceLock<Vec<Entry>>,
}

impl LoggedArtifactCore {
    pub(crate) fn new(logged: LoggedArtifact, transport: Arc<Transport>) -> Self {
        Self {
            logged,
            transport,
            manifest: OnceLock::new(),
        }
    }

    fn entries(&self, py: Python<'_>) -> PyResult<&[Entry]> {
        if let Some(entries) = self.manifest.get() {
            return Ok(entries);
        }
        let entries =
            py.detach(|| runtime()?.block_on(artifacts::manifest(&self.transport, &self.logged)))?;
        Ok(self.manifest.get_or_init(|| entries))
    }
}

#[pymethods]
impl LoggedArtifactCore {
    #[getter]
    fn id(&self) -> &str {
        &self.logged.id
    }

    #[getter]
    fn entity(&self) -> &str {
        &self.logged.entity
    }

    #[getter]
    fn project(&self) -> &str {
        &self.logged.project
    }

    /// The collection's name.
    #[getter]
    fn name(&self) -> &str {
        &self.logged.name
    }

    #[getter]
    fn version(&self) -> String {
        self.logged.version()
    }

    #[getter]
    fn r#type(&self) -> &str {
        &self.logged.artifact_type
    }

    #[getter]
    fn digest(&self) -> &str {
        &self.logged.digest
    }

    #[getter]
    fn description(&self) -> Option<&str> {
        self.logged.description.as_deref()
    }

    /// JSON text.
    #[getter]
    fn metadata(&self) -> Option<&str> {
        self.logged.metadata.as_deref()
    }

    #[getter]
    fn aliases(&self) -> Vec<String> {
        self.logged.aliases.clone()
    }

    #[getter]
    fn tags(&self) -> Vec<String> {
        self.logged.tags.clone()
    }

    #[getter]
    fn size(&self) -> u64 {
        self.logged.size
    }

    /// Its entries, as its manifest on W&B lists them.
    fn manifest(&self, py: Python<'_>) -> PyResult<Vec<EntryTuple>> {
        Ok(self.entries(py)?.iter().map(entry_tuple).collect())
    }

    /// Downloads every file into `root` (default: `<artifact dir>/<dir_name>`, by default
    /// `<name>:v<N>`); returns the directory and how many files had to be fetched (the rest
    /// came from the cache).
    #[pyo3(signature = (root=None, dir_name=None))]
    fn download(
        &self,
        py: Python<'_>,
        root: Option<PathBuf>,
        dir_name: Option<String>,
    ) -> PyResult<(String, usize)> {
        let env = |name: &str| std::env::var(name).ok();
        let root = root.unwrap_or_else(|| {
            let name = dir_name
                .unwrap_or_else(|| format!("{}:{}", self.logged.name, self.logged.version()));
            artifact_download_dir(env).join(name)
        });
        let entries = self.entries(py)?;
        let fetched = py.detach(|| {
            let cache = cache_dir(env);
            runtime()?.block_on(download::download(
                &self.transport,
                &self.logged,
                entries,
                &root,
                &cache,
                &env,
            ))
        })?;
        Ok((root.to_string_lossy().into_owned(), fetched))
    }
}
