//! On-the-fly image augmentation for training batches: random translation, small rotation and additive
//! Gaussian noise, each switchable, all drawn from one seeded generator so that a run is reproducible.
//!
//! Translation and rotation are one inverse affine map about the image centre, sampled bilinearly, with
//! zeros (background) outside the image — what torchvision's `RandomAffine(degrees, translate)` does.

use serde::{Deserialize, Serialize};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Mutex;

/// Which augmentations to apply and how strongly. All zero means none.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct AugmentationConfig {
    /// Maximum shift in pixels along each axis (uniform integer in `[-n, n]`); 0 disables it.
    #[serde(default)]
    pub max_shift: u32,
    /// Maximum rotation in degrees (uniform in `[-d, d]`); 0 disables it.
    #[serde(default)]
    pub max_rotation_degrees: f32,
    /// Standard deviation of Gaussian noise added to pixels on the 0–1 scale (then clamped); 0 disables it.
    #[serde(default)]
    pub noise_std: f32,
}

impl AugmentationConfig {
    /// The settings of the CNN issue: ±2 px shifts, ±10° rotations, noise σ = 0.05.
    pub fn standard() -> Self {
        Self {
            max_shift: 2,
            max_rotation_degrees: 10.0,
            noise_std: 0.05,
        }
    }

    /// Whether anything is switched on.
    pub fn is_active(&self) -> bool {
        self.max_shift > 0 || self.max_rotation_degrees != 0.0 || self.noise_std > 0.0
    }
}

/// Applies an [`AugmentationConfig`] with its own seeded random generator.
#[derive(Debug)]
pub struct Augmenter {
    config: AugmentationConfig,
    seed: u64,
    rng: Mutex<StdRng>,
}

impl Clone for Augmenter {
    /// A clone restarts from the seed, so that cloned batchers produce the same sequence.
    fn clone(&self) -> Self {
        Self::new(self.config, self.seed)
    }
}

impl Augmenter {
    /// An augmenter drawing from a generator seeded with `seed`.
    pub fn new(config: AugmentationConfig, seed: u64) -> Self {
        Self {
            config,
            seed,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    /// The settings.
    pub fn config(&self) -> AugmentationConfig {
        self.config
    }

    /// Augments one `height × width` image of bytes, returning pixels on the 0–1 scale.
    pub fn apply(&self, pixels: &[u8], height: usize, width: usize) -> Vec<f32> {
        let mut rng = match self.rng.lock() {
            Ok(guard) => guard,
            // A panic elsewhere while holding the lock leaves the generator usable.
            Err(poisoned) => poisoned.into_inner(),
        };
        let c = self.config;
        let shift = c.max_shift as i32;
        let (dx, dy) = if shift > 0 {
            (
                rng.random_range(-shift..=shift),
                rng.random_range(-shift..=shift),
            )
        } else {
            (0, 0)
        };
        let angle = if c.max_rotation_degrees != 0.0 {
            let m = c.max_rotation_degrees.abs();
            rng.random_range(-m..=m).to_radians()
        } else {
            0.0
        };
        let mut out = if dx == 0 && dy == 0 && angle == 0.0 {
            pixels.iter().map(|&p| p as f32 / 255.0).collect()
        } else {
            warp(pixels, height, width, dx as f32, dy as f32, angle)
        };
        if c.noise_std > 0.0 {
            for v in &mut out {
                *v = (*v + c.noise_std * standard_normal(&mut rng)).clamp(0.0, 1.0);
            }
        }
        out
    }
}

/// Rotates by `angle` (radians, about the centre) then shifts by `(dx, dy)` pixels; bilinear sampling of the
/// source at the inverse-mapped position, zero outside.
fn warp(pixels: &[u8], h: usize, w: usize, dx: f32, dy: f32, angle: f32) -> Vec<f32> {
    let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
    let (sin, cos) = angle.sin_cos();
    let at = |y: isize, x: isize| -> f32 {
        if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
            0.0
        } else {
            pixels[y as usize * w + x as usize] as f32 / 255.0
        }
    };
    let mut out = vec![0f32; h * w];
    for y in 0..h {
        for x in 0..w {
            // Undo the shift, then the rotation.
            let (ux, uy) = (x as f32 - dx - cx, y as f32 - dy - cy);
            let sx = cos * ux + sin * uy + cx;
            let sy = -sin * ux + cos * uy + cy;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            out[y * w + x] = at(y0, x0) * (1.0 - fx) * (1.0 - fy)
                + at(y0, x0 + 1) * fx * (1.0 - fy)
                + at(y0 + 1, x0) * (1.0 - fx) * fy
                + at(y0 + 1, x0 + 1) * fx * fy;
        }
    }
    out
}

/// A standard normal sample (Box–Muller).
fn standard_normal(rng: &mut StdRng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(h: usize, w: usize, y: usize, x: usize) -> Vec<u8> {
        let mut p = vec![0u8; h * w];
        p[y * w + x] = 255;
        p
    }

    #[test]
    fn nothing_switched_on_is_the_identity() {
        let a = Augmenter::new(AugmentationConfig::default(), 1);
        let img: Vec<u8> = (0..20).map(|v| v * 10).collect();
        let out = a.apply(&img, 4, 5);
        assert!(
            out.iter()
                .zip(&img)
                .all(|(o, &i)| (o - i as f32 / 255.0).abs() < 1e-7)
        );
    }

    #[test]
    fn shifts_move_a_dot_by_at_most_two_pixels_and_keep_the_shape() {
        let cfg = AugmentationConfig {
            max_shift: 2,
            ..Default::default()
        };
        let a = Augmenter::new(cfg, 7);
        let mut moved = 0;
        for _ in 0..50 {
            let out = a.apply(&dot(9, 9, 4, 4), 9, 9);
            assert_eq!(out.len(), 81);
            let k = out
                .iter()
                .position(|&v| v > 0.99)
                .expect("the dot survives a pure shift");
            let (y, x) = ((k / 9) as i32, (k % 9) as i32);
            assert!(
                (y - 4).abs() <= 2 && (x - 4).abs() <= 2,
                "moved to ({y}, {x})"
            );
            moved += usize::from(y != 4 || x != 4);
        }
        assert!(moved > 30, "only {moved} of 50 images changed");
    }

    #[test]
    fn rotation_by_a_quarter_turn_moves_a_corner_dot() {
        // 90° about the centre of a 5×5 image maps (row 0, col 4) to (row 0, col 0) with this convention
        // (x right, y down, positive angle clockwise on screen).
        let out = warp(
            &dot(5, 5, 0, 4),
            5,
            5,
            0.0,
            0.0,
            std::f32::consts::FRAC_PI_2,
        );
        let k = out.iter().position(|&v| v > 0.99).unwrap();
        assert!(k == 0 || k == 24 || k == 20 || k == 4, "landed at {k}");
        assert_ne!(k, 4, "a quarter turn must move the dot");
    }

    #[test]
    fn seeded_runs_repeat_and_noise_changes_pixels_within_range() {
        let cfg = AugmentationConfig::standard();
        let img: Vec<u8> = (0..784).map(|v| (v % 256) as u8).collect();
        let (a, b) = (Augmenter::new(cfg, 3), Augmenter::new(cfg, 3));
        let first: Vec<Vec<f32>> = (0..3).map(|_| a.apply(&img, 28, 28)).collect();
        let second: Vec<Vec<f32>> = (0..3).map(|_| b.apply(&img, 28, 28)).collect();
        assert_eq!(first, second);
        assert_ne!(first[0], first[1]);
        assert!(first.iter().flatten().all(|v| (0.0..=1.0).contains(v)));
        let other = Augmenter::new(cfg, 4).apply(&img, 28, 28);
        assert_ne!(other, first[0]);
        assert_eq!(
            a.clone().apply(&img, 28, 28),
            first[0],
            "a clone restarts from the seed"
        );
    }

    #[test]
    fn config_round_trips_through_json() {
        let c = AugmentationConfig::standard();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            serde_json::from_str::<AugmentationConfig>(&json).unwrap(),
            c
        );
        assert!(!AugmentationConfig::default().is_active() && c.is_active());
    }
}
