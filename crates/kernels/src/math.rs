//! Branch-free `exp`, `sigmoid`, `tanh`, `erf` and the exact GELU for the kernels' element-wise loops.
//!
//! libm's `expf` is a function call per element that the compiler cannot vectorise; these are plain
//! arithmetic (Cephes' `expf` polynomial after a range reduction by `ln 2`, the exponent set through the
//! float's bits), so loops over them vectorise. Relative error of [`exp`] is below 3e-7 (tested).

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 · 2²³: adding it rounds a float of magnitude < 2²² to an integer, kept in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;

/// `eˣ`, clamped to the normal range of f32 (`x` in [−87.3, 88.3]).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2ⁿ from n's integer bits (the low mantissa bits of `shifted`).
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let scale = f32::from_bits(((n_bits + 127) as u32) << 23);
    e * scale
}

/// The logistic function `1 / (1 + e⁻ˣ)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh(x)` as `2σ(2x) − 1`.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// `erf(x)` by Abramowitz and Stegun's 7.1.26 (absolute error below 1e-6 in f32, tested against libm):
/// one division and [`exp`], no branch, where libm's `erff` is a call per element.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    erf_given_gauss(x, exp(-x * x))
}

/// [`erf`] of `x` given `gauss = e^(−x²)`, which [`gelu_grad`] also needs (one exponential, not two).
#[inline(always)]
fn erf_given_gauss(x: f32, gauss: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let mut p = 1.061_405_4_f32;
    p = p * t - 1.453_152_1;
    p = p * t + 1.421_413_7;
    p = p * t - 0.284_496_74;
    p = p * t + 0.254_829_6;
    let y = 1.0 - p * t * gauss;
    y.copysign(x)
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1 / √(2π)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// The exact GELU, `x · Φ(x) = x/2 · (1 + erf(x/√2))`, as burn's and PyTorch's default `gelu`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2))
}

/// The derivative of [`gelu`]: `Φ(x) + x · φ(x)`.
#[inline(always)]
pub fn gelu_grad(x: f32) -> f32 {
    // φ(x)·√(2π) = e^(−x²/2) = e^(−z²) for the z = x/√2 that erf takes.
    let z = x * FRAC_1_SQRT_2;
    let gauss = exp(-z * z);
    let cdf = 0.5 * (1.0 + erf_given_gauss(z, gauss));
    cdf + x * FRAC_1_SQRT_2PI * gauss
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_is_within_1e_6_of_libm() {
        let mut worst: f64 = 0.0;
        for i in -100_000..=100_000 {
            let x = i as f32 * 6e-5;
            worst = worst.max((f64::from(erf(x)) - libm::erf(f64::from(x))).abs());
        }
        assert!(worst < 1e-6, "worst absolute error {worst}");
        assert!(erf(0.0).abs() < 1e-6 && erf(-0.0).abs() < 1e-6);
        assert_eq!(erf(40.0), 1.0);
        assert_eq!(erf(-40.0), -1.0);
    }

    #[test]
    fn gelu_and_its_gradient_match_the_definition() {
        for i in -3000..3000 {
            let x = i as f32 / 300.0;
            let exact = 0.5 * f64::from(x) * (1.0 + libm::erf(f64::from(x) / 2f64.sqrt()));
            assert!((f64::from(gelu(x)) - exact).abs() < 1e-5, "gelu({x})");
            let h = 1e-3f64;
            let g = |x: f64| 0.5 * x * (1.0 + libm::erf(x / 2f64.sqrt()));
            let fd = (g(f64::from(x) + h) - g(f64::from(x) - h)) / (2.0 * h);
            assert!((f64::from(gelu_grad(x)) - fd).abs() < 1e-5, "gelu'({x})");
        }
    }

    #[test]
    fn exp_is_within_3e_7_relative_over_the_range() {
        let mut worst: f64 = 0.0;
        let mut x = -87.0f32;
        while x < 88.2 {
            let exact = f64::from(x).exp();
            worst = worst.max((f64::from(exp(x)) - exact).abs() / exact);
            x += 0.001_3;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(-1000.0), exp(-87.3));
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn sigmoid_and_tanh_match_libm() {
        for i in -4000..4000 {
            let x = i as f32 / 100.0;
            assert!(
                (sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs() < 1e-6,
                "sigmoid({x})"
            );
            assert!((tanh(x) - x.tanh()).abs() < 2e-6, "tanh({x})");
        }
    }
}
