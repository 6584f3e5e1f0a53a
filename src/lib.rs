//! wandb-nexus: a Weights & Biases client core for AWS Lambda. This file only declares the
//! Python module (with the `python` feature); each concern lives in its own module. Without
//! the feature the crate is plain Rust: what the external Lambda extension links.

mod alloc;
pub mod api;
pub mod artifact;
pub mod aws;
pub mod core;
pub mod error;
pub mod lambda;
pub mod log;
pub mod media;
#[cfg(feature = "python")]
pub mod py;

#[cfg(feature = "python")]
use pyo3::prelude::*;

/// The private native module; `wandb_nexus` re-exports what users need.
#[cfg(feature = "python")]
#[pymodule(gil_used = false)]
mod _core {
    #[pymodule_export]
    use crate::py::run::{init, netrc_key, sync, verify_login, RunCore};

    #[pymodule_export]
    use crate::py::lambda::{
        after_restore, before_snapshot, deliver_invocation, start_lambda_delivery,
    };

    #[pymodule_export]
    use crate::py::media::{
        audio_from_array, audio_from_file, histogram, histogram_from_counts, html,
        image_from_array, image_from_file, image_from_pixels, table,
    };

    #[pymodule_export]
    use crate::py::media_core::MediaCore;

    #[pymodule_export]
    use crate::py::artifact::{ArtifactCore, LoggedArtifactCore};

    #[pymodule_export]
    #[allow(non_upper_case_globals)]
    const __version__: &str = env!("CARGO_PKG_VERSION");
}
