//! `wandb.Audio` from samples: a 16-bit PCM WAV file, the format wandb's soundfile writes.

use std::io::Cursor;

use crate::media::array::{Array, DType};

#[derive(Clone, Debug)]
pub struct Samples {
    pub rate: u32,
    pub channels: u16,
    /// Interleaved 16-bit samples.
    pub data: Vec<i16>,
}

impl Samples {
    /// A 1-D array is mono; a 2-D array is frames x channels. Floats are full scale at 1.0,
    /// scaled and clipped as libsndfile (wandb's writer) does; int16 is taken as it is.
    pub fn from_array(array: &Array, rate: u32) -> Result<Self, String> {
        if rate == 0 {
            return Err("sample_rate must be positive".into());
        }
        let channels = match array.shape[..] {
            [_] => 1,
            [_, c] if (1..=64).contains(&c) => c as u16,
            _ => {
                return Err(format!(
                    "unsupported array shape {:?} for audio (use frames or frames x channels)",
                    array.shape
                ))
            }
        };
        if array.is_empty() {
            return Err("audio needs at least one sample".into());
        }
        let data = match array.dtype {
            DType::I16 => array
                .bytes
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect(),
            DType::F32 | DType::F64 => {
                let values = array.to_f64();
                if values.iter().any(|v| !v.is_finite()) {
                    return Err("audio samples must be finite, found NaN or infinity".into());
                }
                values
                    .iter()
                    .map(|v| (v * 32768.0).floor().clamp(-32768.0, 32767.0) as i16)
                    .collect()
            }
            other => {
                return Err(format!(
                    "unsupported audio dtype {other:?} (use float32, float64 or int16)"
                ))
            }
        };
        Ok(Self {
            rate,
            channels,
            data,
        })
    }

    pub fn to_wav(&self) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: self.channels,
            sample_rate: self.rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = Cursor::new(Vec::with_capacity(44 + self.data.len() * 2));
        // Writing 16-bit samples into memory cannot fail.
        let mut writer = hound::WavWriter::new(&mut out, spec).expect("WAV header into memory");
        let mut samples = writer.get_i16_writer(self.data.len() as u32);
        for &s in &self.data {
            samples.write_sample(s);
        }
        samples.flush().expect("WAV samples into memory");
        writer.finalize().expect("WAV end into memory");
        out.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_become_pcm16_wav() {
        let bytes: Vec<u8> = [0.0f64, 0.5, -1.0, 2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let array = Array::new(DType::F64, vec![4], bytes).unwrap();
        let samples = Samples::from_array(&array, 8000).unwrap();
        assert_eq!(samples.data, vec![0, 16384, -32768, 32767]);
        let wav = samples.to_wav();
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(wav.len(), 44 + 8);
        let reader = hound::WavReader::new(Cursor::new(wav)).unwrap();
        assert_eq!(reader.spec().sample_rate, 8000);
    }

    #[test]
    fn refuses_bad_audio() {
        let nan = Array::new(DType::F32, vec![1], f32::NAN.to_le_bytes().to_vec()).unwrap();
        assert!(Samples::from_array(&nan, 8000)
            .unwrap_err()
            .contains("finite"));
        let cube = Array::new(DType::I16, vec![1, 1, 1], vec![0, 0]).unwrap();
        assert!(Samples::from_array(&cube, 8000).is_err());
    }
}
