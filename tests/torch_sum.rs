//! `model::torch_sum` reproduces PyTorch's CPU float32 `sum` and `log_softmax` bit for bit:
//! against an independent rewrite of the cascade order on every length 1..=2048 (8 and 16
//! lanes), and against torch's own outputs (tests/fixtures/torch_f32.json, written by
//! scripts/torch_reference.py on an AVX2 machine, so 8 lanes, from inputs that both sides
//! rebuild from the same integer generator).
mod common;
use hermes_eval::model::torch_sum::{
    loglik, loglik_lanes, sleef_expf, sleef_logf, torch_sum_f32, torch_sum_lanes, LogSoftmax, LANES,
};

const VOCAB: usize = 49152;

/// splitmix64, as in scripts/torch_reference.py.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Per-token-log-probability-like values: negative, log-uniform in magnitude over [2^-14, 2^5).
fn logprob_like(rng: &mut SplitMix64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u = rng.next();
            let e = (127 - 14 + (u >> 59) % 19) as u32;
            f32::from_bits((1 << 31) | (e << 23) | (u as u32 & 0x7F_FFFF))
        })
        .collect()
}

/// A logit-like row: triangular bulk on [-8, 8) plus 6 peaks of +4..+20, multiples of 2^-19.
fn logit_row(rng: &mut SplitMix64) -> Vec<f32> {
    let mut a: Vec<i64> = (0..VOCAB)
        .map(|_| {
            let u = rng.next();
            (u >> 42) as i64 + ((u >> 20) & 0x3F_FFFF) as i64 - (1 << 22)
        })
        .collect();
    for _ in 0..6 {
        let u = rng.next();
        a[((u >> 32) % VOCAB as u64) as usize] +=
            (1 << 21) + ((u & 0xFFFF_FFFF) % (1 << 23)) as i64;
    }
    a.iter()
        .map(|&x| (x as f64 * 2f64.powi(-19)) as f32)
        .collect()
}

fn targets(rng: &mut SplitMix64, n: usize) -> Vec<u32> {
    (0..n).map(|_| (rng.next() % VOCAB as u64) as u32).collect()
}

/// torch's `cascade_sum` order written out for `n < 256·4·lanes` (one flush level): lane `l`
/// of ILP partial `k` sums vectors `4i + k` in blocks of 16 `i`s, the block sums added in
/// order, the unblocked rest summed apart and added to them; leftover vectors join partial 0,
/// then partials 1, 2, 3; last, the tail floats and then the lanes go into one scalar. Rows
/// shorter than one vector are the same with 1-float "vectors".
fn cascade_reference(x: &[f32], lanes: usize) -> f32 {
    let l = if x.len() < lanes { 1 } else { lanes };
    let nv = x.len() / l;
    let rows = nv / 4;
    assert!(rows < 256, "one flush level only");
    let vec = |v: usize, lane: usize| x[v * l + lane];
    let lane_sums: Vec<f32> = (0..l)
        .map(|lane| {
            let partial = |k: usize| {
                let full = rows / 16 * 16;
                let mut blocks = 0f32;
                for b in (0..full).step_by(16) {
                    let mut s = 0f32;
                    for i in b..b + 16 {
                        s += vec(4 * i + k, lane);
                    }
                    blocks += s;
                }
                let mut rest = 0f32;
                for i in full..rows {
                    rest += vec(4 * i + k, lane);
                }
                rest + blocks
            };
            let mut p0 = partial(0);
            for v in rows * 4..nv {
                p0 += vec(v, lane);
            }
            for k in 1..4 {
                p0 += partial(k);
            }
            p0
        })
        .collect();
    if l == 1 {
        return lane_sums[0];
    }
    let mut acc = 0f32;
    for &t in &x[nv * l..] {
        acc += t;
    }
    for s in lane_sums {
        acc += s;
    }
    acc
}

#[test]
fn sum_follows_torch_cascade_on_every_length_up_to_2048() {
    let (mut differs_seq, mut differs_f64) = (0, 0);
    assert_eq!(LANES, 16);
    for n in 1..=2048 {
        let x = logprob_like(&mut SplitMix64(n as u64), n);
        let got = torch_sum_f32(&x);
        assert_eq!(
            got.to_bits(),
            cascade_reference(&x, 16).to_bits(),
            "n = {n}"
        );
        // AVX2's 8 lanes: same cascade, other grouping.
        let got8 = torch_sum_lanes::<8>(&x);
        assert_eq!(
            got8.to_bits(),
            cascade_reference(&x, 8).to_bits(),
            "n = {n}, 8 lanes"
        );
        let seq: f32 = x.iter().fold(0.0, |a, &v| a + v);
        let f64: f64 = x.iter().map(|&v| v as f64).sum();
        differs_seq += (seq != got) as usize;
        differs_f64 += (f64 != got as f64) as usize;
    }
    // The order matters: a plain running sum or an f64 sum would not pass the checks above.
    assert!(
        differs_seq > 1000,
        "{differs_seq} lengths differ from a running sum"
    );
    assert!(
        differs_f64 > 1500,
        "{differs_f64} lengths differ from the f64 sum"
    );
}

fn fixture() -> serde_json::Value {
    let p = common::repo().join("tests/fixtures/torch_f32.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn sum_equals_torch() {
    let f = fixture();
    let cases = f["sums"].as_array().unwrap();
    assert!(cases.len() > 30);
    let mut differs_seq = 0;
    for c in cases {
        let n = c["len"].as_u64().unwrap() as usize;
        let x = logprob_like(&mut SplitMix64(c["seed"].as_u64().unwrap()), n);
        let want = c["sum"].as_f64().unwrap() as f32;
        assert_eq!(
            torch_sum_lanes::<8>(&x).to_bits(),
            want.to_bits(),
            "n = {n}"
        );
        differs_seq += (x.iter().fold(0f32, |a, &v| a + v) != want) as usize;
    }
    assert!(
        differs_seq > 10,
        "only {differs_seq} fixture sums tell the order apart"
    );
}

#[test]
fn log_softmax_equals_torch() {
    let f = fixture();
    let rows = f["log_softmax"].as_array().unwrap();
    let mut n = 0;
    for r in rows {
        let mut rng = SplitMix64(r["seed"].as_u64().unwrap());
        let row = logit_row(&mut rng);
        let ids = targets(&mut rng, 8);
        for (i, &t) in ids.iter().enumerate() {
            let want = r["values"][i].as_f64().unwrap() as f32;
            let ls = LogSoftmax::with_lanes::<8>(&row);
            assert_eq!(
                ls.at(row[t as usize]).to_bits(),
                want.to_bits(),
                "seed {} token {t}",
                r["seed"]
            );
            n += 1;
        }
        let ls = LogSoftmax::with_lanes::<8>(&row);
        let argmax = r["argmax"].as_u64().unwrap() as usize;
        assert_eq!(row[argmax], ls.max);
        assert_eq!(ls.at(ls.max), -ls.log_sum);
        // The f64 terms are the same quantity, more accurately; 16 lanes lose less than 8.
        let d8 = ls.log_sum_f64 - ls.log_sum as f64;
        let ls16 = LogSoftmax::of(&row);
        let d16 = ls16.log_sum_f64 - ls16.log_sum as f64;
        assert!(d8.abs() < 1e-4 && d16.abs() < 1e-4, "{d8} {d16}");
        assert!((ls16.log_sum_f64 - ls.log_sum_f64).abs() < 1e-12);
    }
    assert_eq!(n, 64);
}

/// torch's `log(sum(exp(x - max)))` on 4,286 rows: SLEEF's log, not a correctly rounded one.
#[test]
fn log_sum_equals_torch() {
    let f = fixture();
    let step = f["log_sums"]["k_step"].as_u64().unwrap() as usize;
    let want = f["log_sums"]["values"].as_array().unwrap();
    assert!(want.len() > 4000);
    let mut differs_ln = 0;
    for (i, w) in want.iter().enumerate() {
        let k = 1 + i * step;
        let c = (-(k as f64) / 1024.0) as f32;
        let mut row = vec![c; 4096];
        row[(k * 7919) % 4096] = 0.0;
        let ls = LogSoftmax::with_lanes::<8>(&row);
        let w = w.as_f64().unwrap() as f32;
        // The fixture holds -log_softmax at the row's 0, i.e. -((0 - 0) - log_sum).
        assert_eq!((-ls.at(0.0)).to_bits(), w.to_bits(), "k = {k}");
        // The same sum through a correctly rounded log.
        differs_ln += (((ls.sum as f64).ln() as f32) != w) as usize;
    }
    assert!(
        differs_ln > 0,
        "no row tells SLEEF's log from a correctly rounded one"
    );
}

/// lm-evaluation-harness's whole computation (log_softmax, gather, sum, float) on logit rows.
#[test]
fn continuation_loglik_equals_torch() {
    let f = fixture();
    for c in f["continuations"].as_array().unwrap() {
        let mut rng = SplitMix64(c["seed"].as_u64().unwrap());
        let n = c["len"].as_u64().unwrap() as usize;
        let rows: Vec<Vec<f32>> = (0..n).map(|_| logit_row(&mut rng)).collect();
        let ids = targets(&mut rng, n);
        let want = c["sum"].as_f64().unwrap();
        let l = loglik_lanes::<8, _>(&rows, &ids);
        assert_eq!(l.logprob, want, "{n} tokens");
        let f64 = l.logprob_f64.unwrap();
        // float32's accumulation of 6144 exponentials per lane loses the smallest ones: the f64
        // sum is lower, by ~1e-5 a token on these flat rows.
        assert!(
            (f64 - want).abs() < 2e-5 * n as f64,
            "{n} tokens: {f64} vs {want}"
        );
        assert!(!l.is_greedy);
    }
}

#[test]
fn greedy_is_the_first_largest_logit() {
    let mut row = vec![0f32; 64];
    row[5] = 3.0;
    row[9] = 3.0;
    assert!(loglik(&[&row], &[5]).is_greedy);
    assert!(!loglik(&[&row], &[9]).is_greedy);
    assert!(!loglik(&[&row, &row], &[5, 0]).is_greedy);
    // log_softmax of a uniform row is -ln(n).
    let l = loglik(&[vec![1.5f32; 64]], &[3]);
    assert!((l.logprob + (64f64).ln()).abs() < 1e-6);
}

fn ulps(a: f32, b: f64) -> f64 {
    let b32 = b as f32;
    let ulp = f32::from_bits(b32.abs().to_bits() + 1) - b32.abs();
    (a as f64 - b).abs() / ulp as f64
}

/// SLEEF's u10 functions: within 1 ulp of the true value (what SLEEF promises), and special
/// values as SLEEF returns them.
#[test]
fn sleef_exp_and_log_are_within_one_ulp() {
    let mut rng = SplitMix64(7);
    let mut worst = (0f64, 0f64);
    for _ in 0..200_000 {
        let u = rng.next();
        let x = -104.0 * (u >> 40) as f32 / (1u64 << 24) as f32; // [-104, 0]
        if x > -87.0 {
            worst.0 = worst.0.max(ulps(sleef_expf(x), (x as f64).exp()));
        }
        let y = f32::from_bits(((u >> 8) as u32 % (0x7f7f_ffff - 0x0080_0000)) + 0x0080_0000);
        worst.1 = worst.1.max(ulps(sleef_logf(y), (y as f64).ln()));
    }
    assert!(
        worst.0 < 1.0 && worst.1 < 1.0,
        "worst ulps exp {} log {}",
        worst.0,
        worst.1
    );
    assert_eq!(sleef_expf(0.0), 1.0);
    assert_eq!(sleef_expf(-105.0), 0.0);
    assert_eq!(sleef_expf(f32::NEG_INFINITY), 0.0);
    assert_eq!(sleef_expf(101.0), f32::INFINITY);
    assert!(sleef_expf(f32::NAN).is_nan());
    assert_eq!(sleef_logf(1.0), 0.0);
    assert_eq!(sleef_logf(0.0), f32::NEG_INFINITY);
    assert_eq!(sleef_logf(f32::INFINITY), f32::INFINITY);
    assert!(sleef_logf(-1.0).is_nan());
    assert!((sleef_logf(1e-40) as f64 - (1e-40f64).ln()).abs() < 1e-5);
}
