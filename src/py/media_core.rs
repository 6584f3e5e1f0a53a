//! `MediaCore`: the native value a Python media object hands to `log()`.

use pyo3::prelude::*;

use crate::core::values::Value;
use crate::error::Error;
use crate::media::Media;

/// A media value built from the user's data, held by the Python `Image`, `Table`, ...
#[pyclass(module = "wandb_nexus._core", name = "MediaCore", frozen)]
pub struct MediaCore {
    pub(crate) media: Media,
}

#[pymethods]
impl MediaCore {
    /// This table again, now of `nrows` rows: logged, it refers to what was logged first.
    fn relogged(&self, nrows: usize) -> PyResult<MediaCore> {
        match &self.media {
            Media::Table(table) | Media::Relogged { table, .. } => Ok(MediaCore {
                media: Media::Relogged {
                    table: table.clone(),
                    nrows,
                },
            }),
            _ => Err(Error::invalid("only a table can be logged again with more rows").into()),
        }
    }

    /// Width and height of an image (None for other media).
    #[getter]
    fn size(&self) -> Option<(i64, i64)> {
        let Media::File(file) = &self.media else {
            return None;
        };
        match (file.dimension("width"), file.dimension("height")) {
            (Some(Value::Int(w)), Some(Value::Int(h))) => Some((*w, *h)),
            _ => None,
        }
    }
}
