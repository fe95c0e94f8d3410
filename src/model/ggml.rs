//! llama.cpp's CPU arithmetic for the non-matmul parts of a Llama layer, reproduced operation by
//! operation (ggml's x86 build with AVX-512, the path llama.cpp takes on the reference machine and
//! on ours): RMSNorm with a double sum, RoPE from ggml's cumulative angle cache with gcc's fused
//! rotation, an f16 KV cache, attention without flash attention (Q rounded to f16 for K·Q,
//! `llamafile_sgemm`'s 16-lane f16 dot products, `soft_max` with ggml's vectorised `expf`,
//! probabilities rounded to f16 for the V product) and SwiGLU with the same `expf`.
//!
//! The quantized pipeline (8-bit activations, a 135M model with large activations) amplifies any
//! rounding difference, so matching llama.cpp's log-likelihoods needs its exact operation order;
//! every function here names the ggml routine it follows. Everything is computed per token row
//! (attention per query row over its own keys), so a request scores the same alone or batched.
use half::f16;

/// Round to the nearest f16 (ties to even, as F16C's `vcvtps2ph`), back in f32.
#[inline(always)]
pub fn round_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// Runs `$body` compiled with FMA instructions where the CPU has them (`f32::mul_add` is a fused
/// multiply-add either way; without the feature it is a slow library call), and with AVX-512
/// where it has that.
macro_rules! with_fma {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])* $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                // The same operations in wider registers where the CPU has AVX-512 (Rust never
                // reorders float arithmetic, so the bits do not depend on the vector width).
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                #[target_feature(enable = "fma")]
                unsafe fn fast($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma")
                    && std::is_x86_feature_detected!("f16c")
                {
                    // SAFETY: the CPU supports every feature `wide` is compiled for.
                    return unsafe { wide($($arg),*) };
                }
                if std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports FMA.
                    return unsafe { fast($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}

/// `ggml_compute_forward_rms_norm_f32` followed by the MUL by the weight: the squares (f32) summed
/// in double, `scale = 1/sqrtf(mean + eps)` in f32, `y = (x·scale)·w`. `x` holds whole rows.
/// Rows in parallel (each on its own, as llama.cpp's threads split them).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    use rayon::prelude::*;
    let n = w.len();
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(n)
        .zip(x.par_chunks(n))
        .for_each(|(yr, xr)| {
            let sum: f64 = xr.iter().map(|&v| (v * v) as f64).sum();
            let mean = (sum / n as f64) as f32;
            let scale = 1.0f32 / (mean + eps).sqrt();
            for ((y, &v), &wi) in yr.iter_mut().zip(xr).zip(w) {
                *y = v * scale * wi;
            }
        });
    out
}

/// `ggml_rope_cache_init` for one position: `theta` starts at the position and is multiplied by
/// `theta_scale = powf(base, -2/n_dims)` in f32 at every pair; (cos, sin) of `theta / factor`.
pub fn rope_cache(
    pos: usize,
    n_dims: usize,
    base: f32,
    factors: Option<&[f32]>,
) -> Vec<(f32, f32)> {
    let theta_scale = base.powf(-2.0f32 / n_dims as f32);
    let mut theta = pos as f32;
    (0..n_dims / 2)
        .map(|i| {
            let t = theta / factors.map_or(1.0, |f| f[i]);
            theta *= theta_scale;
            (t.cos(), t.sin())
        })
        .collect()
}

with_fma! {
    /// `rotate_pairs` of GGML_ROPE_TYPE_NORMAL (adjacent pairs) over heads of `cache.len()·2`
    /// values, in place. gcc's vectorised loop computes `x0·cos − x1·sin` as
    /// `fma(x0, cos, −(x1·sin))` and `x0·sin + x1·cos` as `fma(x0, sin, x1·cos)` (checked against
    /// llama.cpp's output bit for bit).
    pub fn rope_rows(x: &mut [f32], cache: &[(f32, f32)]) {
        for head in x.chunks_exact_mut(cache.len() * 2) {
            for (pair, &(c, s)) in head.chunks_exact_mut(2).zip(cache) {
                let (x0, x1) = (pair[0], pair[1]);
                pair[0] = x0.mul_add(c, -(x1 * s));
                pair[1] = x0.mul_add(s, x1 * c);
            }
        }
    }
}

/// ggml's AVX-512 `ggml_v_expf` (the ARM optimized-routines polynomial, `scalef` for 2^n).
#[inline(always)]
pub fn expf(x: f32) -> f32 {
    let (n, j) = expf_reduced(x);
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    // scalef: j·2^n rounded once (the f64 product is exact; |n| ≤ 192 is a normal f64 power).
    // 2^n's exponent field n + 1023 is read off the bits of 2^52 + 1023 + n (exact: integers
    // below 2^53), not converted with `as i64`, whose saturation does not vectorise.
    let biased = (n as f64 + (4503599627370496.0 + 1023.0)).to_bits();
    (j as f64 * f64::from_bits(biased << 52)) as f32
}

/// `expf`'s range reduction and polynomial: `x = n·ln 2 + b` with `n` integral, and `j ≈ e^b`.
#[inline(always)]
fn expf_reduced(x: f32) -> (f32, f32) {
    let c = f32::from_bits;
    let r = c(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(c(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    (n, j)
}

with_fma! {
    /// `ggml_vec_swiglu_f32` of one span: `silu(g)·u` with `silu(x) = x / (1 + expf(0 − x))`.
    fn swiglu_span(g: &[f32], u: &[f32], out: &mut [f32]) {
        for ((o, &x), &y) in out.iter_mut().zip(g).zip(u) {
            *o = x / (1.0 + expf(0.0 - x)) * y;
        }
    }
}

/// `ggml_vec_swiglu_f32` of every value, spans in parallel.
pub fn swiglu(g: &[f32], u: &[f32]) -> Vec<f32> {
    use rayon::prelude::*;
    const SPAN: usize = 4096;
    let mut out = vec![0f32; g.len().min(u.len())];
    out.par_chunks_mut(SPAN)
        .zip(g.par_chunks(SPAN).zip(u.par_chunks(SPAN)))
        .for_each(|(o, (g, u))| swiglu_span(g, u, o));
    out
}

/// [`swiglu`] of rows that hold `g` then `u`, `width` values each (`[n, 2·width]`, a joined
/// gate-and-up product): `[n, width]`, the same values as `swiglu` of the halves apart.
pub fn swiglu_joined(gu: &[f32], width: usize) -> Vec<f32> {
    use rayon::prelude::*;
    // rows per task: spans of about swiglu's
    let rows = (4096 / width.max(1)).max(1);
    let mut out = vec![0f32; gu.len() / 2];
    out.par_chunks_mut(rows * width)
        .zip(gu.par_chunks(rows * 2 * width))
        .for_each(|(o, gu)| {
            for (o, gu) in o.chunks_exact_mut(width).zip(gu.chunks_exact(2 * width)) {
                let (g, u) = gu.split_at(width);
                swiglu_span(g, u, o);
            }
        });
    out
}

with_fma! {
    /// llama.cpp's `log_softmax` (tools/perplexity) of one row of logits at `target`: `expf(x −
    /// max)` summed in double, `x[target] − max − ln(sum)`; and whether `target` is the row's
    /// first largest value. The exponentials are ggml's `expf` and the sum runs in 16 lanes
    /// (then added in order), so it vectorises; it depends only on the row.
    pub fn log_softmax_at(row: &[f32], target: usize) -> (f64, bool) {
        let mut lanes = [f32::NEG_INFINITY; 16];
        let chunks = row.chunks_exact(16);
        let tail = chunks.remainder();
        for c in chunks.clone() {
            let c: &[f32; 16] = c.try_into().unwrap();
            for l in 0..16 {
                lanes[l] = lanes[l].max(c[l]);
            }
        }
        let max = tail.iter().fold(lanes.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)), |m, &x| m.max(x));
        let mut sums = [0f64; 16];
        for c in chunks {
            let c: &[f32; 16] = c.try_into().unwrap();
            for l in 0..16 {
                sums[l] += expf(c[l] - max) as f64;
            }
        }
        let mut sum = sums.iter().sum::<f64>();
        for &x in tail {
            sum += expf(x - max) as f64;
        }
        let first = row.iter().position(|&x| x == max);
        ((row[target] - max) as f64 - sum.ln(), first == Some(target))
    }
}

/// gcc's `_mm512_reduce_add_ps`: halves added 8+8, 4+4, then (0+2)+(1+3).
#[inline(always)]
fn reduce16(a: &[f32; 16]) -> f32 {
    let mut t8 = [0f32; 8];
    for i in 0..8 {
        t8[i] = a[i + 8] + a[i];
    }
    let t4 = [t8[4] + t8[0], t8[5] + t8[1], t8[6] + t8[2], t8[7] + t8[3]];
    (t4[0] + t4[2]) + (t4[1] + t4[3])
}

/// [`reduce16`] of every column of `lanes` (16 rows of `n`), the same additions in the same
/// tree, row by row instead of one column at a time (so they vectorise); the sums end in row 0.
fn reduce16_columns(lanes: &mut [f32], n: usize) {
    // t8[i] = a[i + 8] + a[i], t4[i] = t8[i + 4] + t8[i], then (t4[0] + t4[2]) + (t4[1] + t4[3])
    for half in [8, 4, 2, 1] {
        let (lo, hi) = lanes[..2 * half * n].split_at_mut(half * n);
        for (x, y) in lo.iter_mut().zip(hi.iter()) {
            *x += *y; // the same sum as `a[i + half] + a[i]` (addition commutes exactly)
        }
    }
}

/// One sequence's keys (or values) as the attention reads them, `[n_kv_head, p + s, head_dim]`:
/// the `p` cached positions of each kv head (`past`: `[n_kv_head, stride, head_dim]` with its
/// first `p` positions cached, already f16-rounded), then the `s` new ones (`new`: `s` rows of
/// `n_kv_head·head_dim` values, `new_stride` values apart) rounded to f16 — the KV cache
/// llama.cpp keeps (zeros for the `p` past positions where there is no `past`). Written in
/// order into a vector allocated, not zeroed, first.
pub fn kv_sequence(
    past: Option<(&[f32], usize)>,
    p: usize,
    (new, new_stride): (&[f32], usize),
    s: usize,
    n_kv_head: usize,
    head_dim: usize,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(n_kv_head * (p + s) * head_dim);
    for g in 0..n_kv_head {
        match past {
            Some((past, stride)) => {
                let from = g * stride * head_dim;
                out.extend_from_slice(&past[from..from + p * head_dim]);
            }
            None => out.resize(out.len() + p * head_dim, 0.0),
        }
        for i in 0..s {
            let src = i * new_stride + g * head_dim;
            out.extend(new[src..src + head_dim].iter().map(|&x| round_f16(x)));
        }
    }
    out
}

/// Shapes of one attention call.
pub struct AttnShape {
    /// Query rows (new positions) and keys (cached + new).
    pub s: usize,
    /// Values from one query row to the next in `q` (≥ `n_head·head_dim`).
    pub q_stride: usize,
    pub t: usize,
    /// Positions of each kv head in the `k`, `v` buffers (≥ `t`; the first `t` are read).
    pub stride: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub scale: f32,
    pub window: Option<usize>,
}

/// Causal attention of `s` query rows at positions `t − s .. t` as llama.cpp computes it without
/// flash attention. `q`: `s` rows of `n_head·head_dim` (after RoPE, f32), `q_stride` apart; `k`, `v`: `[n_kv_head,
/// stride, head_dim]` with `t` positions, already f16-rounded (the KV cache). Returns
/// `[s, n_head·head_dim]`.
///
/// - K·Q: `llamafile_sgemm` f16×f16 (Q rounded to f16), 16 f32 lanes accumulated with FMA over
///   `head_dim/16` steps and reduced by `_mm512_reduce_add_ps`;
/// - `soft_max_ext`: `kq·scale + mask`, ggml's `expf(x − max)`, sums of 16-wide chunks (from key
///   0) accumulated in double, multiplied by `(float)(1/sum)`;
/// - KQV: probabilities rounded to f16 against the transposed f16 V, lane `l` accumulating keys
///   `l, l+16, …`, reduced as above.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], sh: &AttnShape) -> Vec<f32> {
    use rayon::prelude::*;
    let width = sh.n_head * sh.head_dim;
    let mut out = vec![0f32; sh.s * width];
    // the AVX-512 kernels take heads of 64 and 128 values (Llama's, Mistral's, SmolLM's)
    let blocks = matches!(sh.head_dim, 64 | 128) && has_avx512f();
    out.par_chunks_mut(width).enumerate().for_each(|(i, o)| {
        attention_row(
            &q[i * sh.q_stride..i * sh.q_stride + width],
            k,
            v,
            sh,
            sh.t - sh.s + i,
            blocks,
            o,
        )
    });
    out
}

fn has_avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The K·Q scores `x·scale + 0` of keys `from..from + 16·blocks` (`keys`: every key of the
/// head, `q.len()` values each, a multiple of 16) into `w`, and their largest. Each score is
/// exactly what the one-key loop of [`attention_row`] computes: 16 lanes accumulated with FMA
/// chunk after chunk, then [`reduce16`]'s tree of additions, applied here to 16 keys' lanes at
/// once by pairing registers (halves, quarters, pairs, then single lanes: the same additions,
/// transposed).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn kq_blocks16<const C: usize>(
    keys: &[f32],
    q: &[f32],
    scale: f32,
    from: usize,
    w: &mut [f32],
) -> f32 {
    use std::arch::x86_64::*;
    let hd = 16 * C;
    let n = w.len();
    assert!(keys.len() >= (from + n) * hd && q.len() == hd && n.is_multiple_of(16));
    let qc: [__m512; C] = std::array::from_fn(|c| _mm512_loadu_ps(q.as_ptr().add(16 * c)));
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
    for blk in (0..n).step_by(16) {
        let kp = keys.as_ptr().add((from + blk) * hd);
        let acc: [__m512; 16] = std::array::from_fn(|j| {
            let mut a = _mm512_setzero_ps();
            for (c, qc) in qc.iter().enumerate() {
                a = _mm512_fmadd_ps(_mm512_loadu_ps(kp.add(j * hd + 16 * c)), *qc, a);
            }
            a
        });
        // t8[i] = a[i + 8] + a[i]: keys 2m and 2m + 1 in one register, 8 lanes each
        let s1: [__m512; 8] = std::array::from_fn(|m| {
            let (a, b) = (acc[2 * m], acc[2 * m + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
                _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
            )
        });
        // t4[i] = t8[i + 4] + t8[i]: keys 4n .. 4n + 4, one per 128-bit lane
        let s2: [__m512; 4] = std::array::from_fn(|n| {
            let (a, b) = (s1[2 * n], s1[2 * n + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b),
                _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b),
            )
        });
        // (t4[0] + t4[2]) and (t4[1] + t4[3]): 128-bit lane L holds keys L + 4·{0, 1} (or {2, 3})
        let s3: [__m512; 2] = std::array::from_fn(|h| {
            let (a, b) = (_mm512_castps_pd(s2[2 * h]), _mm512_castps_pd(s2[2 * h + 1]));
            _mm512_add_ps(
                _mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
                _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)),
            )
        });
        // their sum: lane 4L + m holds key L + 4m
        let s4 = _mm512_add_ps(
            _mm512_shuffle_ps::<0b10_00_10_00>(s3[0], s3[1]),
            _mm512_shuffle_ps::<0b11_01_11_01>(s3[0], s3[1]),
        );
        let x = _mm512_permutexvar_ps(order, s4);
        let x = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(scale)), _mm512_setzero_ps());
        max = _mm512_max_ps(max, x);
        _mm512_storeu_ps(w.as_mut_ptr().add(blk), x);
    }
    _mm512_reduce_max_ps(max)
}

/// The probabilities times the values of one head, as [`attention_row`]'s 16 lanes compute it
/// (lane `l` of output `d` accumulates `fma(v[j][d], p[j], ·)` over keys `j ≡ l (mod 16)` in order,
/// then [`reduce16_columns`]' additions), with each 16-wide slice of `d` kept in registers
/// instead of memory. `out`: `head_dim` values (a multiple of 16).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn av_lanes16(p: &[f32], v: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let hd = out.len();
    let n = p.len();
    assert!(v.len() >= n * hd && hd.is_multiple_of(16));
    let vp = v.as_ptr();
    for c in (0..hd).step_by(16) {
        let mut acc = [_mm512_setzero_ps(); 16];
        let mut j = 0;
        while j + 16 <= n {
            for (l, a) in acc.iter_mut().enumerate() {
                let x = _mm512_loadu_ps(vp.add((j + l) * hd + c));
                *a = _mm512_fmadd_ps(x, _mm512_set1_ps(p[j + l]), *a);
            }
            j += 16;
        }
        for (l, a) in acc.iter_mut().enumerate().take(n - j) {
            let x = _mm512_loadu_ps(vp.add((j + l) * hd + c));
            *a = _mm512_fmadd_ps(x, _mm512_set1_ps(p[j + l]), *a);
        }
        for half in [8, 4, 2, 1] {
            for l in 0..half {
                acc[l] = _mm512_add_ps(acc[l], acc[l + half]);
            }
        }
        _mm512_storeu_ps(out.as_mut_ptr().add(c), acc[0]);
    }
}

with_fma! {
    /// Every head of one query row at position `pos`.
    fn attention_row(q: &[f32], k: &[f32], v: &[f32], sh: &AttnShape, pos: usize, blocks: bool, out: &mut [f32]) {
        let (t, hd) = (sh.t, sh.head_dim);
        let n_rep = sh.n_head / sh.n_kv_head;
        let chunks = hd.div_ceil(16);
        let mut qh = vec![0f32; chunks * 16];
        let mut kp = vec![0f32; chunks * 16];
        let mut e = vec![0f32; (pos + 1).div_ceil(16) * 16];
        let mut w = vec![f32::NEG_INFINITY; pos + 1];
        let mut acc_v = vec![0f32; 16 * hd];
        let first = sh.window.map_or(0, |win| (pos + 1).saturating_sub(win));
        for h in 0..sh.n_head {
            let g = h / n_rep;
            for (d, x) in qh.iter_mut().enumerate() {
                *x = if d < hd { round_f16(q[h * hd + d]) } else { 0.0 };
            }
            let at = g * sh.stride * hd;
            let kh = &k[at..at + t * hd];
            let vh = &v[at..at + t * hd];
            // scores of the visible keys; the others stay -inf and give exp 0
            let mut max = f32::NEG_INFINITY;
            // whole blocks of 16 visible keys at once, where the CPU has AVX-512 (the same bits)
            let mut from = first;
            #[cfg(target_arch = "x86_64")]
            if blocks {
                // (no NaN: the largest is the same whatever the order it is taken in)
                let n = (pos + 1 - first) / 16 * 16;
                // SAFETY: `blocks` says the CPU has AVX-512F and head_dim is 64 or 128; keys
                // first..first + n are within the t keys of this head.
                let (q, w) = (&qh[..hd], &mut w[first..first + n]);
                max = unsafe {
                    match hd {
                        64 => kq_blocks16::<4>(kh, q, sh.scale, first, w),
                        _ => kq_blocks16::<8>(kh, q, sh.scale, first, w),
                    }
                };
                from += n;
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = blocks;
            for (j, wj) in w.iter_mut().enumerate().skip(from) {
                let key = &kh[j * hd..(j + 1) * hd];
                // whole 16-lane chunks of the key where it is a multiple of 16 long, else a
                // zero-padded copy
                let key = if hd % 16 == 0 {
                    key
                } else {
                    kp[..hd].copy_from_slice(key);
                    &kp[..]
                };
                let mut acc = [0f32; 16];
                for (kc, qc) in key.chunks_exact(16).zip(qh.chunks_exact(16)) {
                    let (kc, qc): (&[f32; 16], &[f32; 16]) =
                        (kc.try_into().unwrap(), qc.try_into().unwrap());
                    for l in 0..16 {
                        acc[l] = kc[l].mul_add(qc[l], acc[l]);
                    }
                }
                *wj = reduce16(&acc) * sh.scale + 0.0;
                max = max.max(*wj);
            }
            for (ej, &wj) in e.iter_mut().zip(&w) {
                *ej = expf(wj - max);
            }
            let mut sum = 0f64;
            for c in e.chunks_exact(16) {
                sum += reduce16(c.try_into().unwrap()) as f64;
            }
            let inv = (1.0 / sum) as f32;
            for x in e[..pos + 1].iter_mut() {
                *x = round_f16(*x * inv);
            }
            // lane l of output d accumulates keys l, l+16, … in order
            #[cfg(target_arch = "x86_64")]
            if blocks {
                // SAFETY: `blocks` says the CPU has AVX-512F and head_dim is 64 or 128; vh
                // holds the pos + 1 keys' values.
                unsafe { av_lanes16(&e[..pos + 1], &vh[..(pos + 1) * hd], &mut out[h * hd..(h + 1) * hd]) };
                continue;
            }
            acc_v.iter_mut().for_each(|x| *x = 0.0);
            for (j, &pj) in e[..pos + 1].iter().enumerate() {
                let lane = &mut acc_v[(j % 16) * hd..(j % 16 + 1) * hd];
                for (a, &vd) in lane.iter_mut().zip(&vh[j * hd..(j + 1) * hd]) {
                    *a = vd.mul_add(pj, *a);
                }
            }
            reduce16_columns(&mut acc_v, hd);
            out[h * hd..(h + 1) * hd].copy_from_slice(&acc_v[..hd]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exponent read off the bits of 2^52 + 1023 + n is `n as i64 + 1023`: every input
    /// gives the bits of the formula with the integer conversion.
    #[test]
    fn expf_scale_is_the_integer_exponent() {
        let reference = |x: f32| -> f32 {
            let (n, j) = expf_reduced(x);
            if n.abs() > 192.0 {
                return if n <= 0.0 { 0.0 } else { f32::INFINITY };
            }
            (j as f64 * f64::from_bits(((n as i64 + 1023) as u64) << 52)) as f32
        };
        let mut x = -140.0f32;
        while x < 140.0 {
            assert_eq!(expf(x).to_bits(), reference(x).to_bits(), "{x}");
            x += 0.0173;
        }
        for x in [0.0, -0.0, 88.7, 88.73, -87.3, -103.9, -104.0, 1e-30, -1e-30] {
            assert_eq!(expf(x).to_bits(), reference(x).to_bits(), "{x}");
        }
    }

    /// SwiGLU of joined gate-and-up rows gives the bits of SwiGLU of the halves apart, for
    /// widths below, at and above a task's span and a row count that leaves a partial task.
    #[test]
    fn swiglu_of_joined_rows_is_swiglu_of_the_halves() {
        for (width, n) in [(7, 3), (1536, 5), (5000, 3)] {
            let gu: Vec<f32> = (0..n * 2 * width)
                .map(|i| ((i * 7919) % 1000) as f32 / 97.0 - 5.0)
                .collect();
            let (mut g, mut u) = (vec![], vec![]);
            for row in gu.chunks_exact(2 * width) {
                g.extend_from_slice(&row[..width]);
                u.extend_from_slice(&row[width..]);
            }
            let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
            assert_eq!(
                bits(swiglu_joined(&gu, width)),
                bits(swiglu(&g, &u)),
                "{width}"
            );
        }
    }

    #[test]
    fn expf_is_close_to_libm() {
        for i in -1740..1770 {
            let x = i as f32 * 0.05;
            let (a, b) = (expf(x), x.exp());
            assert!((a - b).abs() <= b * 3e-7, "{x}: {a} vs {b}"); // normal range: ~2 ulp
        }
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf(-200.0), 0.0);
    }

    #[test]
    fn log_softmax_is_the_plain_one_and_argmax_the_first_largest() {
        for n in [5, 16, 49152 + 7] {
            let row: Vec<f32> = (0..n)
                .map(|i| ((i * 7919 % 1013) as f32) * 0.037 - 20.0)
                .collect();
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let lse = row
                .iter()
                .map(|&x| ((x - max) as f64).exp())
                .sum::<f64>()
                .ln();
            let first = row.iter().position(|&x| x == max).unwrap();
            for t in [0, n / 2, first, n - 1] {
                let (lp, greedy) = log_softmax_at(&row, t);
                let want = (row[t] - max) as f64 - lse;
                assert!((lp - want).abs() < 1e-5, "{n} {t}: {lp} vs {want}");
                assert_eq!(greedy, t == first, "{n} {t}");
            }
        }
        // a tie: only the first of the largest values is the greedy choice
        assert!(log_softmax_at(&[1.0, 3.0, 3.0], 1).1);
        assert!(!log_softmax_at(&[1.0, 3.0, 3.0], 2).1);
    }

    #[test]
    fn column_reduction_is_reduce16_of_each_column() {
        let n = 64;
        let mut lanes: Vec<f32> = (0..16 * n)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1.37e-3 + (i as f32).sin() * 1e4)
            .collect();
        let want: Vec<u32> = (0..n)
            .map(|d| reduce16(&std::array::from_fn(|l| lanes[l * n + d])).to_bits())
            .collect();
        reduce16_columns(&mut lanes, n);
        let got: Vec<u32> = lanes[..n].iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, want);
    }

    /// The 16-key blocks of K·Q and the register-held V product (AVX-512) give the bits of the
    /// key-by-key loops, for both head sizes they take.
    #[test]
    fn key_blocks_give_the_bits_of_one_key_at_a_time() {
        if !has_avx512f() {
            return;
        }
        let t = 75;
        for (head_dim, window) in [(64, None), (64, Some(20)), (128, None), (128, Some(20))] {
            let sh = AttnShape {
                s: t,
                q_stride: 6 * head_dim,
                t,
                stride: t + 3,
                n_head: 6,
                n_kv_head: 2,
                head_dim,
                scale: 1.0 / (head_dim as f32).sqrt(),
                window,
            };
            let width = sh.n_head * sh.head_dim;
            let val =
                |i: usize, m: usize| (((i * m) % 1999) as f32 - 999.0) * 1.7e-3 + (i as f32).sin();
            let q: Vec<f32> = (0..t * width).map(|i| val(i, 7919)).collect();
            let k: Vec<f32> = (0..2 * sh.stride * head_dim)
                .map(|i| round_f16(val(i, 104729)))
                .collect();
            let v: Vec<f32> = (0..2 * sh.stride * head_dim)
                .map(|i| round_f16(val(i, 31337)))
                .collect();
            for pos in [0, 15, 16, 17, 40, t - 1] {
                let row = &q[pos * width..(pos + 1) * width];
                let (mut a, mut b) = (vec![0f32; width], vec![0f32; width]);
                attention_row(row, &k, &v, &sh, pos, true, &mut a);
                attention_row(row, &k, &v, &sh, pos, false, &mut b);
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&a),
                    bits(&b),
                    "head_dim {head_dim}, position {pos}, window {window:?}"
                );
            }
        }
    }

    /// Queries and new keys read from rows with other values between them (a joined q/k/v
    /// product) give the bits of the same rows packed.
    #[test]
    fn strided_rows_give_the_bits_of_packed_rows() {
        let (s, p, nh, nkv, hd) = (5, 19, 4, 2, 64);
        let (qw, kw) = (nh * hd, nkv * hd);
        let total = qw + 2 * kw;
        let val = |i: usize| (((i * 7919) % 1999) as f32 - 999.0) * 1.3e-3;
        let joined: Vec<f32> = (0..s * total).map(val).collect();
        let part = |at: usize, w: usize| -> Vec<f32> {
            joined
                .chunks_exact(total)
                .flat_map(|r| r[at..at + w].iter().copied())
                .collect()
        };
        let (q, k) = (part(0, qw), part(qw, kw));
        let past: Vec<f32> = (0..nkv * (p + 2) * hd)
            .map(|i| round_f16(val(i + 5)))
            .collect();
        let t = p + s;
        let a = kv_sequence(Some((&past, p + 2)), p, (&k, kw), s, nkv, hd);
        let b = kv_sequence(Some((&past, p + 2)), p, (&joined[qw..], total), s, nkv, hd);
        assert_eq!(a.len(), nkv * t * hd);
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&b));
        let sh = |q_stride| AttnShape {
            s,
            q_stride,
            t,
            stride: t,
            n_head: nh,
            n_kv_head: nkv,
            head_dim: hd,
            scale: 0.125,
            window: None,
        };
        assert_eq!(
            bits(&attention(&q, &a, &a, &sh(qw))),
            bits(&attention(&joined, &a, &a, &sh(total)))
        );
    }

    #[test]
    fn attention_of_one_key_is_its_value() {
        let sh = AttnShape {
            s: 1,
            q_stride: 32,
            t: 1,
            stride: 1,
            n_head: 2,
            n_kv_head: 1,
            head_dim: 16,
            scale: 0.25,
            window: None,
        };
        let q: Vec<f32> = (0..32).map(|i| i as f32 * 0.1).collect();
        let k: Vec<f32> = (0..16).map(|i| round_f16(i as f32 * -0.3)).collect();
        let v: Vec<f32> = (0..16).map(|i| round_f16(i as f32 * 0.7 - 2.0)).collect();
        let y = attention(&q, &k, &v, &sh);
        assert_eq!(&y[..16], &v[..]);
        assert_eq!(&y[16..], &v[..]);
    }
}
