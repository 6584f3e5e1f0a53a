//! An artifact being put together: files added (hashed, and copied into staging unless the
//! caller promises not to change them), references recorded, until it is logged.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::{b64, client_id, hex, names, Artifact, Entry};
use crate::core::values::Value;
use crate::error::Error;

/// What `add_file` may assume of a file until the artifact is uploaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// It may change: a copy is staged now, so what is uploaded is what was added.
    Mutable,
    /// It stays as it is: it is read from where it is.
    Immutable,
}

impl Policy {
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "mutable" => Ok(Self::Mutable),
            "immutable" => Ok(Self::Immutable),
            other => Err(Error::Usage(format!(
                "policy must be 'mutable' or 'immutable', not {other:?}"
            ))),
        }
    }
}

pub struct Draft {
    artifact: Artifact,
    /// Where staged copies go (created at the first one).
    staging: PathBuf,
    /// Set once logged: a logged artifact no longer changes.
    logged: bool,
}

impl Draft {
    pub fn new(
        name: &str,
        artifact_type: &str,
        description: Option<String>,
        metadata: Option<Value>,
        staging: PathBuf,
    ) -> Result<Self, Error> {
        names::check_name(name)?;
        names::check_type(artifact_type, name)?;
        let metadata = match metadata {
            None => String::new(),
            Some(Value::Map(fields)) if fields.len() <= 100 => Value::Map(fields).to_json(),
            Some(Value::Map(_)) => {
                return Err(Error::Usage(format!(
                    "the metadata of artifact {name:?} has more than 100 keys"
                )))
            }
            Some(_) => {
                return Err(Error::Usage(format!(
                    "the metadata of artifact {name:?} must be a dict"
                )))
            }
        };
        let artifact = Artifact {
            artifact_type: artifact_type.into(),
            name: name.into(),
            description: description.unwrap_or_default(),
            metadata,
            client_id: client_id(),
            sequence_client_id: client_id(),
            ..Artifact::default()
        };
        Ok(Self {
            artifact,
            staging,
            logged: false,
        })
    }

    pub fn artifact(&self) -> &Artifact {
        &self.artifact
    }

    pub fn entry(&self, path: &str) -> Option<&Entry> {
        let path = logical_path(path).ok()?;
        self.artifact.entries.iter().find(|e| e.path == path)
    }

    /// Adds the file at `local` as `name` (default: its file name); returns its entry.
    pub fn add_file(
        &mut self,
        local: &Path,
        name: Option<&str>,
        is_tmp: bool,
        policy: Policy,
        overwrite: bool,
    ) -> Result<Entry, Error> {
        self.check_open()?;
        let metadata = std::fs::metadata(local).map_err(|e| self.unreadable(local, e))?;
        if metadata.is_dir() {
            return Err(Error::Usage(format!(
                "artifact {:?}: {} is a directory; add it with add_dir",
                self.artifact.name,
                local.display()
            )));
        }
        let file_name = local.file_name().unwrap_or_default().to_string_lossy();
        let mut path = logical_path(name.unwrap_or(&file_name))?;
        let entry = self.stage(local, policy)?;
        if is_tmp {
            path = tmp_name(&path, &entry.digest);
        }
        let entry = Entry { path, ..entry };
        self.insert(vec![entry.clone()], overwrite)?;
        Ok(entry)
    }

    /// Adds every file under `local` (following links), named by their paths relative to
    /// it under `name`; returns how many.
    pub fn add_dir(
        &mut self,
        local: &Path,
        name: Option<&str>,
        policy: Policy,
    ) -> Result<usize, Error> {
        self.check_open()?;
        if !local.is_dir() {
            return Err(Error::Usage(format!(
                "artifact {:?}: {} is not a directory",
                self.artifact.name,
                local.display()
            )));
        }
        let prefix = name.map(logical_path).transpose()?;
        let files = walk(local).map_err(|e| self.unreadable(local, e))?;
        // Files are hashed (and copied) on several threads: that is most of the time.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        let per_worker = files.len().div_ceil(workers).max(1);
        let this = &*self;
        let staged: Vec<Result<Entry, Error>> = std::thread::scope(|scope| {
            let handles: Vec<_> = files
                .chunks(per_worker)
                .map(|chunk| {
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|(file, _)| this.stage(file, policy))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|handle| handle.join().expect("a staging thread does not panic"))
                .collect()
        });
        let mut entries = Vec::with_capacity(files.len());
        for ((_, relative), entry) in files.iter().zip(staged) {
            let path = match &prefix {
                Some(prefix) => format!("{prefix}/{relative}"),
                None => relative.clone(),
            };
            entries.push(Entry { path, ..entry? });
        }
        let count = entries.len();
        self.insert(entries, false)?;
        Ok(count)
    }

    /// Adds entries made elsewhere (references).
    pub fn add_entries(&mut self, entries: Vec<Entry>) -> Result<(), Error> {
        self.check_open()?;
        self.insert(entries, false)
    }

    /// The artifact to log; from now on it no longer changes.
    pub fn finalize(&mut self) -> Result<Artifact, Error> {
        self.check_open()?;
        self.logged = true;
        Ok(self.artifact.clone())
    }

    pub fn name(&self) -> &str {
        &self.artifact.name
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.logged {
            return Err(Error::Usage(format!(
                "artifact {:?} is logged; it can no longer change (make a new Artifact)",
                self.artifact.name
            )));
        }
        Ok(())
    }

    /// The entry of a file's bytes: hashed where it is, or copied into staging as it is
    /// hashed. Its path is left for the caller.
    fn stage(&self, local: &Path, policy: Policy) -> Result<Entry, Error> {
        let (md5, size, at) = match policy {
            Policy::Immutable => {
                let (md5, size) = super::md5_file(local).map_err(|e| self.unreadable(local, e))?;
                let at = std::path::absolute(local).map_err(|e| self.unreadable(local, e))?;
                (md5, size, at)
            }
            Policy::Mutable => {
                std::fs::create_dir_all(&self.staging).map_err(|e| {
                    Error::io(format!("cannot create {}", self.staging.display()), e)
                })?;
                let at = self.staging.join(format!("tmp{}", &client_id()[..16]));
                let (md5, size) = copy_hashing(local, &at).map_err(|e| {
                    let _ = std::fs::remove_file(&at);
                    self.unreadable(local, e)
                })?;
                (md5, size, at)
            }
        };
        Ok(Entry::file(String::new(), b64(&md5), size, at))
    }

    /// Puts `entries` in, refusing a path already there with other contents (unless
    /// `overwrite`), so that no two entries claim one path.
    /// Puts `entries` in, refusing a path already there with other contents (unless
    /// `overwrite`), so that no two entries claim one path. Held entries are sorted by path,
    /// so adding a directory of many files takes time in proportion to them, not squared.
    fn insert(&mut self, entries: Vec<Entry>, overwrite: bool) -> Result<(), Error> {
        let held = &self.artifact.entries;
        let clash = entries.iter().find(|entry| {
            held.binary_search_by(|e| e.path.cmp(&entry.path))
                .is_ok_and(|i| held[i].digest != entry.digest)
        });
        if let (Some(entry), false) = (clash, overwrite) {
            return Err(Error::Usage(format!(
                "artifact {:?} already has another {:?} (pass overwrite=True to replace it)",
                self.artifact.name, entry.path
            )));
        }
        {
            let replaced: HashSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
            self.artifact
                .entries
                .retain(|e| !replaced.contains(e.path.as_str()));
        }
        self.artifact.entries.extend(entries);
        self.artifact.sort_entries();
        Ok(())
    }

    fn unreadable(&self, path: &Path, err: std::io::Error) -> Error {
        Error::io(
            format!(
                "artifact {:?}: cannot read {}",
                self.artifact.name,
                path.display()
            ),
            err,
        )
    }
}

/// A path inside an artifact: `/`-separated, relative, without `.` or `..` parts.
pub fn logical_path(path: &str) -> Result<String, Error> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    if parts.is_empty() || parts.contains(&"..") {
        return Err(Error::Usage(format!(
            "{path:?} is not a path inside an artifact"
        )));
    }
    Ok(parts.join("/"))
}

/// wandb's name for a temporary file: the first part of its name (up to the first dot)
/// replaced by the start of its digest, so that names do not clash.
fn tmp_name(path: &str, digest: &str) -> String {
    let (dir, file) = match path.rsplit_once('/') {
        Some((dir, file)) => (format!("{dir}/"), file),
        None => (String::new(), path),
    };
    let md5 = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, digest)
        .unwrap_or_default();
    let rest = file.split_once('.').map(|(_, rest)| format!(".{rest}"));
    format!("{dir}{}{}", &hex(&md5)[..20], rest.unwrap_or_default())
}

/// Copies `from` to a new read-only file `to`, hashing what it copies: one read of the bytes.
fn copy_hashing(from: &Path, to: &Path) -> std::io::Result<([u8; 16], u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let target = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(to)?;
    super::md5_copy(File::open(from)?, target)
}

/// Every file under `root` (following links), with its `/`-separated path relative to
/// `root`, sorted.
pub fn walk(root: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    let mut found = Vec::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, relative)) = pending.pop() {
        for item in std::fs::read_dir(&dir)? {
            let item = item?;
            let name = item.file_name().to_string_lossy().into_owned();
            let path = item.path();
            let relative = if relative.is_empty() {
                name
            } else {
                format!("{relative}/{name}")
            };
            // metadata() follows links, as wandb's walk does.
            if std::fs::metadata(&path)?.is_dir() {
                pending.push((path, relative));
            } else {
                found.push((path, relative));
            }
        }
    }
    found.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(dir: &Path) -> Draft {
        Draft::new("data", "dataset", None, None, dir.join("staging")).unwrap()
    }

    #[test]
    fn a_mutable_file_is_staged_as_it_was_added() {
        let dir = std::env::temp_dir().join(format!("draft-mutable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join("a.txt");
        std::fs::write(&source, "hello world\n").unwrap();
        let mut draft = draft(&dir);
        let entry = draft
            .add_file(&source, None, false, Policy::Mutable, false)
            .unwrap();
        assert_eq!(
            (entry.path.as_str(), entry.digest.as_str()),
            ("a.txt", "b1kCrCNwJL3QwXbLkwY9xA==")
        );
        std::fs::write(&source, "changed\n").unwrap();
        let staged = entry.local_path.unwrap();
        assert!(staged.starts_with(dir.join("staging")));
        assert_eq!(std::fs::read_to_string(staged).unwrap(), "hello world\n");
        // The same path with other contents is refused, unless overwritten.
        let err = draft.add_file(&source, None, false, Policy::Immutable, false);
        assert!(err.unwrap_err().to_string().contains("already has another"));
        let entry = draft
            .add_file(&source, None, true, Policy::Immutable, true)
            .unwrap();
        assert_eq!(entry.local_path.unwrap(), source);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_is_walked_and_a_logged_draft_is_closed() {
        let dir = std::env::temp_dir().join(format!("draft-dir-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("tree/sub")).unwrap();
        std::fs::write(dir.join("tree/b.txt"), "b").unwrap();
        std::fs::write(dir.join("tree/sub/a.txt"), "a").unwrap();
        let mut draft = draft(&dir);
        assert!(draft
            .add_file(&dir.join("tree"), None, false, Policy::Mutable, false)
            .unwrap_err()
            .to_string()
            .contains("is a directory"));
        let added = draft
            .add_dir(&dir.join("tree"), Some("./data/"), Policy::Immutable)
            .unwrap();
        assert_eq!(added, 2);
        let paths: Vec<&str> = draft
            .artifact()
            .entries
            .iter()
            .map(|e| e.path.as_str())
            .collect();
        assert_eq!(paths, ["data/b.txt", "data/sub/a.txt"]);
        assert_eq!(draft.finalize().unwrap().entries.len(), 2);
        assert!(draft.add_entries(vec![]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn paths_inside_an_artifact() {
        assert_eq!(logical_path("./a//b/").unwrap(), "a/b");
        assert!(logical_path("../a").is_err() && logical_path("/").is_err());
        assert_eq!(
            tmp_name("d/x.tar.gz", "b1kCrCNwJL3QwXbLkwY9xA=="),
            "d/6f5902ac237024bdd0c1.tar.gz"
        );
    }
}
