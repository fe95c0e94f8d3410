//! The two arithmetics of the layer loop [`Llama::run`](super::llama::Llama): the operations one
//! layer is made of, on all rows of a call at once (linear layers, norms, SwiGLU) or row by row
//! at each row's own positions (RoPE, attention with its KV cache).
//!
//! - [`F32`]: candle tensors in f32, as the Hugging Face model computes (the fidelity target is
//!   lm-evaluation-harness on transformers);
//! - [`LlamaCpp`]: row-major `Vec<f32>` through [`super::ggml`], llama.cpp's CPU arithmetic
//!   operation by operation (bit-exact with llama.cpp for quantized GGUF weights).
//!
//! Each keeps the exact operations, and their order, that its results were checked with: a change
//! here changes the numbers.
use super::ggml;
use super::llama::{Llama, Rows, Trace};
use super::qmatmul::{storage_f32, Linears, Weight};
use crate::error::Result;
use candle_core::{Device, Tensor};

/// The per-layer operations of a Llama layer in one arithmetic. Activations hold every row of
/// the call: `b` rows of `s` positions.
pub trait Arith {
    type Act;
    /// Activations from embedding rows `[b·s, hidden]`.
    fn embed(&self, x: Tensor) -> Result<Self::Act>;
    fn rms_norm(&self, x: &Self::Act, w: &Tensor) -> Result<Self::Act>;
    fn linear(&self, w: &Weight, x: &Self::Act) -> Result<Self::Act>;
    /// The products of weights that read the same input, one per part ([`Linears`]).
    fn linears(&self, w: &Linears, x: &Self::Act) -> Result<Vec<Self::Act>>;
    /// A projection `[b, s, n_heads·head_dim]` in the layout [`Arith::attention`] reads, rotated
    /// by RoPE at the rows' positions when `rope`.
    fn heads(&self, x: Self::Act, n_heads: usize, rope: bool) -> Result<Self::Act>;
    /// Causal attention of every row's queries over its past ([`Rows::past`]) and new keys and
    /// values, storing the extended ones ([`Rows::store`]). Returns `[b, s, heads·head_dim]`.
    fn attention(
        &self,
        layer: usize,
        q: &Self::Act,
        k: &Self::Act,
        v: &Self::Act,
        rows: &mut Rows,
    ) -> Result<Self::Act>;
    /// Self-attention of a layer's input `x` (after its norm): the q, k and v products of `w`,
    /// [`Arith::heads`] of `heads` (query and kv heads; traced as `Qcur`, `Kcur`, `Vcur` of
    /// `layer`), then [`Arith::attention`].
    fn self_attention(
        &mut self,
        layer: usize,
        w: &Linears,
        x: &Self::Act,
        heads: (usize, usize),
        rows: &mut Rows,
    ) -> Result<Self::Act> {
        attention_apart(self, layer, w, x, heads, rows)
    }
    /// `silu(g)·u`.
    fn swiglu(&self, g: &Self::Act, u: &Self::Act) -> Result<Self::Act>;
    /// The feed-forward's `silu(x·gate)·(x·up)` of `w` (gate, then up), the products traced as
    /// `ffn_gate` and `ffn_up` of `layer`.
    fn gated(&mut self, w: &Linears, x: &Self::Act, layer: usize) -> Result<Self::Act> {
        gated_apart(self, w, x, layer)
    }
    /// The residual `x + y`.
    fn add(&self, x: Self::Act, y: &Self::Act) -> Result<Self::Act>;
    /// The final hidden states as a tensor `[b, s, hidden]`.
    fn output(&self, x: Self::Act) -> Result<Tensor>;
    /// Sees an intermediate value under llama.cpp's name for it (see [`Trace`]).
    fn trace(&mut self, _name: &str, _layer: usize, _x: &Self::Act) {}
    /// Takes back a product's output that nothing reads any more, for a later product's.
    fn recycle(&self, _x: Self::Act) {}
}

/// [`Arith::self_attention`] from the three products apart.
fn attention_apart<A: Arith + ?Sized>(
    a: &mut A,
    layer: usize,
    w: &Linears,
    x: &A::Act,
    (nh, nkv): (usize, usize),
    rows: &mut Rows,
) -> Result<A::Act> {
    let [q, k, v]: [A::Act; 3] = a
        .linears(w, x)?
        .try_into()
        .map_err(|_| crate::error::Error::model("q, k and v: three products"))?;
    let q = a.heads(q, nh, true)?;
    let k = a.heads(k, nkv, true)?;
    let v = a.heads(v, nkv, false)?;
    a.trace("Qcur", layer, &q);
    a.trace("Kcur", layer, &k);
    a.trace("Vcur", layer, &v);
    a.attention(layer, &q, &k, &v, rows)
}

/// [`Arith::gated`] from the two products apart.
fn gated_apart<A: Arith + ?Sized>(
    a: &mut A,
    w: &Linears,
    x: &A::Act,
    layer: usize,
) -> Result<A::Act> {
    let [g, u]: [A::Act; 2] = a
        .linears(w, x)?
        .try_into()
        .map_err(|_| crate::error::Error::model("gate and up: two products"))?;
    a.trace("ffn_gate", layer, &g);
    a.trace("ffn_up", layer, &u);
    a.swiglu(&g, &u)
}

/// Whether every row starts at the same position (a [`Llama::forward`] call).
fn same_start(rows: &Rows) -> bool {
    rows.starts.iter().all(|&p| p == rows.starts[0])
}

/// The Hugging Face model's f32 arithmetic on candle tensors.
pub struct F32<'m> {
    m: &'m Llama,
    b: usize,
    s: usize,
    /// Rows of their own lengths ([`Rows::is_packed`]): activations `[tokens, width]`, heads
    /// `[1, n_heads, tokens, head_dim]` with each row's tokens in its own span.
    packed: Option<Packed>,
    /// RoPE tables: `[s, head_dim/2]` when the rows share their positions, else
    /// `[b, s, head_dim/2]` (candle's rope applies the same formula to either); unused when
    /// packed.
    cos: Tensor,
    sin: Tensor,
    /// Each row's additive attention mask (none where every key is visible: one query after
    /// its whole past).
    masks: Vec<Option<Tensor>>,
}

/// Where each row of a packed call is, and its RoPE tables `[len, head_dim/2]`.
struct Packed {
    lens: Vec<usize>,
    offs: Vec<usize>,
    tokens: usize,
    ropes: Vec<(Tensor, Tensor)>,
}

impl<'m> F32<'m> {
    pub fn new(m: &'m Llama, rows: &Rows) -> Result<Self> {
        let (b, s) = (rows.b, rows.s);
        let n_rep = m.cfg.num_attention_heads / m.cfg.num_key_value_heads;
        // Rows with the same start and length (a document's choices) share tables and masks.
        let same = |r: usize| {
            r > 0 && rows.starts[r - 1] == rows.starts[r] && rows.lens[r - 1] == rows.lens[r]
        };
        let mut masks: Vec<Option<Tensor>> = Vec::with_capacity(b);
        for r in 0..b {
            let (p, s) = (rows.starts[r], rows.lens[r]);
            let visible = s == 1 && m.cfg.sliding_window.is_none_or(|w| p < w);
            masks.push(match masks.last() {
                _ if visible => None,
                Some(prev) if same(r) => prev.clone(),
                _ => Some(mask(m, p, s, n_rep)?),
            });
        }
        if rows.is_packed() {
            let mut ropes: Vec<(Tensor, Tensor)> = Vec::with_capacity(b);
            for r in 0..b {
                ropes.push(match ropes.last() {
                    Some(prev) if same(r) => prev.clone(),
                    _ => rope_tables(m, rows.starts[r], rows.lens[r])?,
                });
            }
            let empty = Tensor::zeros(0, candle_core::DType::F32, &Device::Cpu)?;
            return Ok(F32 {
                m,
                b,
                s,
                packed: Some(Packed {
                    lens: rows.lens.clone(),
                    offs: rows.offs.clone(),
                    tokens: rows.tokens(),
                    ropes,
                }),
                cos: empty.clone(),
                sin: empty,
                masks,
            });
        }
        let (cos, sin) = if same_start(rows) {
            rope_tables(m, rows.starts[0], s)?
        } else {
            let (cos, sin): (Vec<_>, Vec<_>) = rows
                .starts
                .iter()
                .map(|&p| rope_tables(m, p, s))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .unzip();
            (Tensor::stack(&cos, 0)?, Tensor::stack(&sin, 0)?)
        };
        Ok(F32 {
            m,
            b,
            s,
            packed: None,
            cos,
            sin,
            masks,
        })
    }

    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        Ok(if self.m.interleaved_rope {
            candle_nn::rotary_emb::rope_i(x, cos, sin)?
        } else {
            candle_nn::rotary_emb::rope(x, cos, sin)?
        })
    }
}

/// RoPE tables of positions `0..n`, grown (doubling) when a call needs a later position and
/// otherwise only read: calls take views of them ([`rope_tables`]) or slices
/// ([`LlamaCpp`]), nothing is recomputed per call.
#[derive(Default)]
pub struct RopeCache {
    /// The Hugging Face model's cos and sin, `[n, head_dim/2]`.
    hf: std::sync::RwLock<Option<(Tensor, Tensor)>>,
    /// ggml's (cos, sin) pairs, `n · head_dim/2` of them ([`ggml::rope_cache`] per position).
    ggml: std::sync::RwLock<std::sync::Arc<Vec<(f32, f32)>>>,
}

/// Positions to compute when `need` are needed and `have` are: at least double.
fn grown(have: usize, need: usize) -> usize {
    need.max(2 * have).max(256)
}

/// RoPE cos/sin tables `[len, head_dim/2]` for positions `start..start + len` (views of the
/// model's [`RopeCache`]), with the configured frequency scaling, `rope_freqs` divisors and
/// YaRN's attention factor.
fn rope_tables(m: &Llama, start: usize, len: usize) -> Result<(Tensor, Tensor)> {
    let need = start + len;
    let view = |t: &(Tensor, Tensor)| -> Result<(Tensor, Tensor)> {
        Ok((t.0.narrow(0, start, len)?, t.1.narrow(0, start, len)?))
    };
    let have = match &*m.rope.hf.read().unwrap_or_else(|e| e.into_inner()) {
        Some(t) if t.0.dims()[0] >= need => return view(t),
        Some(t) => t.0.dims()[0],
        None => 0,
    };
    let n = grown(have, need);
    let mut inv = m.cfg.inv_freq();
    if let Some(f) = &m.rope_freq_factors {
        for (x, d) in inv.iter_mut().zip(f) {
            *x /= *d;
        }
    }
    let half = inv.len();
    // YaRN scales cos and sin (1 for every other RoPE type).
    let a = m.cfg.rope_attention_factor() as f32;
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    for p in 0..n {
        for &f in &inv {
            let angle = p as f32 * f;
            cos.push(angle.cos() * a);
            sin.push(angle.sin() * a);
        }
    }
    let t = (
        Tensor::from_vec(cos, (n, half), &Device::Cpu)?,
        Tensor::from_vec(sin, (n, half), &Device::Cpu)?,
    );
    let out = view(&t)?;
    *m.rope.hf.write().unwrap_or_else(|e| e.into_inner()) = Some(t);
    Ok(out)
}

/// ggml's RoPE pairs of positions `0..need` at least, from the model's [`RopeCache`]:
/// `head_dim/2` per position.
fn ggml_ropes(m: &Llama, need: usize) -> std::sync::Arc<Vec<(f32, f32)>> {
    let half = m.cfg.head_dim / 2;
    let cur = m
        .rope
        .ggml
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let have = cur.len() / half.max(1);
    if have >= need {
        return cur;
    }
    let (hd, theta) = (m.cfg.head_dim, m.cfg.rope_theta as f32);
    let factors = m.rope_freq_factors.as_deref();
    let table: Vec<(f32, f32)> = (0..grown(have, need))
        .flat_map(|pos| ggml::rope_cache(pos, hd, theta, factors))
        .collect();
    let table = std::sync::Arc::new(table);
    *m.rope.ggml.write().unwrap_or_else(|e| e.into_inner()) = table.clone();
    table
}

/// Additive attention mask for `s` query positions after `past` cached ones, each query row
/// repeated `n_rep` times (grouped-query heads are folded into the row dimension).
fn mask(m: &Llama, past: usize, s: usize, n_rep: usize) -> Result<Tensor> {
    let t = past + s;
    let window = m.cfg.sliding_window;
    let mut v = vec![0f32; n_rep * s * t];
    for r in 0..n_rep {
        for i in 0..s {
            let q = past + i;
            let row = &mut v[(r * s + i) * t..(r * s + i + 1) * t];
            for (j, x) in row.iter_mut().enumerate() {
                let too_old = window.is_some_and(|w| j + w <= q);
                if j > q || too_old {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
    }
    Ok(Tensor::from_vec(v, (n_rep * s, t), &Device::Cpu)?)
}

impl Arith for F32<'_> {
    /// `[b, s, width]`.
    type Act = Tensor;

    fn embed(&self, x: Tensor) -> Result<Tensor> {
        let h = self.m.cfg.hidden_size;
        Ok(match &self.packed {
            Some(p) => x.reshape((p.tokens, h))?,
            None => x.reshape((self.b, self.s, h))?,
        })
    }

    fn rms_norm(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let eps = self.m.cfg.rms_norm_eps as f32;
        Ok(candle_nn::ops::rms_norm(x, w, eps)?)
    }

    fn linear(&self, w: &Weight, x: &Tensor) -> Result<Tensor> {
        w.forward(x)
    }

    fn linears(&self, w: &Linears, x: &Tensor) -> Result<Vec<Tensor>> {
        w.forward(x)
    }

    /// `[b, n_heads, s, head_dim]`; packed: `[1, n_heads, tokens, head_dim]`, each row RoPE'd
    /// at its own positions.
    fn heads(&self, x: Tensor, n_heads: usize, rope: bool) -> Result<Tensor> {
        let hd = self.m.cfg.head_dim;
        if let Some(p) = &self.packed {
            let mut parts = Vec::with_capacity(self.b);
            for r in 0..self.b {
                let xr = x
                    .narrow(0, p.offs[r], p.lens[r])?
                    .reshape((1, p.lens[r], n_heads, hd))?
                    .transpose(1, 2)?
                    .contiguous()?;
                parts.push(if rope {
                    self.rope(&xr, &p.ropes[r].0, &p.ropes[r].1)?
                } else {
                    xr
                });
            }
            return Ok(Tensor::cat(&parts, 2)?);
        }
        let x = x
            .reshape((self.b, self.s, n_heads, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        if !rope {
            return Ok(x);
        }
        self.rope(&x, &self.cos, &self.sin)
    }

    /// Per row: `softmax(q·kᵀ·scale + mask)·v`, the `n_rep` query heads of each kv head folded
    /// into the rows of one matrix product `[1, kv_heads, n_rep·s, head_dim]`.
    fn attention(
        &self,
        layer: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        rows: &mut Rows,
    ) -> Result<Tensor> {
        let c = &self.m.cfg;
        let hd = c.head_dim;
        let (nh, nkv) = (c.num_attention_heads, c.num_key_value_heads);
        let scale = 1.0 / (hd as f64).sqrt();
        let mut ys = Vec::with_capacity(self.b);
        for r in 0..self.b {
            // Row r's queries, keys and values `[1, heads, len, head_dim]`.
            let (s, qr, kr, vr) = match &self.packed {
                Some(p) => {
                    let (o, l) = (p.offs[r], p.lens[r]);
                    let span =
                        |t: &Tensor| -> Result<Tensor> { Ok(t.narrow(2, o, l)?.contiguous()?) };
                    (l, span(q)?, span(k)?, span(v)?)
                }
                None => (
                    self.s,
                    q.narrow(0, r, 1)?,
                    k.narrow(0, r, 1)?,
                    v.narrow(0, r, 1)?,
                ),
            };
            let t = rows.starts[r] + s;
            let (kr, vr) = if rows.in_place() {
                // a decoding step: the new position goes into the row's cache storage, which
                // attention reads as it is (a view of its first t positions)
                let (ck, cv) = rows.append(layer, r, &kr, &vr)?;
                (ck.narrow(2, 0, t)?, cv.narrow(2, 0, t)?)
            } else {
                match rows.past(layer, r)? {
                    Some((pk, pv)) => (Tensor::cat(&[&pk, &kr], 2)?, Tensor::cat(&[&pv, &vr], 2)?),
                    None => (kr, vr),
                }
            };
            let qf = (qr * scale)?.reshape((1, nkv, nh / nkv * s, hd))?;
            let att = qf.matmul(&kr.t()?)?;
            let att = match &self.masks[r] {
                Some(mask) => att.broadcast_add(mask)?,
                None => att,
            };
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att.matmul(&vr)?.reshape((1, nh, s, hd))?;
            ys.push(match &self.packed {
                Some(_) => y.transpose(1, 2)?.reshape((s, nh * hd))?,
                None => y,
            });
            rows.store(layer, r, (kr, vr));
        }
        let y = Tensor::cat(&ys, 0)?;
        Ok(match &self.packed {
            Some(_) => y,
            None => y.transpose(1, 2)?.reshape((self.b, self.s, nh * hd))?,
        })
    }

    fn swiglu(&self, g: &Tensor, u: &Tensor) -> Result<Tensor> {
        Ok((candle_nn::ops::silu(g)? * u)?)
    }

    fn add(&self, x: Tensor, y: &Tensor) -> Result<Tensor> {
        Ok((x + y)?)
    }

    fn output(&self, x: Tensor) -> Result<Tensor> {
        Ok(x)
    }
}

/// llama.cpp's CPU arithmetic ([`super::ggml`]) on row-major floats; the KV cache holds
/// f16-rounded keys and values, as llama.cpp's does.
pub struct LlamaCpp<'m, 't> {
    m: &'m Llama,
    b: usize,
    s: usize,
    tokens: usize,
    packed: bool,
    /// ggml's RoPE pairs of every position the call needs ([`ggml_ropes`]), and the position
    /// of each token of the call (of each of the `s` positions when the rows share theirs).
    ropes: std::sync::Arc<Vec<(f32, f32)>>,
    pos: Vec<usize>,
    trace: Option<Trace<'t>>,
    /// Products' outputs handed back ([`Arith::recycle`]): the next product of the same size
    /// writes into one (each layer's are the sizes of the one before) instead of a buffer
    /// that the allocator zeroes first.
    spare: std::cell::RefCell<Vec<Vec<f32>>>,
}

impl<'m, 't> LlamaCpp<'m, 't> {
    pub fn new(m: &'m Llama, rows: &Rows, trace: Option<Trace<'t>>) -> Self {
        let shared = !rows.is_packed() && same_start(rows);
        let rows_roped = if shared { 1 } else { rows.b };
        let pos: Vec<usize> = (0..rows_roped)
            .flat_map(|r| rows.starts[r]..rows.starts[r] + rows.lens[r])
            .collect();
        let need = pos.iter().max().map_or(0, |&p| p + 1);
        LlamaCpp {
            m,
            b: rows.b,
            s: rows.s,
            tokens: rows.tokens(),
            packed: rows.is_packed(),
            ropes: ggml_ropes(m, need),
            pos,
            trace,
            spare: Default::default(),
        }
    }
}

/// Rows of one part of a product (queries, keys or values): its values from the first row's
/// first on, and the values from one row to the next (the part's width where it stands apart,
/// the joined width where it lies inside a joined q/k/v product).
type Part<'a> = (&'a [f32], usize);

impl LlamaCpp<'_, '_> {
    /// RoPE, in place, of the columns `parts` of each row of `x` (rows of `width` values), each
    /// row at its token's position.
    fn rope(&self, x: &mut [f32], width: usize, parts: &[std::ops::Range<usize>]) {
        use rayon::prelude::*;
        let half = self.m.cfg.head_dim / 2;
        let (pos, ropes) = (&self.pos, &self.ropes);
        x.par_chunks_mut(width).enumerate().for_each(|(i, row)| {
            let p = pos[i % pos.len()];
            for part in parts {
                ggml::rope_rows(&mut row[part.clone()], &ropes[p * half..(p + 1) * half]);
            }
        });
    }

    /// `w`'s outputs for the call's rows, into a handed-back buffer of their size where
    /// there is one.
    fn product(&self, w: &Weight, x: &[f32]) -> Result<Vec<f32>> {
        let len = self.tokens * w.out_features();
        let spare = {
            let mut spare = self.spare.borrow_mut();
            let at = spare.iter().position(|b| b.len() == len);
            at.map(|i| spare.swap_remove(i))
        };
        match spare {
            Some(mut out) => {
                // the kernels write every output; a dense weight replaces the buffer
                w.forward_rows_into(x, self.tokens, &mut out)?;
                Ok(out)
            }
            None => w.forward_rows(x, self.tokens),
        }
    }

    /// Per row: its past and new keys/values (f16) as `[kv_heads, t, head_dim]`, then
    /// [`ggml::attention`]. Each of `q`, `k`, `v` is [`Part`]: its rows may lie inside the rows
    /// of a joined product.
    fn attend(
        &self,
        layer: usize,
        q: Part<'_>,
        k: Part<'_>,
        v: Part<'_>,
        rows: &mut Rows,
    ) -> Result<Vec<f32>> {
        let c = &self.m.cfg;
        let hd = c.head_dim;
        let (nh, nkv) = (c.num_attention_heads, c.num_key_value_heads);
        let q_tok = nh * hd;
        let mut y = vec![0f32; self.tokens * q_tok];
        for r in 0..self.b {
            let (s, o) = (rows.lens[r], rows.offs[r]);
            let p = rows.starts[r];
            let t = p + s;
            // this row's queries and new keys and values, from their first value on
            let (qr, kr, vr) = (&q.0[o * q.1..], &k.0[o * k.1..], &v.0[o * v.1..]);
            let shape = ggml::AttnShape {
                s,
                q_stride: q.1,
                t,
                stride: t,
                n_head: nh,
                n_kv_head: nkv,
                head_dim: hd,
                scale: 1.0 / (hd as f32).sqrt(),
                window: c.sliding_window,
            };
            let out = o * q_tok..(o + s) * q_tok;
            if rows.in_place() {
                // a decoding step: the new keys and values (f16) go into the row's cache
                // storage, which attention reads where it is
                let kb = ggml::kv_sequence(None, 0, (kr, k.1), s, nkv, hd);
                let vb = ggml::kv_sequence(None, 0, (vr, v.1), s, nkv, hd);
                let (kt, vt) = (
                    Tensor::from_vec(kb, (1, nkv, s, hd), &Device::Cpu)?,
                    Tensor::from_vec(vb, (1, nkv, s, hd), &Device::Cpu)?,
                );
                let (ck, cv) = rows.append(layer, r, &kt, &vt)?;
                let shape = ggml::AttnShape {
                    stride: ck.dims()[2],
                    ..shape
                };
                let yr = storage_f32(&ck, |ks| {
                    storage_f32(&cv, |vs| ggml::attention(qr, ks, vs, &shape))
                })??;
                y[out].copy_from_slice(&yr);
                continue;
            }
            // the past (read where it is cached) and the new positions, one buffer per row
            let (kb, vb) = match rows.past(layer, r)? {
                Some((pk, pv)) => {
                    let stride = pk.stride()[1] / hd;
                    (
                        storage_f32(&pk, |x| {
                            ggml::kv_sequence(Some((x, stride)), p, (kr, k.1), s, nkv, hd)
                        })?,
                        storage_f32(&pv, |x| {
                            ggml::kv_sequence(Some((x, stride)), p, (vr, v.1), s, nkv, hd)
                        })?,
                    )
                }
                None => (
                    ggml::kv_sequence(None, p, (kr, k.1), s, nkv, hd),
                    ggml::kv_sequence(None, p, (vr, v.1), s, nkv, hd),
                ),
            };
            let yr = ggml::attention(qr, &kb, &vb, &shape);
            y[out].copy_from_slice(&yr);
            rows.store(
                layer,
                r,
                (
                    Tensor::from_vec(kb, (1, nkv, t, hd), &Device::Cpu)?,
                    Tensor::from_vec(vb, (1, nkv, t, hd), &Device::Cpu)?,
                ),
            );
        }
        Ok(y)
    }
}

impl Arith for LlamaCpp<'_, '_> {
    /// `[b·s, width]`, row-major.
    type Act = Vec<f32>;

    fn embed(&self, x: Tensor) -> Result<Vec<f32>> {
        Ok(x.flatten_all()?.to_vec1::<f32>()?)
    }

    fn rms_norm(&self, x: &Vec<f32>, w: &Tensor) -> Result<Vec<f32>> {
        let eps = self.m.cfg.rms_norm_eps as f32;
        Ok(ggml::rms_norm(x, &w.to_vec1::<f32>()?, eps))
    }

    fn linear(&self, w: &Weight, x: &Vec<f32>) -> Result<Vec<f32>> {
        self.product(w, x)
    }

    fn linears(&self, w: &Linears, x: &Vec<f32>) -> Result<Vec<Vec<f32>>> {
        w.forward_rows(x, self.tokens)
    }

    /// Rows as they are (`[b·s, n_heads·head_dim]`), RoPE'd in place.
    fn heads(&self, mut x: Vec<f32>, n_heads: usize, rope: bool) -> Result<Vec<f32>> {
        if rope {
            let width = n_heads * self.m.cfg.head_dim;
            self.rope(&mut x, width, std::slice::from_ref(&(0..width)));
        }
        Ok(x)
    }

    /// [`LlamaCpp::attend`] of the three apart.
    fn attention(
        &self,
        layer: usize,
        q: &Vec<f32>,
        k: &Vec<f32>,
        v: &Vec<f32>,
        rows: &mut Rows,
    ) -> Result<Vec<f32>> {
        let (nh, nkv) = (
            self.m.cfg.num_attention_heads,
            self.m.cfg.num_key_value_heads,
        );
        let hd = self.m.cfg.head_dim;
        self.attend(layer, (q, nh * hd), (k, nkv * hd), (v, nkv * hd), rows)
    }

    fn swiglu(&self, g: &Vec<f32>, u: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(ggml::swiglu(g, u))
    }

    /// Where gate and up are one product ([`Linears::Joined`]) and nothing traces them, SwiGLU
    /// reads each row's two halves where the product put them, not from copies.
    fn gated(&mut self, w: &Linears, x: &Vec<f32>, layer: usize) -> Result<Vec<f32>> {
        match w {
            Linears::Joined(j, widths)
                if self.trace.is_none() && widths.len() == 2 && widths[0] == widths[1] =>
            {
                let gu = self.product(j, x)?;
                let act = ggml::swiglu_joined(&gu, widths[0]);
                self.recycle(gu);
                Ok(act)
            }
            _ => gated_apart(self, w, x, layer),
        }
    }

    /// Where q, k and v are one product ([`Linears::Joined`]) and nothing traces them, RoPE
    /// and attention read each row's three parts where the product put them, not from copies.
    fn self_attention(
        &mut self,
        layer: usize,
        w: &Linears,
        x: &Vec<f32>,
        heads: (usize, usize),
        rows: &mut Rows,
    ) -> Result<Vec<f32>> {
        let hd = self.m.cfg.head_dim;
        let (q_tok, kv_tok) = (heads.0 * hd, heads.1 * hd);
        match w {
            Linears::Joined(j, widths)
                if self.trace.is_none() && widths[..] == [q_tok, kv_tok, kv_tok] =>
            {
                let mut y = self.product(j, x)?;
                let total = q_tok + 2 * kv_tok;
                self.rope(&mut y, total, &[0..q_tok, q_tok..q_tok + kv_tok]);
                let out = self.attend(
                    layer,
                    (&y, total),
                    (&y[q_tok..], total),
                    (&y[q_tok + kv_tok..], total),
                    rows,
                );
                self.recycle(y);
                out
            }
            _ => attention_apart(self, layer, w, x, heads, rows),
        }
    }

    fn add(&self, mut x: Vec<f32>, y: &Vec<f32>) -> Result<Vec<f32>> {
        use rayon::prelude::*;
        x.par_chunks_mut(4096)
            .zip(y.par_chunks(4096))
            .for_each(|(x, y)| {
                for (xi, yi) in x.iter_mut().zip(y) {
                    *xi += *yi;
                }
            });
        Ok(x)
    }

    fn output(&self, x: Vec<f32>) -> Result<Tensor> {
        let h = self.m.cfg.hidden_size;
        Ok(if self.packed {
            Tensor::from_vec(x, (self.tokens, h), &Device::Cpu)?
        } else {
            Tensor::from_vec(x, (self.b, self.s, h), &Device::Cpu)?
        })
    }

    fn trace(&mut self, name: &str, layer: usize, x: &Vec<f32>) {
        if let Some(f) = self.trace.as_mut() {
            f(name, layer, x)
        }
    }

    fn recycle(&self, x: Vec<f32>) {
        self.spare.borrow_mut().push(x);
    }
}
