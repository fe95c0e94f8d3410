//! Paired significance tests used by `hermes-eval compare`.
//!
//! - [`mcnemar`] for 0/1 per-document metrics (acc, acc_norm, mc1, multiple_choice_grade, ...).
//!   Only the discordant pairs matter: `b` = documents right in the baseline and wrong in the
//!   candidate, `c` = wrong in the baseline and right in the candidate.
//!   **Rule:** with `b + c < 25` the exact two-sided binomial test (`Binomial(b + c, 1/2)`,
//!   p = 2·P(X ≤ min(b, c)), capped at 1); otherwise the chi-square statistic with continuity
//!   correction `(|b − c| − 1)² / (b + c)` on 1 degree of freedom.
//! - [`paired_bootstrap`] for continuous metrics (mc2, ...): resample documents with replacement
//!   (seeded ChaCha8, so a seed gives the same p on every machine) and test the mean paired
//!   difference against 0 with the null-shifted bootstrap:
//!   p = (1 + #{b : |m*_b − D| ≥ |D|}) / (B + 1), where D is the observed mean difference.
//! - [`z_test_p`] for suite averages (normal approximation on independent tasks).
use rand::Rng;
use rand::SeedableRng;
use serde::Serialize;

/// Below this many discordant pairs McNemar uses the exact binomial test.
pub const MCNEMAR_EXACT_BELOW: u64 = 25;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TestMethod {
    /// McNemar, exact binomial.
    McNemarExact,
    /// McNemar, chi-square with continuity correction.
    McNemarChi2,
    /// Paired bootstrap of the mean difference.
    Bootstrap,
    /// No per-document samples: unpaired z-test on the reported stderrs.
    UnpairedZ,
}

impl TestMethod {
    pub fn label(self) -> &'static str {
        match self {
            TestMethod::McNemarExact => "McNemar exact",
            TestMethod::McNemarChi2 => "McNemar χ²",
            TestMethod::Bootstrap => "bootstrap",
            TestMethod::UnpairedZ => "unpaired z",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestResult {
    pub method: TestMethod,
    /// Chi-square statistic (McNemar χ²) or the observed mean difference (bootstrap); `None` for
    /// the exact test.
    pub statistic: Option<f64>,
    pub p_value: f64,
    /// McNemar: baseline right, candidate wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b: Option<u64>,
    /// McNemar: baseline wrong, candidate right.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c: Option<u64>,
    /// Bootstrap: 95 % percentile interval of the mean difference (candidate − baseline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci95: Option<(f64, f64)>,
}

/// McNemar's test on the discordant counts `b` (baseline right, candidate wrong) and `c`.
pub fn mcnemar(b: u64, c: u64) -> TestResult {
    let n = b + c;
    if n < MCNEMAR_EXACT_BELOW {
        let k = b.min(c);
        // P(X <= k) for X ~ Binomial(n, 1/2), summed in f64 (n < 25 keeps it exact enough).
        let mut tail = 0.0;
        let mut coef = 1.0f64; // C(n, 0)
        for i in 0..=k {
            if i > 0 {
                coef = coef * (n - i + 1) as f64 / i as f64;
            }
            tail += coef;
        }
        let p = (2.0 * tail / 2f64.powi(n as i32)).min(1.0);
        TestResult {
            method: TestMethod::McNemarExact,
            statistic: None,
            p_value: p,
            b: Some(b),
            c: Some(c),
            ci95: None,
        }
    } else {
        let diff = (b as f64 - c as f64).abs() - 1.0;
        let stat = diff.max(0.0).powi(2) / n as f64;
        TestResult {
            method: TestMethod::McNemarChi2,
            statistic: Some(stat),
            p_value: chi2_1df_sf(stat),
            b: Some(b),
            c: Some(c),
            ci95: None,
        }
    }
}

/// McNemar on paired 0/1 outcomes (values > 0.5 count as right).
pub fn mcnemar_paired(baseline: &[f64], candidate: &[f64]) -> TestResult {
    let (mut b, mut c) = (0u64, 0u64);
    for (&x, &y) in baseline.iter().zip(candidate) {
        match (x > 0.5, y > 0.5) {
            (true, false) => b += 1,
            (false, true) => c += 1,
            _ => {}
        }
    }
    mcnemar(b, c)
}

/// Paired bootstrap of mean(candidate − baseline); two-sided p (see the module docs).
pub fn paired_bootstrap(
    baseline: &[f64],
    candidate: &[f64],
    resamples: usize,
    seed: u64,
) -> TestResult {
    let d: Vec<f64> = candidate.iter().zip(baseline).map(|(c, b)| c - b).collect();
    let n = d.len();
    let observed = if n == 0 {
        0.0
    } else {
        d.iter().sum::<f64>() / n as f64
    };
    if n == 0 || resamples == 0 {
        return TestResult {
            method: TestMethod::Bootstrap,
            statistic: Some(observed),
            p_value: 1.0,
            b: None,
            c: None,
            ci95: None,
        };
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut means = Vec::with_capacity(resamples);
    let mut extreme = 0usize;
    // A tiny tolerance so that a zero observed difference gives p = 1, not a rounding accident.
    let tol = 1e-12;
    for _ in 0..resamples {
        let mut s = 0.0;
        for _ in 0..n {
            s += d[rng.random_range(0..n)];
        }
        let m = s / n as f64;
        if (m - observed).abs() + tol >= observed.abs() {
            extreme += 1;
        }
        means.push(m);
    }
    means.sort_by(|a, b| a.total_cmp(b));
    let q = |f: f64| means[((f * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    TestResult {
        method: TestMethod::Bootstrap,
        statistic: Some(observed),
        p_value: (1 + extreme) as f64 / (resamples + 1) as f64,
        b: None,
        c: None,
        ci95: Some((q(0.025), q(0.975))),
    }
}

/// Fallback when per-document samples are missing: z = (c − b) / sqrt(se_b² + se_c²). It ignores
/// the (positive) correlation between the runs, so it is conservative: it finds fewer
/// significant differences than the paired tests.
pub fn unpaired_z(baseline: f64, se_b: f64, candidate: f64, se_c: f64) -> TestResult {
    let se = (se_b * se_b + se_c * se_c).sqrt();
    let diff = candidate - baseline;
    let z = if se > 0.0 {
        diff / se
    } else if diff == 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    TestResult {
        method: TestMethod::UnpairedZ,
        statistic: Some(z),
        p_value: z_test_p(z),
        b: None,
        c: None,
        ci95: None,
    }
}

/// Two-sided p of a standard normal statistic.
pub fn z_test_p(z: f64) -> f64 {
    if !z.is_finite() {
        return if z.is_nan() { 1.0 } else { 0.0 };
    }
    erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0)
}

/// Survival function of the chi-square distribution with one degree of freedom.
pub fn chi2_1df_sf(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    erfc((x / 2.0).sqrt()).min(1.0)
}

/// Complementary error function (Chebyshev fit, Numerical Recipes `erfcc`; relative error
/// below 1.2e-7 everywhere — plenty for p-values).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Mean and `mean_stderr` (sample sd with n−1, divided by √n; TASKS_SPEC §1.6).
pub fn mean_stderr(xs: &[f64]) -> (f64, f64) {
    let n = xs.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, f64::NAN);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, (var / n as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn mcnemar_exact_hand_computed() {
        // b=1, c=5: n=6, P(X<=1) = (C(6,0)+C(6,1))/2^6 = 7/64, p = 14/64 = 0.21875.
        let r = mcnemar(1, 5);
        assert_eq!(r.method, TestMethod::McNemarExact);
        assert!(close(r.p_value, 0.21875, 1e-12), "{}", r.p_value);
        // b=0, c=10: p = 2 * 1/1024 = 0.001953125.
        assert!(close(mcnemar(0, 10).p_value, 0.001953125, 1e-12));
        // Symmetric.
        assert_eq!(mcnemar(5, 1).p_value, mcnemar(1, 5).p_value);
        // b=c: p capped at 1. No discordant pairs: p = 1.
        assert_eq!(mcnemar(3, 3).p_value, 1.0);
        assert_eq!(mcnemar(0, 0).p_value, 1.0);
        // b=2, c=22 (24 < 25, still exact): P(X<=2) = (1+24+276)/2^24 = 301/16777216,
        // p = 602/16777216 = 3.5881996e-5.
        assert!(close(mcnemar(2, 22).p_value, 602.0 / 16_777_216.0, 1e-15));
    }

    #[test]
    fn mcnemar_chi2_hand_computed() {
        // b=10, c=30: n=40 ≥ 25, χ² = (|10−30|−1)²/40 = 361/40 = 9.025;
        // p = erfc(sqrt(9.025/2)) = erfc(2.124264) = 0.0026631 (tables: χ²₁ = 9.025 → p ≈ 0.00266).
        let r = mcnemar(10, 30);
        assert_eq!(r.method, TestMethod::McNemarChi2);
        assert!(close(r.statistic.unwrap(), 9.025, 1e-12));
        assert!(close(r.p_value, 0.0026631, 1e-6), "{}", r.p_value);
        // b=15, c=15: χ² = (0−1)² → clamped to 0, p = 1.
        assert_eq!(mcnemar(15, 15).p_value, 1.0);
        // b=20, c=5: χ² = 14²/25 = 7.84, p = erfc(1.979899) = 0.0051103 (χ²₁ 7.84 → 0.00511).
        let r = mcnemar(20, 5);
        assert!(close(r.statistic.unwrap(), 7.84, 1e-12));
        assert!(close(r.p_value, 0.0051103, 1e-6), "{}", r.p_value);
    }

    #[test]
    fn chi2_and_normal_reference_points() {
        // χ²₁ critical value 3.841459 ↔ p = 0.05; z = 1.959964 ↔ p = 0.05.
        assert!(close(chi2_1df_sf(3.841459), 0.05, 1e-6));
        assert!(close(z_test_p(1.959964), 0.05, 1e-6));
        assert!(close(z_test_p(-2.575829), 0.01, 1e-6));
        assert_eq!(z_test_p(0.0), 1.0f64.min(erfc(0.0)));
    }

    #[test]
    fn mcnemar_paired_counts_discordant_pairs() {
        let base = [1.0, 1.0, 0.0, 0.0, 1.0];
        let cand = [1.0, 0.0, 1.0, 1.0, 1.0];
        let r = mcnemar_paired(&base, &cand);
        assert_eq!((r.b, r.c), (Some(1), Some(2)));
        // n=3, k=1: 2 * (1+3)/8 = 1.0.
        assert_eq!(r.p_value, 1.0);
    }

    #[test]
    fn bootstrap_is_deterministic_and_sensible() {
        let base: Vec<f64> = (0..200).map(|i| 0.4 + 0.001 * (i % 17) as f64).collect();
        let same = paired_bootstrap(&base, &base, 2000, 7);
        assert_eq!(same.p_value, 1.0);
        assert_eq!(same.statistic, Some(0.0));

        // Candidate uniformly lower by 0.05 with some noise: clearly significant.
        let cand: Vec<f64> = base
            .iter()
            .enumerate()
            .map(|(i, b)| b - 0.05 + 0.01 * ((i % 5) as f64 - 2.0))
            .collect();
        let a = paired_bootstrap(&base, &cand, 2000, 42);
        let b = paired_bootstrap(&base, &cand, 2000, 42);
        assert_eq!(a, b, "same seed must give the same result");
        assert!(a.p_value < 0.001, "{}", a.p_value);
        assert!(close(a.statistic.unwrap(), -0.05, 1e-9));
        let (lo, hi) = a.ci95.unwrap();
        assert!(lo < -0.05 && hi > -0.05 && hi < 0.0);

        // Noise only (differences ±0.1 alternating, mean 0): not significant.
        let noisy: Vec<f64> = base
            .iter()
            .enumerate()
            .map(|(i, b)| if i % 2 == 0 { b + 0.1 } else { b - 0.1 })
            .collect();
        let r = paired_bootstrap(&base, &noisy, 2000, 1);
        assert!(r.p_value > 0.5, "{}", r.p_value);
    }

    #[test]
    fn unpaired_z_hand_computed() {
        // 0.70 ± 0.03 vs 0.60 ± 0.04: z = −0.10 / 0.05 = −2, p = 0.0455003.
        let r = unpaired_z(0.70, 0.03, 0.60, 0.04);
        assert!(close(r.statistic.unwrap(), -2.0, 1e-12));
        assert!(close(r.p_value, 0.0455003, 1e-6), "{}", r.p_value);
        assert_eq!(unpaired_z(0.5, 0.0, 0.5, 0.0).p_value, 1.0);
    }

    #[test]
    fn mean_stderr_matches_binary_formula() {
        // p = 0.75, n = 4: sqrt(p(1−p)/(n−1)) = sqrt(0.1875/3) = 0.25.
        let (m, s) = mean_stderr(&[1.0, 1.0, 1.0, 0.0]);
        assert_eq!(m, 0.75);
        assert!(close(s, 0.25, 1e-12));
    }
}
