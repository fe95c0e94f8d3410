//! Our own Llama/Mistral forward pass: hidden states at every position (scoring needs them all,
//! candle-transformers' stock models keep only the last), batched rows that share a cached
//! prefix, and an explicit KV cache that can be snapshotted and rolled back.
//!
//! The transformer layer is written once, in [`Llama::run`], over an [`Arith`]: the f32
//! arithmetic of the Hugging Face model on candle tensors ([`super::arith::F32`]) or llama.cpp's
//! CPU arithmetic ([`super::arith::LlamaCpp`], for quantized GGUF weights). Both serve the two
//! shapes of call: `s` tokens per row after a shared or per-row past ([`Llama::forward`]) and one
//! token per row, each after its own cache ([`Llama::decode_step`]).
use super::arch::{TensorName, LAYER_TENSORS};
use super::arith::{Arith, LlamaCpp, RopeCache, F32};
use super::config::LlamaConfig;
use super::qmatmul::{Linears, Weight};
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};

/// One transformer layer's weights, in the order of [`LAYER_TENSORS`]; q, k and v, and gate
/// and up, each as one product where they can be joined ([`Linears`]).
pub struct Layer {
    pub attn_norm: Tensor,
    pub qkv: Linears,
    pub o: Weight,
    pub ffn_norm: Tensor,
    pub gate_up: Linears,
    pub down: Weight,
}

impl Layer {
    /// A layer from its [`LAYER_TENSORS`]: `norm` loads the vectors and `linear` the matrices
    /// (both given `state`, e.g. the open file).
    pub fn load<S>(
        state: &mut S,
        mut norm: impl FnMut(&mut S, &TensorName) -> Result<Tensor>,
        mut linear: impl FnMut(&mut S, &TensorName) -> Result<Weight>,
    ) -> Result<Layer> {
        let [attn_norm, q, k, v, o, ffn_norm, gate, up, down] = &LAYER_TENSORS;
        let attn_norm = norm(state, attn_norm)?;
        let qkv = vec![linear(state, q)?, linear(state, k)?, linear(state, v)?];
        let o = linear(state, o)?;
        let ffn_norm = norm(state, ffn_norm)?;
        let gate_up = vec![linear(state, gate)?, linear(state, up)?];
        Ok(Layer {
            attn_norm,
            qkv: Linears::new(qkv)?,
            o,
            ffn_norm,
            gate_up: Linears::new(gate_up)?,
            down: linear(state, down)?,
        })
    }

    /// The matrices that run, in order.
    pub fn weights(&self) -> Vec<&Weight> {
        let mut ws = self.qkv.weights();
        ws.push(&self.o);
        ws.extend(self.gate_up.weights());
        ws.push(&self.down);
        ws
    }
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
    /// RoPE tables of the positions seen so far, computed once and reused by every call.
    pub rope: RopeCache,
}

/// Receives intermediate values of [`Llama::forward_traced`] (llama.cpp-arithmetic mode): a name
/// as llama.cpp's graph calls the tensor, the layer, and the rows (`[b·s, width]`, row-major).
pub type Trace<'a> = &'a mut dyn FnMut(&str, usize, &[f32]);

/// Keys and values of every layer, `[batch, kv_heads, capacity, head_dim]` each: the first
/// `len` positions are the cache, the rest room for appending in place (a decoding step writes
/// its one position there instead of copying the whole cache).
#[derive(Clone, Default)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
    /// Shared by clones: a cache whose storage another clone also holds copies it before its
    /// first write in place, so clones never see each other's appends.
    owner: std::sync::Arc<()>,
}

impl KvCache {
    /// A cache of exactly the given keys and values (`[batch, kv_heads, len, head_dim]`).
    fn from_layers(layers: Vec<(Tensor, Tensor)>) -> Self {
        let len = layers.first().map_or(0, |(k, _)| k.dims()[2]);
        KvCache {
            layers,
            len,
            owner: Default::default(),
        }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Positions the storage holds (`len` and the room after it).
    pub fn capacity(&self) -> usize {
        self.layers.first().map_or(0, |(k, _)| k.dims()[2])
    }
    /// Layers of the cache.
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }
    /// Layer `li`'s cached keys and values, `[batch, kv_heads, len, head_dim]` (views).
    pub fn layer(&self, li: usize) -> Result<Option<(Tensor, Tensor)>> {
        let Some((k, v)) = self.layers.get(li) else {
            return Ok(None);
        };
        Ok(Some((k.narrow(2, 0, self.len)?, v.narrow(2, 0, self.len)?)))
    }
    /// A snapshot is the cache length; rolling back drops every position after it.
    pub fn snapshot(&self) -> usize {
        self.len()
    }
    pub fn rollback_to(&mut self, len: usize) -> Result<()> {
        if len > self.len() {
            return Err(Error::model("kv cache: cannot roll forward"));
        }
        self.len = len;
        Ok(())
    }

    /// Room for `extra` more positions (one allocation for a whole generation; a cache with
    /// no positions yet gets its storage at its first write and grows by doubling).
    pub fn reserve(&mut self, extra: usize) -> Result<()> {
        if self.len + extra > self.capacity() || !self.unique() {
            self.regrow(self.len + extra)?;
        }
        Ok(())
    }

    fn unique(&mut self) -> bool {
        std::sync::Arc::get_mut(&mut self.owner).is_some()
    }

    /// Copy the cache into storage of `cap` positions of its own.
    fn regrow(&mut self, cap: usize) -> Result<()> {
        let len = self.len;
        for (k, v) in self.layers.iter_mut() {
            let grow = |t: &Tensor| -> Result<Tensor> {
                Ok(Tensor::cat(
                    &[&t.narrow(2, 0, len)?, &room(t, cap - len)?],
                    2,
                )?)
            };
            (*k, *v) = (grow(k)?, grow(v)?);
        }
        self.owner = Default::default();
        Ok(())
    }

    /// Write `k`, `v` (`[1, kv_heads, s, head_dim]`) at positions `len..len + s` of layer `li`
    /// (the layers in order; a batch-1 cache), growing the storage when it is full. The length
    /// moves on with [`KvCache::advance`], once every layer has its positions. Returns the
    /// layer's storage.
    fn write(&mut self, li: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let s = k.dims()[2];
        if li == self.layers.len() {
            let cap = (self.len + s).max(16);
            self.layers.push((room(k, cap)?, room(v, cap)?));
        } else if li == 0 && (self.len + s > self.capacity() || !self.unique()) {
            self.regrow((2 * self.len).max(self.len + s))?;
        }
        let (ck, cv) = &self.layers[li];
        ck.slice_set(&k.contiguous()?, 2, self.len)?;
        cv.slice_set(&v.contiguous()?, 2, self.len)?;
        Ok((ck.clone(), cv.clone()))
    }

    fn advance(&mut self, s: usize) {
        self.len += s;
    }
}

/// `n` positions of zeros shaped like `t` (`[batch, kv_heads, _, head_dim]`).
fn room(t: &Tensor, n: usize) -> Result<Tensor> {
    let (b, h, _, d) = t.dims4()?;
    Ok(Tensor::zeros((b, h, n, d), t.dtype(), t.device())?)
}

/// The rows of one call: row `r` holds `s` new tokens at positions `starts[r]..starts[r] + s`,
/// after its past keys and values; attention reads that past and stores the extended one.
/// A packed call ([`Llama::forward_packed`]) gives each row its own number of tokens: the
/// activations hold the rows' tokens one after another, without padding.
pub struct Rows<'c> {
    pub b: usize,
    /// Tokens per row of a uniform call (0 in a packed one).
    pub s: usize,
    pub starts: Vec<usize>,
    /// Tokens of each row, and where its first one is in the activations.
    pub lens: Vec<usize>,
    pub offs: Vec<usize>,
    kv: RowsKv<'c>,
}

enum RowsKv<'c> {
    /// Every row continues `past` (batch 1, shared by all rows, or one row each); the extended
    /// keys and values of each layer are collected per row when `keep` is `Some`.
    Batch {
        past: Option<&'c KvCache>,
        keep: Option<Vec<Vec<(Tensor, Tensor)>>>,
    },
    /// Row `r` continues `caches[r]` (batch 1), extended in place.
    Each(&'c mut [KvCache]),
    /// Row `r` continues `pasts[r]` (batch 1; rows may share one); the extended keys and values
    /// are collected per row when `keep` is `Some`.
    Packed {
        pasts: Vec<Option<&'c KvCache>>,
        keep: Option<Vec<Vec<(Tensor, Tensor)>>>,
    },
}

impl<'c> Rows<'c> {
    fn batch(b: usize, s: usize, past: Option<&'c KvCache>, keep: bool) -> Self {
        let p = past.map_or(0, |c| c.len());
        Rows {
            b,
            s,
            starts: vec![p; b],
            lens: vec![s; b],
            offs: (0..b).map(|r| r * s).collect(),
            kv: RowsKv::Batch {
                past: past.filter(|_| p > 0),
                keep: keep.then(Vec::new),
            },
        }
    }

    fn each(caches: &'c mut [KvCache]) -> Self {
        let b = caches.len();
        Rows {
            b,
            s: 1,
            starts: caches.iter().map(|c| c.len()).collect(),
            lens: vec![1; b],
            offs: (0..b).collect(),
            kv: RowsKv::Each(caches),
        }
    }

    fn packed(lens: Vec<usize>, pasts: Vec<Option<&'c KvCache>>, keep: bool) -> Self {
        let mut offs = Vec::with_capacity(lens.len());
        let mut at = 0;
        for &l in &lens {
            offs.push(at);
            at += l;
        }
        Rows {
            b: lens.len(),
            s: 0,
            starts: pasts.iter().map(|c| c.map_or(0, |c| c.len())).collect(),
            lens,
            offs,
            kv: RowsKv::Packed {
                pasts,
                keep: keep.then(Vec::new),
            },
        }
    }

    /// Whether rows have their own lengths ([`Llama::forward_packed`]).
    pub fn is_packed(&self) -> bool {
        matches!(self.kv, RowsKv::Packed { .. })
    }

    /// Tokens in the call.
    pub fn tokens(&self) -> usize {
        self.lens.iter().sum()
    }

    /// Row `r`'s cached keys and values of layer `li` (`[1, kv_heads, starts[r], head_dim]`
    /// views, or the shared batch-1 cache), if it has any.
    pub fn past(&self, li: usize, r: usize) -> Result<Option<(Tensor, Tensor)>> {
        let cache = match &self.kv {
            RowsKv::Batch { past: Some(c), .. } => *c,
            RowsKv::Batch { past: None, .. } => return Ok(None),
            RowsKv::Each(c) => &c[r],
            RowsKv::Packed { pasts, .. } => match pasts[r] {
                Some(c) => c,
                None => return Ok(None),
            },
        };
        if cache.is_empty() {
            return Ok(None);
        }
        Ok(match cache.layer(li)? {
            Some((k, v)) if k.dims()[0] > 1 => Some((k.narrow(0, r, 1)?, v.narrow(0, r, 1)?)),
            other => other,
        })
    }

    /// Whether each row's new keys and values go into its own cache in place
    /// ([`Rows::append`], a decoding step) instead of [`Rows::store`].
    pub fn in_place(&self) -> bool {
        matches!(self.kv, RowsKv::Each(_))
    }

    /// Row `r`'s new keys and values of layer `li` (`[1, kv_heads, s, head_dim]`), written
    /// after its cached ones in place (an [`Rows::in_place`] call). Returns the layer's
    /// storage, `[1, kv_heads, capacity, head_dim]`: its first `starts[r] + s` positions are the
    /// row's keys and values.
    pub fn append(
        &mut self,
        li: usize,
        r: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        match &mut self.kv {
            RowsKv::Each(c) => c[r].write(li, k, v),
            _ => Err(Error::model(
                "kv cache: append to a call that keeps no caches",
            )),
        }
    }

    /// Row `r`'s keys and values of layer `li` after this call (`[1, kv_heads, starts[r] + s,
    /// head_dim]`); rows are stored in order. A call that keeps no caches, or extends them in
    /// place ([`Rows::append`]), drops them.
    pub fn store(&mut self, li: usize, r: usize, kv: (Tensor, Tensor)) {
        match &mut self.kv {
            RowsKv::Batch { keep: Some(k), .. } | RowsKv::Packed { keep: Some(k), .. } => {
                if r == 0 {
                    k.push(Vec::with_capacity(self.b));
                }
                k[li].push(kv);
            }
            RowsKv::Batch { keep: None, .. }
            | RowsKv::Packed { keep: None, .. }
            | RowsKv::Each(_) => {}
        }
    }

    /// The kept cache of a [`Rows::batch`] call, rows stacked: `[b, kv_heads, len, head_dim]`.
    fn into_cache(self) -> Result<Option<KvCache>> {
        let RowsKv::Batch {
            keep: Some(layers), ..
        } = self.kv
        else {
            return Ok(None);
        };
        let stack = |x: Vec<&Tensor>| Tensor::cat(&x, 0);
        let layers = layers
            .iter()
            .map(|rows| {
                let k = stack(rows.iter().map(|(k, _)| k).collect())?;
                let v = stack(rows.iter().map(|(_, v)| v).collect())?;
                Ok((k, v))
            })
            .collect::<Result<_>>()?;
        Ok(Some(KvCache::from_layers(layers)))
    }

    /// The kept caches of a [`Rows::packed`] call, one per row (batch 1).
    fn into_caches(self) -> Vec<KvCache> {
        let RowsKv::Packed {
            keep: Some(layers), ..
        } = self.kv
        else {
            return vec![];
        };
        (0..self.b)
            .map(|r| KvCache::from_layers(layers.iter().map(|rows| rows[r].clone()).collect()))
            .collect()
    }
}

impl Llama {
    /// The layer loop, once for both arithmetics: `ids` (`b·s` tokens, row-major) through every
    /// layer and the final norm. Returns the hidden states `[b, s, hidden]`. The names given to
    /// [`Arith::trace`] are llama.cpp's.
    fn run<A: Arith>(&self, mut a: A, ids: &Tensor, rows: &mut Rows) -> Result<Tensor> {
        let c = &self.cfg;
        let (nh, nkv) = (c.num_attention_heads, c.num_key_value_heads);
        let mut x = a.embed(self.embed.index_select(ids, 0)?)?;
        for (li, l) in self.layers.iter().enumerate() {
            let h = a.rms_norm(&x, &l.attn_norm)?;
            a.trace("attn_norm", li, &h);
            let y = a.self_attention(li, &l.qkv, &h, (nh, nkv), rows)?;
            a.trace("kqv_out", li, &y);
            let o = a.linear(&l.o, &y)?;
            a.trace("attn_out", li, &o);
            x = a.add(x, &o)?;
            a.recycle(o);
            a.trace("ffn_inp", li, &x);
            let h = a.rms_norm(&x, &l.ffn_norm)?;
            a.trace("ffn_norm", li, &h);
            let act = a.gated(&l.gate_up, &h, li)?;
            a.trace("ffn_swiglu", li, &act);
            let d = a.linear(&l.down, &act)?;
            a.trace("ffn_out", li, &d);
            x = a.add(x, &d)?;
            a.recycle(d);
            a.trace("l_out", li, &x);
        }
        let out = a.rms_norm(&x, &self.norm)?;
        a.trace("result_norm", self.layers.len(), &out);
        a.output(out)
    }

    /// [`Llama::run`] in the model's arithmetic.
    fn run_rows(&self, ids: &Tensor, rows: &mut Rows) -> Result<Tensor> {
        if self.llamacpp_arith {
            self.run(LlamaCpp::new(self, rows, None), ids, rows)
        } else {
            self.run(F32::new(self, rows)?, ids, rows)
        }
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
        let (b, s) = tokens.dims2()?;
        let mut rows = Rows::batch(b, s, past, keep_cache);
        let x = self.run_rows(&tokens.flatten_all()?, &mut rows)?;
        Ok((x, rows.into_cache()?))
    }

    /// [`Llama::forward`] with llama.cpp's CPU arithmetic (see [`super::ggml`]); `trace` sees the
    /// intermediate values. The KV cache holds f16-rounded keys and values, as llama.cpp's does.
    pub fn forward_traced(
        &self,
        tokens: &Tensor,
        past: Option<&KvCache>,
        keep_cache: bool,
        trace: Option<Trace>,
    ) -> Result<(Tensor, Option<KvCache>)> {
        let (b, s) = tokens.dims2()?;
        let mut rows = Rows::batch(b, s, past, keep_cache);
        let ids = tokens.flatten_all()?;
        let x = self.run(LlamaCpp::new(self, &rows, trace), &ids, &mut rows)?;
        Ok((x, rows.into_cache()?))
    }

    /// Rows of their own lengths in one call, without padding: row `r` runs `rows[r].0` after
    /// the cached positions of `rows[r].1` (batch 1; rows may share one, e.g. every document's
    /// choices share its context). The linear layers run on every token of every row at once
    /// (the weights are read once for all of them), RoPE and attention per row; a row's result
    /// equals [`Llama::forward`] of that row alone. Returns the final-normed hidden states
    /// `[tokens, hidden]` (the rows' tokens in order) and, when `keep_cache`, each row's cache
    /// extended by its tokens.
    pub fn forward_packed(
        &self,
        rows: &[(&[u32], Option<&KvCache>)],
        keep_cache: bool,
    ) -> Result<(Tensor, Vec<KvCache>)> {
        if rows.iter().any(|(t, _)| t.is_empty()) {
            return Err(Error::model("forward_packed: a row without tokens"));
        }
        if rows
            .iter()
            .any(|(_, c)| c.is_some_and(|c| !c.is_empty() && c.n_layers() != self.layers.len()))
        {
            return Err(Error::model("forward_packed: cache of another model"));
        }
        let ids: Vec<u32> = rows.iter().flat_map(|(t, _)| t.iter().copied()).collect();
        let n = ids.len();
        let ids = Tensor::from_vec(ids, n, &Device::Cpu)?;
        let mut r = Rows::packed(
            rows.iter().map(|(t, _)| t.len()).collect(),
            rows.iter().map(|(_, c)| *c).collect(),
            keep_cache,
        );
        let x = self.run_rows(&ids, &mut r)?;
        Ok((x.reshape((n, self.cfg.hidden_size))?, r.into_caches()))
    }

    /// One decoding step for `tokens.len()` independent rows: row `r` appends `tokens[r]` after
    /// its own cache `caches[r]` (rows may have different lengths). The linear layers run on all
    /// rows at once; RoPE and attention per row at its own position, so a row's result equals
    /// [`Llama::forward`] of that row alone. Returns the final-normed hidden states `[b, hidden]`
    /// and extends every cache by one position.
    pub fn decode_step(&self, tokens: &[u32], caches: &mut [KvCache]) -> Result<Tensor> {
        let b = tokens.len();
        if b == 0 || caches.len() != b {
            return Err(Error::model("decode_step: one cache per token"));
        }
        if caches
            .iter()
            .any(|c| !c.is_empty() && c.n_layers() != self.layers.len())
        {
            return Err(Error::model("decode_step: cache of another model"));
        }
        let ids = Tensor::from_vec(tokens.to_vec(), b, &Device::Cpu)?;
        let x = self.run_rows(&ids, &mut Rows::each(caches))?;
        for c in caches.iter_mut() {
            c.advance(1);
        }
        Ok(x.reshape((b, self.cfg.hidden_size))?)
    }

    /// The matmul kernels of the layers and the output head, distinct, in first-use order.
    pub fn kernel(&self) -> String {
        let mut names: Vec<String> = vec![];
        let ws = self
            .layers
            .iter()
            .flat_map(Layer::weights)
            .chain([&self.lm_head]);
        for w in ws {
            let k = w.kernel();
            if !names.contains(&k) {
                names.push(k);
            }
        }
        names.join(", ")
    }

    /// Logits (f32) of `n` final-normed hidden-state rows (row-major) into `out`: `n` rows of
    /// the vocabulary's width, returned, in one buffer (a vocabulary-wide row each is too large
    /// for the allocator's heap: a buffer each was an mmap, page faults and an munmap), which
    /// the caller may keep across calls ([`Weight::forward_rows_into`]). Returns the logits'
    /// rows, in the first values of `out`.
    pub fn logits<'o>(
        &self,
        hidden: &[f32],
        n: usize,
        out: &'o mut Vec<f32>,
    ) -> Result<(&'o [f32], usize)> {
        let rows = self.lm_head.forward_rows_into(hidden, n, out)?;
        Ok((rows, self.lm_head.out_features().max(1)))
    }
}
