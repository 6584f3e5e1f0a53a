//! `wandb.Image`: pixels from an array or a PIL image, encoded as PNG, or an image file taken
//! as it is.

use std::path::Path;

use crate::media::array::Array;

/// wandb's limit: larger images are refused rather than encoded.
pub const MAX_PIXELS: u64 = 100_000_000;

/// The PIL modes an image is stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    L,
    LA,
    Rgb,
    Rgba,
}

impl Color {
    pub fn parse(mode: &str) -> Result<Self, String> {
        Ok(match mode {
            "L" => Color::L,
            "LA" => Color::LA,
            "RGB" => Color::Rgb,
            "RGBA" => Color::Rgba,
            other => {
                return Err(format!(
                    "unsupported image mode {other:?} (use L, LA, RGB or RGBA)"
                ))
            }
        })
    }

    pub fn channels(self) -> usize {
        match self {
            Color::L => 1,
            Color::LA => 2,
            Color::Rgb => 3,
            Color::Rgba => 4,
        }
    }

    fn png(self) -> png::ColorType {
        match self {
            Color::L => png::ColorType::Grayscale,
            Color::LA => png::ColorType::GrayscaleAlpha,
            Color::Rgb => png::ColorType::Rgb,
            Color::Rgba => png::ColorType::Rgba,
        }
    }
}

/// Decoded pixels, row by row, `color.channels()` bytes each.
#[derive(Clone, Debug)]
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub color: Color,
    pub data: Vec<u8>,
}

impl Pixels {
    /// Pixels of PIL's `tobytes()` in the given mode.
    pub fn new(width: u32, height: u32, color: Color, data: Vec<u8>) -> Result<Self, String> {
        check_size(width as u64, height as u64)?;
        let expected = width as usize * height as usize * color.channels();
        if data.len() != expected {
            return Err(format!(
                "{width}x{height} {color:?} pixels need {expected} bytes, got {}",
                data.len()
            ));
        }
        Ok(Self {
            width,
            height,
            color,
            data,
        })
    }

    /// An array as wandb reads it: singleton dimensions dropped, HxW grey, HxWx3 RGB, HxWx4
    /// RGBA, each element cast to a byte; then converted to `mode` if one is given.
    pub fn from_array(array: &Array, mode: Option<Color>) -> Result<Self, String> {
        let (height, width, color) = image_shape(&array.shape)?;
        let pixels = Self::new(width, height, color, array.to_u8()?)?;
        Ok(match mode {
            Some(mode) => pixels.convert(mode),
            None => pixels,
        })
    }

    /// PIL's `convert(mode)` between the grey and colour modes (ITU-R 601-2 luma for grey).
    pub fn convert(self, to: Color) -> Self {
        if self.color == to {
            return self;
        }
        let from = self.color;
        let mut data =
            Vec::with_capacity(self.width as usize * self.height as usize * to.channels());
        for px in self.data.chunks_exact(from.channels()) {
            let (rgb, alpha) = match from {
                Color::L => ([px[0]; 3], 255),
                Color::LA => ([px[0]; 3], px[1]),
                Color::Rgb => ([px[0], px[1], px[2]], 255),
                Color::Rgba => ([px[0], px[1], px[2]], px[3]),
            };
            let luma = || {
                let [r, g, b] = rgb.map(u32::from);
                ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8
            };
            match to {
                Color::L => data.push(luma()),
                Color::LA => data.extend([luma(), alpha]),
                Color::Rgb => data.extend(rgb),
                Color::Rgba => data.extend([rgb[0], rgb[1], rgb[2], alpha]),
            }
        }
        Self {
            color: to,
            data,
            ..self
        }
    }

    /// PNG bytes. Fast deflate with adaptive filters: about as small as zlib's default for
    /// photos, at a fraction of its CPU.
    pub fn to_png(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() / 2 + 64);
        let mut encoder = png::Encoder::new(&mut out, self.width, self.height);
        encoder.set_color(self.color.png());
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        encoder.set_filter(png::Filter::Adaptive);
        // Writing into a Vec cannot fail, and the data length was checked at construction.
        let mut writer = encoder.write_header().expect("PNG header into memory");
        writer
            .write_image_data(&self.data)
            .expect("PNG data into memory");
        writer.finish().expect("PNG end into memory");
        out
    }
}

/// Height, width and mode of an image array of this shape, checked before its elements are
/// read, so a refused image costs no copy.
pub fn image_shape(shape: &[usize]) -> Result<(u32, u32, Color), String> {
    let kept: Vec<usize> = shape.iter().copied().filter(|&d| d != 1).collect();
    let (height, width, color) = match kept[..] {
        [h, w] => (h, w, Color::L),
        [h, w, 3] => (h, w, Color::Rgb),
        [h, w, 4] => (h, w, Color::Rgba),
        _ => {
            return Err(format!(
                "unsupported array shape {shape:?} for an image (use HxW, HxWx1, HxWx3 or HxWx4)"
            ))
        }
    };
    check_size(width as u64, height as u64)?;
    Ok((height as u32, width as u32, color))
}

fn check_size(width: u64, height: u64) -> Result<(), String> {
    if width == 0 || height == 0 {
        return Err(format!("an image cannot be empty, got {width}x{height}"));
    }
    if width * height > MAX_PIXELS {
        return Err(format!(
            "an image is at most {} megapixels, got {width}x{height}",
            MAX_PIXELS / 1_000_000
        ));
    }
    if width > u32::MAX as u64 || height > u32::MAX as u64 {
        return Err(format!("image of {width}x{height} is too large"));
    }
    Ok(())
}

/// An image file logged as it is: its bytes as read when the value is made, its format its
/// extension, as wandb records it.
#[derive(Clone, Debug)]
pub struct ImageFile {
    pub bytes: Vec<u8>,
    pub format: String,
    pub width: u32,
    pub height: u32,
}

impl ImageFile {
    /// Reads the file; its size comes from its header, so no decoder is needed.
    pub fn open(path: &Path) -> Result<Self, String> {
        let format = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_string();
        if !matches!(
            format.to_ascii_lowercase().as_str(),
            "png" | "jpg" | "jpeg" | "gif" | "bmp" | "webp"
        ) {
            return Err(format!(
                "{} is not a PNG, JPEG, GIF, BMP or WebP file",
                path.display()
            ));
        }
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let size = imagesize::blob_size(&bytes).map_err(|_| {
            format!(
                "{} is not an image file wandb can show (empty, cut short or another format)",
                path.display()
            )
        })?;
        check_size(size.width as u64, size.height as u64)?;
        Ok(Self {
            bytes,
            format,
            width: size.width as u32,
            height: size.height as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::array::DType;

    #[test]
    fn arrays_become_modes_as_in_wandb() {
        let grey = Array::new(DType::U8, vec![2, 3, 1], vec![0, 1, 2, 3, 4, 5]).unwrap();
        let pixels = Pixels::from_array(&grey, None).unwrap();
        assert_eq!(
            (pixels.width, pixels.height, pixels.color),
            (3, 2, Color::L)
        );
        // numpy's squeeze: 1x2x3 is a 2x3 grey image, as in wandb.
        let squeezed = Array::new(DType::U8, vec![1, 2, 3], vec![10; 6]).unwrap();
        let pixels = Pixels::from_array(&squeezed, None).unwrap();
        assert_eq!(
            (pixels.width, pixels.height, pixels.color),
            (3, 2, Color::L)
        );
        let rgb = Array::new(DType::U8, vec![2, 2, 3], vec![10; 12]).unwrap();
        let pixels = Pixels::from_array(&rgb, Some(Color::L)).unwrap();
        assert_eq!((pixels.color, pixels.data.len()), (Color::L, 4));
        let two_channels = Array::new(DType::U8, vec![2, 2, 2], vec![0; 8]).unwrap();
        assert!(Pixels::from_array(&two_channels, None)
            .unwrap_err()
            .contains("unsupported array shape"));
    }

    #[test]
    fn png_round_trips() {
        let pixels = Pixels::new(2, 1, Color::Rgb, vec![255, 0, 0, 0, 0, 255]).unwrap();
        let png_bytes = pixels.to_png();
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        assert_eq!(buf, vec![255, 0, 0, 0, 0, 255]);
    }

    #[test]
    fn converts_as_pil() {
        let pixels = Pixels::new(1, 1, Color::Rgb, vec![255, 128, 0]).unwrap();
        // PIL: Image.new("RGB", (1, 1), (255, 128, 0)).convert("L").getpixel((0, 0)) == 151
        assert_eq!(pixels.clone().convert(Color::L).data, vec![151]);
        assert_eq!(pixels.convert(Color::Rgba).data, vec![255, 128, 0, 255]);
    }

    #[test]
    fn refuses_huge_and_empty_images() {
        assert!(Pixels::new(20_000, 10_000, Color::L, Vec::new())
            .unwrap_err()
            .contains("megapixels"));
        assert!(Pixels::new(0, 1, Color::L, Vec::new()).is_err());
    }
}
