//! The constructors of media values behind `Image`, `Table`, `Histogram`, `Html` and `Audio`:
//! numpy arrays come through `py::arrays`, PIL pixels through `tobytes()`; owned data goes
//! to `media`. Checks and conversions run with the GIL released.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::core::values::Value;
use crate::error::Error;
use crate::media::audio::Samples;
use crate::media::file::{Content, FileKind, MediaFile};
use crate::media::histogram::{Histogram, MAX_BINS};
use crate::media::image::{image_shape, Color, ImageFile, Pixels};
use crate::media::table::{Cell, Table};
use crate::media::Media;
use crate::py::arrays::{self, is_array, read_array, Interface};
use crate::py::convert;
use crate::py::media_core::MediaCore;

fn file(file: MediaFile) -> MediaCore {
    MediaCore {
        media: Media::File(Arc::new(file)),
    }
}

/// A sequence of numbers (a numpy array or any Python iterable of them) as f64.
fn numbers(py: Python<'_>, obj: &Bound<'_, PyAny>) -> Result<Vec<f64>, Error> {
    if is_array(obj) {
        let array = read_array(obj)?;
        return Ok(py.detach(|| array.to_f64()));
    }
    let mut out = Vec::new();
    for (i, item) in obj.try_iter()?.enumerate() {
        let item = item?;
        out.push(item.extract::<f64>().map_err(|_| {
            Error::invalid(format!(
                "item {i} of the sequence is not a number: {}",
                item.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        })?);
    }
    Ok(out)
}

#[pyfunction]
#[pyo3(signature = (array, mode=None, caption=None))]
pub fn image_from_array(
    py: Python<'_>,
    array: &Bound<'_, PyAny>,
    mode: Option<&str>,
    caption: Option<String>,
) -> PyResult<MediaCore> {
    let mode = mode.map(Color::parse).transpose().map_err(Error::invalid)?;
    image_shape(&Interface::of(array)?.shape).map_err(Error::invalid)?;
    let array = read_array(array)?;
    let pixels = py
        .detach(|| Pixels::from_array(&array, mode))
        .map_err(Error::invalid)?;
    Ok(file(MediaFile::image(pixels, caption)))
}

#[pyfunction]
#[pyo3(signature = (width, height, mode, data, caption=None))]
pub fn image_from_pixels(
    width: u32,
    height: u32,
    mode: &str,
    data: Vec<u8>,
    caption: Option<String>,
) -> PyResult<MediaCore> {
    let color = Color::parse(mode).map_err(Error::invalid)?;
    let pixels = Pixels::new(width, height, color, data).map_err(Error::invalid)?;
    Ok(file(MediaFile::image(pixels, caption)))
}

#[pyfunction]
#[pyo3(signature = (path, caption=None))]
pub fn image_from_file(
    py: Python<'_>,
    path: PathBuf,
    caption: Option<String>,
) -> PyResult<MediaCore> {
    let image = py
        .detach(|| ImageFile::open(&path))
        .map_err(Error::invalid)?;
    Ok(file(MediaFile::image_file(image, caption)))
}

#[pyfunction]
#[pyo3(signature = (text, inject=true))]
pub fn html(text: &str, inject: bool) -> MediaCore {
    let text = if inject {
        crate::media::html::inject_head(text)
    } else {
        text.to_string()
    };
    file(MediaFile::new(
        FileKind::Html,
        ".html",
        None,
        Vec::new(),
        Content::Bytes(text.into_bytes()),
    ))
}

#[pyfunction]
#[pyo3(signature = (array, sample_rate, caption=None))]
pub fn audio_from_array(
    py: Python<'_>,
    array: &Bound<'_, PyAny>,
    sample_rate: u32,
    caption: Option<String>,
) -> PyResult<MediaCore> {
    let array = read_array(array)?;
    let samples = py
        .detach(|| Samples::from_array(&array, sample_rate))
        .map_err(Error::invalid)?;
    Ok(file(MediaFile::new(
        FileKind::Audio,
        ".wav",
        caption,
        Vec::new(),
        Content::Wav(samples),
    )))
}

#[pyfunction]
#[pyo3(signature = (path, caption=None))]
pub fn audio_from_file(
    py: Python<'_>,
    path: PathBuf,
    caption: Option<String>,
) -> PyResult<MediaCore> {
    let bytes = py
        .detach(|| std::fs::read(&path))
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", path.display())))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| format!(".{e}"))
        .unwrap_or_default();
    Ok(file(MediaFile::new(
        FileKind::Audio,
        &ext,
        caption,
        Vec::new(),
        Content::Bytes(bytes),
    )))
}

/// `(values, bins)` of a histogram of `sequence`.
#[pyfunction]
pub fn histogram(
    py: Python<'_>,
    sequence: &Bound<'_, PyAny>,
    num_bins: &Bound<'_, PyAny>,
) -> PyResult<(Vec<i64>, Vec<f64>)> {
    let num_bins = num_bins
        .extract::<i64>()
        .ok()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n >= 1)
        .ok_or_else(|| {
            Error::invalid(format!(
                "num_bins must be a whole number from 1 to {MAX_BINS}, got {}",
                num_bins.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        })?;
    let histogram = if is_array(sequence) {
        arrays::histogram(py, sequence, num_bins)?
    } else {
        let data = numbers(py, sequence)?;
        py.detach(|| Histogram::from_data(&data, num_bins))
            .map_err(Error::invalid)?
    };
    Ok((histogram.values, histogram.bins))
}

/// `(values, bins)` given as numpy's histogram, checked as wandb checks them.
#[pyfunction]
pub fn histogram_from_counts(
    py: Python<'_>,
    values: &Bound<'_, PyAny>,
    bins: &Bound<'_, PyAny>,
) -> PyResult<(Vec<i64>, Vec<f64>)> {
    let counts = numbers(py, values)?.into_iter().map(|v| v as i64).collect();
    let histogram = Histogram::from_counts(counts, numbers(py, bins)?).map_err(Error::invalid)?;
    Ok((histogram.values, histogram.bins))
}

/// A table of `rows` (lists of cells) under `columns`, checked as `add_data` checks rows.
#[pyfunction]
#[pyo3(signature = (columns, rows, allow_mixed_types=false))]
pub fn table(
    py: Python<'_>,
    columns: &Bound<'_, PyList>,
    rows: &Bound<'_, PyList>,
    allow_mixed_types: bool,
) -> PyResult<MediaCore> {
    let columns = columns
        .iter()
        .map(|c| match convert::table_cell(&c)? {
            Cell::Value(v @ (Value::Str(_) | Value::Int(_))) => Ok(v),
            _ => Err(Error::invalid("table columns must be strings or ints")),
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut cells = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let row = row
            .try_iter()
            .map_err(|_| Error::invalid(format!("row {i} of the table is not a sequence")))?
            .enumerate()
            .map(|(j, cell)| convert::table_cell(&cell?).map_err(|e| at_cell(e, i, columns.get(j))))
            .collect::<Result<Vec<_>, Error>>()?;
        cells.push(row);
    }
    let table = py
        .detach(|| Table::new(columns, cells, allow_mixed_types))
        .map_err(Error::invalid)?;
    Ok(MediaCore {
        media: Media::Table(Arc::new(table)),
    })
}

fn at_cell(err: Error, row: usize, column: Option<&Value>) -> Error {
    let column = column.map_or_else(|| "(extra)".to_string(), Value::to_json);
    match err {
        Error::InvalidValue(reason) | Error::UnsupportedValue { reason, .. } => {
            Error::invalid(format!("row {row}, column {column}: {reason}"))
        }
        other => other,
    }
}
