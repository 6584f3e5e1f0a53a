//! Downloading a logged artifact: each file fetched once into a cache keyed by its digest
//! (so a second download, in this process or after a cold start in the same sandbox, fetches
//! nothing), streamed to disk in parallel and checked against its digest, then linked into the
//! download directory. The free space is checked first, and no file ever appears at its final
//! path, in the cache or the directory, before it is complete and checked.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use md5::{Digest, Md5};

use super::{b64, hex, md5_copy, reference, Entry};
use crate::api::artifacts::{self, LoggedArtifact};
use crate::api::transport::{self, Transport};
use crate::aws::s3;
use crate::error::Error;

/// Files fetched at once, each hashed and written by a thread of its own: four download as
/// fast as eight in bench/artifacts.py, at less memory.
const PARALLEL_FETCHES: usize = 4;
/// The modification time every cached object gets: a file changed in place since (through a
/// link in a download directory) no longer has it, and is fetched again.
const CACHED_MTIME: Duration = Duration::from_secs(1_000_000_000);
/// Network chunks queued for a file's writer: a bound on the memory a slow disk can take.
const CHUNKS_IN_FLIGHT: usize = 4;
/// Bytes gathered before each write of a fetched file.
const WRITE_BUFFER: usize = 64 * 1024;
/// Room left free beyond what the files need.
const SPACE_MARGIN: u64 = 1 << 20;

/// Downloads `entries`, the manifest of `logged`, into `root`, through the cache under
/// `cache`. `env` gives the AWS settings of S3 references. Returns how many files were
/// fetched.
pub async fn download(
    transport: &Transport,
    logged: &LoggedArtifact,
    entries: &[Entry],
    root: &Path,
    cache: &Path,
    env: &(impl Fn(&str) -> Option<String> + Sync),
) -> Result<usize, Error> {
    let label = format!(
        "artifact {}/{}/{}:{}",
        logged.entity,
        logged.project,
        logged.name,
        logged.version()
    );
    let planned: Vec<(&Entry, PathBuf)> = entries
        .iter()
        .map(|entry| (entry, cache_object(cache, entry)))
        .collect();
    let missing: Vec<&(&Entry, PathBuf)> = planned
        .iter()
        .filter(|(entry, object)| !is_cached(object, entry.size))
        .collect();
    let needed: u64 = missing.iter().filter_map(|(e, _)| e.size).sum();
    check_space(cache, needed, &label)?;
    let urls = match missing.iter().any(|(e, _)| e.reference.is_none()) {
        true => artifacts::file_urls(transport, logged).await?,
        false => HashMap::new(),
    };
    let s3 = match missing.iter().any(|(e, _)| is_s3(e)) {
        true => Some(s3::Client::from_env(env).map_err(|e| e.within(&label))?),
        false => None,
    };
    let fetched = missing.len();
    stream::iter(missing)
        .map(|(entry, object)| fetch(entry, object, &urls, s3.as_ref(), &label))
        .buffer_unordered(PARALLEL_FETCHES)
        .try_collect::<Vec<()>>()
        .await?;
    for (entry, object) in &planned {
        place(object, &root.join(&entry.path))
            .map_err(|e| Error::io(format!("{label}: cannot write {}", entry.path), e))?;
    }
    Ok(fetched)
}

/// Where the cache keeps an entry: a stored file by its MD5, a reference by its URI and
/// version digest.
fn cache_object(cache: &Path, entry: &Entry) -> PathBuf {
    let objects = cache.join("artifacts").join("obj");
    let (kind, key) = match &entry.reference {
        None => {
            let md5 =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &entry.digest)
                    .map(|bytes| hex(&bytes))
                    .unwrap_or_else(|_| hex(&Md5::digest(entry.digest.as_bytes())));
            ("md5", md5)
        }
        Some(uri) => {
            let key = format!("{uri}\n{}", entry.digest);
            ("ref", hex(&Md5::digest(key.as_bytes())))
        }
    };
    objects.join(kind).join(&key[..2]).join(&key[2..])
}

fn is_cached(object: &Path, size: Option<u64>) -> bool {
    std::fs::metadata(object).is_ok_and(|meta| {
        size.is_none_or(|size| meta.len() == size)
            && meta.modified().ok() == Some(SystemTime::UNIX_EPOCH + CACHED_MTIME)
    })
}

fn is_s3(entry: &Entry) -> bool {
    entry
        .reference
        .as_deref()
        .is_some_and(|uri| uri.starts_with("s3://"))
}

/// Refuses to start a download the filesystem of `dir` has no room for.
fn check_space(dir: &Path, needed: u64, label: &str) -> Result<(), Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("{label}: cannot create {}", dir.display()), e))?;
    let Some(free) = free_space(dir) else {
        return Ok(());
    };
    if needed + SPACE_MARGIN > free {
        let mb = |bytes: u64| bytes.div_ceil(1 << 20);
        return Err(Error::io(
            format!("{label}: cannot download to {}", dir.display()),
            std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!(
                    "it needs {} MiB and only {} MiB are free (on Lambda, raise the function's \
                     ephemeral storage)",
                    mb(needed),
                    mb(free)
                ),
            ),
        ));
    }
    Ok(())
}

fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `stat` is written by statvfs before it is read.
    let stat = unsafe {
        if libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Fetches one entry into its cache object: into a file beside it, checked, then renamed.
async fn fetch(
    entry: &Entry,
    object: &Path,
    urls: &HashMap<String, String>,
    s3: Option<&s3::Client>,
    label: &str,
) -> Result<(), Error> {
    let dir = object.parent().expect("cache objects are in a directory");
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("{label}: cannot create {}", dir.display()), e))?;
    let part = dir.join(format!(
        ".{}.part-{}",
        object.file_name().unwrap_or_default().to_string_lossy(),
        &super::client_id()[..12]
    ));
    let result = fetch_to(entry, &part, urls, s3, label).await;
    let finished = result.and_then(|()| {
        seal(&part, object)
            .map_err(|e| Error::io(format!("{label}: cannot write {}", object.display()), e))
    });
    if finished.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    finished
}

/// Makes a complete, checked `part` the cache object: read-only, with the mtime that marks it
/// unchanged, renamed into place.
fn seal(part: &Path, object: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::File::options().write(true).open(part)?;
    file.set_modified(SystemTime::UNIX_EPOCH + CACHED_MTIME)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o444))?;
    std::fs::rename(part, object)
}

async fn fetch_to(
    entry: &Entry,
    part: &Path,
    urls: &HashMap<String, String>,
    s3: Option<&s3::Client>,
    label: &str,
) -> Result<(), Error> {
    let Some(uri) = &entry.reference else {
        let url = urls.get(&entry.path).ok_or_else(|| {
            Error::Comm(format!(
                "{label}: W&B gave no URL for its file {}",
                entry.path
            ))
        })?;
        let md5 = get_to(url, part, label, &entry.path).await?;
        if b64(&md5) != entry.digest {
            return Err(Error::Comm(format!(
                "{label}: its file {} arrived with MD5 {}, not {} as its manifest says; \
                 nothing was kept",
                entry.path,
                b64(&md5),
                entry.digest
            )));
        }
        return Ok(());
    };
    match uri.split_once("://").map(|(scheme, _)| scheme) {
        Some("s3") => {
            let client = s3.expect("an S3 client for S3 references");
            let (bucket, rest) = uri["s3://".len()..].split_once('/').unwrap_or((uri, ""));
            let version = entry.extra.iter().find_map(|(key, value)| match value {
                crate::core::values::Value::Str(v) if key == "versionID" => Some(v.as_str()),
                _ => None,
            });
            client
                .download(bucket, rest, version, Some(&entry.digest), part)
                .await
                .map_err(|e| e.within(&format!("{label}, {}", entry.path)))?;
            Ok(())
        }
        Some("http" | "https") => {
            get_to(uri, part, label, &entry.path).await?;
            Ok(())
        }
        Some("file") => {
            let local = reference::local_path(uri)
                .ok_or_else(|| Error::Usage(format!("{label}: {uri} is not a local path")))?;
            let copied = std::fs::File::open(&local)
                .and_then(|from| md5_copy(from, std::fs::File::create(part)?));
            let (md5, _) =
                copied.map_err(|e| Error::io(format!("{label}: cannot copy {uri}"), e))?;
            // Checksummed references hold the MD5 of the contents, and are checked; the
            // others hold their path's, and are taken as they are now.
            let unchanged = b64(&md5) == entry.digest
                || reference::unchecked_file_digest(&local).is_ok_and(|d| d == entry.digest);
            match unchanged {
                true => Ok(()),
                false => Err(Error::InvalidValue(format!(
                    "{label}: {uri} changed since it was referenced"
                ))),
            }
        }
        _ => Err(Error::Usage(format!(
            "{label}: its entry {} refers to {uri}, which cannot be downloaded",
            entry.path
        ))),
    }
}

/// Streams `url` (a signed storage URL, so without the API key) into `part`; returns the
/// MD5 of what arrived.
async fn get_to(url: &str, part: &Path, label: &str, path: &str) -> Result<[u8; 16], Error> {
    let failed = |why: String| Error::Comm(format!("{label}: cannot download {path}: {why}"));
    let mut response = transport::get_keyless(url).await.map_err(failed)?;
    // Hashing and writing run on a blocking thread per file, beside the runtime's one worker
    // that reads the network: MD5 is most of a download's CPU, and files hash in parallel.
    let (chunks, received) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    let target = part.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || hash_to_file(received, &target));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| failed(transport::error_chain(&e)))?
    {
        if chunks.send(chunk).await.is_err() {
            break; // The writer stopped: its error says why.
        }
    }
    drop(chunks);
    writer
        .await
        .map_err(|e| failed(format!("its writer stopped: {e}")))?
        .map_err(|e| Error::io(format!("{label}: cannot write {}", part.display()), e))
}

/// Writes the chunks `received` to `path`, in fewer, larger writes; returns their MD5.
fn hash_to_file(
    mut received: tokio::sync::mpsc::Receiver<impl AsRef<[u8]>>,
    path: &Path,
) -> std::io::Result<[u8; 16]> {
    let mut file = std::io::BufWriter::with_capacity(WRITE_BUFFER, std::fs::File::create(path)?);
    let mut hasher = Md5::new();
    while let Some(chunk) = received.blocking_recv() {
        hasher.update(chunk.as_ref());
        file.write_all(chunk.as_ref())?;
    }
    file.flush()?;
    Ok(hasher.finalize().into())
}

/// Puts the cached `object` at `target`: a hard link (no second copy of the bytes), or a
/// copy across filesystems; whatever was at `target` is replaced.
fn place(object: &Path, target: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(a), Ok(b)) = (std::fs::metadata(object), std::fs::metadata(target)) {
        if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
            return Ok(());
        }
    }
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(target);
    if std::fs::hard_link(object, target).is_err() {
        let part = target.with_extension("wandb-part");
        std::fs::copy(object, &part)?;
        std::fs::rename(&part, target)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_object_changed_in_place_is_no_longer_trusted() {
        let dir = std::env::temp_dir().join(format!("download-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let entry = Entry::file(
            "a.txt".into(),
            "b1kCrCNwJL3QwXbLkwY9xA==".into(),
            12,
            dir.clone(),
        );
        let object = cache_object(&dir, &entry);
        assert!(object.ends_with("artifacts/obj/md5/6f/5902ac237024bdd0c176cb93063dc4"));
        std::fs::create_dir_all(object.parent().unwrap()).unwrap();
        let part = dir.join("part");
        std::fs::write(&part, "hello world\n").unwrap();
        seal(&part, &object).unwrap();
        assert!(is_cached(&object, Some(12)) && !is_cached(&object, Some(13)));
        // Linked into a download directory, then replaced there: the cache keeps its own.
        let target = dir.join("root/sub/a.txt");
        place(&object, &target).unwrap();
        place(&object, &target).unwrap();
        std::fs::remove_file(&target).unwrap();
        std::fs::write(&target, "other").unwrap();
        place(&object, &target).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "hello world\n");
        // A write through the link (root may write a read-only file) changes its mtime.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&target)
            .unwrap()
            .write_all(b"!")
            .unwrap();
        assert!(!is_cached(&object, None));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn local_references_are_checked_only_when_logged_with_a_checksum() {
        let dir = std::env::temp_dir().join(format!("download-file-ref-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("data.csv");
        std::fs::write(&file, "a,b\n").unwrap();
        let uri = format!("file://{}", file.display());
        let no_env = |_: &str| None;
        let reference = |checksum| {
            super::super::reference::entries(&uri, None, checksum, None, &no_env).unwrap()
        };
        let (checked, unchecked) = (reference(true).remove(0), reference(false).remove(0));
        let part = dir.join("part");
        let fetch = |entry: &Entry| {
            let runtime = crate::core::runtime::runtime().unwrap();
            runtime.block_on(fetch_to(entry, &part, &HashMap::new(), None, "artifact a"))
        };
        assert!(fetch(&checked).is_ok() && fetch(&unchecked).is_ok());
        std::fs::write(&file, "a,b\n1,2\n").unwrap();
        let err = fetch(&checked).unwrap_err().to_string();
        assert!(err.contains("changed since it was referenced"), "{err}");
        fetch(&unchecked).unwrap();
        assert_eq!(std::fs::read_to_string(&part).unwrap(), "a,b\n1,2\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_download_larger_than_the_free_space_is_refused_first() {
        let dir = std::env::temp_dir();
        assert!(check_space(&dir, 1, "artifact e/p/a:v0").is_ok());
        let err = check_space(&dir, u64::MAX / 2, "artifact e/p/a:v0").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("artifact e/p/a:v0") && text.contains("MiB are free"),
            "{text}"
        );
    }
}
