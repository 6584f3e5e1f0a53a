//! numpy arrays read through `__array_interface__`, so numpy is never imported.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use crate::error::Error;
use crate::media::array::{Array, DType};
use crate::media::histogram::{Element, Histogram};

/// What `__array_interface__` tells of an array: its element type, shape, and the address
/// of its elements when they are contiguous in C order.
pub struct Interface {
    pub dtype: DType,
    pub shape: Vec<usize>,
    address: Option<usize>,
}

impl Interface {
    pub fn of(obj: &Bound<'_, PyAny>) -> Result<Self, Error> {
        let interface = obj.getattr("__array_interface__")?;
        let interface = interface
            .cast::<PyDict>()
            .map_err(|_| Error::invalid("__array_interface__ is not a dict"))?;
        let get = |name: &str| -> Result<Bound<'_, PyAny>, Error> {
            interface
                .get_item(name)?
                .ok_or_else(|| Error::invalid(format!("__array_interface__ has no {name:?}")))
        };
        let dtype = DType::parse(&get("typestr")?.extract::<String>()?).map_err(Error::invalid)?;
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

    /// The elements in place, when contiguous.
    ///
    /// # Safety
    ///
    /// The caller keeps the array alive while it uses them (numpy then cannot free or move
    /// them: resizing an array that is referenced is refused).
    pub unsafe fn bytes(&self) -> Option<&[u8]> {
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
            .map_err(|_| Error::invalid("tobytes() did not return bytes"))?
            .as_bytes()
            .to_vec(),
    };
    Array::new(interface.dtype, interface.shape, bytes).map_err(Error::invalid)
}

pub fn is_array(obj: &Bound<'_, PyAny>) -> bool {
    obj.hasattr("__array_interface__").unwrap_or(false)
}

/// A histogram of an array's elements as `numpy.histogram` makes it (float32 binned in
/// float32). Contiguous float elements are read in place with the GIL released, as numpy's
/// own loops read them: they are not copied.
pub fn histogram(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    num_bins: usize,
) -> Result<Histogram, Error> {
    let interface = Interface::of(obj)?;
    // SAFETY: `obj` is borrowed for the whole call.
    let in_place = match (interface.dtype, unsafe { interface.bytes() }) {
        (DType::F64, Some(bytes)) => in_place::<f64>(py, bytes, num_bins),
        (DType::F32, Some(bytes)) => in_place::<f32>(py, bytes, num_bins),
        _ => None,
    };
    let binned = match in_place {
        Some(binned) => binned,
        None => {
            let array = read_array(obj)?;
            let values = array.to_f64();
            py.detach(|| match array.dtype {
                DType::F32 => {
                    let floats: Vec<f32> = values.iter().map(|&x| x as f32).collect();
                    Histogram::from_data(&floats, num_bins)
                }
                _ => Histogram::from_data(&values, num_bins),
            })
        }
    };
    binned.map_err(Error::invalid)
}

/// A histogram of float elements where they are, when they are aligned.
fn in_place<T: Element + Sync>(
    py: Python<'_>,
    bytes: &[u8],
    num_bins: usize,
) -> Option<Result<Histogram, String>> {
    // SAFETY: every bit pattern is a valid float; align_to only hands out aligned ones.
    match unsafe { bytes.align_to::<T>() } {
        ([], floats, []) => Some(py.detach(|| Histogram::from_data(floats, num_bins))),
        _ => None,
    }
}
