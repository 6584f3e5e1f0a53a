//! A numeric array handed over from Python (numpy's `__array_interface__`, read by
//! `py::media`): its element type, shape and C-order bytes, and the element conversions the
//! media types need.

/// numpy element types we read, little-endian as on every Lambda architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    Bool,
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
}

impl DType {
    /// From numpy's type string (`|u1`, `<f8`, ...).
    pub fn parse(typestr: &str) -> Result<Self, String> {
        let bytes = typestr.as_bytes();
        if bytes.len() < 3 || bytes[0] == b'>' {
            return Err(format!("unsupported array type {typestr:?}"));
        }
        Ok(match &typestr[1..] {
            "b1" => DType::Bool,
            "u1" => DType::U8,
            "i1" => DType::I8,
            "u2" => DType::U16,
            "i2" => DType::I16,
            "u4" => DType::U32,
            "i4" => DType::I32,
            "u8" => DType::U64,
            "i8" => DType::I64,
            "f4" => DType::F32,
            "f8" => DType::F64,
            _ => {
                return Err(format!(
                    "unsupported array dtype {typestr:?} (use a numeric or bool array)"
                ))
            }
        })
    }

    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::U16 | DType::I16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }
}

#[derive(Clone, Debug)]
pub struct Array {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// The elements in C order.
    pub bytes: Vec<u8>,
}

impl Array {
    pub fn new(dtype: DType, shape: Vec<usize>, bytes: Vec<u8>) -> Result<Self, String> {
        let len = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if len.and_then(|n| n.checked_mul(dtype.size())) != Some(bytes.len()) {
            return Err(format!(
                "array of shape {shape:?} does not match its {} bytes",
                bytes.len()
            ));
        }
        Ok(Self {
            dtype,
            shape,
            bytes,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Each element as f64, as numpy casts it.
    pub fn to_f64(&self) -> Vec<f64> {
        let b = &self.bytes;
        macro_rules! each {
            ($t:ty) => {
                b.chunks_exact(std::mem::size_of::<$t>())
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk size")) as f64)
                    .collect()
            };
        }
        match self.dtype {
            DType::Bool => b.iter().map(|&x| f64::from(x != 0)).collect(),
            DType::U8 => b.iter().map(|&x| f64::from(x)).collect(),
            DType::I8 => b.iter().map(|&x| f64::from(x as i8)).collect(),
            DType::U16 => each!(u16),
            DType::I16 => each!(i16),
            DType::U32 => each!(u32),
            DType::I32 => each!(i32),
            DType::U64 => each!(u64),
            DType::I64 => each!(i64),
            DType::F32 => each!(f32),
            DType::F64 => each!(f64),
        }
    }

    /// Each element as a byte, as `astype(numpy.uint8)` makes it: integers wrap around,
    /// floats are truncated first. NaN and infinities have no byte: an error.
    pub fn to_u8(&self) -> Result<Vec<u8>, String> {
        if self.dtype == DType::U8 || self.dtype == DType::Bool || self.dtype == DType::I8 {
            return Ok(self.bytes.clone());
        }
        let values = self.to_f64();
        if self.dtype.is_float() && values.iter().any(|v| !v.is_finite()) {
            return Err("pixel values must be finite, found NaN or infinity".into());
        }
        Ok(values.iter().map(|&v| (v as i64) as u8).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numpy_type_strings_and_checks_sizes() {
        assert_eq!(DType::parse("|u1").unwrap(), DType::U8);
        assert_eq!(DType::parse("<f8").unwrap(), DType::F64);
        assert!(DType::parse("<c16").is_err());
        assert!(DType::parse(">f8").is_err());
        assert!(Array::new(DType::F32, vec![2, 2], vec![0; 15]).is_err());
    }

    #[test]
    fn converts_as_numpy_casts() {
        let floats: Vec<u8> = [1.9f64, 255.0, 256.5]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        let array = Array::new(DType::F64, vec![3], floats).unwrap();
        assert_eq!(array.to_u8().unwrap(), vec![1, 255, 0]);
        let nan = Array::new(DType::F32, vec![1], f32::NAN.to_le_bytes().to_vec()).unwrap();
        assert!(nan.to_u8().is_err());
        let ints: Vec<u8> = [-1i16, 300].iter().flat_map(|i| i.to_le_bytes()).collect();
        let array = Array::new(DType::I16, vec![2], ints).unwrap();
        assert_eq!(array.to_u8().unwrap(), vec![255, 44]);
        assert_eq!(array.to_f64(), vec![-1.0, 300.0]);
    }
}
