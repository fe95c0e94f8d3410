//! Weights and matrix products.
//!
//! Quantized weights are multiplied the way llama.cpp's CPU backend does it: every activation row
//! is quantized to the weight type's "vec-dot" format (Q8_1 for Q4_1, Q8_0 for Q4_0/Q8_0, Q8_K for
//! the k-quants) and dotted with each weight row block by block. Each activation row is handled on
//! its own, so a request's score never depends on what it is batched or padded with (candle's
//! stock `QMatMul` switches kernels with the row count). Q4_1 gets a hand-written AVX2 kernel
//! (candle 0.11 has no SIMD path for it); the other types use candle's `vec_dot`.
#[cfg(target_arch = "x86_64")]
use super::qgroup::{group_fns, lanes_reduced, GroupFn, RowDot};
use super::qgroup::{GroupLayout, GroupedRows, GROUP, GROUP_A};
use crate::error::{Error, Result};
use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    BlockQ8_0, GgmlType,
};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use half::f16;
use rayon::prelude::*;

/// A linear layer's weight, `[out_features, in_features]` (see [`Weight::dense`]).
pub enum Weight {
    /// Dense floating-point weight (f32, f16 or bf16) stored transposed, `[in_features,
    /// out_features]` contiguous; computed in that dtype by candle's gemm. gemm packs this
    /// operand on every call, and in this layout its panels are plain copies of consecutive
    /// values (the `[out, in]` layout made it gather one value per row: ~16 % of the f32
    /// path's time); the products and their order of summation are the same.
    Dense(Tensor),
    /// Quantized weight, computed with quantized activations.
    Quant(QuantWeight),
}

/// Rows a dense product needs to take gemm's matrix path (more than 16 × 16 outputs, two rows
/// at least); `wt` is the transposed weight.
fn dense_min_rows(wt: &Tensor) -> usize {
    (256 / wt.dims()[1].max(1) + 1).max(2)
}

impl Weight {
    /// A dense weight from its `[out_features, in_features]` tensor.
    pub fn dense(w: Tensor) -> Result<Weight> {
        if w.dtype() != DType::F32 || !w.is_contiguous() {
            return Ok(Weight::Dense(w.t()?.contiguous()?));
        }
        // f32 (every float model's compute type here): transposed in 32 × 32 tiles, several
        // times faster than candle's element-by-element strided copy of a whole model
        let (rows, cols) = w.dims2()?;
        let mut t = vec![0f32; rows * cols];
        storage_f32(&w, |src| {
            const B: usize = 32;
            for r0 in (0..rows).step_by(B) {
                for c0 in (0..cols).step_by(B) {
                    for r in r0..(r0 + B).min(rows) {
                        for c in c0..(c0 + B).min(cols) {
                            t[c * rows + r] = src[r * cols + c];
                        }
                    }
                }
            }
        })?;
        Ok(Weight::Dense(Tensor::from_vec(
            t,
            (cols, rows),
            &Device::Cpu,
        )?))
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let inner = *dims.last().unwrap();
        let n = x.elem_count() / inner;
        let x2 = x.reshape((n, inner))?;
        let y = match self {
            Weight::Dense(wt) => {
                // gemm computes one row (a matrix-vector product) or a tiny output (≤ 256
                // values) on paths whose sums are ordered differently from its matrix kernel:
                // a row computed alone would not equal the same row in a batch, and a number
                // would depend on --batch-size. Zero rows fill such a call up to the matrix
                // path.
                let min = dense_min_rows(wt);
                let xp = if n < min {
                    let pad = Tensor::zeros((min - n, inner), x2.dtype(), x2.device())?;
                    Tensor::cat(&[&x2, &pad], 0)?
                } else {
                    x2
                };
                let y = xp.to_dtype(wt.dtype())?.matmul(wt)?;
                y.narrow(0, 0, n)?.to_dtype(DType::F32)?
            }
            Weight::Quant(q) => q.forward(&x2)?,
        };
        let mut out_dims = dims;
        *out_dims.last_mut().unwrap() = y.dim(1)?;
        Ok(y.reshape(out_dims)?)
    }

    /// `n` rows of input features (row-major) → `n` rows of outputs, as [`Weight::forward`].
    pub fn forward_rows(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        match self {
            Weight::Quant(q) => Ok(q.forward_rows(x, n)),
            Weight::Dense(_) => {
                let t = Tensor::from_slice(x, (n, x.len() / n.max(1)), &Device::Cpu)?;
                Ok(self.forward(&t)?.flatten_all()?.to_vec1::<f32>()?)
            }
        }
    }

    /// [`Weight::forward_rows`] into the first `n` rows of outputs of `out`, which only grows
    /// (never shrinks: growing again would zero what it grows by): a buffer kept across calls is
    /// neither allocated nor zeroed again, as a vocabulary-wide output (tens of megabytes a
    /// call) otherwise is. Returns those rows.
    pub fn forward_rows_into<'o>(
        &self,
        x: &[f32],
        n: usize,
        out: &'o mut Vec<f32>,
    ) -> Result<&'o [f32]> {
        Ok(match self {
            Weight::Quant(q) => q.forward_rows_into(x, n, out),
            Weight::Dense(_) => {
                *out = self.forward_rows(x, n)?;
                out
            }
        })
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self, Weight::Quant(_))
    }

    /// `self`'s outputs, then `other`'s, as one weight: both dense of one dtype, or quantized
    /// of one type, with the same inputs; `None` otherwise.
    fn join(&self, other: &Weight) -> Result<Option<Weight>> {
        Ok(match (self, other) {
            (Weight::Dense(a), Weight::Dense(b))
                if a.dtype() == b.dtype() && a.dims()[0] == b.dims()[0] =>
            {
                Some(Weight::Dense(Tensor::cat(&[a, b], 1)?.contiguous()?))
            }
            (Weight::Quant(a), Weight::Quant(b)) if a.dtype == b.dtype && a.cols == b.cols => {
                a.kernel.join(&*b.kernel).map(|kernel| {
                    Weight::Quant(QuantWeight {
                        rows: a.rows + b.rows,
                        cols: a.cols,
                        dtype: a.dtype,
                        kernel,
                    })
                })
            }
            _ => None,
        })
    }

    pub fn out_features(&self) -> usize {
        match self {
            Weight::Dense(wt) => wt.dims()[1],
            Weight::Quant(q) => q.rows,
        }
    }

    /// The kernel this weight's products run on.
    pub fn kernel(&self) -> String {
        match self {
            Weight::Dense(w) => format!("{:?} gemm (candle)", w.dtype()).to_lowercase(),
            Weight::Quant(q) => q.kernel.name(),
        }
    }

    pub fn kind(&self) -> String {
        match self {
            Weight::Dense(w) => format!("{:?}", w.dtype()).to_lowercase(),
            Weight::Quant(q) => format!("{:?}", q.dtype).to_lowercase(),
        }
    }
}

/// Weights that multiply the same input (a layer's q, k and v; gate and up), as one product
/// where they can be joined ([`Weight::join`]): the input is read, and for quantized weights
/// quantized, once, and the threads share one pass over all the rows. Each output is the same
/// dot product as it would be apart, so the numbers do not change.
pub enum Linears {
    /// One weight whose outputs are the parts', one after another (their widths).
    Joined(Weight, Vec<usize>),
    Apart(Vec<Weight>),
}

impl Linears {
    pub fn new(ws: Vec<Weight>) -> Result<Linears> {
        let widths: Vec<usize> = ws.iter().map(Weight::out_features).collect();
        let mut it = ws.iter();
        let Some(first) = it.next() else {
            return Ok(Linears::Apart(ws));
        };
        let mut joined: Option<Weight> = None;
        for w in it {
            match joined.as_ref().unwrap_or(first).join(w)? {
                Some(j) => joined = Some(j),
                None => return Ok(Linears::Apart(ws)),
            }
        }
        Ok(match joined {
            Some(j) => Linears::Joined(j, widths),
            None => Linears::Apart(ws),
        })
    }

    /// The weights that run.
    pub fn weights(&self) -> Vec<&Weight> {
        match self {
            Linears::Joined(w, _) => vec![w],
            Linears::Apart(ws) => ws.iter().collect(),
        }
    }

    /// Each part's outputs for `x` (`[.., in_features]`).
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            Linears::Apart(ws) => ws.iter().map(|w| w.forward(x)).collect(),
            Linears::Joined(w, widths) => {
                let y = w.forward(x)?;
                let last = y.rank() - 1;
                let mut at = 0;
                widths
                    .iter()
                    .map(|&n| {
                        at += n;
                        Ok(y.narrow(last, at - n, n)?.contiguous()?)
                    })
                    .collect()
            }
        }
    }

    /// Each part's outputs for `n` rows of inputs (row-major), as [`Linears::forward`].
    pub fn forward_rows(&self, x: &[f32], n: usize) -> Result<Vec<Vec<f32>>> {
        match self {
            Linears::Apart(ws) => ws.iter().map(|w| w.forward_rows(x, n)).collect(),
            Linears::Joined(w, widths) => {
                let y = w.forward_rows(x, n)?;
                let total: usize = widths.iter().sum();
                let mut parts: Vec<Vec<f32>> =
                    widths.iter().map(|&k| Vec::with_capacity(n * k)).collect();
                for row in y.chunks_exact(total) {
                    let mut at = 0;
                    for (p, &k) in parts.iter_mut().zip(widths) {
                        p.extend_from_slice(&row[at..at + k]);
                        at += k;
                    }
                }
                Ok(parts)
            }
        }
    }
}

trait Kernel: Send + Sync {
    /// Which dot product runs, as selected at run time.
    fn name(&self) -> String;
    /// `out[i * rows + r] = dot(weight row r, x row i)` for `n` rows of `x` (`n * cols` floats).
    fn matmul(&self, x: &[f32], n: usize, out: &mut [f32]);
    fn as_any(&self) -> &dyn std::any::Any;
    /// This kernel's weight rows, then `other`'s, as one kernel (the same type and columns).
    fn join(&self, other: &dyn Kernel) -> Option<Box<dyn Kernel>>;
}

/// [`Kernel::as_any`] and [`Kernel::join`] of a kernel made of `w` (blocks, row after row),
/// `rows` and `cols`.
macro_rules! joinable {
    () => {
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
        fn join(&self, other: &dyn Kernel) -> Option<Box<dyn Kernel>> {
            let o = other.as_any().downcast_ref::<Self>()?;
            if o.cols != self.cols {
                return None;
            }
            let mut w = Vec::with_capacity(self.w.len() + o.w.len());
            w.extend_from_slice(&self.w);
            w.extend_from_slice(&o.w);
            Some(Box::new(Self {
                w,
                rows: self.rows + o.rows,
                cols: self.cols,
            }))
        }
    };
}

/// [`Kernel::as_any`] and [`Kernel::join`] of a kernel whose weights are a [`GroupedRows`] `w`.
macro_rules! grouped_joinable {
    () => {
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
        fn join(&self, other: &dyn Kernel) -> Option<Box<dyn Kernel>> {
            let o = other.as_any().downcast_ref::<Self>()?;
            Some(Box::new(Self {
                w: self.w.join(&o.w)?,
            }))
        }
    };
}

pub struct QuantWeight {
    pub rows: usize,
    pub cols: usize,
    pub dtype: GgmlDType,
    kernel: Box<dyn Kernel>,
}

impl QuantWeight {
    /// Take a quantized tensor of shape `[rows, cols]`.
    pub fn from_qtensor(qt: &QTensor) -> Result<Self> {
        let (rows, cols) = qt.shape().dims2()?;
        let dtype = qt.dtype();
        let bytes = qt.data()?;
        let kernel: Box<dyn Kernel> = match dtype {
            GgmlDType::Q4_1 => Box::new(Q41Kernel::new(
                &blocks::<BlockQ41>(&bytes, rows, cols)?,
                rows,
                cols,
            )),
            GgmlDType::Q4_0 => Box::new(Generic::<BlockQ4_0>::new(&bytes, rows, cols)?),
            GgmlDType::Q5_0 => Box::new(Generic::<BlockQ5_0>::new(&bytes, rows, cols)?),
            GgmlDType::Q5_1 => Box::new(Generic::<BlockQ5_1>::new(&bytes, rows, cols)?),
            GgmlDType::Q8_0 => {
                let raw = blocks::<BlockQ80>(&bytes, rows, cols)?;
                let w = GroupedRows::new(|k| widen_q8_0(&raw[k]), rows, cols);
                Box::new(Q80Kernel { w })
            }
            GgmlDType::Q2K => Box::new(Generic::<BlockQ2K>::new(&bytes, rows, cols)?),
            GgmlDType::Q3K => Box::new(Generic::<BlockQ3K>::new(&bytes, rows, cols)?),
            GgmlDType::Q4K => Box::new(Generic::<BlockQ4K>::new(&bytes, rows, cols)?),
            GgmlDType::Q5K => Box::new(Generic::<BlockQ5K>::new(&bytes, rows, cols)?),
            GgmlDType::Q6K => Box::new(Generic::<BlockQ6K>::new(&bytes, rows, cols)?),
            other => return Err(Error::model(format!("no quantized kernel for {other:?}"))),
        };
        Ok(Self {
            rows,
            cols,
            dtype,
            kernel,
        })
    }

    /// `n` rows of `cols` activations → `n` rows of `rows` outputs.
    pub fn forward_rows(&self, x: &[f32], n: usize) -> Vec<f32> {
        assert_eq!(x.len(), n * self.cols);
        // zeroed by calloc: a large one comes as fresh pages, not through memset
        let mut out = vec![0f32; n * self.rows];
        self.kernel.matmul(x, n, &mut out);
        out
    }

    /// [`QuantWeight::forward_rows`] into the first `n · rows` values of `out`, grown to
    /// that where it is shorter (the kernels write every output, so what `out` held does not
    /// matter); returns them.
    pub fn forward_rows_into<'o>(&self, x: &[f32], n: usize, out: &'o mut Vec<f32>) -> &'o [f32] {
        assert_eq!(x.len(), n * self.cols);
        let len = n * self.rows;
        if out.len() < len {
            out.resize(len, 0.0);
        }
        self.kernel.matmul(x, n, &mut out[..len]);
        &out[..len]
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, k) = x.dims2()?;
        if k != self.cols {
            return Err(Error::model(format!(
                "matmul: input has {k} features, weight expects {}",
                self.cols
            )));
        }
        let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; n * self.rows];
        self.kernel.matmul(&xs, n, &mut out);
        Ok(Tensor::from_vec(out, (n, self.rows), &Device::Cpu)?)
    }
}

/// Copy raw GGUF bytes into a vector of plain-old-data blocks.
fn blocks<T>(bytes: &[u8], rows: usize, cols: usize) -> Result<Vec<T>> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size) {
        return Err(Error::model(format!(
            "quantized tensor [{rows}, {cols}]: {} bytes is not a whole number of {size}-byte blocks",
            bytes.len()
        )));
    }
    let n = bytes.len() / size;
    let mut v: Vec<T> = Vec::with_capacity(n);
    // SAFETY: the block types are `repr(C)` plain old data (integers and f16 only) and we copy
    // exactly `n` whole blocks into freshly allocated, properly aligned storage.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr() as *mut u8, n * size);
        v.set_len(n);
    }
    Ok(v)
}

/// The f32 values of a CPU tensor's storage from its first element on (its layout's strides
/// tell where each element is).
pub(crate) fn storage_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(c) => Ok(f(&c.as_slice::<f32>()?[layout.start_offset()..])),
        _ => Err(Error::model("tensor not on the CPU")),
    }
}

#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so that closures capture the whole `Send` wrapper).
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

const ROW_CHUNK: usize = 16;

/// Run `dot(r, i)` for every weight row `r` and activation row `i`, in parallel over chunks of
/// weight rows (a chunk stays in L1 while every activation row passes over it).
fn for_each_dot(rows: usize, n: usize, out: &mut [f32], dot: impl Fn(usize, usize) -> f32 + Sync) {
    assert_eq!(out.len(), rows * n);
    let ptr = SendPtr(out.as_mut_ptr());
    (0..rows.div_ceil(ROW_CHUNK)).into_par_iter().for_each(|c| {
        // the pointer in a local: stores through it cannot change it, so it is not reloaded
        let base = ptr.get();
        let r0 = c * ROW_CHUNK;
        let r1 = (r0 + ROW_CHUNK).min(rows);
        for i in 0..n {
            for r in r0..r1 {
                // SAFETY: each (i, r) is written by exactly one task; the index is in bounds.
                unsafe { *base.add(i * rows + r) = dot(r, i) };
            }
        }
    });
}

// ---- activation quantizers, as llama.cpp's x86 (AVX2) `quantize_row_q8_0` / `_q8_1` ----------

#[repr(C)]
#[derive(Clone, Copy)]
struct BlockQ41 {
    d: f16,
    m: f16,
    qs: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ41>() == std::mem::size_of::<BlockQ4_1>());

#[repr(C)]
#[derive(Clone, Copy)]
struct BlockQ80 {
    d: f16,
    qs: [i8; 32],
}
const _: () = assert!(std::mem::size_of::<BlockQ80>() == std::mem::size_of::<BlockQ8_0>());

/// Scale 32 values to i8 like llama.cpp: d = max|x|/127, q = round-half-even(x·127/max|x|).
/// Returns `d` and the sum of the quants.
fn quant_block_q8(x: &[f32], qs: &mut [i8; 32]) -> (f32, i32) {
    #[cfg(target_arch = "x86_64")]
    if block_isa() == Isa::Avx512Vnni && x.len() == 32 {
        // SAFETY: the CPU has AVX-512 (F, BW, VL); x holds 32 values.
        return unsafe { quant_block_q8_avx512(x, qs) };
    }
    quant_block_q8_scalar(x, qs)
}

/// [`quant_block_q8`] with AVX-512, as llama.cpp's `quantize_row_q8_0`/`_q8_1` with AVX: the
/// same maximum, products `x·id` rounded to nearest-even by `cvtps2dq` (MXCSR's default), the
/// same integers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn quant_block_q8_avx512(x: &[f32], qs: &mut [i8; 32]) -> (f32, i32) {
    use std::arch::x86_64::*;
    let (a, b) = (
        _mm512_loadu_ps(x.as_ptr()),
        _mm512_loadu_ps(x.as_ptr().add(16)),
    );
    let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
    let d = amax / 127.0;
    let id = _mm512_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let (ia, ib) = (
        _mm512_cvtps_epi32(_mm512_mul_ps(a, id)),
        _mm512_cvtps_epi32(_mm512_mul_ps(b, id)),
    );
    _mm_storeu_si128(qs.as_mut_ptr() as *mut __m128i, _mm512_cvtsepi32_epi8(ia));
    _mm_storeu_si128(
        qs.as_mut_ptr().add(16) as *mut __m128i,
        _mm512_cvtsepi32_epi8(ib),
    );
    (d, _mm512_reduce_add_epi32(_mm512_add_epi32(ia, ib)))
}

fn quant_block_q8_scalar(x: &[f32], qs: &mut [i8; 32]) -> (f32, i32) {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        let r = (v * id).round_ties_even() as i32;
        *q = r as i8;
        sum += r;
    }
    (d, sum)
}

fn quantize_q8_0(x: &[f32]) -> Vec<BlockQ80> {
    x.chunks_exact(32)
        .map(|c| {
            let mut b = BlockQ80 {
                d: f16::ZERO,
                qs: [0; 32],
            };
            let (d, _) = quant_block_q8(c, &mut b.qs);
            b.d = f16::from_f32(d);
            b
        })
        .collect()
}

// ---- Q4_1 × Q8_1 ------------------------------------------------------------------------------

/// A Q4_1 weight block with its f16 scale and minimum widened to f32 once (exact).
#[derive(Clone, Copy)]
struct W41 {
    d: f32,
    m: f32,
    qs: [u8; 16],
}

/// A Q8_1 activation block with its f16 `d` and `s` widened to f32 (exact).
#[derive(Clone, Copy)]
struct A81 {
    d: f32,
    s: f32,
    qs: [i8; 32],
}

/// A Q8_0 block with its f16 scale widened to f32 (exact).
#[derive(Clone, Copy)]
struct B80 {
    d: f32,
    qs: [i8; 32],
}

/// llama.cpp's `quantize_row_q8_0`, the f16 scale widened to f32.
fn quantize_b80(x: &[f32]) -> Vec<B80> {
    x.chunks_exact(32)
        .map(|c| {
            let mut b = B80 {
                d: 0.0,
                qs: [0; 32],
            };
            let (d, _) = quant_block_q8(c, &mut b.qs);
            b.d = f16::from_f32(d).to_f32();
            b
        })
        .collect()
}

/// A Q8_0 activation block: its scale and quants, and −128 × the sum of each lane's four quants.
/// The VNNI tile multiplies unsigned weights `w + 128` (`vpdpbusd` takes one unsigned operand)
/// and starts each lane from `bias`: `Σ (w + 128)·a − 128·Σ a = Σ w·a`, the same integer as the
/// sign trick of llama.cpp's kernels in one instruction instead of two (quants are within
/// ±127: llama.cpp's quantizer never gives −128).
#[derive(Clone, Copy)]
struct A80 {
    d: f32,
    qs: [i8; 32],
    bias: [i32; 8],
}

impl From<B80> for A80 {
    fn from(b: B80) -> A80 {
        A80 {
            d: b.d,
            qs: b.qs,
            bias: std::array::from_fn(|l| {
                -128 * b.qs[4 * l..4 * l + 4]
                    .iter()
                    .map(|&q| q as i32)
                    .sum::<i32>()
            }),
        }
    }
}

fn widen_q8_0(b: &BlockQ80) -> B80 {
    B80 {
        d: b.d.to_f32(),
        qs: b.qs,
    }
}

/// Activation rows at a time in the multi-row kernels (each dot keeps its own accumulation order).
const COLS_AT_ONCE: usize = 4;

/// [`for_each_dot`] with a kernel that computes `COLS_AT_ONCE` activation rows per weight row.
fn for_each_dot_x4(
    rows: usize,
    n: usize,
    out: &mut [f32],
    dot: impl Fn(usize, usize) -> f32 + Sync,
    dot4: impl Fn(usize, usize) -> [f32; COLS_AT_ONCE] + Sync,
) {
    assert_eq!(out.len(), rows * n);
    let ptr = SendPtr(out.as_mut_ptr());
    (0..rows.div_ceil(ROW_CHUNK)).into_par_iter().for_each(|c| {
        // the pointer in a local: stores through it cannot change it, so it is not reloaded
        // before each one (a tenth of the kernels' time went to those reloads)
        let base = ptr.get();
        let r0 = c * ROW_CHUNK;
        let r1 = (r0 + ROW_CHUNK).min(rows);
        // SAFETY (every write below): each (i, r) is written by exactly one task; in bounds.
        let put = move |i: usize, r: usize, v: f32| unsafe { *base.add(i * rows + r) = v };
        let mut i = 0;
        while i + COLS_AT_ONCE <= n {
            for r in r0..r1 {
                for (k, v) in dot4(r, i).into_iter().enumerate() {
                    put(i + k, r, v);
                }
            }
            i += COLS_AT_ONCE;
        }
        for i in i..n {
            for r in r0..r1 {
                put(i, r, dot(r, i));
            }
        }
    });
}

/// The dot products of a block kernel: AVX2 with one and with `COLS_AT_ONCE` activation rows per
/// pass over a weight row, and the portable version in the same accumulation order.
struct BlockDots<W, A> {
    #[cfg(target_arch = "x86_64")]
    avx: DotFns<W, A>,
    /// The same integer products with AVX-512 VNNI (`vpdpbusd`), where the CPU has it (for
    /// weights with fewer rows than a group: [`GroupedRows`] computes the others).
    #[cfg(target_arch = "x86_64")]
    vnni: DotFns<W, A>,
    scalar: fn(&[W], &[A]) -> f32,
}

/// A kernel's dot of one weight row with one and with `COLS_AT_ONCE` activation rows.
#[cfg(target_arch = "x86_64")]
type DotFns<W, A> = (
    RowDot<W, A>,
    unsafe fn(&[W], [&[A]; COLS_AT_ONCE]) -> [f32; COLS_AT_ONCE],
);

impl<W: Sync, A: Sync> BlockDots<W, A> {
    /// `out[i * rows + r]` = dot of weight row `r` of `w` and activation row `i` (`bpr` blocks of
    /// `xq`), for `n` activation rows: by the group kernels where `w` is grouped, else by these.
    fn matmul<G>(&self, w: &GroupedRows<G>, xq: &[A], n: usize, out: &mut [f32])
    where
        G: GroupLayout<Row = W, Act = A>,
    {
        #[cfg(target_arch = "x86_64")]
        if w.grouped > 0 {
            return w.matmul(xq, n, out);
        }
        let (rows, bpr, w) = (w.rows, w.cols / 32, &w.w);
        let wr = |r: usize| &w[r * bpr..(r + 1) * bpr];
        let a = |i: usize| &xq[i * bpr..(i + 1) * bpr];
        #[cfg(target_arch = "x86_64")]
        if let Some((one, four)) = match block_isa() {
            Isa::Avx512Vnni => Some(self.vnni),
            Isa::Avx2 => Some(self.avx),
            Isa::Scalar => None,
        } {
            // SAFETY: block_isa saw the CPU support the features the kernels are compiled for.
            return for_each_dot_x4(
                rows,
                n,
                out,
                |r, i| unsafe { one(wr(r), [a(i)])[0] },
                |r, i| unsafe { four(wr(r), [a(i), a(i + 1), a(i + 2), a(i + 3)]) },
            );
        }
        for_each_dot(rows, n, out, |r, i| (self.scalar)(wr(r), a(i)));
    }
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

struct Q41Kernel {
    w: GroupedRows<G41>,
}

impl Q41Kernel {
    fn new(raw: &[BlockQ41], rows: usize, cols: usize) -> Self {
        let block = |k: usize| W41 {
            d: raw[k].d.to_f32(),
            m: raw[k].m.to_f32(),
            qs: raw[k].qs,
        };
        Q41Kernel {
            w: GroupedRows::new(block, rows, cols),
        }
    }
}

/// llama.cpp's `quantize_row_q8_1` (f16 `d` and `s = d·Σq`), `d` and `s` widened to f32.
fn quantize_a81(x: &[f32]) -> Vec<A81> {
    x.chunks_exact(32)
        .map(|c| {
            let mut b = A81 {
                d: 0.0,
                s: 0.0,
                qs: [0; 32],
            };
            let (d, sum) = quant_block_q8(c, &mut b.qs);
            b.d = f16::from_f32(d).to_f32();
            b.s = f16::from_f32(d * sum as f32).to_f32();
            b
        })
        .collect()
}

/// The instruction sets of the block kernels, best first. Every one computes the same integer
/// products and accumulates the floats in llama.cpp's order, so results are bit-identical.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum Isa {
    Avx512Vnni,
    Avx2,
    Scalar,
}

impl Isa {
    fn name(self) -> &'static str {
        match self {
            Isa::Avx512Vnni => "avx512-vnni",
            Isa::Avx2 => "avx2+fma",
            Isa::Scalar => "scalar",
        }
    }
}

fn has_avx512_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx2_fma()
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The instruction set [`BlockDots`] selects on this CPU (detected at run time, so one binary
/// runs on every x86-64 CPU). `HERMES_EVAL_CPU_KERNEL=avx2|scalar` selects a lesser one (to
/// compare kernels or work around a CPU fault); a name the CPU cannot run is ignored.
pub(super) fn block_isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        let best = if has_avx512_vnni() {
            Isa::Avx512Vnni
        } else if has_avx2_fma() {
            Isa::Avx2
        } else {
            Isa::Scalar
        };
        match std::env::var("HERMES_EVAL_CPU_KERNEL").as_deref() {
            Ok("scalar") => Isa::Scalar,
            Ok("avx2") if best != Isa::Scalar => Isa::Avx2,
            _ => best,
        }
    })
}

impl Kernel for Q41Kernel {
    grouped_joinable!();
    fn name(&self) -> String {
        format!("q4_1×q8_1 {}", block_isa().name())
    }
    fn matmul(&self, x: &[f32], n: usize, out: &mut [f32]) {
        let xq: Vec<A81> = x
            .par_chunks(self.w.cols)
            .flat_map_iter(quantize_a81)
            .collect();
        let dots = BlockDots {
            #[cfg(target_arch = "x86_64")]
            avx: (
                vec_dot_q4_1_q8_1_avx2::<1>,
                vec_dot_q4_1_q8_1_avx2::<COLS_AT_ONCE>,
            ),
            #[cfg(target_arch = "x86_64")]
            vnni: (
                vec_dot_q4_1_q8_1_vnni::<1>,
                vec_dot_q4_1_q8_1_vnni::<COLS_AT_ONCE>,
            ),
            scalar: vec_dot_q4_1_q8_1_scalar,
        };
        dots.matmul(&self.w, &xq, n, out);
    }
}

/// ggml's x86 `ggml_vec_dot_q4_1_q8_1` in portable code: eight lanes of four products each (lane
/// `l` holds quants `4l..4l+4` of the unpacked block), `acc[l] = fma(dx·dy, lane sum, acc[l])`,
/// the lanes reduced as `hsum_float_8`, and `summs = fma(m, s, summs)` (gcc contracts it) added
/// last.
fn vec_dot_q4_1_q8_1_scalar(x: &[W41], y: &[A81]) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (xb, yb) in x.iter().zip(y) {
        summs = xb.m.mul_add(yb.s, summs);
        let d = xb.d * yb.d;
        let mut q = [0i32; 32];
        for j in 0..16 {
            q[j] = (xb.qs[j] & 0x0F) as i32;
            q[j + 16] = (xb.qs[j] >> 4) as i32;
        }
        for (l, a) in acc.iter_mut().enumerate() {
            let s: i32 = (4 * l..4 * l + 4).map(|j| q[j] * yb.qs[j] as i32).sum();
            *a = d.mul_add(s as f32, *a);
        }
    }
    hsum8(&acc) + summs
}

/// `hsum_float_8` / tinyBLAS `hsum(__m256)`: high and low halves added, then pairs.
#[inline(always)]
fn hsum8(a: &[f32; 8]) -> f32 {
    let v = [a[4] + a[0], a[5] + a[1], a[6] + a[2], a[7] + a[3]];
    (v[0] + v[2]) + (v[1] + v[3])
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum8_avx(acc: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let s = _mm_add_ps(_mm256_extractf128_ps(acc, 1), _mm256_castps256_ps128(acc));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// The same dot of one weight row with `M` activation rows (the weight block is unpacked once).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn vec_dot_q4_1_q8_1_avx2<const M: usize>(x: &[W41], ys: [&[A81]; M]) -> [f32; M] {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); M];
    let mut summs = [0f32; M];
    let low = _mm_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    for (b, xb) in x.iter().enumerate() {
        let q = _mm_loadu_si128(xb.qs.as_ptr() as *const __m128i);
        let lo = _mm_and_si128(q, low);
        let hi = _mm_and_si128(_mm_srli_epi16(q, 4), low);
        let qx = _mm256_set_m128i(hi, lo);
        for k in 0..M {
            let yb = &ys[k][b];
            summs[k] = xb.m.mul_add(yb.s, summs[k]);
            let qy = _mm256_loadu_si256(yb.qs.as_ptr() as *const __m256i);
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(qx, qy), ones);
            let d = _mm256_set1_ps(xb.d * yb.d);
            acc[k] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[k]);
        }
    }
    std::array::from_fn(|k| hsum8_avx(acc[k]) + summs[k])
}

// ---- AVX-512 VNNI ---------------------------------------------------------------------------
//
// `vpdpbusd` sums the four u8×i8 products of each 32-bit lane without the i16 step of
// `maddubs` + `madd` (which never saturates here: |pair| ≤ 2·128·128), so every lane sum is the
// same integer as in the AVX2 kernels. Two activation rows share one 512-bit register, one per
// 256-bit half, so each row's eight f32 lanes are accumulated block after block exactly as
// llama.cpp's AVX2 / AVX-512-VL code does (ggml's `mul_sum_us8_pairs_float` with VNNI) and
// reduced by the same `hsum_float_8`: bit-identical results, fewer instructions per block.

/// Activation rows `2p` and `2p + 1` of a pair of 256-bit loads in one 512-bit register.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512vnni,avx2,fma")]
unsafe fn pair_512(
    lo: std::arch::x86_64::__m256i,
    hi: std::arch::x86_64::__m256i,
) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
}

/// The eight lanes of row `k` of a pair accumulator (`k` even: low half).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512vnni,avx2,fma")]
unsafe fn half_256(acc: std::arch::x86_64::__m512, high: bool) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    if high {
        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1))
    } else {
        _mm512_castps512_ps256(acc)
    }
}

/// `acc + (d0 | d1) · sum`: the block's scale of each row of a pair (`d0` in the low half, `d1` in
/// the high one) times its lane sums, accumulated.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512vnni,avx2,fma")]
#[inline]
unsafe fn fma_pair(
    acc: std::arch::x86_64::__m512,
    d0: f32,
    d1: f32,
    sum: std::arch::x86_64::__m512i,
) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    _mm512_fmadd_ps(pair_ps(d0, d1), _mm512_cvtepi32_ps(sum), acc)
}

/// `d0` in the low eight lanes, `d1` in the high eight (one scale per row of a pair).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512vnni,avx2,fma")]
#[inline]
unsafe fn pair_ps(d0: f32, d1: f32) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(d0), _mm512_set1_ps(d1))
}

/// Row `k`'s eight lanes: a half of its pair's accumulator, or the odd last row's own.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512vnni,avx2,fma")]
#[inline]
unsafe fn row_lanes(
    pairs: &[std::arch::x86_64::__m512],
    odd: std::arch::x86_64::__m256,
    k: usize,
) -> std::arch::x86_64::__m256 {
    match pairs.get(k / 2) {
        Some(&acc) => half_256(acc, k % 2 == 1),
        None => odd,
    }
}

/// [`vec_dot_q4_1_q8_1_avx2`] with VNNI: `M` ≤ 4 activation rows, in pairs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512vnni,avx2,fma")]
unsafe fn vec_dot_q4_1_q8_1_vnni<const M: usize>(x: &[W41], ys: [&[A81]; M]) -> [f32; M] {
    use std::arch::x86_64::*;
    const { assert!(M <= 4) };
    let pairs = M / 2;
    let mut acc2 = [_mm512_setzero_ps(); 2];
    let mut acc1 = _mm256_setzero_ps();
    let mut summs = [0f32; M];
    let low = _mm_set1_epi8(0x0F);
    for (b, xb) in x.iter().enumerate() {
        let q = _mm_loadu_si128(xb.qs.as_ptr() as *const __m128i);
        let lo = _mm_and_si128(q, low);
        let hi = _mm_and_si128(_mm_srli_epi16(q, 4), low);
        let qx = _mm256_set_m128i(hi, lo);
        for k in 0..M {
            summs[k] = xb.m.mul_add(ys[k][b].s, summs[k]);
        }
        let qx2 = _mm512_broadcast_i64x4(qx);
        for (p, acc) in acc2.iter_mut().enumerate().take(pairs) {
            let (y0, y1) = (&ys[2 * p][b], &ys[2 * p + 1][b]);
            let qy = pair_512(
                _mm256_loadu_si256(y0.qs.as_ptr() as *const __m256i),
                _mm256_loadu_si256(y1.qs.as_ptr() as *const __m256i),
            );
            let sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qx2, qy);
            *acc = fma_pair(*acc, xb.d * y0.d, xb.d * y1.d, sum);
        }
        if M % 2 == 1 {
            let y = &ys[M - 1][b];
            let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
            let sum = _mm256_dpbusd_epi32(_mm256_setzero_si256(), qx, qy);
            let d = _mm256_set1_ps(xb.d * y.d);
            acc1 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sum), acc1);
        }
    }
    std::array::from_fn(|k| hsum8_avx(row_lanes(&acc2[..pairs], acc1, k)) + summs[k])
}

/// Block `b` of [`GROUP`] consecutive Q4_1 weight rows: `q[c][4r..4r + 4]` is row `r`'s bytes
/// `4c..4c + 4` (low nibbles: quants `4c..4c + 4`, llama.cpp's lane `c`; high nibbles: lane
/// `c + 4`).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct G41 {
    q: [[u8; 64]; 4],
    d: [f32; GROUP],
    m: [f32; GROUP],
}

impl GroupLayout for G41 {
    type Row = W41;
    type Act = A81;
    fn group(row: impl Fn(usize) -> W41) -> Self {
        let mut g = G41 {
            q: [[0; 64]; 4],
            d: [0.0; GROUP],
            m: [0.0; GROUP],
        };
        for r in 0..GROUP {
            let x = row(r);
            for (c, q) in g.q.iter_mut().enumerate() {
                q[4 * r..4 * r + 4].copy_from_slice(&x.qs[4 * c..4 * c + 4]);
            }
            (g.d[r], g.m[r]) = (x.d, x.m);
        }
        g
    }
    fn row(&self, r: usize) -> W41 {
        let mut qs = [0u8; 16];
        for (c, q) in self.q.iter().enumerate() {
            qs[4 * c..4 * c + 4].copy_from_slice(&q[4 * r..4 * r + 4]);
        }
        W41 {
            d: self.d[r],
            m: self.m[r],
            qs,
        }
    }
    #[cfg(target_arch = "x86_64")]
    const KERNELS: [GroupFn<G41, A81>; GROUP_A] = group_fns!(q4_1_group_vnni);
    #[cfg(target_arch = "x86_64")]
    const DOT: RowDot<W41, A81> = vec_dot_q4_1_q8_1_vnni::<1>;
}

/// ggml's Q4_1 × Q8_1 for one [`G41`] group and `K` activation rows: lane `l` of each dot
/// accumulates `fma(dx·dy, lane sum, acc)` block after block, `summs = fma(m, s, summs)` is its
/// own chain, and `hsum_float_8(acc) + summs` ends it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512vnni,avx512bw,avx2,fma")]
unsafe fn q4_1_group_vnni<const K: usize>(
    g: &[G41],
    a: &[A81],
    bpr: usize,
) -> [[f32; GROUP]; GROUP_A] {
    use std::arch::x86_64::*;
    assert!(g.len() >= bpr && a.len() >= K * bpr);
    let low = _mm512_set1_epi8(0x0F);
    let mut acc = [[_mm512_setzero_ps(); 8]; K];
    let mut summs = [_mm512_setzero_ps(); K];
    for b in 0..bpr {
        let gb = g.get_unchecked(b);
        let dx = _mm512_load_ps(gb.d.as_ptr());
        let mx = _mm512_load_ps(gb.m.as_ptr());
        let raw: [__m512i; 4] = std::array::from_fn(|c| _mm512_load_si512(gb.q[c].as_ptr().cast()));
        for (i, (acc, summs)) in acc.iter_mut().zip(summs.iter_mut()).enumerate() {
            // SAFETY: i < K and b < bpr, within the length asserted above.
            let y = a.get_unchecked(i * bpr + b);
            *summs = _mm512_fmadd_ps(mx, _mm512_set1_ps(y.s), *summs);
            let d = _mm512_mul_ps(dx, _mm512_set1_ps(y.d));
            let yq = y.qs.as_ptr().cast::<i32>();
            for (l, acc) in acc.iter_mut().enumerate() {
                let wq = if l < 4 {
                    _mm512_and_si512(raw[l], low)
                } else {
                    _mm512_and_si512(_mm512_srli_epi16(raw[l - 4], 4), low)
                };
                let ya = _mm512_set1_epi32(yq.add(l).read_unaligned());
                let s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, ya);
                *acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), *acc);
            }
        }
    }
    lanes_reduced(&acc, Some(&summs))
}

/// [`dot_q8_0_tinyblas_avx2`] with VNNI (tinyBLAS's `updot` with `__AVX512VNNI__`): `M` ≤ 4
/// activation rows, in pairs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512vnni,avx2,fma")]
unsafe fn dot_q8_0_tinyblas_vnni<const M: usize>(x: &[B80], ys: [&[A80]; M]) -> [f32; M] {
    use std::arch::x86_64::*;
    const { assert!(M <= 4) };
    let pairs = M / 2;
    let mut acc2 = [_mm512_setzero_ps(); 2];
    let mut acc1 = _mm256_setzero_ps();
    for (b, xb) in x.iter().enumerate() {
        let a = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
        let sa = _mm256_sign_epi8(a, a);
        let sa2 = _mm512_broadcast_i64x4(sa);
        let signed =
            |y: &A80| _mm256_sign_epi8(_mm256_loadu_si256(y.qs.as_ptr() as *const __m256i), a);
        for (p, acc) in acc2.iter_mut().enumerate().take(pairs) {
            let (y0, y1) = (&ys[2 * p][b], &ys[2 * p + 1][b]);
            let sum = _mm512_dpbusd_epi32(
                _mm512_setzero_si512(),
                sa2,
                pair_512(signed(y0), signed(y1)),
            );
            *acc = fma_pair(*acc, xb.d * y0.d, xb.d * y1.d, sum);
        }
        if M % 2 == 1 {
            let y = &ys[M - 1][b];
            let sum = _mm256_dpbusd_epi32(_mm256_setzero_si256(), sa, signed(y));
            acc1 = _mm256_fmadd_ps(_mm256_set1_ps(xb.d * y.d), _mm256_cvtepi32_ps(sum), acc1);
        }
    }
    std::array::from_fn(|k| hsum8_avx(row_lanes(&acc2[..pairs], acc1, k)))
}

/// Block `b` of [`GROUP`] consecutive Q8_0 weight rows, biased to unsigned (`w + 128`):
/// `q[l][4r..4r + 4]` is row `r`'s quants `4l..4l + 4` (tinyBLAS's lane `l`).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct G80 {
    q: [[u8; 64]; 8],
    d: [f32; GROUP],
}

impl GroupLayout for G80 {
    type Row = B80;
    type Act = A80;
    fn group(row: impl Fn(usize) -> B80) -> Self {
        let mut g = G80 {
            q: [[0; 64]; 8],
            d: [0.0; GROUP],
        };
        for r in 0..GROUP {
            let x = row(r);
            for (l, q) in g.q.iter_mut().enumerate() {
                for (u, &v) in q[4 * r..4 * r + 4].iter_mut().zip(&x.qs[4 * l..4 * l + 4]) {
                    *u = (v as u8) ^ 0x80;
                }
            }
            g.d[r] = x.d;
        }
        g
    }
    fn row(&self, r: usize) -> B80 {
        B80 {
            d: self.d[r],
            qs: std::array::from_fn(|j| (self.q[j / 4][4 * r + j % 4] ^ 0x80) as i8),
        }
    }
    #[cfg(target_arch = "x86_64")]
    const KERNELS: [GroupFn<G80, A80>; GROUP_A] = group_fns!(q8_0_group_vnni);
    #[cfg(target_arch = "x86_64")]
    const DOT: RowDot<B80, A80> = dot_q8_0_tinyblas_vnni::<1>;
}

/// tinyBLAS's Q8_0 × Q8_0 for one [`G80`] group and `K` activation rows: `vpdpbusd` from the
/// activation's [`A80::bias`] gives each lane's `Σ w·a` (the integers llama.cpp's sign trick
/// gives), accumulated as `fma(dw·dx, lane sum, acc)` block after block and reduced as
/// `hsum_float_8`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512vnni,avx512bw,avx2,fma")]
unsafe fn q8_0_group_vnni<const K: usize>(
    g: &[G80],
    a: &[A80],
    bpr: usize,
) -> [[f32; GROUP]; GROUP_A] {
    use std::arch::x86_64::*;
    assert!(g.len() >= bpr && a.len() >= K * bpr);
    let mut acc = [[_mm512_setzero_ps(); 8]; K];
    for b in 0..bpr {
        let gb = g.get_unchecked(b);
        let dw = _mm512_load_ps(gb.d.as_ptr());
        for (i, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i < K and b < bpr, within the length asserted above.
            let y = a.get_unchecked(i * bpr + b);
            let d = _mm512_mul_ps(dw, _mm512_set1_ps(y.d));
            let yq = y.qs.as_ptr().cast::<i32>();
            for (l, acc) in acc.iter_mut().enumerate() {
                let wq = _mm512_load_si512(gb.q[l].as_ptr().cast());
                let ya = _mm512_set1_epi32(yq.add(l).read_unaligned());
                let s = _mm512_dpbusd_epi32(_mm512_set1_epi32(y.bias[l]), wq, ya);
                *acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), *acc);
            }
        }
    }
    lanes_reduced(&acc, None)
}

// ---- Q8_0 × Q8_0, as llama.cpp's llamafile `tinyBLAS_Q0_AVX` ------------------------------------
//
// With two or more activation rows (every prompt llama.cpp evaluates) its x86 CPU backend computes
// Q8_0 weights in `llamafile_sgemm`: eight f32 lanes of four int8 products each,
// `acc = fma(dw·dx, lane sums, acc)` block after block, lanes reduced like `hsum_float_8`.

struct Q80Kernel {
    w: GroupedRows<G80>,
}

impl Kernel for Q80Kernel {
    grouped_joinable!();
    fn name(&self) -> String {
        format!("q8_0×q8_0 (tinyBLAS order) {}", block_isa().name())
    }
    fn matmul(&self, x: &[f32], n: usize, out: &mut [f32]) {
        let xq: Vec<A80> = x
            .par_chunks(self.w.cols)
            .flat_map_iter(|r| quantize_b80(r).into_iter().map(A80::from))
            .collect();
        let dots = BlockDots {
            #[cfg(target_arch = "x86_64")]
            avx: (
                dot_q8_0_tinyblas_avx2::<1>,
                dot_q8_0_tinyblas_avx2::<COLS_AT_ONCE>,
            ),
            #[cfg(target_arch = "x86_64")]
            vnni: (
                dot_q8_0_tinyblas_vnni::<1>,
                dot_q8_0_tinyblas_vnni::<COLS_AT_ONCE>,
            ),
            scalar: dot_q8_0_tinyblas_scalar,
        };
        dots.matmul(&self.w, &xq, n, out);
    }
}

fn dot_q8_0_tinyblas_scalar(x: &[B80], y: &[A80]) -> f32 {
    let mut acc = [0f32; 8];
    for (xb, yb) in x.iter().zip(y) {
        let d = xb.d * yb.d;
        for (l, a) in acc.iter_mut().enumerate() {
            let s: i32 = (4 * l..4 * l + 4)
                .map(|j| xb.qs[j] as i32 * yb.qs[j] as i32)
                .sum();
            *a = d.mul_add(s as f32, *a);
        }
    }
    hsum8(&acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q8_0_tinyblas_avx2<const M: usize>(x: &[B80], ys: [&[A80]; M]) -> [f32; M] {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); M];
    let ones = _mm256_set1_epi16(1);
    for (b, xb) in x.iter().enumerate() {
        let a = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
        let sa = _mm256_sign_epi8(a, a);
        for k in 0..M {
            let yb = &ys[k][b];
            let y = _mm256_loadu_si256(yb.qs.as_ptr() as *const __m256i);
            let p = _mm256_maddubs_epi16(sa, _mm256_sign_epi8(y, a));
            let s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
            let d = _mm256_set1_ps(xb.d * yb.d);
            acc[k] = _mm256_fmadd_ps(d, s, acc[k]);
        }
    }
    std::array::from_fn(|k| hsum8_avx(acc[k]))
}

// ---- other types through candle's vec_dot ------------------------------------------------------

struct Generic<T: GgmlType> {
    w: Vec<T>,
    rows: usize,
    cols: usize,
}

impl<T: GgmlType> Generic<T> {
    fn new(bytes: &[u8], rows: usize, cols: usize) -> Result<Self> {
        if !cols.is_multiple_of(T::BLCK_SIZE) {
            return Err(Error::model(format!(
                "{:?} weight rows of {cols} values are not whole blocks of {}",
                T::DTYPE,
                T::BLCK_SIZE
            )));
        }
        Ok(Self {
            w: blocks::<T>(bytes, rows, cols)?,
            rows,
            cols,
        })
    }
}

/// Quantize one activation row to `V`, with llama.cpp's rounding for Q8_0.
fn quantize_act<V: GgmlType>(x: &[f32]) -> Vec<V> {
    if V::DTYPE == GgmlDType::Q8_0 {
        let q = quantize_q8_0(x);
        // SAFETY: V is candle's BlockQ8_0, which has BlockQ80's size and field layout.
        let mut q = std::mem::ManuallyDrop::new(q);
        unsafe { Vec::from_raw_parts(q.as_mut_ptr() as *mut V, q.len(), q.capacity()) }
    } else {
        let mut out = vec![V::zeros(); x.len() / V::BLCK_SIZE];
        V::from_float(x, &mut out);
        out
    }
}

impl<T: GgmlType + 'static> Kernel for Generic<T> {
    joinable!();
    fn name(&self) -> String {
        format!("{:?}×{:?} (candle vec_dot)", T::DTYPE, T::VecDotType::DTYPE).to_lowercase()
    }
    fn matmul(&self, x: &[f32], n: usize, out: &mut [f32]) {
        let bpr_w = self.cols / T::BLCK_SIZE;
        let bpr_x = self.cols / T::VecDotType::BLCK_SIZE;
        let xq: Vec<T::VecDotType> = x
            .par_chunks(self.cols)
            .flat_map_iter(quantize_act::<T::VecDotType>)
            .collect();
        for_each_dot(self.rows, n, out, |r, i| {
            T::vec_dot(
                self.cols,
                &self.w[r * bpr_w..(r + 1) * bpr_w],
                &xq[i * bpr_x..(i + 1) * bpr_x],
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect()
    }

    /// Six activation rows: four through the multi-row kernel, two through the single-row one.
    #[test]
    fn q4_1_avx2_matches_scalar_and_dequantized_product() {
        let (rows, cols, n) = (40, 576, 7);
        let w = Tensor::from_vec(rand_vec(rows * cols, 1), (rows, cols), &Device::Cpu).unwrap();
        let qt = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let qw = QuantWeight::from_qtensor(&qt).unwrap();
        let x = rand_vec(n * cols, 2);
        let xt = Tensor::from_vec(x.clone(), (n, cols), &Device::Cpu).unwrap();
        let y = qw.forward(&xt).unwrap().to_vec2::<f32>().unwrap();
        // exact scalar reference of the same quantized arithmetic
        let kern = Q41Kernel::new(
            &blocks::<BlockQ41>(&qt.data().unwrap(), rows, cols).unwrap(),
            rows,
            cols,
        );
        let w41 = kern.w.row_blocks();
        let deq = qt
            .dequantize(&Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for i in 0..n {
            let xq = quantize_a81(&x[i * cols..(i + 1) * cols]);
            for r in 0..rows {
                let s = vec_dot_q4_1_q8_1_scalar(&w41[r * 18..(r + 1) * 18], &xq);
                assert_eq!(s, y[i][r]);
                let exact: f32 = deq[r].iter().zip(&x[i * cols..]).map(|(a, b)| a * b).sum();
                assert!((exact - y[i][r]).abs() < 0.05, "{exact} vs {}", y[i][r]);
            }
        }
    }

    /// Joined weights (q/k/v, gate/up) of row counts that are not whole groups: the joined
    /// kernel holds every row's blocks in order and computes the scalar reference's bits for
    /// each count of activation rows a group pass can end on.
    #[test]
    fn joined_q4_1_weights_keep_rows_and_bits() {
        let cols = 576;
        let kernel = |rows: usize, seed: u64| {
            let w = rand_vec(rows * cols, seed);
            let t = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
            let qt = QTensor::quantize(&t, GgmlDType::Q4_1).unwrap();
            Q41Kernel::new(
                &blocks::<BlockQ41>(&qt.data().unwrap(), rows, cols).unwrap(),
                rows,
                cols,
            )
        };
        let (a, b) = (kernel(20, 11), kernel(40, 12));
        let joined = a.join(&b).unwrap();
        let j = joined.as_any().downcast_ref::<Q41Kernel>().unwrap();
        let (ra, rb, rj) = (a.w.row_blocks(), b.w.row_blocks(), j.w.row_blocks());
        assert_eq!(rj.len(), ra.len() + rb.len());
        for (x, y) in rj.iter().zip(ra.iter().chain(&rb)) {
            assert_eq!((x.d, x.m, x.qs), (y.d, y.m, y.qs));
        }
        if block_isa() == Isa::Avx512Vnni {
            assert_eq!((j.w.grouped, j.w.w.len()), (48, 12 * 18));
            // parts too small for a group each still make one when joined
            let small = kernel(8, 14).join(&kernel(8, 15)).unwrap();
            let small = small.as_any().downcast_ref::<Q41Kernel>().unwrap();
            assert_eq!((small.w.grouped, small.w.w.len()), (16, 0));
        }
        for n in [1, 2, 3, 4, 5, 8] {
            let x = rand_vec(n * cols, 13 + n as u64);
            let mut out = vec![0f32; 60 * n];
            joined.matmul(&x, n, &mut out);
            for i in 0..n {
                let xq = quantize_a81(&x[i * cols..(i + 1) * cols]);
                for r in 0..60 {
                    let want = vec_dot_q4_1_q8_1_scalar(&rj[r * 18..(r + 1) * 18], &xq);
                    assert_eq!(
                        out[i * 60 + r].to_bits(),
                        want.to_bits(),
                        "n {n} row {r} act {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn q8_0_avx2_matches_scalar_tinyblas_order() {
        let (rows, cols, n) = (20, 576, 7);
        let w = Tensor::from_vec(rand_vec(rows * cols, 5), (rows, cols), &Device::Cpu).unwrap();
        let qt = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let qw = QuantWeight::from_qtensor(&qt).unwrap();
        let wb: Vec<B80> = blocks::<BlockQ80>(&qt.data().unwrap(), rows, cols)
            .unwrap()
            .iter()
            .map(widen_q8_0)
            .collect();
        let x = rand_vec(n * cols, 6);
        let y = qw.forward_rows(&x, n);
        for i in 0..n {
            let xq: Vec<A80> = quantize_q8_0(&x[i * cols..(i + 1) * cols])
                .iter()
                .map(|b| A80::from(widen_q8_0(b)))
                .collect();
            for r in 0..rows {
                let s = dot_q8_0_tinyblas_scalar(&wb[r * 18..(r + 1) * 18], &xq);
                assert_eq!(s, y[i * rows + r]);
            }
        }
    }

    /// Every kernel this CPU can run gives the scalar reference's bits, for one and for four
    /// activation rows (the VNNI kernels pair rows in 512-bit registers).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_x86_kernel_gives_the_scalar_bits() {
        let (rows, cols) = (20, 1024);
        let wt = Tensor::from_vec(rand_vec(rows * cols, 9), (rows, cols), &Device::Cpu).unwrap();
        let x = rand_vec(4 * cols, 10);
        let q41 = QTensor::quantize(&wt, GgmlDType::Q4_1).unwrap();
        let k41 = Q41Kernel::new(
            &blocks::<BlockQ41>(&q41.data().unwrap(), rows, cols).unwrap(),
            rows,
            cols,
        );
        let a81: Vec<Vec<A81>> = x.chunks(cols).map(quantize_a81).collect();
        let bpr = cols / 32;
        let w41 = k41.w.row_blocks();
        if has_avx512_vnni() {
            group_bits::<G41>("q4_1", &w41, &a81, vec_dot_q4_1_q8_1_scalar);
        }
        let q80 = QTensor::quantize(&wt, GgmlDType::Q8_0).unwrap();
        let w80: Vec<B80> = blocks::<BlockQ80>(&q80.data().unwrap(), rows, cols)
            .unwrap()
            .iter()
            .map(widen_q8_0)
            .collect();
        let b80: Vec<Vec<A80>> = x
            .chunks(cols)
            .map(|r| {
                quantize_q8_0(r)
                    .iter()
                    .map(|b| A80::from(widen_q8_0(b)))
                    .collect()
            })
            .collect();
        if has_avx512_vnni() {
            group_bits::<G80>("q8_0", &w80, &b80, dot_q8_0_tinyblas_scalar);
        }
        type Kernels = (&'static str, DotFns<W41, A81>, DotFns<B80, A80>);
        let mut kernels: Vec<Kernels> = vec![];
        if has_avx2_fma() {
            kernels.push((
                "avx2",
                (vec_dot_q4_1_q8_1_avx2::<1>, vec_dot_q4_1_q8_1_avx2::<4>),
                (dot_q8_0_tinyblas_avx2::<1>, dot_q8_0_tinyblas_avx2::<4>),
            ));
        }
        if has_avx512_vnni() {
            kernels.push((
                "vnni",
                (vec_dot_q4_1_q8_1_vnni::<1>, vec_dot_q4_1_q8_1_vnni::<4>),
                (dot_q8_0_tinyblas_vnni::<1>, dot_q8_0_tinyblas_vnni::<4>),
            ));
        }
        for (name, q41, q80) in kernels {
            same_bits(
                &format!("{name} q4_1"),
                &w41,
                &a81,
                bpr,
                q41,
                vec_dot_q4_1_q8_1_scalar,
            );
            same_bits(
                &format!("{name} q8_0"),
                &w80,
                &b80,
                bpr,
                q80,
                dot_q8_0_tinyblas_scalar,
            );
        }
    }

    type ScalarDot<W, A> = fn(&[W], &[A]) -> f32;

    /// Every instance of a group kernel (`K` = 1..=`GROUP_A` activation rows, taken from `acts`
    /// in turn) on the first group of `w` gives `scalar`'s bits for its `K` rows and zeros after
    /// them.
    #[cfg(target_arch = "x86_64")]
    fn group_bits<G: GroupLayout>(
        what: &str,
        w: &[G::Row],
        acts: &[Vec<G::Act>],
        scalar: ScalarDot<G::Row, G::Act>,
    ) where
        G::Act: Clone,
    {
        let bpr = acts[0].len();
        let group: Vec<G> = (0..bpr).map(|b| G::group(|r| w[r * bpr + b])).collect();
        let rows: Vec<G::Act> = (0..GROUP_A)
            .flat_map(|i| acts[i % acts.len()].clone())
            .collect();
        // the layout gives every row's blocks back
        for r in 0..GROUP {
            let back: Vec<G::Row> = group.iter().map(|g| g.row(r)).collect();
            let (a, b) = (
                scalar(&back, &acts[0]),
                scalar(&w[r * bpr..][..bpr], &acts[0]),
            );
            assert_eq!(a.to_bits(), b.to_bits(), "{what}: row {r} taken apart");
        }
        for (k, kernel) in (1..=GROUP_A).zip(G::KERNELS) {
            // SAFETY: the caller detected AVX-512 VNNI; the slices hold the rows read.
            let got = unsafe { kernel(&group, &rows[..k * bpr], bpr) };
            for (i, dots) in got.iter().enumerate() {
                for (r, v) in dots.iter().enumerate() {
                    let want = match i < k {
                        true => scalar(&w[r * bpr..(r + 1) * bpr], &acts[i % acts.len()]),
                        false => 0.0,
                    };
                    assert_eq!(
                        v.to_bits(),
                        want.to_bits(),
                        "{what} group of {k}: row {r}, act {i}"
                    );
                }
            }
        }
    }

    /// Each weight row's dot with four activation rows, through a kernel's one-row and four-row
    /// functions, has the scalar reference's bits.
    #[cfg(target_arch = "x86_64")]
    fn same_bits<W, A>(
        what: &str,
        w: &[W],
        acts: &[Vec<A>],
        bpr: usize,
        (one, four): DotFns<W, A>,
        scalar: fn(&[W], &[A]) -> f32,
    ) {
        for (r, w) in w.chunks(bpr).enumerate() {
            // SAFETY: the caller detected the features the kernel is compiled for.
            let got = unsafe { four(w, [&acts[0], &acts[1], &acts[2], &acts[3]]) };
            for (i, a) in acts.iter().enumerate() {
                let want = scalar(w, a).to_bits();
                assert_eq!(got[i].to_bits(), want, "{what}: row {r}, column {i}");
                let alone = unsafe { one(w, [a]) }[0];
                assert_eq!(alone.to_bits(), want, "{what}: row {r}, column {i} alone");
            }
        }
    }

    /// The AVX-512 activation quantizer gives the portable one's integers and scale.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_quantizer_matches_scalar() {
        if !has_avx512_vnni() {
            return;
        }
        let mut x = rand_vec(32 * 64, 21);
        x[..32].fill(0.0); // an all-zero block: d = 0, every quant 0
                           // a block scaled by exactly 1: 2.5 and -3.5 are ties (to even: 2 and -4)
        x[32..64].fill(0.25);
        (x[32], x[33], x[34]) = (127.0, 2.5, -3.5);
        for c in x.chunks_exact(32) {
            let (mut a, mut b) = ([0i8; 32], [0i8; 32]);
            let fast = unsafe { quant_block_q8_avx512(c, &mut a) };
            let slow = quant_block_q8_scalar(c, &mut b);
            assert_eq!((fast.0.to_bits(), fast.1, a), (slow.0.to_bits(), slow.1, b));
        }
    }

    /// A dense row's outputs have the same bits alone and in batches of any size (gemm's
    /// matrix-vector and tiny-output paths, which sum in another order, are never taken).
    #[test]
    fn dense_rows_do_not_depend_on_batch() {
        for (rows, cols) in [(64, 576), (96, 576), (192, 576), (576, 1536)] {
            let w =
                Tensor::from_vec(rand_vec(rows * cols, 11), (rows, cols), &Device::Cpu).unwrap();
            let dense = Weight::dense(w).unwrap();
            let x = rand_vec(40 * cols, 12);
            let alone = dense.forward_rows(&x[..cols], 1).unwrap();
            for n in [2, 3, 4, 5, 8, 13, 40] {
                let all = dense.forward_rows(&x[..n * cols], n).unwrap();
                assert_eq!(&all[..rows], &alone[..], "{rows}×{cols}, batch of {n}");
            }
        }
    }

    /// Joined weights give each part the bits it has apart (dense: one gemm over the joined
    /// columns; quantized: the same kernels over the joined rows).
    #[test]
    fn joined_products_equal_the_parts_apart() {
        let cols = 576;
        let parts = || {
            [(576, 21), (192, 22), (192, 23)].map(|(rows, seed)| {
                Tensor::from_vec(rand_vec(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap()
            })
        };
        let x = rand_vec(13 * cols, 24);
        let dense = |ws: [Tensor; 3]| ws.map(|w| Weight::dense(w).unwrap());
        let quant = |ws: [Tensor; 3]| {
            ws.map(|w| {
                Weight::Quant(
                    QuantWeight::from_qtensor(&QTensor::quantize(&w, GgmlDType::Q4_1).unwrap())
                        .unwrap(),
                )
            })
        };
        for (name, ws) in [("dense", dense(parts())), ("q4_1", quant(parts()))] {
            let apart: Vec<Vec<f32>> = ws.iter().map(|w| w.forward_rows(&x, 13).unwrap()).collect();
            let joined = Linears::new(Vec::from(ws)).unwrap();
            assert!(matches!(joined, Linears::Joined(..)), "{name}: not joined");
            let got = joined.forward_rows(&x, 13).unwrap();
            for (g, a) in got.iter().zip(&apart) {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(g), bits(a), "{name}");
            }
        }
    }

    #[test]
    fn quantized_rows_do_not_depend_on_batch() {
        let (rows, cols) = (64, 256);
        let w = Tensor::from_vec(rand_vec(rows * cols, 3), (rows, cols), &Device::Cpu).unwrap();
        for dt in [
            GgmlDType::Q4_1,
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
        ] {
            let qw = QuantWeight::from_qtensor(&QTensor::quantize(&w, dt).unwrap()).unwrap();
            let x = rand_vec(40 * cols, 4);
            let all = Tensor::from_vec(x.clone(), (40, cols), &Device::Cpu).unwrap();
            let big = qw.forward(&all).unwrap().to_vec2::<f32>().unwrap();
            let one =
                Tensor::from_vec(x[7 * cols..8 * cols].to_vec(), (1, cols), &Device::Cpu).unwrap();
            let small = qw.forward(&one).unwrap().to_vec2::<f32>().unwrap();
            assert_eq!(big[7], small[0], "{dt:?}");
            // 13 rows: a tile of 8 and one of 5 (the VNNI kernels' last rows)
            let some = Tensor::from_vec(x[..13 * cols].to_vec(), (13, cols), &Device::Cpu).unwrap();
            let some = qw.forward(&some).unwrap().to_vec2::<f32>().unwrap();
            assert_eq!(big[..13], some[..], "{dt:?}");
        }
    }
}
