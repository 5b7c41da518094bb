//! Output interpretation of a classifier from its logits: the confusion matrix and its most-confused
//! pairs, calibration (reliability bins, expected and maximum calibration error; Guo et al. 2017), and
//! temperature scaling fitted on held-out logits.
//!
//! These work on logits read back to the host (`[items × classes]`, row-major), so they serve any model and
//! backend. Written here because no maintained Rust crate offers calibration or temperature scaling; the
//! definitions follow Guo et al. (2017) and torchmetrics' `MulticlassCalibrationError` (equal-width
//! confidence bins, the top-label confidence, bins weighted by their share of the items).

use crate::ExplainError;

/// Logits of `items` examples over `classes` classes, row-major, with their true labels.
#[derive(Debug, Clone, Copy)]
pub struct Scored<'a> {
    /// `items × classes` logits.
    pub logits: &'a [f32],
    /// The number of classes.
    pub classes: usize,
    /// The true class of each item.
    pub labels: &'a [usize],
}

impl<'a> Scored<'a> {
    /// Checks the shapes and values: `logits.len() == labels.len() × classes`, every label a class,
    /// every logit finite.
    pub fn new(
        logits: &'a [f32],
        classes: usize,
        labels: &'a [usize],
    ) -> Result<Self, ExplainError> {
        if classes < 2 {
            return Err(ExplainError::Argument(format!(
                "{classes} classes: calibration needs at least 2"
            )));
        }
        if labels.is_empty() || logits.len() != labels.len() * classes {
            return Err(ExplainError::Argument(format!(
                "{} logits for {} labels of {classes} classes (expected {})",
                logits.len(),
                labels.len(),
                labels.len() * classes
            )));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, l)| **l >= classes) {
            return Err(ExplainError::Argument(format!(
                "label {l} of item {i} is not one of the {classes} classes"
            )));
        }
        if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
            return Err(ExplainError::Argument(format!(
                "logit {} of item {} is {}",
                i % classes,
                i / classes,
                logits[i]
            )));
        }
        Ok(Self {
            logits,
            classes,
            labels,
        })
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Always false: [`Scored::new`] refuses no items.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.logits[i * self.classes..(i + 1) * self.classes]
    }

    /// The predicted class (the largest logit; the first of equal ones) of each item.
    pub fn predictions(&self) -> Vec<usize> {
        (0..self.len()).map(|i| argmax(self.row(i))).collect()
    }

    /// Softmax probabilities of item `i` at `temperature`, in f64.
    fn probabilities(&self, i: usize, temperature: f64) -> Vec<f64> {
        let row = self.row(i);
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = row
            .iter()
            .map(|&z| ((z as f64 - max) / temperature).exp())
            .collect();
        let sum: f64 = e.iter().sum();
        e.into_iter().map(|v| v / sum).collect()
    }

    /// Mean negative log-likelihood of the labels under `softmax(logits / temperature)`.
    pub fn nll(&self, temperature: f64) -> f64 {
        let beta = 1.0 / temperature;
        (0..self.len())
            .map(|i| {
                let row = self.row(i);
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                let lse = row
                    .iter()
                    .map(|&z| (beta * (z as f64 - max)).exp())
                    .sum::<f64>()
                    .ln();
                lse - beta * (row[self.labels[i]] as f64 - max)
            })
            .sum::<f64>()
            / self.len() as f64
    }
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

/// Counts of (true class, predicted class).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    /// `counts[truth][prediction]`.
    pub counts: Vec<Vec<u64>>,
}

/// One off-diagonal cell of a confusion matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confusion {
    /// The true class.
    pub truth: usize,
    /// The class predicted instead.
    pub predicted: usize,
    /// How many items.
    pub count: u64,
}

impl ConfusionMatrix {
    /// The confusion matrix of the predictions of `scored`.
    pub fn of(scored: &Scored) -> Self {
        let mut counts = vec![vec![0u64; scored.classes]; scored.classes];
        for (truth, predicted) in scored.labels.iter().zip(scored.predictions()) {
            counts[*truth][predicted] += 1;
        }
        Self { counts }
    }

    /// The share of items on the diagonal.
    pub fn accuracy(&self) -> f64 {
        let total: u64 = self.counts.iter().flatten().sum();
        let right: u64 = (0..self.counts.len()).map(|c| self.counts[c][c]).sum();
        right as f64 / total.max(1) as f64
    }

    /// The `k` largest off-diagonal cells, largest first (ties by truth, then prediction).
    pub fn most_confused(&self, k: usize) -> Vec<Confusion> {
        let mut cells: Vec<Confusion> = self
            .counts
            .iter()
            .enumerate()
            .flat_map(|(truth, row)| {
                row.iter()
                    .enumerate()
                    .filter(move |(predicted, count)| *predicted != truth && **count > 0)
                    .map(move |(predicted, &count)| Confusion {
                        truth,
                        predicted,
                        count,
                    })
            })
            .collect();
        cells.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.truth.cmp(&b.truth))
                .then(a.predicted.cmp(&b.predicted))
        });
        cells.truncate(k);
        cells
    }
}

/// One confidence bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReliabilityBin {
    /// The bin's lower edge (exclusive, except for the first bin).
    pub lower: f64,
    /// The bin's upper edge (inclusive).
    pub upper: f64,
    /// Items whose top-label confidence falls in the bin.
    pub count: usize,
    /// Their mean top-label confidence (NaN for an empty bin).
    pub confidence: f64,
    /// The share of them predicted right (NaN for an empty bin).
    pub accuracy: f64,
}

/// Calibration of a classifier: its reliability bins and the errors they give.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Equal-width bins over [0, 1] of the top-label confidence.
    pub bins: Vec<ReliabilityBin>,
    /// Expected calibration error: Σ (count / n) · |accuracy − confidence| over the bins.
    pub ece: f64,
    /// Maximum calibration error: the largest |accuracy − confidence| of a non-empty bin.
    pub mce: f64,
    /// Mean negative log-likelihood of the labels.
    pub nll: f64,
}

impl Calibration {
    /// The calibration of `softmax(logits / temperature)` in `bins` equal-width bins (15 in Guo et al.).
    pub fn of(scored: &Scored, temperature: f64, bins: usize) -> Result<Self, ExplainError> {
        if bins == 0 {
            return Err(ExplainError::Argument(
                "a reliability diagram needs at least one bin".into(),
            ));
        }
        check_temperature(temperature)?;
        let mut count = vec![0usize; bins];
        let mut confidence = vec![0.0f64; bins];
        let mut right = vec![0usize; bins];
        for i in 0..scored.len() {
            let p = scored.probabilities(i, temperature);
            let predicted = argmax(scored.row(i));
            let top = p[predicted];
            // Bin b holds (b/B, (b+1)/B]; a confidence of exactly 0 cannot occur for a softmax.
            let b = ((top * bins as f64).ceil() as usize).clamp(1, bins) - 1;
            count[b] += 1;
            confidence[b] += top;
            right[b] += usize::from(predicted == scored.labels[i]);
        }
        let n = scored.len() as f64;
        let bins: Vec<ReliabilityBin> = (0..bins)
            .map(|b| ReliabilityBin {
                lower: b as f64 / bins as f64,
                upper: (b + 1) as f64 / bins as f64,
                count: count[b],
                confidence: confidence[b] / count[b] as f64,
                accuracy: right[b] as f64 / count[b] as f64,
            })
            .collect();
        let filled = || bins.iter().filter(|b| b.count > 0);
        let ece = filled()
            .map(|b| b.count as f64 / n * (b.accuracy - b.confidence).abs())
            .sum();
        let mce = filled()
            .map(|b| (b.accuracy - b.confidence).abs())
            .fold(0.0, f64::max);
        Ok(Self {
            bins,
            ece,
            mce,
            nll: scored.nll(temperature),
        })
    }
}

fn check_temperature(temperature: f64) -> Result<(), ExplainError> {
    if temperature.is_finite() && temperature > 0.0 {
        Ok(())
    } else {
        Err(ExplainError::Argument(format!(
            "temperature {temperature}: it must be a positive number"
        )))
    }
}

/// The temperature T that minimises the mean negative log-likelihood of `softmax(logits / T)` on
/// `scored` (Guo et al. 2017), searched in [0.05, 20]. Fit it on validation logits, never on the test set.
///
/// The NLL is convex in β = 1/T (a log-sum-exp of functions linear in β, minus a linear term), so a
/// golden-section search over β finds its minimum to 1e-9 without the learning rate and iteration count a
/// gradient method (PyTorch's reference uses L-BFGS) would need.
pub fn fit_temperature(scored: &Scored) -> f64 {
    let (mut lo, mut hi) = (1.0 / 20.0, 1.0 / 0.05);
    let f = |beta: f64| scored.nll(1.0 / beta);
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    let mut a = hi - phi * (hi - lo);
    let mut b = lo + phi * (hi - lo);
    let (mut fa, mut fb) = (f(a), f(b));
    while hi - lo > 1e-9 {
        if fa < fb {
            hi = b;
            b = a;
            fb = fa;
            a = hi - phi * (hi - lo);
            fa = f(a);
        } else {
            lo = a;
            a = b;
            fa = fb;
            b = lo + phi * (hi - lo);
            fb = f(b);
        }
    }
    2.0 / (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_confusion_matrix_counts_and_ranks_the_mistakes() {
        // Items: truth 0 → 0, 0 → 1, 1 → 1, 2 → 1, 2 → 1, 2 → 0.
        let logits = [
            2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 2.0, 0.0, 0.0, 2.0, 0.0, 0.0, 2.0, 0.0, 2.0, 0.0,
            0.0,
        ];
        let labels = [0, 0, 1, 2, 2, 2];
        let scored = Scored::new(&logits, 3, &labels).unwrap();
        let m = ConfusionMatrix::of(&scored);
        assert_eq!(m.counts, vec![vec![1, 1, 0], vec![0, 1, 0], vec![1, 2, 0]]);
        assert!((m.accuracy() - 2.0 / 6.0).abs() < 1e-12);
        let top = m.most_confused(2);
        assert_eq!(
            top,
            vec![
                Confusion {
                    truth: 2,
                    predicted: 1,
                    count: 2
                },
                Confusion {
                    truth: 0,
                    predicted: 1,
                    count: 1
                }
            ]
        );
    }

    #[test]
    fn calibration_error_is_computed_as_guo_et_al_define_it() {
        // Two classes; top-label confidences 0.88 (right), 0.88 (wrong), 0.55 (right), 0.55 (right).
        let z = |p: f64| (p / (1.0 - p)).ln() as f32;
        let logits = [z(0.88), 0.0, z(0.88), 0.0, z(0.55), 0.0, z(0.55), 0.0];
        let labels = [0, 1, 0, 0];
        let scored = Scored::new(&logits, 2, &labels).unwrap();
        let c = Calibration::of(&scored, 1.0, 10).unwrap();
        // Bin (0.5, 0.6]: accuracy 1, confidence 0.55; bin (0.8, 0.9]: accuracy 0.5, confidence 0.88.
        let ece = 0.5 * (1.0f64 - 0.55).abs() + 0.5 * (0.5f64 - 0.88).abs();
        assert!((c.ece - ece).abs() < 1e-6, "{} against {ece}", c.ece);
        assert!((c.mce - 0.45).abs() < 1e-6);
        assert_eq!(c.bins.iter().map(|b| b.count).sum::<usize>(), 4);
        assert_eq!((c.bins[5].count, c.bins[8].count), (2, 2));
        let nll = -(0.88f64.ln() + 0.12f64.ln() + 2.0 * 0.55f64.ln()) / 4.0;
        assert!((c.nll - nll).abs() < 1e-6);
    }

    /// Logits `scale · g` with labels drawn from `softmax(g)`: calibrated at temperature `scale`.
    fn overconfident(scale: f32, n: usize, classes: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut logits = Vec::with_capacity(n * classes);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let g: Vec<f32> = (0..classes).map(|_| rng.random::<f32>() * 4.0).collect();
            let e: Vec<f32> = g.iter().map(|v| v.exp()).collect();
            let sum: f32 = e.iter().sum();
            let mut u = rng.random::<f32>() * sum;
            let mut label = classes - 1;
            for (c, v) in e.iter().enumerate() {
                if u < *v {
                    label = c;
                    break;
                }
                u -= v;
            }
            labels.push(label);
            logits.extend(g.iter().map(|v| v * scale));
        }
        (logits, labels)
    }

    #[test]
    fn temperature_scaling_recovers_the_temperature_and_lowers_the_error() {
        let (logits, labels) = overconfident(2.5, 20_000, 5, 1);
        let scored = Scored::new(&logits, 5, &labels).unwrap();
        let t = fit_temperature(&scored);
        assert!((t - 2.5).abs() < 0.1, "fitted temperature {t}");
        // A minimum: the NLL rises on both sides.
        assert!(scored.nll(t) < scored.nll(t * 0.9) && scored.nll(t) < scored.nll(t * 1.1));
        let before = Calibration::of(&scored, 1.0, 15).unwrap();
        let after = Calibration::of(&scored, t, 15).unwrap();
        assert!(
            after.ece < 0.02 && before.ece > 0.1,
            "ECE {} → {}",
            before.ece,
            after.ece
        );
        // Scaling keeps every prediction, so the accuracy of the bins together is unchanged.
        let right = |c: &Calibration| {
            c.bins
                .iter()
                .filter(|b| b.count > 0)
                .map(|b| b.accuracy * b.count as f64)
                .sum::<f64>()
        };
        assert!((right(&before) - right(&after)).abs() < 1e-6);
    }

    #[test]
    fn bad_inputs_are_errors_naming_what_is_wrong() {
        let err = Scored::new(&[0.0; 5], 2, &[0, 1]).unwrap_err().to_string();
        assert!(
            err.contains("5 logits") && err.contains("expected 4"),
            "{err}"
        );
        let err = Scored::new(&[0.0; 4], 2, &[0, 2]).unwrap_err().to_string();
        assert!(err.contains("label 2 of item 1"), "{err}");
        let err = Scored::new(&[0.0, f32::NAN, 0.0, 0.0], 2, &[0, 1])
            .unwrap_err()
            .to_string();
        assert!(err.contains("logit 1 of item 0 is NaN"), "{err}");
        assert!(Scored::new(&[], 2, &[]).is_err());
        assert!(Scored::new(&[0.0], 1, &[0]).is_err());
        let scored = Scored::new(&[0.0; 4], 2, &[0, 1]).unwrap();
        assert!(Calibration::of(&scored, 1.0, 0).is_err());
        let err = Calibration::of(&scored, 0.0, 10).unwrap_err().to_string();
        assert!(err.contains("temperature 0"), "{err}");
    }
}
