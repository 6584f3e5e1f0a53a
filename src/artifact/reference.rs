//! Entries for bytes kept elsewhere (`add_reference`), recorded as wandb records them: S3
//! objects by ETag, size and version (read with the role's credentials, no boto3), HTTP
//! resources by ETag and length, local files by their MD5 (or by their path without a
//! checksum), and any other URI by itself under the name given.

use std::path::{Path, PathBuf};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use reqwest::Url;

use super::draft::{logical_path, walk};
use super::{md5_b64, md5_file, Entry};
use crate::api::transport;
use crate::aws::s3::{self, ObjectHead};
use crate::aws::sigv4::uri_encode_path;
use crate::core::runtime::runtime;
use crate::core::values::Value;
use crate::error::Error;

/// wandb's default bound on the objects one reference may stand for.
pub const DEFAULT_MAX_OBJECTS: usize = 10_000_000;
/// HEAD requests in flight at once while reading a prefix's versions.
const PARALLEL_HEADS: usize = 16;

/// The entries `uri` stands for. `env` gives the AWS settings of S3 references. Blocks on
/// requests; must not be called from the runtime's threads.
pub fn entries(
    uri: &str,
    name: Option<&str>,
    checksum: bool,
    max_objects: Option<usize>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<Entry>, Error> {
    let name = name.map(logical_path).transpose()?;
    let max_objects = max_objects.unwrap_or(DEFAULT_MAX_OBJECTS);
    let Some((scheme, _)) = uri.split_once("://") else {
        return Err(Error::Usage(format!(
            "reference {uri:?} has no scheme: give a URI such as s3://bucket/key, \
             https://host/path or file:///path"
        )));
    };
    let runtime = runtime()?;
    match scheme {
        "s3" => {
            let (bucket, key, version) = s3_location(uri)?;
            let reference = format!("s3://{bucket}/{key}");
            if !checksum {
                let path = match name {
                    Some(name) => name,
                    None => logical_path(if key.is_empty() { &bucket } else { &key })?,
                };
                return Ok(vec![by_uri(path, reference)]);
            }
            let client = s3::Client::from_env(env)?;
            runtime.block_on(s3_entries(
                &client,
                &bucket,
                &key,
                version.as_deref(),
                name,
                max_objects,
            ))
        }
        "http" | "https" => {
            let path = match name {
                Some(name) => name,
                None => logical_path(uri.rsplit('/').next().unwrap_or_default())?,
            };
            if !checksum {
                return Ok(vec![by_uri(path, uri.to_string())]);
            }
            runtime
                .block_on(http_entry(uri, path))
                .map(|entry| vec![entry])
        }
        "file" => file_entries(uri, name, checksum, max_objects),
        _ => match name {
            Some(path) => Ok(vec![by_uri(path, uri.to_string())]),
            None => Err(Error::Usage(format!(
                "reference {uri:?}: its scheme {scheme:?} cannot be read, so give it a name \
                 (add_reference(uri, name=...))"
            ))),
        },
    }
}

/// An entry known by its URI alone (no checksum).
fn by_uri(path: String, uri: String) -> Entry {
    Entry {
        path,
        digest: uri.clone(),
        reference: Some(uri),
        ..Entry::default()
    }
}

/// Bucket, key and version of an `s3://bucket/key[?versionId=...]` URI.
fn s3_location(uri: &str) -> Result<(String, String, Option<String>), Error> {
    let url = Url::parse(uri).map_err(|e| Error::Usage(format!("{uri:?} is not a URI: {e}")))?;
    let bucket = url.host_str().unwrap_or_default().to_string();
    if bucket.is_empty() {
        return Err(Error::Usage(format!("{uri:?} names no bucket")));
    }
    let key = uri
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, key)| key.split(['?', '#']).next().unwrap_or_default())
        .unwrap_or_default()
        .to_string();
    let version = url
        .query_pairs()
        .find(|(name, _)| name == "versionId")
        .map(|(_, value)| value.into_owned());
    Ok((bucket, key, version))
}

/// The object at `key`, or every object under it as a prefix (as wandb: a key with no
/// object, or a folder marker, is a prefix; empty objects are left out).
async fn s3_entries(
    client: &s3::Client,
    bucket: &str,
    key: &str,
    version: Option<&str>,
    name: Option<String>,
    max_objects: usize,
) -> Result<Vec<Entry>, Error> {
    let head = client.head(bucket, key, version).await?;
    let folder = |head: &ObjectHead| {
        head.content_type
            .as_deref()
            .is_some_and(|t| t.contains("x-directory"))
    };
    if let Some(head) = head.filter(|head| !folder(head)) {
        let path = match name {
            Some(name) => name,
            None => logical_path(key.rsplit('/').next().unwrap_or(key))?,
        };
        let reference = format!("s3://{bucket}/{key}");
        return Ok(vec![s3_entry(path, reference, &head)]);
    }
    let listed = client.list(bucket, key, max_objects).await?;
    let heads: Vec<(String, ObjectHead)> = stream::iter(listed.into_iter().filter(|o| o.size > 0))
        .map(|object| async move {
            // A listing has no version ids: each object's HEAD does.
            let head = client
                .head(bucket, &object.key, None)
                .await?
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "s3://{bucket}/{} was deleted while it was being referenced",
                        object.key
                    ))
                })?;
            Ok::<_, Error>((object.key, head))
        })
        .buffered(PARALLEL_HEADS)
        .try_collect()
        .await?;
    if heads.is_empty() {
        return Err(Error::Usage(format!(
            "s3://{bucket}/{key} does not exist: no object has that key or starts with it"
        )));
    }
    let prefix = key.trim_end_matches('/');
    heads
        .into_iter()
        .map(|(object_key, head)| {
            let relative = object_key
                .strip_prefix(prefix)
                .filter(|rest| rest.starts_with('/') || prefix.is_empty())
                .map(|rest| rest.trim_start_matches('/').to_string())
                .unwrap_or_else(|| object_key.rsplit('/').next().unwrap_or_default().into());
            let path = match &name {
                Some(name) => format!("{name}/{relative}"),
                None => relative.clone(),
            };
            let reference = match prefix {
                "" => format!("s3://{bucket}/{relative}"),
                prefix => format!("s3://{bucket}/{prefix}/{relative}"),
            };
            Ok(s3_entry(logical_path(&path)?, reference, &head))
        })
        .collect()
}

fn s3_entry(path: String, reference: String, head: &ObjectHead) -> Entry {
    let mut extra = vec![("etag".to_string(), Value::Str(head.etag.clone()))];
    if let Some(version) = &head.version_id {
        extra.push(("versionID".into(), Value::Str(version.clone())));
    }
    Entry {
        path,
        digest: head.etag.clone(),
        size: Some(head.size),
        local_path: None,
        reference: Some(reference),
        extra,
    }
}

/// An HTTP resource by its ETag (else its URL) and length, read from the headers of a GET
/// whose body is not read.
async fn http_entry(uri: &str, path: String) -> Result<Entry, Error> {
    let failed = |why: String| Error::Comm(format!("cannot checksum reference {uri}: {why}"));
    let response = transport::get_keyless(uri).await.map_err(failed)?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header("etag");
    let size = header("content-length").and_then(|v| v.parse().ok());
    let reference = response.url().to_string();
    Ok(Entry {
        path,
        digest: etag
            .as_deref()
            .map(|e| e.trim_matches('"').to_string())
            .unwrap_or_else(|| reference.clone()),
        size,
        local_path: None,
        reference: Some(reference),
        // The ETag as sent, quotes and all, as wandb keeps it.
        extra: etag
            .map(|e| vec![("etag".to_string(), Value::Str(e))])
            .unwrap_or_default(),
    })
}

/// The local path a `file://` URI names.
pub fn local_path(uri: &str) -> Option<PathBuf> {
    Url::parse(uri).ok()?.to_file_path().ok()
}

/// The digest of a local file referenced without a checksum: the MD5 of its resolved
/// `file://` URI, so it changes only when the path does.
pub fn unchecked_file_digest(file: &Path) -> std::io::Result<String> {
    let resolved = std::fs::canonicalize(file)?;
    let uri = format!("file://{}", uri_encode_path(&resolved.to_string_lossy()));
    Ok(md5_b64(uri.as_bytes()))
}

/// A local file, or every file under a directory, by the MD5 of its bytes, or with no
/// checksum by the MD5 of its `file://` URI (so it changes only when the path does).
fn file_entries(
    uri: &str,
    name: Option<String>,
    checksum: bool,
    max_objects: usize,
) -> Result<Vec<Entry>, Error> {
    let local = local_path(uri)
        .ok_or_else(|| Error::Usage(format!("{uri:?} is not a file:// URI of a local path")))?;
    let unreadable = |e: std::io::Error| Error::io(format!("cannot read reference {uri}"), e);
    let entry = |file: &Path, path: String, reference: String| -> Result<Entry, Error> {
        let (digest, size) = if checksum {
            let (md5, size) = md5_file(file).map_err(unreadable)?;
            (super::b64(&md5), size)
        } else {
            let size = std::fs::metadata(file).map_err(unreadable)?.len();
            (unchecked_file_digest(file).map_err(unreadable)?, size)
        };
        Ok(Entry {
            path,
            digest,
            size: Some(size),
            reference: Some(reference),
            ..Entry::default()
        })
    };
    if local.is_dir() {
        let files = walk(&local).map_err(unreadable)?;
        if files.len() > max_objects {
            return Err(Error::Usage(format!(
                "reference {uri} holds more than {max_objects} files: pass a larger max_objects"
            )));
        }
        let base = uri.trim_end_matches('/');
        return files
            .into_iter()
            .map(|(file, relative)| {
                let path = match &name {
                    Some(name) => format!("{name}/{relative}"),
                    None => relative.clone(),
                };
                entry(&file, path, format!("{base}/{relative}"))
            })
            .collect();
    }
    if !local.is_file() {
        return Err(Error::Usage(format!(
            "reference {uri}: {} is neither a file nor a directory",
            local.display()
        )));
    }
    let path = match name {
        Some(name) => name,
        None => logical_path(&local.file_name().unwrap_or_default().to_string_lossy())?,
    };
    Ok(vec![entry(&local, path, uri.to_string())?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn unchecked_references_make_no_request() {
        let s3 = entries("s3://bkt/dir/", None, false, None, &no_env).unwrap();
        assert_eq!(
            (s3[0].path.as_str(), s3[0].digest.as_str()),
            ("dir", "s3://bkt/dir/")
        );
        let versioned = entries("s3://bkt/k.bin?versionId=7", None, false, None, &no_env);
        assert_eq!(
            versioned.unwrap()[0].reference.as_deref(),
            Some("s3://bkt/k.bin")
        );
        let http = entries("https://h.invalid/f.bin", None, false, None, &no_env).unwrap();
        assert_eq!((http[0].path.as_str(), http[0].size), ("f.bin", None));
        let other = entries("gs2://b/k", Some("k"), true, None, &no_env).unwrap();
        assert_eq!(other[0].digest, "gs2://b/k");
        let err = entries("gs2://b/k", None, true, None, &no_env).unwrap_err();
        assert!(err.to_string().contains("give it a name"), "{err}");
        assert!(entries("bucket/key", None, true, None, &no_env).is_err());
    }

    #[test]
    fn local_files_by_contents_or_by_path() {
        let dir = std::env::temp_dir().join(format!("ref-files-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/a.txt"), "hello world\n").unwrap();
        let uri = format!("file://{}", dir.display());
        let found = entries(&uri, Some("d"), true, None, &no_env).unwrap();
        assert_eq!(found[0].path, "d/sub/a.txt");
        assert_eq!(found[0].digest, "b1kCrCNwJL3QwXbLkwY9xA==");
        assert_eq!(found[0].reference, Some(format!("{uri}/sub/a.txt")));
        let by_path = entries(&format!("{uri}/sub/a.txt"), None, false, None, &no_env).unwrap();
        let expected = format!("file://{}/sub/a.txt", dir.canonicalize().unwrap().display());
        assert_eq!(by_path[0].digest, md5_b64(expected.as_bytes()));
        assert!(entries(&uri, None, true, Some(0), &no_env).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
