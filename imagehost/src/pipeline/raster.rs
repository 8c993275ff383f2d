//! Decoded pixels (8-bit gray, RGB or RGBA) and the resample step on them (`fast_image_resize`,
//! Lanczos3, alpha-aware).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;

use super::geometry::Plan;
use super::PipelineError;

#[derive(Debug, Clone)]
pub struct Raster {
    pub width: u32,
    pub height: u32,
    /// 1 (gray), 3 (RGB) or 4 (RGBA).
    pub channels: u8,
    pub data: Vec<u8>,
}

impl Raster {
    fn pixel_type(&self) -> PixelType {
        match self.channels {
            1 => PixelType::U8,
            3 => PixelType::U8x3,
            _ => PixelType::U8x4,
        }
    }

    /// Applies `plan` (source crop, then scale). A plan that changes nothing returns the input.
    pub fn resize(self, plan: &Plan) -> Result<Raster, PipelineError> {
        if plan.is_identity((self.width, self.height)) {
            return Ok(self);
        }
        self.resized(plan)
    }

    /// `plan` applied to these pixels, leaving them as they are (an animation's canvas).
    pub fn resized(&self, plan: &Plan) -> Result<Raster, PipelineError> {
        let pt = self.pixel_type();
        let (w, h) = (self.width, self.height);
        let src = ImageRef::new(w, h, &self.data, pt).map_err(|e| PipelineError::Corrupt(e.to_string()))?;
        let mut dst = Image::new(plan.width, plan.height, pt);
        let (l, t, cw, ch) = plan.crop;
        let opts = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
            .crop(l, t, cw.min(w as f64 - l), ch.min(h as f64 - t));
        Resizer::new()
            .resize(&src, &mut dst, &opts)
            .map_err(|e| PipelineError::Corrupt(format!("resize: {e}")))?;
        Ok(Raster {
            width: plan.width,
            height: plan.height,
            channels: self.channels,
            data: dst.into_vec(),
        })
    }

    /// From `image`'s types; 16-bit and float images become 8-bit.
    pub fn from_dynamic(img: DynamicImage) -> Raster {
        let (width, height) = (img.width(), img.height());
        let (channels, data) = match img {
            DynamicImage::ImageLuma8(b) => (1, b.into_raw()),
            DynamicImage::ImageRgb8(b) => (3, b.into_raw()),
            DynamicImage::ImageRgba8(b) => (4, b.into_raw()),
            other if other.color().has_alpha() => (4, other.to_rgba8().into_raw()),
            other if other.color().channel_count() == 1 => (1, other.to_luma8().into_raw()),
            other => (3, other.to_rgb8().into_raw()),
        };
        Raster {
            width,
            height,
            channels,
            data,
        }
    }

    pub fn into_dynamic(self) -> Option<DynamicImage> {
        let (w, h) = (self.width, self.height);
        Some(match self.channels {
            1 => DynamicImage::ImageLuma8(image::GrayImage::from_raw(w, h, self.data)?),
            3 => DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, self.data)?),
            _ => DynamicImage::ImageRgba8(image::RgbaImage::from_raw(w, h, self.data)?),
        })
    }

    /// The `w`×`h` rectangle at (`left`, `top`), which the caller checked lies inside.
    pub fn crop(self, (left, top, w, h): (u32, u32, u32, u32)) -> Raster {
        let c = self.channels as usize;
        let stride = self.width as usize * c;
        let row = w as usize * c;
        let data = (top as usize..(top + h) as usize)
            .flat_map(|y| {
                let at = y * stride + left as usize * c;
                self.data[at..at + row].iter().copied()
            })
            .collect();
        Raster {
            width: w,
            height: h,
            channels: self.channels,
            data,
        }
    }

    /// Rotates/flips by an EXIF orientation (1–8).
    pub fn orient(self, orientation: u8) -> Result<Raster, PipelineError> {
        let Some(o) = image::metadata::Orientation::from_exif(orientation).filter(|_| orientation != 1)
        else {
            return Ok(self);
        };
        let mut img = self
            .into_dynamic()
            .ok_or_else(|| PipelineError::Corrupt("pixel buffer shorter than the image".into()))?;
        img.apply_orientation(o);
        Ok(Raster::from_dynamic(img))
    }

    /// RGB(A) without alpha: composited over black, as libvips' jpegsave does for OH.
    pub fn without_alpha(&self) -> Raster {
        match self.channels {
            4 => Raster {
                width: self.width,
                height: self.height,
                channels: 3,
                data: self
                    .data
                    .chunks_exact(4)
                    .flat_map(|p| {
                        let a = p[3] as u16;
                        [0, 1, 2].map(|i| ((p[i] as u16 * a + 127) / 255) as u8)
                    })
                    .collect(),
            },
            _ => self.clone(),
        }
    }

    /// Gray expanded to RGB (for encoders without a gray mode).
    pub fn to_color(&self) -> Raster {
        match self.channels {
            1 => Raster {
                width: self.width,
                height: self.height,
                channels: 3,
                data: self.data.iter().flat_map(|v| [*v, *v, *v]).collect(),
            },
            _ => self.clone(),
        }
    }
}
