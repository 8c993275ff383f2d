//! Mutation fuzzing of the pipeline, bounded and repeatable: small valid JPEG, PNG, GIF, WebP and
//! AVIF files (made here) with bytes flipped, runs overwritten, and cuts, each rendered as the
//! proxy would. None may panic; each answers an image or a pipeline error.

use std::time::Instant;

use imagehost::pipeline::{self, AvifSource, Input, Output, PipelineError, Request, Settings};
use imagehost::proxy::options::Mode;
use rand::{Rng, SeedableRng};

use super::images;

/// Mutations per seed file; `MUTATIONS` raises it for a longer hunt by hand.
pub fn per_seed() -> usize {
    std::env::var("MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn mutate(rng: &mut rand::rngs::StdRng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    match rng.random_range(0..4) {
        // A few random bytes changed, anywhere (headers included).
        0 => {
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..v.len());
                v[i] = rng.random();
            }
        }
        // A run overwritten with one value (0x00 or 0xff make the biggest claims in headers).
        1 => {
            let at = rng.random_range(0..v.len());
            let len = rng.random_range(1..64).min(v.len() - at);
            let b = if rng.random() { 0xff } else { 0 };
            v[at..at + len].fill(b);
        }
        // Cut short.
        2 => v.truncate(rng.random_range(0..v.len())),
        // A slice repeated (boxes, chunks and segments whose sizes no longer match).
        _ => {
            let at = rng.random_range(0..v.len());
            let len = rng.random_range(1..256).min(v.len() - at);
            let dup = v[at..at + len].to_vec();
            v.splice(at..at, dup);
        }
    }
    v
}

#[test]
fn mutated_images_never_panic() {
    let seeds: Vec<(Input, Vec<u8>)> = vec![
        (Input::Jpeg, images::jpeg(64, 48)),
        // Large enough that the 32 px requests take the shrink decoder (1/4 scale).
        (Input::Jpeg, images::jpeg(256, 192)),
        // The same through the progressive shrink decoder.
        (Input::Jpeg, images::jpeg_progressive(256, 192)),
        (Input::Png, images::png_alpha(64, 48)),
        (Input::Gif, images::gif(32, 24, 3)),
        (Input::Webp, images::webp(64, 48)),
        (Input::Avif, images::avif(64, 48, &[])),
        (Input::Avif, images::avif_alpha(64, 48)),
        // clap, irot and imir boxes to mutate too.
        (
            Input::Avif,
            images::avif_of(
                &images::quadrants(64, 48),
                &["--crop", "8,8,32,32", "--irot", "1", "--imir", "1"],
            ),
        ),
    ];
    let s = Settings::default();
    let per_seed = per_seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x4849_5645);
    let (mut ok, mut refused) = (0, 0);
    let started = Instant::now();
    for (input, seed) in &seeds {
        for i in 0..per_seed {
            let data = mutate(&mut rng, seed);
            // Alternate the requests so each decoder meets both resize and format paths.
            let req = Request {
                width: Some(if i % 2 == 0 { 32 } else { 100 }),
                height: None,
                mode: if i % 3 == 0 { Mode::Fit } else { Mode::Cover },
                format: [Output::Jpeg, Output::Png, Output::Webp][i % 3],
                avif: AvifSource::AsRequested,
            };
            match pipeline::render(&data, *input, &req, &s) {
                Ok(r) => {
                    assert!(!r.bytes.is_empty(), "{input:?} #{i}: empty output");
                    ok += 1;
                }
                Err(
                    PipelineError::Corrupt(_)
                    | PipelineError::TooLarge { .. }
                    | PipelineError::Unsupported(_),
                ) => refused += 1,
                Err(e) => panic!("{input:?} #{i}: unexpected {e}"),
            }
        }
    }
    eprintln!(
        "{} mutated files: {ok} rendered, {refused} refused, in {:?}",
        seeds.len() * per_seed,
        started.elapsed()
    );
    assert_eq!(ok + refused, seeds.len() * per_seed);
}
