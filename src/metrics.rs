//! Per-document scoring primitives and aggregation (TASKS_SPEC §1.5, §1.6, §4.3, §5).
use sha2::{Digest, Sha256};

/// `np.argmax`: the first maximal index (NaN never wins unless all are NaN → 0).
pub fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] || (xs[best].is_nan() && !x.is_nan()) {
            best = i;
        }
    }
    best
}

/// `np.argmax(lls / len(choices))` with lengths in code points.
pub fn argmax_norm(lls: &[f64], choices: &[String]) -> usize {
    let normed: Vec<f64> = lls
        .iter()
        .zip(choices)
        .map(|(ll, c)| ll / crate::py::text::len(c) as f64)
        .collect();
    argmax(&normed)
}

/// `bigbench._argmax`: ties broken by sha256 of the float64 little-endian bytes of the array.
pub fn bigbench_argmax(lls: &[f64]) -> usize {
    let max = lls.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let ties: Vec<usize> = (0..lls.len()).filter(|&i| lls[i] == max).collect();
    if ties.len() <= 1 {
        return ties.first().copied().unwrap_or(0);
    }
    let mut h = Sha256::new();
    for x in lls {
        h.update(x.to_le_bytes());
    }
    let digest = h.finalize();
    // int(hexdigest, 16) mod n, computed byte by byte.
    let n = ties.len() as u128;
    let rem = digest
        .iter()
        .fold(0u128, |acc, &b| (acc * 256 + b as u128) % n);
    ties[rem as usize]
}

/// TruthfulQA mc2: `sum(p_true) / (sum(p_true) + sum(p_false))`, with `p = exp(ll)` (no
/// stabilisation; NaN if everything underflows, like the reference). `n_true` = index of the
/// first 0 label.
pub fn mc2(lls: &[f64], n_true: usize) -> f64 {
    let p: Vec<f64> = lls.iter().map(|x| x.exp()).collect();
    let t: f64 = p[..n_true].iter().sum();
    let f: f64 = p[n_true..].iter().sum();
    t / (t + f)
}

/// Arithmetic mean.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// `mean_stderr`: sample standard deviation (n−1) divided by √n.
pub fn mean_stderr(xs: &[f64]) -> f64 {
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return f64::NAN;
    }
    let m = mean(xs);
    let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (var / n).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_first_on_ties() {
        assert_eq!(argmax(&[-1.0, -0.5, -0.5]), 1);
        assert_eq!(argmax(&[-3.0]), 0);
        assert_eq!(argmax_norm(&[-4.0, -2.0], &["abcd".into(), "é".into()]), 0);
    }

    #[test]
    fn stderr_matches_binomial_formula() {
        // 3 of 8 correct: sqrt(p(1-p)/(n-1)).
        let xs = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
        let p: f64 = 3.0 / 8.0;
        assert!((mean(&xs) - p).abs() < 1e-15);
        assert!((mean_stderr(&xs) - (p * (1.0 - p) / 7.0).sqrt()).abs() < 1e-15);
    }

    #[test]
    fn bigbench_tie_break_uses_sha256() {
        assert_eq!(bigbench_argmax(&[-1.0, -2.0, -0.5]), 2);
        let lls = [-1.0f64, -1.0, -1.0];
        let mut h = Sha256::new();
        for x in lls {
            h.update(x.to_le_bytes());
        }
        let hex = format!("{:x}", h.finalize());
        // Python: int(hex, 16) % 3 — recomputed with a string-based big-number mod.
        let rem = hex
            .chars()
            .fold(0u32, |acc, c| (acc * 16 + c.to_digit(16).unwrap()) % 3);
        assert_eq!(bigbench_argmax(&lls), rem as usize);
    }

    #[test]
    fn mc2_ratio() {
        let v = mc2(&[0f64.ln(), 1f64.ln(), 3f64.ln()], 2);
        assert!((v - 0.25).abs() < 1e-12);
    }
}
