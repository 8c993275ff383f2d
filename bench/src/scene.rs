//! A generated photo with the statistics of natural images, for codec comparisons: `photo`'s
//! per-pixel white noise is the hardest case for every transform codec and unlike any camera's
//! picture, where most of the energy sits at low spatial frequencies.
//!
//! Built from: multi-octave value noise (fBm) for luminance, amplitude falling with frequency
//! (natural images' spectra fall about as 1/f); slower chroma fields; a few objects with sharp,
//! antialiased edges and textures of their own; and a mild sensor grain. Deterministic.

/// xorshift32, the same in every run.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 8) as f32 / (1u32 << 24) as f32
    }
}

/// Value noise: a lattice of random values every `cell` pixels, smoothly interpolated (and
/// repeating past its edges).
struct Lattice {
    cols: usize,
    rows: usize,
    cell: f32,
    values: Vec<f32>,
}

impl Lattice {
    fn new(rng: &mut Rng, w: u32, h: u32, cell: f32) -> Lattice {
        let cols = (w as f32 / cell) as usize + 2;
        let rows = (h as f32 / cell) as usize + 2;
        let values = (0..cols * rows).map(|_| rng.unit() * 2.0 - 1.0).collect();
        Lattice {
            cols,
            rows,
            cell,
            values,
        }
    }

    fn at(&self, x: f32, y: f32) -> f32 {
        let (fx, fy) = (x / self.cell, y / self.cell);
        let (ix, iy) = (fx as usize, fy as usize);
        let smooth = |t: f32| t * t * (3.0 - 2.0 * t);
        let (tx, ty) = (smooth(fx - ix as f32), smooth(fy - iy as f32));
        let v = |c: usize, r: usize| self.values[(r % self.rows) * self.cols + c % self.cols];
        let top = v(ix, iy) + (v(ix + 1, iy) - v(ix, iy)) * tx;
        let bottom = v(ix, iy + 1) + (v(ix + 1, iy + 1) - v(ix, iy + 1)) * tx;
        top + (bottom - top) * ty
    }
}

/// Octaves of value noise from `largest` pixels down to 2, each `falloff` times the one above.
struct Fbm(Vec<(Lattice, f32)>);

impl Fbm {
    fn new(rng: &mut Rng, w: u32, h: u32, largest: f32, falloff: f32) -> Fbm {
        let mut octaves = Vec::new();
        let (mut cell, mut amp) = (largest, 1.0f32);
        while cell >= 2.0 {
            octaves.push((Lattice::new(rng, w, h, cell), amp));
            cell /= 2.0;
            amp *= falloff;
        }
        Fbm(octaves)
    }

    fn at(&self, x: f32, y: f32) -> f32 {
        self.0.iter().map(|(l, a)| l.at(x, y) * a).sum()
    }
}

/// An object: an ellipse with its own colour and texture.
struct Blob {
    cx: f32,
    cy: f32,
    rx: f32,
    ry: f32,
    colour: [f32; 3],
}

/// RGB pixels of a `w`×`h` natural-statistics scene.
pub fn scene_pixels(w: u32, h: u32) -> Vec<u8> {
    let mut rng = Rng(0x2545_F491);
    let side = w.max(h) as f32;
    let luma = Fbm::new(&mut rng, w, h, side / 2.0, 0.72);
    let texture = Fbm::new(&mut rng, w, h, side / 24.0, 0.8);
    let cb = Fbm::new(&mut rng, w, h, side / 2.0, 0.45);
    let cr = Fbm::new(&mut rng, w, h, side / 2.0, 0.45);
    let blobs: Vec<Blob> = (0..24)
        .map(|_| {
            let grey = 40.0 + rng.unit() * 170.0;
            Blob {
                cx: rng.unit() * w as f32,
                cy: rng.unit() * h as f32,
                rx: (0.02 + rng.unit() * 0.12) * side,
                ry: (0.02 + rng.unit() * 0.12) * side,
                colour: [rng.unit(), rng.unit(), rng.unit()].map(|c| grey * 0.6 + c * 100.0),
            }
        })
        .collect();
    // Thin dark strokes (branches, wires, the edges of things): (x0, y0, x1, y1, half width).
    let strokes: Vec<[f32; 5]> = (0..16)
        .map(|_| {
            let (x, y) = (rng.unit() * w as f32, rng.unit() * h as f32);
            let (a, len) = (
                rng.unit() * std::f32::consts::TAU,
                (0.1 + rng.unit() * 0.4) * side,
            );
            [
                x,
                y,
                x + a.cos() * len,
                y + a.sin() * len,
                0.5 + rng.unit() * 0.004 * side,
            ]
        })
        .collect();
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            let l = 120.0 + 55.0 * luma.at(fx, fy);
            let (u, v) = (28.0 * cb.at(fx, fy), 28.0 * cr.at(fx, fy));
            let mut rgb = [l + 1.4 * v, l - 0.34 * u - 0.71 * v, l + 1.77 * u];
            for b in &blobs {
                let d = ((fx - b.cx) / b.rx).powi(2) + ((fy - b.cy) / b.ry).powi(2);
                // One pixel of antialiasing across the edge, as a lens leaves it.
                let r = d.sqrt();
                let cover = ((1.0 - r) * b.rx.min(b.ry) + 0.5).clamp(0.0, 1.0);
                if cover > 0.0 {
                    let t = 1.0 + 0.35 * texture.at(fx + b.cx, fy + b.cy);
                    for (c, o) in rgb.iter_mut().zip(b.colour) {
                        *c += (o * t - *c) * cover;
                    }
                }
            }
            for &[x0, y0, x1, y1, half] in &strokes {
                let (dx, dy) = (x1 - x0, y1 - y0);
                let t = (((fx - x0) * dx + (fy - y0) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
                let d = ((fx - x0 - t * dx).powi(2) + (fy - y0 - t * dy).powi(2)).sqrt();
                let cover = (half + 0.5 - d).clamp(0.0, 1.0);
                if cover > 0.0 {
                    for c in &mut rgb {
                        *c += (30.0 - *c) * cover;
                    }
                }
            }
            // Sensor grain: a triangular distribution, about 2 levels each way.
            let grain = (rng.unit() + rng.unit() - 1.0) * 4.0;
            data.extend(rgb.map(|c| (c + grain).round().clamp(0.0, 255.0) as u8));
        }
    }
    data
}

/// The scene as a q90 JPEG, as a camera or an upload would hand it over.
pub fn scene(w: u32, h: u32) -> Vec<u8> {
    let r = imagehost::pipeline::raster::Raster {
        width: w,
        height: h,
        channels: 3,
        data: scene_pixels(w, h),
    };
    imagehost::pipeline::encode::jpeg(&r, 90).expect("encode the scene")
}
