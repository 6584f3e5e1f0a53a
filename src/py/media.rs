//! The Python edge of media: reads numpy arrays through `__array_interface__` (numpy is
//! never imported), PIL pixels through `tobytes()`, and hands owned data to `media`.
//! Checks and conversions run with the GIL released.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::core::values::Value;
use crate::error::Error;
use crate::media::array::{Array, DType};
use crate::media::audio::Samples;
use crate::media::histogram::{Element, Histogram, MAX_BINS};
use crate::media::image::{image_shape, Color, ImageFile, Pixels};
use crate::media::table::{Cell, Table};
use crate::media::{Content, FileKind, Media, MediaFile};
use crate::py::convert;

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
            _ => Err(invalid("only a table can be logged again with more rows").into()),
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

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidValue(reason.into())
}

fn file(file: MediaFile) -> MediaCore {
    MediaCore {
        media: Media::File(Arc::new(file)),
    }
}

/// What `__array_interface__` tells of an array: its element type, shape, and the address
/// of its elements when they are contiguous in C order.
struct Interface {
    dtype: DType,
    shape: Vec<usize>,
    address: Option<usize>,
}

impl Interface {
    fn of(obj: &Bound<'_, PyAny>) -> Result<Self, Error> {
        let interface = obj.getattr("__array_interface__")?;
        let interface = interface
            .cast::<PyDict>()
            .map_err(|_| invalid("__array_interface__ is not a dict"))?;
        let get = |name: &str| -> Result<Bound<'_, PyAny>, Error> {
            interface
                .get_item(name)?
                .ok_or_else(|| invalid(format!("__array_interface__ has no {name:?}")))
        };
        let dtype = DType::parse(&get("typestr")?.extract::<String>()?).map_err(invalid)?;
        let shape: Vec<usize> = get("shape")?.extract()?;
        let contiguous = interface.get_item("strides")?.is_none_or(|s| s.is_none());
        let address = match get("data")?.cast::<PyTuple>() {
            Ok(pointer) if contiguous => Some(pointer.get_item(0)?.extract::<usize>()?),
            _ => None,
        };
        Ok(Self {
            dtype,
            shape,
            address,
        })
    }

    fn byte_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size()
    }

    /// The elements in place. SAFETY: the caller keeps the array alive meanwhile (numpy
    /// then cannot free or move them: resizing an array that is referenced is refused).
    unsafe fn bytes(&self) -> Option<&[u8]> {
        match (self.address, self.byte_len()) {
            (_, 0) => Some(&[]),
            (Some(address), len) => Some(std::slice::from_raw_parts(address as *const u8, len)),
            (None, _) => None,
        }
    }
}

/// A numpy array's type, shape and bytes (C order), copied while the GIL is held.
pub fn read_array(obj: &Bound<'_, PyAny>) -> Result<Array, Error> {
    let interface = Interface::of(obj)?;
    // SAFETY: `obj` is borrowed for the whole copy.
    let bytes = match unsafe { interface.bytes() } {
        Some(bytes) => bytes.to_vec(),
        // Strided views (and exotic exporters): numpy's own C-order copy.
        None => obj
            .call_method0("tobytes")?
            .cast::<PyBytes>()
            .map_err(|_| invalid("tobytes() did not return bytes"))?
            .as_bytes()
            .to_vec(),
    };
    Array::new(interface.dtype, interface.shape, bytes).map_err(invalid)
}

pub fn is_array(obj: &Bound<'_, PyAny>) -> bool {
    obj.hasattr("__array_interface__").unwrap_or(false)
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
            invalid(format!(
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
    let mode = mode.map(Color::parse).transpose().map_err(invalid)?;
    image_shape(&Interface::of(array)?.shape).map_err(invalid)?;
    let array = read_array(array)?;
    let pixels = py
        .detach(|| Pixels::from_array(&array, mode))
        .map_err(invalid)?;
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
    let color = Color::parse(mode).map_err(invalid)?;
    let pixels = Pixels::new(width, height, color, data).map_err(invalid)?;
    Ok(file(MediaFile::image(pixels, caption)))
}

#[pyfunction]
#[pyo3(signature = (path, caption=None))]
pub fn image_from_file(
    py: Python<'_>,
    path: PathBuf,
    caption: Option<String>,
) -> PyResult<MediaCore> {
    let image = py.detach(|| ImageFile::open(&path)).map_err(invalid)?;
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
        .map_err(invalid)?;
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
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
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
/// A histogram of float elements read where they are, when they are aligned.
fn in_place<T: Element + Sync>(
    py: Python<'_>,
    bytes: &[u8],
    num_bins: usize,
) -> Option<Result<Result<Histogram, String>, Error>> {
    // SAFETY: every bit pattern is a valid float; align_to only hands out aligned ones.
    match unsafe { bytes.align_to::<T>() } {
        ([], floats, []) => Some(Ok(py.detach(|| Histogram::from_data(floats, num_bins)))),
        _ => None,
    }
}

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
            invalid(format!(
                "num_bins must be a whole number from 1 to {MAX_BINS}, got {}",
                num_bins.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        })?;
    let histogram = if is_array(sequence) {
        let interface = Interface::of(sequence)?;
        // SAFETY: `sequence` is borrowed for the whole call. As in numpy's own loops, the
        // elements are read in place with the GIL released: a float array is not copied.
        let bytes = unsafe { interface.bytes() };
        match (interface.dtype, bytes) {
            (DType::F64, Some(bytes)) => in_place::<f64>(py, bytes, num_bins),
            (DType::F32, Some(bytes)) => in_place::<f32>(py, bytes, num_bins),
            _ => None,
        }
        .unwrap_or_else(|| {
            let array = read_array(sequence)?;
            Ok(match array.dtype {
                DType::F32 => {
                    let floats: Vec<f32> = array.to_f64().iter().map(|&x| x as f32).collect();
                    py.detach(|| Histogram::from_data(&floats, num_bins))
                }
                _ => py.detach(|| Histogram::from_data(&array.to_f64(), num_bins)),
            })
        })?
    } else {
        let data = numbers(py, sequence)?;
        py.detach(|| Histogram::from_data(&data, num_bins))
    }
    .map_err(invalid)?;
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
    let histogram = Histogram::from_counts(counts, numbers(py, bins)?).map_err(invalid)?;
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
            _ => Err(invalid("table columns must be strings or ints")),
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut cells = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let row = row
            .try_iter()
            .map_err(|_| invalid(format!("row {i} of the table is not a sequence")))?
            .enumerate()
            .map(|(j, cell)| convert::table_cell(&cell?).map_err(|e| at_cell(e, i, columns.get(j))))
            .collect::<Result<Vec<_>, Error>>()?;
        cells.push(row);
    }
    let table = py
        .detach(|| Table::new(columns, cells, allow_mixed_types))
        .map_err(invalid)?;
    Ok(MediaCore {
        media: Media::Table(Arc::new(table)),
    })
}

fn at_cell(err: Error, row: usize, column: Option<&Value>) -> Error {
    let column = column.map_or_else(|| "(extra)".to_string(), Value::to_json);
    match err {
        Error::InvalidValue(reason) | Error::UnsupportedValue { reason, .. } => {
            invalid(format!("row {row}, column {column}: {reason}"))
        }
        other => other,
    }
}
