//! A media file (an image, an HTML page, audio): what the user gave, until the writer stores
//! it, then where it was written; named by the sha256 of its bytes, as wandb names it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};

use crate::artifact::hex;
use crate::core::values::Value;
use crate::media::audio::Samples;
use crate::media::image::{ImageFile, Pixels};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Image,
    Html,
    Audio,
}

impl FileKind {
    /// The directory under `files/` wandb puts this kind in.
    pub fn subdir(self) -> &'static str {
        match self {
            FileKind::Image => "media/images",
            FileKind::Html => "media/html",
            FileKind::Audio => "media/audio",
        }
    }

    /// The `_type` of its JSON (and its column type in a table).
    pub fn type_name(self) -> &'static str {
        match self {
            FileKind::Image => "image-file",
            FileKind::Html => "html-file",
            FileKind::Audio => "audio-file",
        }
    }

    /// wandb's class name: what a table's run file holds in place of the value.
    pub fn class_name(self) -> &'static str {
        match self {
            FileKind::Image => "Image",
            FileKind::Html => "Html",
            FileKind::Audio => "Audio",
        }
    }
}

/// Where a media file's bytes come from.
#[derive(Debug)]
pub enum Content {
    Png(Pixels),
    Wav(Samples),
    /// Bytes as they are stored: an HTML page, or a file of the user's as it was when the
    /// value was made (as wandb reads it then), whatever happens to the file later.
    Bytes(Vec<u8>),
}

impl Content {
    fn bytes(self) -> Vec<u8> {
        match self {
            Content::Png(pixels) => pixels.to_png(),
            Content::Wav(samples) => samples.to_wav(),
            Content::Bytes(bytes) => bytes,
        }
    }
}

/// One media file: what the user gave, until the writer stores it; then where it is.
#[derive(Debug)]
pub struct MediaFile {
    pub kind: FileKind,
    /// The file name's extension, with its dot.
    pub ext: String,
    pub caption: Option<String>,
    /// Fields of its JSON after the common ones (an image's format, width, height).
    pub fields: Vec<(String, Value)>,
    state: Mutex<FileState>,
}

#[derive(Debug)]
enum FileState {
    Pending(Content),
    Stored(Stored),
    Failed(String),
}

/// A stored file: its digest, size and one place it was written to.
#[derive(Clone, Debug)]
pub struct Stored {
    pub sha256: String,
    pub size: u64,
    pub at: PathBuf,
}

impl MediaFile {
    pub fn new(
        kind: FileKind,
        ext: &str,
        caption: Option<String>,
        fields: Vec<(String, Value)>,
        content: Content,
    ) -> Self {
        Self {
            kind,
            ext: ext.to_string(),
            caption,
            fields,
            state: Mutex::new(FileState::Pending(content)),
        }
    }

    pub fn image(pixels: Pixels, caption: Option<String>) -> Self {
        let fields = image_fields("png", pixels.width, pixels.height);
        Self::new(
            FileKind::Image,
            ".png",
            caption,
            fields,
            Content::Png(pixels),
        )
    }

    pub fn image_file(file: ImageFile, caption: Option<String>) -> Self {
        let fields = image_fields(&file.format, file.width, file.height);
        let ext = format!(".{}", file.format);
        Self::new(
            FileKind::Image,
            &ext,
            caption,
            fields,
            Content::Bytes(file.bytes),
        )
    }

    /// The bytes of its content while it is not stored yet.
    pub fn pending_bytes(&self) -> usize {
        match &*self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            FileState::Pending(Content::Png(pixels)) => pixels.data.len(),
            FileState::Pending(Content::Wav(samples)) => samples.data.len() * 2,
            FileState::Pending(Content::Bytes(bytes)) => bytes.len(),
            _ => 0,
        }
    }

    /// Width and height of an image (from its JSON fields).
    pub fn dimension(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Writes the file as `<dir>/<name(sha256)>` (the first time, encoding it; later by
    /// copying the first file) and says where it is. Written under a temporary name and
    /// renamed, so a file that exists is whole.
    pub fn store(
        &self,
        dir: &Path,
        name: impl FnOnce(&str) -> String,
    ) -> Result<(String, Stored), String> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = std::mem::replace(&mut *state, FileState::Failed(String::new()));
        let (bytes, sha256) = match taken {
            FileState::Failed(err) => {
                *state = FileState::Failed(err.clone());
                return Err(err);
            }
            FileState::Stored(stored) => {
                let relpath = name(&stored.sha256);
                let dest = dir.join(&relpath);
                *state = FileState::Stored(stored.clone());
                if dest != stored.at {
                    let bytes = std::fs::read(&stored.at)
                        .map_err(|e| format!("cannot read {}: {e}", stored.at.display()))?;
                    write_whole(&dest, &bytes)?;
                }
                return Ok((relpath, Stored { at: dest, ..stored }));
            }
            FileState::Pending(content) => {
                let bytes = content.bytes();
                let sha256 = sha256_hex(&bytes);
                (bytes, sha256)
            }
        };
        let relpath = name(&sha256);
        let dest = dir.join(&relpath);
        if let Err(err) = write_whole(&dest, &bytes) {
            *state = FileState::Failed(err.clone());
            return Err(err);
        }
        let stored = Stored {
            sha256,
            size: bytes.len() as u64,
            at: dest,
        };
        *state = FileState::Stored(stored.clone());
        Ok((relpath, stored))
    }
}

fn image_fields(format: &str, width: u32, height: u32) -> Vec<(String, Value)> {
    vec![
        ("format".into(), Value::Str(format.into())),
        ("width".into(), Value::Int(width.into())),
        ("height".into(), Value::Int(height.into())),
    ]
}

/// Writes `bytes` to `path` through a temporary file in the same directory.
pub fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part");
    std::fs::write(&tmp, bytes).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// The hex sha256 that names a media file and is logged with it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}
