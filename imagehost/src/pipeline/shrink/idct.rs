//! Reduced inverse DCTs: an 8×8 block's lowest `h`×`v` coefficients to `h`×`v` pixels (h, v in
//! 1, 2, 4, 8). Each output pixel is the mean of the 8/N × 8/N source pixels it covers, as in
//! libjpeg's reduced IDCTs, but of the block's low frequencies only: the coefficients above
//! N are never decoded (they are what aliases in a box average anyway).

pub struct Idct {
    h: usize,
    v: usize,
    /// basis[x][u]: C(u)/2 · cos((2p+1)uπ/16) averaged over the source pixels p of output x.
    bh: [[f32; 8]; 8],
    bv: [[f32; 8]; 8],
}

fn basis(n: usize) -> [[f32; 8]; 8] {
    let mut b = [[0f32; 8]; 8];
    let span = 8 / n;
    for (x, row) in b.iter_mut().enumerate().take(n) {
        for (u, c) in row.iter_mut().enumerate().take(n) {
            let cu = if u == 0 {
                std::f64::consts::FRAC_1_SQRT_2
            } else {
                1.0
            };
            let mean = (x * span..(x + 1) * span)
                .map(|p| ((2 * p + 1) as f64 * u as f64 * std::f64::consts::PI / 16.0).cos())
                .sum::<f64>()
                / span as f64;
            *c = (cu / 2.0 * mean) as f32;
        }
    }
    b
}

impl Idct {
    pub fn new(h: usize, v: usize) -> Idct {
        debug_assert!([1, 2, 4, 8].contains(&h) && [1, 2, 4, 8].contains(&v));
        Idct {
            h,
            v,
            bh: basis(h),
            bv: basis(v),
        }
    }

    /// Writes the `h`×`v` pixels of a block (dequantised coefficients in natural order, only
    /// the top-left `v` rows × `h` columns read) at `out[0]`, rows `stride` apart.
    pub fn block(&self, coef: &[f32; 64], out: &mut [u8], stride: usize) {
        match (self.h, self.v) {
            (1, 1) => self.sized::<1, 1>(coef, out, stride),
            (2, 1) => self.sized::<2, 1>(coef, out, stride),
            (1, 2) => self.sized::<1, 2>(coef, out, stride),
            (2, 2) => self.sized::<2, 2>(coef, out, stride),
            (4, 2) => self.sized::<4, 2>(coef, out, stride),
            (2, 4) => self.sized::<2, 4>(coef, out, stride),
            (4, 4) => self.sized::<4, 4>(coef, out, stride),
            (8, 4) => self.sized::<8, 4>(coef, out, stride),
            (4, 8) => self.sized::<4, 8>(coef, out, stride),
            _ => self.sized::<8, 8>(coef, out, stride),
        }
    }

    /// The separable product for one size, unrolled by the compiler.
    #[inline(always)]
    fn sized<const H: usize, const V: usize>(&self, coef: &[f32; 64], out: &mut [u8], stride: usize) {
        let mut rows = [[0f32; H]; V];
        for (row, coefs) in rows.iter_mut().zip(coef.chunks_exact(8)) {
            for (x, o) in row.iter_mut().enumerate() {
                let b = &self.bh[x];
                *o = (0..H).map(|u| coefs[u] * b[u]).sum();
            }
        }
        for (y, line) in out.chunks_mut(stride).take(V).enumerate() {
            let b = &self.bv[y];
            for (x, o) in line[..H].iter_mut().enumerate() {
                let s: f32 = (0..V).map(|k| rows[k][x] * b[k]).sum();
                *o = (s + 128.5) as u8;
            }
        }
    }

    /// A block with only its DC coefficient: one level.
    pub fn flat(&self, dc: f32, out: &mut [u8], stride: usize) {
        let level = (dc / 8.0 + 128.5) as u8;
        for line in out.chunks_mut(stride).take(self.v) {
            line[..self.h].fill(level);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The full 8×8 inverse DCT of T.81 A.3.3, in f64.
    fn full(coef: &[f32; 64]) -> [[f64; 8]; 8] {
        let c = |u: usize| {
            if u == 0 {
                std::f64::consts::FRAC_1_SQRT_2
            } else {
                1.0
            }
        };
        let mut out = [[0.0; 8]; 8];
        for (y, row) in out.iter_mut().enumerate() {
            for (x, o) in row.iter_mut().enumerate() {
                for v in 0..8 {
                    for u in 0..8 {
                        let cos = |p: usize, f: usize| {
                            ((2 * p + 1) as f64 * f as f64 * std::f64::consts::PI / 16.0).cos()
                        };
                        *o += c(u) * c(v) / 4.0 * coef[v * 8 + u] as f64 * cos(x, u) * cos(y, v);
                    }
                }
                *o += 128.0;
            }
        }
        out
    }

    #[test]
    fn the_8_point_case_is_the_standard_inverse() {
        let mut coef = [0f32; 64];
        for (i, c) in coef.iter_mut().enumerate() {
            *c = ((i * 37 % 23) as f32 - 11.0) * 4.0;
        }
        let want = full(&coef);
        let mut out = [0u8; 64];
        Idct::new(8, 8).block(&coef, &mut out, 8);
        for y in 0..8 {
            for x in 0..8 {
                let w = want[y][x].clamp(0.0, 255.0);
                assert!((out[y * 8 + x] as f64 - w).abs() <= 1.0, "({x},{y})");
            }
        }
    }

    #[test]
    fn a_flat_block_keeps_its_level_at_every_size() {
        // DC = 8 × (level − 128).
        for level in [0u8, 17, 128, 200, 255] {
            let mut coef = [0f32; 64];
            coef[0] = 8.0 * (level as f32 - 128.0);
            for (h, v) in [(1, 1), (2, 2), (4, 4), (8, 8), (4, 2), (2, 4), (8, 4)] {
                let mut out = [0u8; 64];
                let idct = Idct::new(h, v);
                idct.block(&coef, &mut out, 8);
                for y in 0..v {
                    assert!(
                        out[y * 8..y * 8 + h].iter().all(|&p| p == level),
                        "{h}×{v} {level}"
                    );
                }
                let mut flat = [0u8; 64];
                idct.flat(coef[0], &mut flat, 8);
                assert_eq!(out, flat, "{h}×{v} flat path");
            }
        }
    }

    #[test]
    fn a_smooth_block_shrinks_to_the_means_of_its_parts() {
        // A horizontal ramp from the first coefficient alone: the 2-point output is the means
        // of the left and right halves of the full-size block.
        let mut coef = [0f32; 64];
        coef[1] = -60.0;
        let f = full(&coef);
        let mean = |x0: usize| {
            (0..8)
                .flat_map(|y| (x0..x0 + 4).map(move |x| (y, x)))
                .map(|(y, x)| f[y][x])
                .sum::<f64>()
                / 32.0
        };
        let mut out = [0u8; 64];
        Idct::new(2, 1).block(&coef, &mut out, 8);
        for (x, m) in [mean(0), mean(4)].into_iter().enumerate() {
            assert!((out[x] as f64 - m).abs() <= 0.5, "half {x}: {} vs {m:.1}", out[x]);
        }
        assert!(out[0] < out[1], "ramp direction kept");
    }
}
