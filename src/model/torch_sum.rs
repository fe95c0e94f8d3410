//! A continuation's log-likelihood in PyTorch's CPU float32 arithmetic, the way lm-evaluation-harness
//! gets it (TASKS_SPEC §1.3 step 5): `F.log_softmax(logits, dim=-1)` over the vocabulary, `gather`
//! of the continuation tokens, `.sum()` of that 1-D float32 tensor, then Python `float`.
//!
//! Both kernels are reproduced operation by operation for a `Vectorized<float>` of `L` lanes
//! (16 with AVX-512, 8 with AVX2; torch takes the widest the CPU has):
//! - `log_softmax` (aten/src/ATen/native/cpu/SoftMaxKernel.cpp, `_vec_log_softmax_lastdim`): the
//!   row's max; `exp(x - max)` (SLEEF `expf_u10`, with FMA) summed into `L` lanes, lane `k` taking
//!   elements `k, k+L, ..`, the lanes then folded by halves (`a[i] += a[i+L/2]`, .., `+1`); SLEEF
//!   `logf_u10` of that sum; the output is `(x - max) - log_sum`, in that order.
//! - `sum` (aten/src/ATen/native/cpu/SumKernel.cpp, `cascade_sum`, float accumulator): a row of
//!   `n >= L` floats is read as `n / L` vectors, summed 4 vectors at a time (ILP) through a
//!   4-level cascade of 16-step blocks (`multi_row_sum`), the 4 ILP partials then added in order;
//!   the tail floats are added one by one to a scalar, then the `L` lanes in order. Rows shorter
//!   than `L` floats take the same cascade on scalars.
//!
//! What matters most is the first: each float32 lane accumulates `vocab / L` exponentials
//! (3,072 for a 49,152 vocabulary on AVX-512), and the smallest are rounded away, so torch's
//! `log_sum` is low by ~1e-5 and every token's log-probability high by as much, a bias that
//! grows with the continuation (1e-3 at ~100 tokens) and halves from 8 lanes to 16.
//! lm-evaluation-harness's reference outputs (shared/reference/lm-eval-f32) were computed with
//! 16 lanes: torch's forward on our machine followed by this 16-lane log_softmax gives them to
//! 5e-5 on PIQA's longest continuations, 8 lanes to 1e-3. [`LANES`] is therefore 16; the
//! 8-lane variant is checked bit for bit against torch on an AVX2 machine (tests/torch_sum.rs).
//!
//! The llama.cpp-arithmetic path (`Llama::llamacpp_arith`) does not use this module: it keeps the
//! double-precision sums that match llama.cpp.
// Sleef-derived constants are exact f32 splits; the lane loops mirror the C reference.
#![allow(
    clippy::excessive_precision,
    clippy::approx_constant,
    clippy::needless_range_loop
)]

use crate::doc::Loglik;

/// Floats in one `at::vec::Vectorized<float>` on AVX-512, the CPU of the reference outputs.
pub const LANES: usize = 16;

/// The terms of one row's log-softmax: its max and `log(sum(exp(x - max)))`, the latter both as
/// torch's `_vec_log_softmax_lastdim` computes it in float32 (`L` lanes) and in f64 (the same
/// `exp` values, summed in f64, and an f64 log).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogSoftmax {
    pub max: f32,
    /// The float32 sum of `exp(x - max)` and its SLEEF log.
    pub sum: f32,
    pub log_sum: f32,
    pub log_sum_f64: f64,
}

impl LogSoftmax {
    /// torch's terms with [`LANES`] lanes.
    pub fn of(row: &[f32]) -> Self {
        Self::with_lanes::<LANES>(row)
    }

    pub fn with_lanes<const L: usize>(row: &[f32]) -> Self {
        if row.is_empty() {
            return LogSoftmax {
                max: f32::NEG_INFINITY,
                sum: 0.0,
                log_sum: f32::NAN,
                log_sum_f64: f64::NAN,
            };
        }
        let max = row_max::<L>(row);
        let n = row.len();
        let e = |x: f32| sleef_expf(x - max);
        let (sum, sum_f64) = if n < L {
            // `vec_reduce_all(op, vec, n)`: lanes 1..n added one by one to lane 0.
            let first = e(row[0]);
            row.iter()
                .skip(1)
                .fold((first, first as f64), |(a, b), &x| {
                    let v = e(x);
                    (a + v, b + v as f64)
                })
        } else {
            let mut acc = [0f32; L];
            let mut acc64 = [0f64; L];
            for ((a, b), &x) in acc.iter_mut().zip(&mut acc64).zip(row) {
                *a = e(x);
                *b = *a as f64;
            }
            let whole = n - n % L;
            for chunk in row[L..whole].chunks_exact(L) {
                let v: [f32; L] = std::array::from_fn(|k| e(chunk[k]));
                for k in 0..L {
                    acc[k] += v[k];
                    acc64[k] += v[k] as f64;
                }
            }
            // `Vec::set(acc, acc + tail, n - whole)`: the tail updates only its first lanes.
            for ((a, b), &x) in acc.iter_mut().zip(&mut acc64).zip(&row[whole..]) {
                let v = e(x);
                *a += v;
                *b += v as f64;
            }
            (fold_halves(acc), acc64.iter().sum())
        };
        LogSoftmax {
            max,
            sum,
            log_sum: sleef_logf(sum),
            log_sum_f64: sum_f64.ln(),
        }
    }

    /// torch's float32 `log_softmax` of the row at a value `x` of the row:
    /// `(x - max) - log_sum`, in that order.
    pub fn at(&self, x: f32) -> f32 {
        (x - self.max) - self.log_sum
    }

    /// The same in f64 (`x - max` exact, the f64 log of the f64 sum).
    pub fn at_f64(&self, x: f32) -> f64 {
        (x as f64 - self.max as f64) - self.log_sum_f64
    }
}

/// `log_softmax(row)[target]` as torch's CPU kernel computes it in float32 ([`LANES`] lanes).
pub fn log_softmax_at(row: &[f32], target: usize) -> f32 {
    LogSoftmax::of(row).at(row[target])
}

/// `vec::reduce_all(vec::maximum, row)`: the largest value, NaN if any is NaN (the order does
/// not matter for a max; `L` lanes let it vectorise).
fn row_max<const L: usize>(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; L];
    let mut chunks = row.chunks_exact(L);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = if x > *a || x.is_nan() { x } else { *a };
        }
    }
    for &x in chunks.remainder() {
        acc[0] = if x > acc[0] || x.is_nan() { x } else { acc[0] };
    }
    let mut m = f32::NEG_INFINITY;
    for a in acc {
        if a.is_nan() {
            return a;
        }
        m = m.max(a);
    }
    m
}

/// `VecReduceAllSIMD` for `+` (AVX2 / AVX-512): the lanes' upper half added to the lower half
/// until one lane is left.
fn fold_halves<const L: usize>(mut a: [f32; L]) -> f32 {
    let mut h = L / 2;
    while h > 0 {
        for i in 0..h {
            a[i] += a[i + h];
        }
        h /= 2;
    }
    a[0]
}

/// SLEEF's `xexpf` (`Sleef_expf8_u10` / `Sleef_expf16_u10`, with fused multiply-adds): exp
/// within 1 ulp.
/// Written without branches so that the 8-lane loops above vectorise.
#[inline(always)]
pub fn sleef_expf(d: f32) -> f32 {
    const R_LN2F: f32 = std::f32::consts::LOG2_E;
    const L2UF: f32 = 0.693_145_75;
    const L2LF: f32 = 1.428_606_8e-6;
    // `vrint_vi2_vf` rounds to nearest, ties to even. The clamp only touches |d| > 138, whose
    // result the range checks below replace anyway (NaN stays NaN through `s`).
    let qf = (d * R_LN2F).round_ties_even().clamp(-200.0, 200.0);
    // The integer `qf` without a float-to-int conversion (which would not vectorise): in
    // `qf + 1.5·2^23` the integer sits in the low mantissa bits.
    let q = (qf + 12_582_912.0).to_bits() as i32 - 0x4b40_0000;
    let s = qf.mul_add(-L2UF, d);
    let s = qf.mul_add(-L2LF, s);
    let mut u = 0.000_198_527_62_f32;
    u = u.mul_add(s, 0.001_393_043_6);
    u = u.mul_add(s, 0.008_333_361);
    u = u.mul_add(s, 0.041_666_485);
    u = u.mul_add(s, 0.166_666_67);
    u = u.mul_add(s, 0.5);
    let u = 1.0 + (s * s).mul_add(u, s);
    let u = ldexp2(u, q);
    let u = if d < -104.0 { 0.0 } else { u };
    if d > 100.0 {
        f32::INFINITY
    } else {
        u
    }
}

/// SLEEF's `xlogf_u1` (`Sleef_logf8_u10`, AVX2 with FMA; the AVX-512 build takes the exponent
/// and mantissa from `vgetexp`/`vgetmant`, the same split but at float rounding boundaries of
/// `d·(4/3)`): log within 1 ulp, through a
/// double-float (`vfloat2`) evaluation: `log(d) = e·ln2 + 2x + x³·t(x²)`, `x = (m-1)/(m+1)`.
// Sleef's own f32 split of ln 2 (hi + lo), not an approximation of the std constant.
#[allow(clippy::approx_constant, clippy::excessive_precision)]
pub fn sleef_logf(d: f32) -> f32 {
    if d.is_nan() || d < 0.0 {
        return f32::NAN;
    }
    if d == 0.0 {
        return f32::NEG_INFINITY;
    }
    if d == f32::INFINITY {
        return f32::INFINITY;
    }
    let tiny = d < f32::MIN_POSITIVE;
    let d = if tiny {
        d * (4294967296.0 * 4294967296.0)
    } else {
        d
    };
    let mut e = ilogb2k(d * (1.0f32 / 0.75f32));
    let m = ldexp3(d, -e);
    if tiny {
        e -= 64;
    }
    let s = df_mul_f(Df(0.693_147_18, -1.904_654_3e-9), e as f32);
    let x = df_div(df_add2_ff(-1.0, m), df_add2_ff(1.0, m));
    let x2 = x.0 * x.0;
    let mut t = 0.302_729_5_f32;
    t = t.mul_add(x2, 0.399_610_82);
    t = t.mul_add(x2, 0.666_669_5);
    let s = df_add_dd(s, Df(x.0 * 2.0, x.1 * 2.0));
    let s = df_add_df(s, (x2 * x.0) * t);
    s.0 + s.1
}

/// A double-float: the unevaluated sum `hi + lo` (SLEEF `vfloat2`).
#[derive(Clone, Copy)]
struct Df(f32, f32);

/// `dfmul_vf2_vf2_vf` with FMA.
fn df_mul_f(x: Df, y: f32) -> Df {
    let hi = x.0 * y;
    Df(hi, x.1.mul_add(y, x.0.mul_add(y, -hi)))
}

/// `dfadd2_vf2_vf_vf`: two-sum of floats.
fn df_add2_ff(x: f32, y: f32) -> Df {
    let hi = x + y;
    let v = hi - x;
    Df(hi, (x - (hi - v)) + (y - v))
}

/// `dfadd_vf2_vf2_vf2` (|x| >= |y|).
fn df_add_dd(x: Df, y: Df) -> Df {
    let hi = x.0 + y.0;
    Df(hi, (((x.0 - hi) + y.0) + x.1) + y.1)
}

/// `dfadd_vf2_vf2_vf` (|x| >= |y|).
fn df_add_df(x: Df, y: f32) -> Df {
    let hi = x.0 + y;
    Df(hi, ((x.0 - hi) + y) + x.1)
}

/// `dfdiv_vf2_vf2_vf2` with FMA (`vrec` is a true division).
fn df_div(n: Df, d: Df) -> Df {
    let t = 1.0 / d.0;
    let hi = n.0 * t;
    let u = t.mul_add(n.0, -hi);
    let lo = (-d.1).mul_add(t, (-d.0).mul_add(t, 1.0));
    Df(hi, hi.mul_add(lo, n.1.mul_add(t, u)))
}

/// SLEEF's `vilogb2k_vi2_vf`: the unbiased exponent field.
fn ilogb2k(d: f32) -> i32 {
    ((d.to_bits() >> 23) & 0xff) as i32 - 0x7f
}

/// SLEEF's `vldexp3_vf_vf_vi2`: `q` added to the exponent field.
fn ldexp3(d: f32, q: i32) -> f32 {
    f32::from_bits((d.to_bits() as i32).wrapping_add(q << 23) as u32)
}

/// SLEEF's `vldexp2_vf_vf_vi2`: `d * 2^(e >> 1) * 2^(e - (e >> 1))`.
fn ldexp2(d: f32, e: i32) -> f32 {
    let h = e >> 1;
    d * pow2i(h) * pow2i(e - h)
}

/// SLEEF's `vpow2i_vf_vi2`: the float with exponent field `q + 127` (no range check, as SLEEF).
fn pow2i(q: i32) -> f32 {
    f32::from_bits((q.wrapping_add(0x7f) as u32) << 23)
}

/// torch's CPU `sum` of a contiguous 1-D float32 tensor (`cascade_sum`, [`LANES`] lanes).
pub fn torch_sum_f32(xs: &[f32]) -> f32 {
    torch_sum_lanes::<LANES>(xs)
}

/// [`torch_sum_f32`] for a `Vectorized<float>` of `L` lanes (8 on AVX2).
pub fn torch_sum_lanes<const L: usize>(xs: &[f32]) -> f32 {
    let n = xs.len();
    // The output is filled with 0 and the row's sum is added to it (`CastStoreAccumulate`).
    let total = if n >= L {
        // `vectorized_inner_sum`: the cascade over whole vectors, then the tail, then the lanes.
        let nvec = n / L;
        let lanes = row_sum::<L>(&xs[..nvec * L]);
        let mut acc = 0f32;
        for &x in &xs[nvec * L..] {
            acc += x;
        }
        for l in lanes {
            acc += l;
        }
        acc
    } else {
        // `scalar_outer_sum` / `scalar_inner_sum` of one row: the same cascade on scalars.
        row_sum::<1>(xs)[0]
    };
    0.0 + total
}

/// `row_sum` over the `W`-float elements of `data` (`W` = 1: scalars; `W` = lanes: vectors):
/// elements `4i + k` go to ILP partial `k` through [`multi_row_sum`]; the leftover elements are
/// added to partial 0, then partials 1..4 are added to partial 0 in order.
fn row_sum<const W: usize>(data: &[f32]) -> [f32; W] {
    const ILP: usize = 4;
    let n = data.len() / W;
    let size_ilp = n / ILP;
    let mut p = multi_row_sum::<W, ILP>(&data[..size_ilp * ILP * W], size_ilp);
    for e in data[size_ilp * ILP * W..n * W].chunks_exact(W) {
        add(&mut p[0], e);
    }
    let (first, rest) = p.split_at_mut(1);
    for r in rest.iter() {
        add(&mut first[0], r);
    }
    p[0]
}

/// `multi_row_sum`: `size` rows of `R` elements (of `W` floats) summed column-wise through a
/// cascade of 4 accumulator levels; a level is flushed into the next after every `2^level_power`
/// rows of the level below.
// Index loops mirror torch's `multi_row_sum` (aten/src/ATen/native/cpu/SumKernel.cpp) line by line.
#[allow(clippy::needless_range_loop)]
fn multi_row_sum<const W: usize, const R: usize>(data: &[f32], size: usize) -> [[f32; W]; R] {
    const LEVELS: usize = 4;
    let level_power = (ceil_log2(size) / LEVELS as u32).max(4);
    let level_step = 1usize << level_power;
    let level_mask = level_step - 1;
    let mut acc = [[[0f32; W]; R]; LEVELS];
    let row = |i: usize, k: usize| &data[(i * R + k) * W..(i * R + k + 1) * W];
    let mut i = 0;
    while i + level_step <= size {
        for _ in 0..level_step {
            for k in 0..R {
                add(&mut acc[0][k], row(i, k));
            }
            i += 1;
        }
        for j in 1..LEVELS {
            for k in 0..R {
                let lower = acc[j - 1][k];
                add(&mut acc[j][k], &lower);
                acc[j - 1][k] = [0f32; W];
            }
            if i & (level_mask << (j as u32 * level_power)) != 0 {
                break;
            }
        }
    }
    while i < size {
        for k in 0..R {
            add(&mut acc[0][k], row(i, k));
        }
        i += 1;
    }
    for j in 1..LEVELS {
        for k in 0..R {
            let upper = acc[j][k];
            add(&mut acc[0][k], &upper);
        }
    }
    acc[0]
}

fn add<const W: usize>(a: &mut [f32; W], b: &[f32]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// `at::native::utils::CeilLog2`: 1 for `x <= 2`, else `ceil(log2(x))`.
fn ceil_log2(x: usize) -> u32 {
    if x <= 2 {
        1
    } else {
        usize::BITS - (x - 1).leading_zeros()
    }
}

/// A continuation's log-likelihood from the logit rows that predict its tokens (row `k` predicts
/// `targets[k]`), as lm-evaluation-harness computes it on CPU in float32: `logprob` is torch's
/// float32 `log_softmax` values summed by torch's float32 `sum`, widened to f64;
/// `logprob_f64` the per-token values in f64 ([`LogSoftmax::at_f64`]) summed in f64;
/// `is_greedy` whether every token is the first largest logit of its row. [`LANES`] lanes.
pub fn loglik<R: AsRef<[f32]>>(rows: &[R], targets: &[u32]) -> Loglik {
    loglik_lanes::<LANES, R>(rows, targets)
}

/// [`loglik`] with torch's kernels on `L` lanes.
pub fn loglik_lanes<const L: usize, R: AsRef<[f32]>>(rows: &[R], targets: &[u32]) -> Loglik {
    let mut lps = Vec::with_capacity(targets.len());
    let mut sum_f64 = 0f64;
    let mut is_greedy = true;
    for (row, &t) in rows.iter().zip(targets) {
        let row = row.as_ref();
        let ls = LogSoftmax::with_lanes::<L>(row);
        let x = row[t as usize];
        lps.push(ls.at(x));
        sum_f64 += ls.at_f64(x);
        // The first largest value, as torch's `argmax` (and the f64 path) picks it.
        is_greedy &= row.iter().position(|&v| v == ls.max) == Some(t as usize);
    }
    Loglik {
        logprob: torch_sum_lanes::<L>(&lps) as f64,
        is_greedy,
        logprob_f64: Some(sum_f64),
    }
}
