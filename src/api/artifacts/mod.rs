//! Artifacts over the W&B API: saving one as wandb-core does (`save`), and reading a logged
//! one back as the official SDK does (`fetch`): resolving a name, its manifest, its files'
//! URLs, and recording that a run used it.

use serde_json::Value as Json;

use crate::error::Error;

mod fetch;
mod save;

pub use fetch::{by_id, file_urls, manifest, record_use, resolve, LoggedArtifact};
pub use save::{save, MAX_PARALLEL_UPLOADS};

/// The string at `field` of an answer; its absence is an error naming the operation.
fn text(value: &Json, field: &str, operation: &str) -> Result<String, Error> {
    value[field]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::Comm(format!("{operation}: the answer has no {field}")))
}
