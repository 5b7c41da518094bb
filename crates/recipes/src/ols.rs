//! Closed-form ordinary least squares, the reference a gradient-trained linear regression is checked
//! against. Written by hand because it is a dozen lines (normal equations solved by Gaussian elimination
//! with partial pivoting, in f64) and burn has no least-squares solver.

use kiln_data::RegressionDataset;

/// Fits `y ≈ X w + b` on `data` and returns `(w, b)`, or `None` when `XᵀX` is singular.
pub fn fit(data: &RegressionDataset) -> Option<(Vec<f64>, f64)> {
    let p = data.num_features() + 1; // the last column is the intercept
    let mut a = vec![vec![0f64; p + 1]; p]; // augmented [XᵀX | Xᵀy]
    for item in &data.items {
        let x: Vec<f64> = item
            .features
            .iter()
            .map(|&v| v as f64)
            .chain(std::iter::once(1.0))
            .collect();
        for i in 0..p {
            for j in 0..p {
                a[i][j] += x[i] * x[j];
            }
            a[i][p] += x[i] * item.target as f64;
        }
    }
    for col in 0..p {
        let pivot = (col..p).max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col].clone();
        for (row, r) in a.iter_mut().enumerate() {
            if row != col {
                let factor = r[col] / pivot_row[col];
                for (x, &pv) in r[col..].iter_mut().zip(&pivot_row[col..]) {
                    *x -= factor * pv;
                }
            }
        }
    }
    let solution: Vec<f64> = (0..p).map(|i| a[i][p] / a[i][i]).collect();
    Some((solution[..p - 1].to_vec(), solution[p - 1]))
}

/// R² of the linear model `(w, b)` on `data`, with SST about `data`'s own mean.
pub fn r2(data: &RegressionDataset, w: &[f64], b: f64) -> f64 {
    let n = data.items.len() as f64;
    let mean = data.items.iter().map(|i| i.target as f64).sum::<f64>() / n;
    let (mut sse, mut sst) = (0.0, 0.0);
    for item in &data.items {
        let pred = b + item
            .features
            .iter()
            .zip(w)
            .map(|(&x, w)| x as f64 * w)
            .sum::<f64>();
        sse += (item.target as f64 - pred).powi(2);
        sst += (item.target as f64 - mean).powi(2);
    }
    1.0 - sse / sst
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_data::synthetic::linear_line;

    #[test]
    fn recovers_three_x_plus_two() {
        let data = linear_line(100, 0.0, 5);
        let (w, b) = fit(&data).unwrap();
        assert!(
            (w[0] - 3.0).abs() < 1e-4 && (b - 2.0).abs() < 1e-4,
            "{w:?} {b}"
        );
        assert!((r2(&data, &w, b) - 1.0).abs() < 1e-9);
    }
}
