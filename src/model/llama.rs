//! Our own Llama/Mistral forward pass: hidden states at every position (scoring needs them all,
//! candle-transformers' stock models keep only the last), batched rows that share a cached
//! prefix, and an explicit KV cache that can be snapshotted and rolled back.
use super::config::LlamaConfig;
use super::qmatmul::Weight;
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};

pub struct Layer {
    pub attn_norm: Tensor,
    pub q: Weight,
    pub k: Weight,
    pub v: Weight,
    pub o: Weight,
    pub ffn_norm: Tensor,
    pub gate: Weight,
    pub up: Weight,
    pub down: Weight,
}

pub struct Llama {
    pub cfg: LlamaConfig,
    /// Token embedding table `[vocab, hidden]`, f32.
    pub embed: Tensor,
    pub layers: Vec<Layer>,
    pub norm: Tensor,
    pub lm_head: Weight,
    /// GGUF stores Q/K rows permuted for interleaved (GPT-J style) RoPE; Hugging Face weights use
    /// the rotate-half form. Both compute the same attention.
    pub interleaved_rope: bool,
    /// Per-frequency divisors (GGUF `rope_freqs.weight`, Llama 3.1 scaling), if any.
    pub rope_freq_factors: Option<Vec<f32>>,
    /// Compute norms, RoPE, attention and SwiGLU with llama.cpp's CPU arithmetic ([`super::ggml`]),
    /// as for quantized GGUF weights; otherwise in plain f32 like the Hugging Face model.
    pub llamacpp_arith: bool,
}

/// Receives intermediate values of [`Llama::forward_traced`] (llama.cpp-arithmetic mode): a name
/// as llama.cpp's graph calls the tensor, the layer, and the rows (`[b·s, width]`, row-major).
pub type Trace<'a> = &'a mut dyn FnMut(&str, usize, &[f32]);

/// Keys and values of every layer, `[batch, kv_heads, len, head_dim]` each.
#[derive(Clone, Default)]
pub struct KvCache {
    pub layers: Vec<(Tensor, Tensor)>,
}

impl KvCache {
    pub fn len(&self) -> usize {
        self.layers.first().map(|(k, _)| k.dims()[2]).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A snapshot is the cache length; rolling back drops every position after it.
    pub fn snapshot(&self) -> usize {
        self.len()
    }
    pub fn rollback_to(&mut self, len: usize) -> Result<()> {
        if len > self.len() {
            return Err(Error::model("kv cache: cannot roll forward"));
        }
        for (k, v) in self.layers.iter_mut() {
            *k = k.narrow(2, 0, len)?;
            *v = v.narrow(2, 0, len)?;
        }
        Ok(())
    }
}

impl Llama {
    fn rope_tables(&self, start: usize, len: usize) -> Result<(Tensor, Tensor)> {
        let mut inv = self.cfg.inv_freq();
        if let Some(f) = &self.rope_freq_factors {
            for (x, d) in inv.iter_mut().zip(f) {
                *x /= *d;
            }
        }
        let half = inv.len();
        // YaRN scales cos and sin (1 for every other RoPE type).
        let m = self.cfg.rope_attention_factor() as f32;
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for p in start..start + len {
            for &f in &inv {
                let a = p as f32 * f;
                cos.push(a.cos() * m);
                sin.push(a.sin() * m);
            }
        }
        Ok((
            Tensor::from_vec(cos, (len, half), &Device::Cpu)?,
            Tensor::from_vec(sin, (len, half), &Device::Cpu)?,
        ))
    }

    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        Ok(if self.interleaved_rope {
            candle_nn::rotary_emb::rope_i(x, cos, sin)?
        } else {
            candle_nn::rotary_emb::rope(x, cos, sin)?
        })
    }

    /// Additive attention mask for `s` query positions after `past` cached ones, each query row
    /// repeated `n_rep` times (grouped-query heads are folded into the row dimension).
    fn mask(&self, past: usize, s: usize, n_rep: usize) -> Result<Tensor> {
        let t = past + s;
        let window = self.cfg.sliding_window;
        let mut m = vec![0f32; n_rep * s * t];
        for r in 0..n_rep {
            for i in 0..s {
                let q = past + i;
                let row = &mut m[(r * s + i) * t..(r * s + i + 1) * t];
                for (j, x) in row.iter_mut().enumerate() {
                    let too_old = window.is_some_and(|w| j + w <= q);
                    if j > q || too_old {
                        *x = f32::NEG_INFINITY;
                    }
                }
            }
        }
        Ok(Tensor::from_vec(m, (n_rep * s, t), &Device::Cpu)?)
    }

    /// (query heads, kv heads, head size, query heads per kv head).
    fn head_dims(&self) -> (usize, usize, usize, usize) {
        let c = &self.cfg;
        let (nh, nkv) = (c.num_attention_heads, c.num_key_value_heads);
        (nh, nkv, c.head_dim, nh / nkv)
    }

    /// The feed-forward half of a layer with its residual: `x + down(silu(gate(h)) * up(h))`,
    /// `h = rms_norm(x)`.
    fn ffn_block(&self, layer: &Layer, x: &Tensor) -> Result<Tensor> {
        let h = candle_nn::ops::rms_norm(x, &layer.ffn_norm, self.cfg.rms_norm_eps as f32)?;
        let g = candle_nn::ops::silu(&layer.gate.forward(&h)?)?;
        let u = layer.up.forward(&h)?;
        Ok((x + layer.down.forward(&(g * u)?)?)?)
    }

    /// Run `tokens` (`[b, s]`, u32) after the cached positions in `past` (batch 1 — shared by
    /// every row — or b). Returns the final-normed hidden states `[b, s, hidden]` and, when
    /// `keep_cache`, the cache extended by these positions.
    pub fn forward(
        &self,
        tokens: &Tensor,
        past: Option<&KvCache>,
        keep_cache: bool,
    ) -> Result<(Tensor, Option<KvCache>)> {
        if self.llamacpp_arith {
            return self.forward_traced(tokens, past, keep_cache, None);
        }
        let (b, s) = tokens.dims2()?;
        let p = past.map(|c| c.len()).unwrap_or(0);
        let cfg = &self.cfg;
        let (nh, nkv, hd, n_rep) = self.head_dims();
        let (cos, sin) = self.rope_tables(p, s)?;
        let mask = self.mask(p, s, n_rep)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let eps = cfg.rms_norm_eps as f32;

        let mut x = self
            .embed
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((b, s, cfg.hidden_size))?;
        let mut new_cache = KvCache::default();
        for (li, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)?;
            let q = layer
                .q
                .forward(&h)?
                .reshape((b, s, nh, hd))?
                .transpose(1, 2)?
                .contiguous()?;
            let k = layer
                .k
                .forward(&h)?
                .reshape((b, s, nkv, hd))?
                .transpose(1, 2)?
                .contiguous()?;
            let v = layer
                .v
                .forward(&h)?
                .reshape((b, s, nkv, hd))?
                .transpose(1, 2)?
                .contiguous()?;
            let q = self.rope(&q, &cos, &sin)?;
            let k = self.rope(&k, &cos, &sin)?;
            let (k, v) = match past {
                Some(c) if p > 0 => {
                    let (pk, pv) = &c.layers[li];
                    let (pk, pv) = if pk.dims()[0] == b {
                        (pk.clone(), pv.clone())
                    } else {
                        (
                            pk.broadcast_as((b, nkv, p, hd))?,
                            pv.broadcast_as((b, nkv, p, hd))?,
                        )
                    };
                    (
                        Tensor::cat(&[&pk, &k], 2)?.contiguous()?,
                        Tensor::cat(&[&pv, &v], 2)?.contiguous()?,
                    )
                }
                _ => (k, v),
            };
            let t = k.dims()[2];
            // Fold the n_rep query heads of each kv head into rows: [b, nkv, n_rep*s, hd].
            let qf = (q * scale)?.reshape((b, nkv, n_rep * s, hd))?;
            let att = qf.matmul(&k.t()?)?.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att.matmul(&v.contiguous()?)?.reshape((b, nh, s, hd))?; // from [b, nkv, n_rep*s, hd]
            let y = y.transpose(1, 2)?.reshape((b, s, nh * hd))?;
            debug_assert_eq!(t, p + s);
            if keep_cache {
                new_cache.layers.push((k, v));
            }
            x = self.ffn_block(layer, &(x + layer.o.forward(&y)?)?)?;
        }
        let x = candle_nn::ops::rms_norm(&x, &self.norm, eps)?;
        Ok((x, keep_cache.then_some(new_cache)))
    }

    /// [`Llama::forward`] with llama.cpp's CPU arithmetic (see [`super::ggml`]); `trace` sees the
    /// intermediate values. The KV cache holds f16-rounded keys and values, as llama.cpp's does.
    pub fn forward_traced(
        &self,
        tokens: &Tensor,
        past: Option<&KvCache>,
        keep_cache: bool,
        mut trace: Option<Trace>,
    ) -> Result<(Tensor, Option<KvCache>)> {
        use super::ggml;
        let (b, s) = tokens.dims2()?;
        let p = past.map(|c| c.len()).unwrap_or(0);
        let t = p + s;
        let cfg = &self.cfg;
        let (nh, nkv, hd, hs) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
            cfg.hidden_size,
        );
        let n = b * s;
        let eps = cfg.rms_norm_eps as f32;
        let shape = ggml::AttnShape {
            s,
            t,
            n_head: nh,
            n_kv_head: nkv,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            window: cfg.sliding_window,
        };
        let caches: Vec<Vec<(f32, f32)>> = (p..t)
            .map(|pos| {
                ggml::rope_cache(
                    pos,
                    hd,
                    cfg.rope_theta as f32,
                    self.rope_freq_factors.as_deref(),
                )
            })
            .collect();
        let rope = |x: &mut [f32], width: usize| {
            for (r, row) in x.chunks_exact_mut(width).enumerate() {
                ggml::rope_rows(row, &caches[r % s]);
            }
        };
        let mut emit = |name: &str, l: usize, x: &[f32]| {
            if let Some(f) = trace.as_mut() {
                f(name, l, x)
            }
        };
        let mut x = self
            .embed
            .index_select(&tokens.flatten_all()?, 0)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let mut new_cache = KvCache::default();
        for (li, layer) in self.layers.iter().enumerate() {
            let attn_norm = layer.attn_norm.to_vec1::<f32>()?;
            let h = ggml::rms_norm(&x, &attn_norm, eps);
            emit("attn_norm", li, &h);
            let mut q = layer.q.forward_rows(&h, n)?;
            let mut k = layer.k.forward_rows(&h, n)?;
            let v = layer.v.forward_rows(&h, n)?;
            rope(&mut q, nh * hd);
            rope(&mut k, nkv * hd);
            emit("Qcur", li, &q);
            emit("Kcur", li, &k);
            emit("Vcur", li, &v);
            // per batch row: keys/values [nkv, t, hd], past positions first
            let past_kv = match past {
                Some(c) if p > 0 => {
                    let (pk, pv) = &c.layers[li];
                    Some((
                        pk.dims()[0],
                        pk.flatten_all()?.to_vec1::<f32>()?,
                        pv.flatten_all()?.to_vec1::<f32>()?,
                    ))
                }
                _ => None,
            };
            let mut kall = vec![0f32; b * nkv * t * hd];
            let mut vall = vec![0f32; b * nkv * t * hd];
            let mut y = vec![0f32; n * nh * hd];
            let (row, past_len) = (s * nkv * hd, nkv * p * hd);
            for bi in 0..b {
                let (pk, pv) = match &past_kv {
                    Some((pb, pk, pv)) => {
                        let src = if *pb == b { bi } else { 0 };
                        let at = src * past_len..(src + 1) * past_len;
                        (Some(&pk[at.clone()]), Some(&pv[at]))
                    }
                    None => (None, None),
                };
                let new = bi * row..(bi + 1) * row;
                let seq = bi * nkv * t * hd..(bi + 1) * nkv * t * hd;
                let (kb, vb) = (&mut kall[seq.clone()], &mut vall[seq]);
                ggml::append_kv(kb, pk, p, &k[new.clone()], s, nkv, hd);
                ggml::append_kv(vb, pv, p, &v[new], s, nkv, hd);
                let qb = &q[bi * s * nh * hd..(bi + 1) * s * nh * hd];
                let yb = ggml::attention(qb, kb, vb, &shape);
                y[bi * s * nh * hd..(bi + 1) * s * nh * hd].copy_from_slice(&yb);
            }
            emit("kqv_out", li, &y);
            if keep_cache {
                new_cache.layers.push((
                    Tensor::from_vec(kall, (b, nkv, t, hd), &Device::Cpu)?,
                    Tensor::from_vec(vall, (b, nkv, t, hd), &Device::Cpu)?,
                ));
            }
            let o = layer.o.forward_rows(&y, n)?;
            emit("attn_out", li, &o);
            for (xi, oi) in x.iter_mut().zip(&o) {
                *xi += *oi;
            }
            emit("ffn_inp", li, &x);
            let ffn_norm = layer.ffn_norm.to_vec1::<f32>()?;
            let h = ggml::rms_norm(&x, &ffn_norm, eps);
            emit("ffn_norm", li, &h);
            let g = layer.gate.forward_rows(&h, n)?;
            let u = layer.up.forward_rows(&h, n)?;
            emit("ffn_gate", li, &g);
            emit("ffn_up", li, &u);
            let a = ggml::swiglu(&g, &u);
            emit("ffn_swiglu", li, &a);
            let d = layer.down.forward_rows(&a, n)?;
            emit("ffn_out", li, &d);
            for (xi, di) in x.iter_mut().zip(&d) {
                *xi += *di;
            }
            emit("l_out", li, &x);
        }
        let norm = self.norm.to_vec1::<f32>()?;
        let out = ggml::rms_norm(&x, &norm, eps);
        emit("result_norm", self.layers.len(), &out);
        Ok((
            Tensor::from_vec(out, (b, s, hs), &Device::Cpu)?,
            keep_cache.then_some(new_cache),
        ))
    }

    /// One decoding step for `tokens.len()` independent rows: row `r` appends `tokens[r]` after
    /// its own cache `caches[r]` (rows may have different lengths). The linear layers run on all
    /// rows at once; attention runs per row over that row's cache, so a row's result equals
    /// [`Llama::forward`] of that row alone. Returns the final-normed hidden states `[b, hidden]`
    /// and extends every cache by one position.
    pub fn decode_step(&self, tokens: &[u32], caches: &mut [KvCache]) -> Result<Tensor> {
        let b = tokens.len();
        if b == 0 || caches.len() != b {
            return Err(Error::model("decode_step: one cache per token"));
        }
        if self.llamacpp_arith {
            return self.decode_step_ggml(tokens, caches);
        }
        let cfg = &self.cfg;
        let (nh, nkv, hd, n_rep) = self.head_dims();
        let scale = 1.0 / (hd as f64).sqrt();
        let eps = cfg.rms_norm_eps as f32;
        let mut cos = vec![];
        let mut sin = vec![];
        let mut masks = vec![];
        for c in caches.iter() {
            if !c.is_empty() && c.layers.len() != self.layers.len() {
                return Err(Error::model("decode_step: cache of another model"));
            }
            let (co, si) = self.rope_tables(c.len(), 1)?;
            cos.push(co);
            sin.push(si);
            masks.push(self.mask(c.len(), 1, n_rep)?);
        }
        let cos = Tensor::stack(&cos, 0)?;
        let sin = Tensor::stack(&sin, 0)?;
        let ids = Tensor::from_vec(tokens.to_vec(), b, &Device::Cpu)?;
        let mut x = self
            .embed
            .index_select(&ids, 0)?
            .reshape((b, 1, cfg.hidden_size))?;
        for (li, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)?;
            let heads = |w: &Weight, n: usize| -> Result<Tensor> {
                Ok(w.forward(&h)?
                    .reshape((b, 1, n, hd))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let q = self.rope(&heads(&layer.q, nh)?, &cos, &sin)?;
            let k = self.rope(&heads(&layer.k, nkv)?, &cos, &sin)?;
            let v = heads(&layer.v, nkv)?;
            let mut ys = Vec::with_capacity(b);
            for (r, cache) in caches.iter_mut().enumerate() {
                let (kr, vr) = (k.narrow(0, r, 1)?, v.narrow(0, r, 1)?);
                let (kr, vr) = match cache.layers.get(li) {
                    Some((pk, pv)) => (
                        Tensor::cat(&[pk, &kr], 2)?.contiguous()?,
                        Tensor::cat(&[pv, &vr], 2)?.contiguous()?,
                    ),
                    None => (kr, vr),
                };
                let qf = (q.narrow(0, r, 1)? * scale)?.reshape((1, nkv, n_rep, hd))?;
                let att = qf.matmul(&kr.t()?)?.broadcast_add(&masks[r])?;
                let att = candle_nn::ops::softmax_last_dim(&att)?;
                ys.push(att.matmul(&vr)?.reshape((1, 1, nh * hd))?);
                if li < cache.layers.len() {
                    cache.layers[li] = (kr, vr);
                } else {
                    cache.layers.push((kr, vr));
                }
            }
            let y = Tensor::cat(&ys, 0)?;
            x = self.ffn_block(layer, &(x + layer.o.forward(&y)?)?)?;
        }
        let x = candle_nn::ops::rms_norm(&x, &self.norm, eps)?;
        Ok(x.reshape((b, cfg.hidden_size))?)
    }

    /// [`Llama::decode_step`] with llama.cpp's arithmetic: the matmuls run on all rows at once
    /// (the quantized kernels give each row what it gets alone), RoPE, the f16 KV cache and
    /// attention per row at its own position — each row equals [`Llama::forward_traced`] of that
    /// row alone.
    fn decode_step_ggml(&self, tokens: &[u32], caches: &mut [KvCache]) -> Result<Tensor> {
        use super::ggml;
        let b = tokens.len();
        let cfg = &self.cfg;
        let (nh, nkv, hd, _) = self.head_dims();
        let eps = cfg.rms_norm_eps as f32;
        let ropes: Vec<Vec<(f32, f32)>> = caches
            .iter()
            .map(|c| {
                let theta = cfg.rope_theta as f32;
                ggml::rope_cache(c.len(), hd, theta, self.rope_freq_factors.as_deref())
            })
            .collect();
        let ids = Tensor::from_vec(tokens.to_vec(), b, &Device::Cpu)?;
        let mut x = self
            .embed
            .index_select(&ids, 0)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for (li, layer) in self.layers.iter().enumerate() {
            let h = ggml::rms_norm(&x, &layer.attn_norm.to_vec1::<f32>()?, eps);
            let mut q = layer.q.forward_rows(&h, b)?;
            let mut k = layer.k.forward_rows(&h, b)?;
            let v = layer.v.forward_rows(&h, b)?;
            let mut y = vec![0f32; b * nh * hd];
            for (r, cache) in caches.iter_mut().enumerate() {
                ggml::rope_rows(&mut q[r * nh * hd..(r + 1) * nh * hd], &ropes[r]);
                ggml::rope_rows(&mut k[r * nkv * hd..(r + 1) * nkv * hd], &ropes[r]);
                let p = cache.layers.get(li).map_or(0, |(pk, _)| pk.dims()[2]);
                let t = p + 1;
                let past = match cache.layers.get(li) {
                    Some((pk, pv)) => Some((
                        pk.flatten_all()?.to_vec1::<f32>()?,
                        pv.flatten_all()?.to_vec1::<f32>()?,
                    )),
                    None => None,
                };
                let (pk, pv) = (
                    past.as_ref().map(|x| &x.0[..]),
                    past.as_ref().map(|x| &x.1[..]),
                );
                let new = r * nkv * hd..(r + 1) * nkv * hd;
                let (mut kb, mut vb) = (vec![0f32; nkv * t * hd], vec![0f32; nkv * t * hd]);
                ggml::append_kv(&mut kb, pk, p, &k[new.clone()], 1, nkv, hd);
                ggml::append_kv(&mut vb, pv, p, &v[new], 1, nkv, hd);
                let shape = ggml::AttnShape {
                    s: 1,
                    t,
                    n_head: nh,
                    n_kv_head: nkv,
                    head_dim: hd,
                    scale: 1.0 / (hd as f32).sqrt(),
                    window: cfg.sliding_window,
                };
                let yr = ggml::attention(&q[r * nh * hd..(r + 1) * nh * hd], &kb, &vb, &shape);
                y[r * nh * hd..(r + 1) * nh * hd].copy_from_slice(&yr);
                let kv = (
                    Tensor::from_vec(kb, (1, nkv, t, hd), &Device::Cpu)?,
                    Tensor::from_vec(vb, (1, nkv, t, hd), &Device::Cpu)?,
                );
                if li < cache.layers.len() {
                    cache.layers[li] = kv;
                } else {
                    cache.layers.push(kv);
                }
            }
            for (xi, oi) in x.iter_mut().zip(layer.o.forward_rows(&y, b)?) {
                *xi += oi;
            }
            let h = ggml::rms_norm(&x, &layer.ffn_norm.to_vec1::<f32>()?, eps);
            let a = ggml::swiglu(
                &layer.gate.forward_rows(&h, b)?,
                &layer.up.forward_rows(&h, b)?,
            );
            for (xi, di) in x.iter_mut().zip(layer.down.forward_rows(&a, b)?) {
                *xi += di;
            }
        }
        let out = ggml::rms_norm(&x, &self.norm.to_vec1::<f32>()?, eps);
        Ok(Tensor::from_vec(out, (b, cfg.hidden_size), &Device::Cpu)?)
    }

    /// Logits `[n, vocab]` (f32) for hidden-state rows `[n, hidden]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head
            .forward(hidden)?
            .to_dtype(DType::F32)
            .map_err(Error::from)
    }
}

/// Log-softmax of one row, evaluated at `target`, and whether `target` is the row's argmax.
pub fn logprob_at(row: &[f32], target: usize) -> (f64, bool) {
    let mut max = f32::NEG_INFINITY;
    let mut arg = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > max {
            max = v;
            arg = i;
        }
    }
    let lse: f64 = row
        .iter()
        .map(|&v| ((v - max) as f64).exp())
        .sum::<f64>()
        .ln()
        + max as f64;
    (row[target] as f64 - lse, arg == target)
}
