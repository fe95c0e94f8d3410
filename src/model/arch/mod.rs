//! The architectures of the Llama family, and the one table of their tensor names.
//!
//! Every supported architecture computes the same layer ([`super::llama::Llama::run`]) from the
//! same tensors; what differs is how its files name and configure it. Each is one file here
//! holding an [`Arch`] — its config.json `model_type` and class, its GGUF `general.architecture`,
//! transformers' config defaults, whether it reads a sliding window — and one line in
//! [`ARCHITECTURES`]. The config readers, the loaders, `export` and `quantize` all go through the
//! registry and [`LAYER_TENSORS`] / [`GLOBAL_TENSORS`].
use super::config::LlamaConfig;
use crate::error::{Error, Result};
use candle_core::Tensor;

mod llama;
mod mistral;

pub use llama::LLAMA;
pub use mistral::MISTRAL;

/// The registry: one line per architecture.
pub const ARCHITECTURES: &[&Arch] = &[&LLAMA, &MISTRAL];

/// One architecture as its files name and configure it.
pub struct Arch {
    /// config.json `model_type`.
    pub model_type: &'static str,
    /// config.json `architectures[0]` (transformers' class).
    pub hf_class: &'static str,
    /// GGUF `general.architecture` (also the prefix of its hyper-parameter keys).
    pub gguf: &'static str,
    /// transformers' defaults for the config fields that change the numbers.
    pub defaults: TypeDefaults,
    /// Whether config.json's `sliding_window` applies (transformers' Llama ignores it).
    pub sliding_window: bool,
}

/// transformers' defaults for the fields that change the numbers (the config class's
/// `__init__`).
pub struct TypeDefaults {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// `None`: as many as attention heads.
    pub num_key_value_heads: Option<usize>,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub sliding_window: Option<usize>,
    pub bos_token_id: u32,
    pub eos_token_id: u32,
}

/// The architecture of a config.json: by `model_type`, or by class when there is none.
pub fn from_hf(model_type: Option<&str>, class: Option<&str>) -> Option<&'static Arch> {
    ARCHITECTURES.iter().copied().find(|a| match model_type {
        Some(t) => a.model_type == t,
        None => class == Some(a.hf_class),
    })
}

/// The architecture of a GGUF `general.architecture`.
pub fn from_gguf(name: &str) -> Option<&'static Arch> {
    ARCHITECTURES.iter().copied().find(|a| a.gguf == name)
}

/// The supported names, `, `-separated.
pub fn names(name: impl Fn(&Arch) -> &'static str) -> String {
    ARCHITECTURES
        .iter()
        .map(|a| name(a))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which heads a Q or K matrix's rows are grouped in.
#[derive(Clone, Copy)]
pub enum RopeHeads {
    Query,
    KeyValue,
}

/// A tensor under its two names: GGUF's (`blk.N.<gguf>.weight` in a layer) and Hugging Face's
/// (`<text prefix>layers.N.<hf>.weight` in a layer, `<text prefix><hf>.weight` for a global; see
/// [`HF_PREFIX`]).
pub struct TensorName {
    pub gguf: &'static str,
    pub hf: &'static str,
    /// The output head sits beside the text model (`lm_head`, `language_model.lm_head`), not in
    /// it.
    pub beside_model: bool,
    /// Q and K: GGUF orders each head's rows for interleaved RoPE, Hugging Face for rotate-half
    /// (see [`permute_qk`]).
    pub rope_heads: Option<RopeHeads>,
}

const fn name(gguf: &'static str, hf: &'static str) -> TensorName {
    TensorName {
        gguf,
        hf,
        beside_model: false,
        rope_heads: None,
    }
}

/// Where a plain causal LM's text model tensors start (`model.language_model.` or
/// `language_model.model.` inside a multimodal wrapper).
pub const HF_PREFIX: &str = "model.";

/// The tensors of layer N, in the order of [`super::llama::Layer`]'s fields.
pub const LAYER_TENSORS: [TensorName; 9] = [
    name("attn_norm", "input_layernorm"),
    TensorName {
        rope_heads: Some(RopeHeads::Query),
        ..name("attn_q", "self_attn.q_proj")
    },
    TensorName {
        rope_heads: Some(RopeHeads::KeyValue),
        ..name("attn_k", "self_attn.k_proj")
    },
    name("attn_v", "self_attn.v_proj"),
    name("attn_output", "self_attn.o_proj"),
    name("ffn_norm", "post_attention_layernorm"),
    name("ffn_gate", "mlp.gate_proj"),
    name("ffn_up", "mlp.up_proj"),
    name("ffn_down", "mlp.down_proj"),
];

/// The token embeddings, final norm and output head (GGUF leaves the head out when it is tied).
pub const EMBED: TensorName = name("token_embd", "embed_tokens");
pub const OUTPUT_NORM: TensorName = name("output_norm", "norm");
pub const OUTPUT: TensorName = TensorName {
    beside_model: true,
    ..name("output", "lm_head")
};
pub const GLOBAL_TENSORS: [&TensorName; 3] = [&EMBED, &OUTPUT_NORM, &OUTPUT];
/// GGUF only: per-frequency RoPE divisors (Llama 3 scaling, linear scaling).
pub const ROPE_FREQS: &str = "rope_freqs.weight";

impl TensorName {
    /// The GGUF tensor name, in layer `layer` or global.
    pub fn gguf_name(&self, layer: Option<usize>) -> String {
        match layer {
            Some(i) => format!("blk.{i}.{}.weight", self.gguf),
            None => format!("{}.weight", self.gguf),
        }
    }

    /// The Hugging Face name without `.weight` (AWQ has `.qweight`, … instead) in a model whose
    /// text model's tensors start with `prefix`.
    pub fn hf_stem(&self, prefix: &str, layer: Option<usize>) -> String {
        match layer {
            Some(i) => format!("{prefix}layers.{i}.{}", self.hf),
            None if self.beside_model => {
                let outer = prefix.strip_suffix(HF_PREFIX).unwrap_or("");
                format!("{outer}{}", self.hf)
            }
            None => format!("{prefix}{}", self.hf),
        }
    }

    /// The Hugging Face tensor name after `prefix`.
    pub fn hf_name(&self, prefix: &str, layer: Option<usize>) -> String {
        format!("{}.weight", self.hf_stem(prefix, layer))
    }

    /// The head count whose rows the two layouts order differently (Q and K only).
    pub fn permute_heads(&self, cfg: &LlamaConfig) -> Option<usize> {
        self.rope_heads.map(|h| match h {
            RopeHeads::Query => cfg.num_attention_heads,
            RopeHeads::KeyValue => cfg.num_key_value_heads,
        })
    }
}

/// HF rotate-half rows `(heads, 2, head_dim/2)` → GGUF interleaved rows `(heads, head_dim/2, 2)`
/// (llama.cpp's conversion permutation).
pub fn permute_qk(w: &Tensor, heads: usize) -> Result<Tensor> {
    regroup(w, heads, true)
}

/// The inverse of [`permute_qk`]: GGUF rows `(heads, head_dim/2, 2)` → HF `(heads, 2, head_dim/2)`.
pub fn unpermute_qk(w: &Tensor, heads: usize) -> Result<Tensor> {
    regroup(w, heads, false)
}

fn regroup(w: &Tensor, heads: usize, to_gguf: bool) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        return Err(Error::model(format!(
            "cannot permute a {rows}×{cols} Q/K matrix for {heads} heads"
        )));
    }
    let hd = rows / heads;
    let w = if to_gguf {
        w.reshape((heads, 2, hd / 2, cols))?
    } else {
        w.reshape((heads, hd / 2, 2, cols))?
    };
    Ok(w.transpose(1, 2)?.contiguous()?.reshape((rows, cols))?)
}
