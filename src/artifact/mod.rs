//! Artifacts as W&B stores them: entries with MD5 digests, the manifest and the artifact's
//! digest over it, and the names and client ids an artifact gets. Plain data: the upload
//! sequence is `api::artifacts`, the `.wandb` record `log::records::ArtifactRecord`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use md5::{Digest, Md5};

use crate::core::values::Value;

pub mod download;
pub mod draft;
pub mod names;
pub mod reference;

pub const STORAGE_POLICY: &str = "wandb-storage-policy-v1";
pub const DIGEST_ALGORITHM: &str = "MANIFEST_MD5";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Artifact {
    pub run_id: String,
    pub project: String,
    pub entity: String,
    pub artifact_type: String,
    pub name: String,
    /// Empty when none was given.
    pub description: String,
    /// JSON text of an object; empty when none was given.
    pub metadata: String,
    pub aliases: Vec<String>,
    pub tags: Vec<String>,
    pub client_id: String,
    pub sequence_client_id: String,
    /// Sorted by path.
    pub entries: Vec<Entry>,
    /// The run's step when it was logged, when known (it is not part of the `.wandb` record).
    pub history_step: Option<i64>,
}

/// A file of the artifact, by its path inside it: either bytes to upload (`local_path`, where
/// they are until then) or a reference to bytes kept elsewhere (`reference`, a URI).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entry {
    pub path: String,
    /// The base64 MD5 of a file's bytes; for a reference, what identifies its version (an
    /// ETag, a checksum, or the URI itself).
    pub digest: String,
    /// Unknown for some references.
    pub size: Option<u64>,
    pub local_path: Option<PathBuf>,
    pub reference: Option<String>,
    /// What else a reference records (an S3 object's `etag` and `versionID`).
    pub extra: Vec<(String, Value)>,
}

impl Entry {
    /// A file whose bytes are at `local_path` until they are uploaded.
    pub fn file(path: String, digest: String, size: u64, local_path: PathBuf) -> Self {
        Self {
            path,
            digest,
            size: Some(size),
            local_path: Some(local_path),
            ..Self::default()
        }
    }
}

impl Artifact {
    /// Hex MD5 over the sorted entries' paths and digests, as W&B computes it.
    pub fn digest(&self) -> String {
        let mut hasher = Md5::new();
        hasher.update(b"wandb-artifact-manifest-v1\n");
        for entry in &self.entries {
            hasher.update(format!("{}:{}\n", entry.path, entry.digest).as_bytes());
        }
        hex(&hasher.finalize())
    }

    pub fn sort_entries(&mut self) {
        self.entries.sort_by(|a, b| a.path.cmp(&b.path));
        self.entries.dedup_by(|a, b| a.path == b.path);
    }

    /// The manifest file uploaded with the artifact; `birth_id` gives the artifact id the
    /// server stored each entry's bytes under.
    pub fn manifest_json(&self, birth_id: impl Fn(&str) -> Option<String>) -> String {
        let contents = self
            .entries
            .iter()
            .map(|entry| {
                let mut fields = vec![("digest".to_string(), Value::Str(entry.digest.clone()))];
                if let Some(uri) = &entry.reference {
                    fields.push(("ref".into(), Value::Str(uri.clone())));
                }
                if let Some(id) = birth_id(&entry.path) {
                    fields.push(("birthArtifactID".into(), Value::Str(id)));
                }
                if let Some(size) = entry.size {
                    fields.push(("size".into(), Value::Int(size as i64)));
                }
                if !entry.extra.is_empty() {
                    fields.push(("extra".into(), Value::Map(entry.extra.clone())));
                }
                (entry.path.clone(), Value::Map(fields))
            })
            .collect();
        Value::Map(vec![
            ("version".into(), Value::Int(1)),
            ("storagePolicy".into(), Value::Str(STORAGE_POLICY.into())),
            (
                "storagePolicyConfig".into(),
                Value::Map(vec![("storageLayout".into(), Value::Str("V2".into()))]),
            ),
            ("contents".into(), Value::Map(contents)),
        ])
        .to_json()
    }

    /// Removes the copies of its files staged when they were added, once the artifact is
    /// saved (the user's own files, added as immutable, stay). A sync of the run later finds
    /// the artifact saved by its digest, and reads no file.
    pub fn remove_staged(&self) {
        for (_, path) in self.files() {
            let staged = path
                .parent()
                .is_some_and(|dir| dir.ends_with(Path::new("artifacts").join("staging")));
            if staged {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// The entries whose bytes are uploaded with the artifact.
    pub fn files(&self) -> impl Iterator<Item = (&Entry, &Path)> {
        self.entries
            .iter()
            .filter_map(|entry| Some((entry, entry.local_path.as_deref()?)))
    }
}

/// wandb's artifact name for a key: kept if it only has `[A-Za-z0-9_.-]`, else those kept
/// and a checksum of the original appended, so distinct keys stay distinct.
pub fn sanitize_name(name: &str) -> String {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.chars().all(valid) {
        return name.to_string();
    }
    let kept: String = name.chars().filter(|&c| valid(c)).collect();
    let crc = crc32fast::hash(name.as_bytes()).to_be_bytes();
    let suffix = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crc);
    format!("{kept}-{suffix}")
}

/// A client id as wandb makes them: 128 characters of `[a-z0-9]`.
pub fn client_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut random = [0u8; 128];
    getrandom::fill(&mut random).expect("the OS random source");
    random
        .iter()
        // 256 is not a multiple of 36; the slight bias does not matter for an id.
        .map(|&b| ALPHABET[b as usize % ALPHABET.len()] as char)
        .collect()
}

pub fn md5_b64(bytes: &[u8]) -> String {
    b64(&Md5::digest(bytes))
}

/// Base64 (standard alphabet, padded), as W&B writes digests.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The MD5 and size of a file, read in pieces.
pub fn md5_file(path: &Path) -> std::io::Result<([u8; 16], u64)> {
    md5_copy(std::fs::File::open(path)?, std::io::sink())
}

/// Copies `from` into `to`, piece by piece, returning the MD5 and size of what it copied.
pub fn md5_copy(mut from: impl Read, mut to: impl Write) -> std::io::Result<([u8; 16], u64)> {
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        size += n as u64;
    }
    Ok((hasher.finalize().into(), size))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, digest: &str) -> Entry {
        Entry::file(path.into(), digest.into(), 1, PathBuf::new())
    }

    #[test]
    fn digests_as_wandb() {
        assert_eq!(md5_b64(b"hello world\n"), "b1kCrCNwJL3QwXbLkwY9xA==");
        let artifact = Artifact {
            run_id: String::new(),
            project: String::new(),
            entity: String::new(),
            artifact_type: "run_table".into(),
            name: "x".into(),
            aliases: vec!["latest".into()],
            client_id: client_id(),
            sequence_client_id: client_id(),
            entries: vec![entry("df_tbl.table.json", "FSmxg6ehJyFyWzgN4v2lVg==")],
            ..Artifact::default()
        };
        // Digest observed from wandb 0.31.0 for this one entry.
        assert_eq!(artifact.digest(), "f94d8513e74e076c1095863e855ed3b1");
        assert_eq!(artifact.client_id.len(), 128);
    }

    #[test]
    fn names_as_wandb() {
        assert_eq!(sanitize_name("run-abc12345-tbl"), "run-abc12345-tbl");
        assert_eq!(
            sanitize_name("run-abc12345-eval/preds"),
            "run-abc12345-evalpreds-HZoF5A"
        );
    }
}
