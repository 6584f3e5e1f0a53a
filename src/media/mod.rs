//! Rich values as wandb logs them: images, HTML, audio, tables and histograms. Constructors
//! check the input (the caller gets the error); files are encoded and stored by the run's
//! writer (`store`), off the caller's thread.

pub mod array;
pub mod audio;
pub mod file;
pub mod histogram;
pub mod html;
pub mod image;
pub mod store;
pub mod table;

use std::sync::Arc;

use crate::media::file::MediaFile;
use crate::media::table::Table;

impl Media {
    /// The bytes it holds until the writer has stored it.
    pub fn pending_bytes(&self) -> usize {
        match self {
            Media::File(file) => file.pending_bytes(),
            Media::Files(files) => files.iter().map(|f| f.pending_bytes()).sum(),
            Media::Table(table) => table.pending_bytes(),
            Media::Relogged { .. } => 0,
        }
    }
}

/// A value that the writer stores as files: one file, a list of them, or a table.
#[derive(Clone, Debug)]
pub enum Media {
    File(Arc<MediaFile>),
    /// A list of images (or of HTML pages) logged under one key, as wandb groups them.
    Files(Vec<Arc<MediaFile>>),
    Table(Arc<Table>),
    /// A table logged again after rows were added: wandb refers to what was logged first,
    /// with the row count it has now.
    Relogged {
        table: Arc<Table>,
        nrows: usize,
    },
}
