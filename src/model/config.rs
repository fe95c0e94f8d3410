//! Llama-family configuration, read from a Hugging Face `config.json` or from GGUF metadata.
use crate::error::{Error, Result};
use candle_core::quantized::gguf_file;
use serde::Deserialize;

/// Llama 3 style RoPE frequency scaling (`rope_scaling.rope_type == "llama3"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub architecture: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3RopeScaling>,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    pub tie_word_embeddings: bool,
    pub sliding_window: Option<usize>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct HfRopeScaling {
    #[serde(alias = "type")]
    rope_type: Option<String>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

#[derive(Deserialize)]
struct HfConfig {
    architectures: Option<Vec<String>>,
    model_type: Option<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<HfRopeScaling>,
    max_position_embeddings: Option<usize>,
    n_positions: Option<usize>,
    n_ctx: Option<usize>,
    vocab_size: usize,
    tie_word_embeddings: Option<bool>,
    sliding_window: Option<usize>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
}

const SUPPORTED: &[&str] = &["LlamaForCausalLM", "MistralForCausalLM"];

impl LlamaConfig {
    pub fn from_hf_json(text: &str) -> Result<Self> {
        let c: HfConfig = serde_json::from_str(text)
            .map_err(|e| Error::model(format!("config.json: {e}")))?;
        let arch = c
            .architectures
            .as_ref()
            .and_then(|a| a.first().cloned())
            .or_else(|| c.model_type.clone())
            .unwrap_or_default();
        let known = SUPPORTED.contains(&arch.as_str())
            || matches!(c.model_type.as_deref(), Some("llama") | Some("mistral"));
        if !known {
            return Err(Error::model(format!(
                "unsupported architecture `{arch}` (model_type {:?}); supported: {}",
                c.model_type.as_deref().unwrap_or("?"),
                SUPPORTED.join(", ")
            )));
        }
        let rope_scaling = match c.rope_scaling {
            Some(rs) if rs.rope_type.as_deref() == Some("llama3") => Some(Llama3RopeScaling {
                factor: rs.factor.unwrap_or(8.0),
                low_freq_factor: rs.low_freq_factor.unwrap_or(1.0),
                high_freq_factor: rs.high_freq_factor.unwrap_or(4.0),
                original_max_position_embeddings: rs.original_max_position_embeddings.unwrap_or(8192),
            }),
            Some(rs) if matches!(rs.rope_type.as_deref(), None | Some("default")) => None,
            Some(rs) => {
                return Err(Error::model(format!(
                    "unsupported rope_scaling type {:?}",
                    rs.rope_type
                )))
            }
            None => None,
        };
        let heads = c.num_attention_heads;
        // TASKS_SPEC §1.3 step 4: the first of n_positions, max_position_embeddings, n_ctx.
        let max_len = c
            .n_positions
            .or(c.max_position_embeddings)
            .or(c.n_ctx)
            .unwrap_or(2048);
        let eos = match c.eos_token_id {
            Some(OneOrMany::One(x)) => vec![x],
            Some(OneOrMany::Many(v)) => v,
            None => vec![],
        };
        Ok(Self {
            architecture: arch,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_hidden_layers: c.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: c.num_key_value_heads.unwrap_or(heads),
            head_dim: c.head_dim.unwrap_or(c.hidden_size / heads),
            rms_norm_eps: c.rms_norm_eps,
            rope_theta: c.rope_theta.unwrap_or(10_000.0),
            rope_scaling,
            max_position_embeddings: max_len,
            vocab_size: c.vocab_size,
            tie_word_embeddings: c.tie_word_embeddings.unwrap_or(false),
            sliding_window: c.sliding_window,
            bos_token_id: c.bos_token_id,
            eos_token_ids: eos,
        })
    }

    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let arch = md_str(ct, "general.architecture")?;
        if arch != "llama" && arch != "mistral" {
            return Err(Error::model(format!(
                "unsupported GGUF architecture `{arch}`; supported: llama, mistral"
            )));
        }
        let u = |k: &str| md_usize(ct, &format!("{arch}.{k}"));
        let heads = u("attention.head_count")?;
        let hidden = u("embedding_length")?;
        let vocab = match ct.metadata.get(&format!("{arch}.vocab_size")) {
            Some(v) => v.to_u32().map(|x| x as usize).unwrap_or(0),
            None => ct
                .metadata
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.to_vec().ok())
                .map(|v| v.len())
                .unwrap_or(0),
        };
        let head_dim = match ct.metadata.get(&format!("{arch}.attention.key_length")) {
            Some(v) => v.to_u32().map_err(Error::from)? as usize,
            None => hidden / heads,
        };
        Ok(Self {
            architecture: arch.clone(),
            hidden_size: hidden,
            intermediate_size: u("feed_forward_length")?,
            num_hidden_layers: u("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: u("attention.head_count_kv").unwrap_or(heads),
            head_dim,
            rms_norm_eps: md_f64(ct, &format!("{arch}.attention.layer_norm_rms_epsilon"))?,
            rope_theta: md_f64(ct, &format!("{arch}.rope.freq_base")).unwrap_or(10_000.0),
            rope_scaling: None,
            max_position_embeddings: u("context_length").unwrap_or(2048),
            vocab_size: vocab,
            tie_word_embeddings: !ct.tensor_infos.contains_key("output.weight"),
            sliding_window: u("attention.sliding_window").ok(),
            bos_token_id: md_usize(ct, "tokenizer.ggml.bos_token_id").ok().map(|x| x as u32),
            eos_token_ids: md_usize(ct, "tokenizer.ggml.eos_token_id")
                .ok()
                .map(|x| vec![x as u32])
                .unwrap_or_default(),
        })
    }

    /// The config.json a Hugging Face `LlamaForCausalLM` of this shape would have.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "vocab_size": self.vocab_size,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        });
        if let Some(b) = self.bos_token_id {
            v["bos_token_id"] = b.into();
        }
        if let Some(e) = self.eos_token_ids.first() {
            v["eos_token_id"] = (*e).into();
        }
        if let Some(w) = self.sliding_window {
            v["sliding_window"] = w.into();
        }
        v
    }

    /// RoPE inverse frequencies, with Llama 3 scaling applied when configured.
    pub fn inv_freq(&self) -> Vec<f32> {
        let d = self.head_dim;
        let base: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / self.rope_theta.powf((2 * i) as f64 / d as f64))
            .collect();
        match &self.rope_scaling {
            None => base.into_iter().map(|x| x as f32).collect(),
            Some(s) => {
                let old = s.original_max_position_embeddings as f64;
                let low_wavelen = old / s.low_freq_factor;
                let high_wavelen = old / s.high_freq_factor;
                base.into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        let v = if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / s.factor
                        } else {
                            let smooth = (old / wavelen - s.low_freq_factor)
                                / (s.high_freq_factor - s.low_freq_factor);
                            (1.0 - smooth) * f / s.factor + smooth * f
                        };
                        v as f32
                    })
                    .collect()
            }
        }
    }
}

pub(crate) fn md_str(ct: &gguf_file::Content, key: &str) -> Result<String> {
    ct.metadata
        .get(key)
        .ok_or_else(|| Error::model(format!("GGUF metadata key `{key}` is missing")))?
        .to_string()
        .map(|s| s.clone())
        .map_err(|_| Error::model(format!("GGUF metadata key `{key}` is not a string")))
}

pub(crate) fn md_usize(ct: &gguf_file::Content, key: &str) -> Result<usize> {
    let v = ct
        .metadata
        .get(key)
        .ok_or_else(|| Error::model(format!("GGUF metadata key `{key}` is missing")))?;
    v.to_u64()
        .map(|x| x as usize)
        .or_else(|_| v.to_u32().map(|x| x as usize))
        .or_else(|_| v.to_i32().map(|x| x as usize))
        .map_err(|_| Error::model(format!("GGUF metadata key `{key}` is not an integer")))
}

pub(crate) fn md_f64(ct: &gguf_file::Content, key: &str) -> Result<f64> {
    let v = ct
        .metadata
        .get(key)
        .ok_or_else(|| Error::model(format!("GGUF metadata key `{key}` is missing")))?;
    v.to_f32()
        .map(|x| x as f64)
        .or_else(|_| v.to_f64())
        .map_err(|_| Error::model(format!("GGUF metadata key `{key}` is not a float")))
}
