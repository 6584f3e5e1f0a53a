//! The writer's side of media: stores each media value's files under the run's `files/`
//! (and a table's artifact copy under `staging/`) and fills in the JSON wandb logs for it.

use std::path::PathBuf;

use crate::artifact::{self, Artifact, Entry};
use crate::core::values::{MediaValue, Value};
use crate::media::file::{sha256_hex, MediaFile};
use crate::media::table::Table;
use crate::media::Media;

/// What storing media produced, in the order wandb records it.
#[derive(Debug)]
pub enum Stored {
    /// A run file, by its path under `files/`.
    File(String),
    /// Boxed: artifacts are rare and large.
    Artifact(Box<Artifact>),
    /// A media value that could not be stored (it is logged as null).
    Failed(String),
}

/// The run a store works for.
#[derive(Clone, Debug, Default)]
pub struct Owner {
    pub run_id: String,
    pub project: String,
    pub entity: String,
}

pub struct MediaStore {
    pub files_dir: PathBuf,
    /// Artifact copies, kept until they are uploaded (a `wandb sync` reads them from here).
    pub staging_dir: PathBuf,
    pub owner: Owner,
}

impl MediaStore {
    /// Replaces each media value inside `value` by its JSON, storing its files first.
    pub fn resolve(&self, value: &mut Value, out: &mut Vec<Stored>) {
        match value {
            Value::Media(media) => {
                let json = match media.stored_json() {
                    Some(json) => json,
                    None => {
                        let json = self.store(media, out);
                        media.set_json(json.clone());
                        json
                    }
                };
                *value = json;
            }
            Value::List(items) => items.iter_mut().for_each(|v| self.resolve(v, out)),
            Value::Map(entries) => entries.iter_mut().for_each(|(_, v)| self.resolve(v, out)),
            _ => {}
        }
    }

    fn store(&self, value: &MediaValue, out: &mut Vec<Stored>) -> Value {
        let Some(media) = value.payload.downcast_ref::<Media>() else {
            return Value::Null;
        };
        let prefix = format!("{}_{}", upload_safe(&value.key), value.namespace);
        let result = match media {
            Media::File(file) => self.file_json(file, &prefix, out),
            Media::Files(files) => self.group_json(files, &prefix, out),
            Media::Table(table) => self.logged_table(table, &value.key, &prefix, out),
            Media::Relogged { table, nrows } => self
                .logged_table(table, &value.key, &prefix, out)
                .map(|json| with_field(json, "nrows", Value::Int(*nrows as i64))),
        };
        result.unwrap_or_else(|err| {
            out.push(Stored::Failed(format!(
                "cannot store {:?}: {err}",
                value.key
            )));
            Value::Null
        })
    }

    /// A table's JSON: stored the first time, the same afterwards.
    fn logged_table(
        &self,
        table: &Table,
        key: &str,
        prefix: &str,
        out: &mut Vec<Stored>,
    ) -> Result<Value, String> {
        match table.logged.get() {
            Some(json) => Ok(json.clone()),
            None => self.table_json(table, key, prefix, out).inspect(|json| {
                let _ = table.logged.set(json.clone());
            }),
        }
    }

    fn file_json(
        &self,
        file: &MediaFile,
        prefix: &str,
        out: &mut Vec<Stored>,
    ) -> Result<Value, String> {
        let (relpath, stored) = file.store(&self.files_dir, |sha| {
            format!("{}/{prefix}_{}{}", file.kind.subdir(), &sha[..20], file.ext)
        })?;
        out.push(Stored::File(relpath.clone()));
        Ok(file_value(file, relpath, stored.sha256, Some(stored.size)))
    }

    /// A list of images as wandb groups it (one entry with every file name), a list of
    /// HTML pages likewise; other lists stay lists.
    fn group_json(
        &self,
        files: &[std::sync::Arc<MediaFile>],
        prefix: &str,
        out: &mut Vec<Stored>,
    ) -> Result<Value, String> {
        let items = files
            .iter()
            .map(|file| self.file_json(file, prefix, out))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(first) = files.first() else {
            return Ok(Value::List(Vec::new()));
        };
        let field = |item: &Value, name: &str| match item {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k == name)
                .map_or(Value::Null, |(_, v)| v.clone()),
            _ => Value::Null,
        };
        let count = Value::Int(files.len() as i64);
        Ok(match first.kind {
            crate::media::file::FileKind::Image => {
                let mut json = vec![
                    ("_type".to_string(), Value::Str("images/separated".into())),
                    ("width".to_string(), field(&items[0], "width")),
                    ("height".to_string(), field(&items[0], "height")),
                    ("format".to_string(), field(&items[0], "format")),
                    ("count".to_string(), count),
                    (
                        "filenames".to_string(),
                        Value::List(items.iter().map(|i| field(i, "path")).collect()),
                    ),
                ];
                if first.caption.is_some() {
                    let captions = files
                        .iter()
                        .map(|f| f.caption.clone().map_or(Value::Null, Value::Str))
                        .collect();
                    json.push(("captions".to_string(), Value::List(captions)));
                }
                Value::Map(json)
            }
            crate::media::file::FileKind::Html => Value::Map(vec![
                ("_type".to_string(), Value::Str("html".into())),
                ("count".to_string(), count),
                ("html".to_string(), Value::List(items)),
            ]),
            crate::media::file::FileKind::Audio => Value::List(items),
        })
    }

    /// A table: its `run_table` artifact (the typed copy and the media in its cells), its
    /// run file, and the `table-file` JSON that points at both.
    fn table_json(
        &self,
        table: &Table,
        key: &str,
        prefix: &str,
        out: &mut Vec<Stored>,
    ) -> Result<Value, String> {
        let client_id = artifact::client_id();
        let staging = self.staging_dir.join(&client_id[..16]);
        let mut entries = Vec::new();
        let mut cell_paths = std::collections::HashMap::new();
        for file in table.media_files() {
            let key = std::sync::Arc::as_ptr(file) as usize;
            if cell_paths.contains_key(&key) {
                continue;
            }
            let (_, stored) = file.store(&staging, |sha| format!("cells/{sha}{}", file.ext))?;
            let (md5, size) = artifact::md5_file(&stored.at)
                .map_err(|e| format!("cannot read {}: {e}", stored.at.display()))?;
            let path = format!(
                "{}/{}{}",
                file.kind.subdir(),
                &artifact::hex(&md5)[..20],
                file.ext
            );
            cell_paths.insert(key, (path.clone(), stored.sha256.clone()));
            entries.push(Entry::file(path, artifact::b64(&md5), size, stored.at));
        }
        // In the artifact, a media cell is named by its path there and has no size.
        let artifact_json = table.artifact_json(|file| {
            let (path, sha256) = &cell_paths[&(file as *const MediaFile as usize)];
            file_value(file, path.clone(), sha256.clone(), None)
        });
        let entry_name = format!("{key}.table.json");
        let local_path = staging.join(&entry_name);
        crate::media::file::write_whole(&local_path, artifact_json.as_bytes())?;
        entries.push(Entry::file(
            entry_name.clone(),
            artifact::md5_b64(artifact_json.as_bytes()),
            artifact_json.len() as u64,
            local_path,
        ));
        let mut artifact = Artifact {
            run_id: self.owner.run_id.clone(),
            project: self.owner.project.clone(),
            entity: self.owner.entity.clone(),
            artifact_type: "run_table".into(),
            name: artifact::sanitize_name(&format!("run-{}-{key}", self.owner.run_id)),
            aliases: vec!["latest".into()],
            client_id,
            sequence_client_id: artifact::client_id(),
            entries,
            ..Artifact::default()
        };
        artifact.sort_entries();
        let run_file = table.run_file_json();
        let sha256 = sha256_hex(run_file.as_bytes());
        let relpath = format!("media/table/{prefix}_{}.table.json", &sha256[..20]);
        crate::media::file::write_whole(&self.files_dir.join(&relpath), run_file.as_bytes())?;
        let json = Value::Map(vec![
            ("_type".into(), Value::Str("table-file".into())),
            ("sha256".into(), Value::Str(sha256)),
            ("size".into(), Value::Int(run_file.len() as i64)),
            (
                "artifact_path".into(),
                Value::Str(format!(
                    "wandb-client-artifact://{}/{entry_name}",
                    artifact.client_id
                )),
            ),
            (
                "_latest_artifact_path".into(),
                Value::Str(format!(
                    "wandb-client-artifact://{}:latest/{entry_name}",
                    artifact.sequence_client_id
                )),
            ),
            ("path".into(), Value::Str(relpath.clone())),
            ("ncols".into(), Value::Int(table.columns.len() as i64)),
            ("nrows".into(), Value::Int(table.rows.len() as i64)),
            ("log_mode".into(), Value::Str("IMMUTABLE".into())),
        ]);
        out.push(Stored::Artifact(Box::new(artifact)));
        out.push(Stored::File(relpath));
        Ok(json)
    }
}

/// A media file's JSON as wandb writes it: its caption first if it has one, its kind,
/// digest, size (where one is given) and path, then the kind's own fields.
fn file_value(file: &MediaFile, path: String, sha256: String, size: Option<u64>) -> Value {
    let mut json = Vec::new();
    if let Some(caption) = &file.caption {
        json.push(("caption".to_string(), Value::Str(caption.clone())));
    }
    json.push((
        "_type".to_string(),
        Value::Str(file.kind.type_name().into()),
    ));
    json.push(("sha256".to_string(), Value::Str(sha256)));
    if let Some(size) = size {
        json.push(("size".to_string(), Value::Int(size as i64)));
    }
    json.push(("path".to_string(), Value::Str(path)));
    json.extend(file.fields.iter().cloned());
    Value::Map(json)
}

fn with_field(json: Value, name: &str, value: Value) -> Value {
    match json {
        Value::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    if k == name {
                        (k, value.clone())
                    } else {
                        (k, v)
                    }
                })
                .collect(),
        ),
        other => other,
    }
}

/// wandb's file-name form of a key: no leading `/`, and `.` or `..` components replaced,
/// so a key cannot name a file outside the media directory.
pub fn upload_safe(key: &str) -> String {
    key.trim_start_matches('/')
        .split('/')
        .map(|part| match part {
            "." => "_",
            ".." => "__",
            other => other,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::media::file::{Content, FileKind};
    use crate::media::image::{Color, Pixels};
    use crate::media::table::Cell;

    fn store_in(name: &str) -> MediaStore {
        let root = std::env::temp_dir().join(format!("nexus-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        MediaStore {
            files_dir: root.join("files"),
            staging_dir: root.join("staging"),
            owner: Owner {
                run_id: "abc123".into(),
                project: "p".into(),
                entity: "e".into(),
            },
        }
    }

    fn logged(media: Media, key: &str, namespace: &str) -> Value {
        Value::Media(Arc::new(MediaValue::new(
            key.into(),
            namespace.into(),
            media.pending_bytes(),
            Box::new(media),
        )))
    }

    fn field<'a>(json: &'a Value, name: &str) -> &'a Value {
        let Value::Map(entries) = json else {
            panic!("not an object: {json:?}")
        };
        &entries.iter().find(|(k, _)| k == name).unwrap().1
    }

    fn image() -> Arc<MediaFile> {
        let pixels = Pixels::new(2, 1, Color::Rgb, vec![1, 2, 3, 4, 5, 6]).unwrap();
        Arc::new(MediaFile::image(pixels, Some("c".into())))
    }

    #[test]
    fn an_image_is_written_whole_and_named_by_its_digest() {
        let store = store_in("image");
        let file = image();
        let mut value = logged(Media::File(file.clone()), "../img", "3");
        let mut stored = Vec::new();
        store.resolve(&mut value, &mut stored);
        let Value::Str(path) = field(&value, "path") else {
            panic!()
        };
        let bytes = std::fs::read(store.files_dir.join(path)).unwrap();
        let Value::Str(sha) = field(&value, "sha256") else {
            panic!()
        };
        assert_eq!(sha, &sha256_hex(&bytes));
        assert_eq!(path, &format!("media/images/__/img_3_{}.png", &sha[..20]));
        assert_eq!(field(&value, "size"), &Value::Int(bytes.len() as i64));
        assert!(matches!(&stored[..], [Stored::File(p)] if p == path));
        // Logged again at another step: the same bytes, copied under the new name.
        let mut again = logged(Media::File(file), "img", "4");
        store.resolve(&mut again, &mut stored);
        let Value::Str(second) = field(&again, "path") else {
            panic!()
        };
        assert_eq!(std::fs::read(store.files_dir.join(second)).unwrap(), bytes);
    }

    #[test]
    fn a_table_gets_its_run_file_and_artifact() {
        let store = store_in("table");
        let rows = vec![vec![Cell::Value(Value::Int(1)), Cell::Media(image())]];
        let columns = vec![Value::Str("n".into()), Value::Str("img".into())];
        let table = Table::new(columns, rows, false).unwrap();
        let mut value = logged(Media::Table(Arc::new(table)), "tbl", "0");
        let mut stored = Vec::new();
        store.resolve(&mut value, &mut stored);
        let [Stored::Artifact(artifact), Stored::File(run_file)] = &stored[..] else {
            panic!("{stored:?}")
        };
        assert_eq!(artifact.name, "run-abc123-tbl");
        assert_eq!(field(&value, "path"), &Value::Str(run_file.clone()));
        let paths: Vec<_> = artifact.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths.len(), 2);
        assert!(paths[0].starts_with("media/images/") && paths[1] == "tbl.table.json");
        for entry in &artifact.entries {
            let local = entry.local_path.as_deref().unwrap();
            let (md5, size) = crate::artifact::md5_file(local).unwrap();
            assert_eq!(
                (crate::artifact::b64(&md5), Some(size)),
                (entry.digest.clone(), entry.size)
            );
        }
        let expected = format!(
            "wandb-client-artifact://{}/tbl.table.json",
            artifact.client_id
        );
        assert_eq!(field(&value, "artifact_path"), &Value::Str(expected));
    }

    #[test]
    fn a_file_that_cannot_be_written_is_logged_as_null_and_reported() {
        let mut store = store_in("unwritable");
        // A file where the files directory should be: nothing can be written under it.
        std::fs::create_dir_all(store.files_dir.parent().unwrap()).unwrap();
        std::fs::write(&store.files_dir, b"").unwrap();
        store.staging_dir = store.files_dir.clone();
        let page = MediaFile::new(
            FileKind::Html,
            ".html",
            None,
            Vec::new(),
            Content::Bytes(b"<p>".to_vec()),
        );
        let mut value = logged(Media::File(Arc::new(page)), "a", "0");
        let mut stored = Vec::new();
        store.resolve(&mut value, &mut stored);
        assert_eq!(value, Value::Null);
        assert!(matches!(&stored[..], [Stored::Failed(problem)] if problem.contains("\"a\"")));
    }

    #[test]
    fn keys_become_safe_file_names() {
        assert_eq!(upload_safe("img"), "img");
        assert_eq!(upload_safe("../evil"), "__/evil");
        assert_eq!(upload_safe("/a/./b"), "a/_/b");
    }
}
