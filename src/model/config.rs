//! Llama-family configuration, read from a Hugging Face `config.json` (every layout transformers
//! 4.x and 5.x write) or from GGUF metadata.
//!
//! `config.json` rules:
//! - RoPE settings come from transformers 5's `rope_parameters` (`rope_theta`, `rope_type` and the
//!   type's parameters) or from 4.x's top-level `rope_theta` + `rope_scaling` (`rope_type` or
//!   `type`); both present and disagreeing is an error. RoPE types: default, linear, dynamic,
//!   yarn, llama3; any other is refused.
//! - The text model's fields may sit in a nested `text_config` (multimodal wrappers).
//! - A field that changes the numbers and is missing gets the default that transformers'
//!   `LlamaConfig` / `MistralConfig` uses ([`LlamaConfig::defaults`] lists which were applied, and
//!   the loader records them in the results fingerprint). A field present with a type or value we
//!   cannot interpret (a string where a number belongs, `hidden_act` other than silu, attention
//!   biases, an unknown RoPE parameter) is an error.
use super::arch::{LLAMA, MISTRAL, OUTPUT};
use crate::error::{Error, Result};
use candle_core::quantized::gguf_file;
use serde_json::{Map, Value};

/// Llama 3 style RoPE frequency scaling (`rope_type == "llama3"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// YaRN (`rope_type == "yarn"`), with transformers' defaults already resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct YarnRopeScaling {
    pub factor: f64,
    pub original_max_position_embeddings: usize,
    pub beta_fast: f64,
    pub beta_slow: f64,
    /// Multiplies cos and sin (transformers' `attention_scaling`).
    pub attention_factor: f64,
    pub truncate: bool,
}

/// RoPE scaling other than the default rotary embedding.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Positions divided by `factor` (every frequency divided by it).
    Linear {
        factor: f64,
    },
    /// Dynamic NTK: transformers uses the default frequencies while the sequence is at most
    /// `original_max_position_embeddings` long, and inputs are truncated to
    /// `max_position_embeddings` ≤ that, so the numbers are the default ones.
    Dynamic {
        factor: f64,
        original_max_position_embeddings: usize,
    },
    Yarn(YarnRopeScaling),
    Llama3(Llama3RopeScaling),
}

impl RopeScaling {
    pub fn name(&self) -> &'static str {
        match self {
            RopeScaling::Linear { .. } => "linear",
            RopeScaling::Dynamic { .. } => "dynamic",
            RopeScaling::Yarn(_) => "yarn",
            RopeScaling::Llama3(_) => "llama3",
        }
    }
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
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    pub tie_word_embeddings: bool,
    pub sliding_window: Option<usize>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// Fields that changed the numbers and were missing, with the transformers default used.
    pub defaults: Map<String, Value>,
    /// `torch_dtype` / `dtype` of config.json (what the weights were saved as), if given.
    pub config_dtype: Option<String>,
}

/// Typed access to one JSON object, with errors that name the field and defaults recorded.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    /// Prefix of field names in messages (`text_config.`, `rope_parameters.`).
    at: &'a str,
    defaults: Map<String, Value>,
}

fn bad_field(at: &str, key: &str, v: &Value, want: &str) -> Error {
    Error::model(format!("config.json: `{at}{key}` is {v}, expected {want}"))
}

impl<'a> Fields<'a> {
    fn new(obj: &'a Map<String, Value>, at: &'a str) -> Self {
        Self {
            obj,
            at,
            defaults: Map::new(),
        }
    }
    /// The value of `key`; `null` counts as missing.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }
    /// The value of `key` converted by `conv`; a present value of another type is an error
    /// naming the field and what it should be (never a silent default).
    fn typed<T>(
        &self,
        key: &str,
        want: &str,
        conv: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<T>> {
        self.get(key)
            .map(|v| conv(v).ok_or_else(|| bad_field(self.at, key, v, want)))
            .transpose()
    }
    fn usize(&self, key: &str) -> Result<Option<usize>> {
        self.typed(key, "a non-negative integer", |v| {
            v.as_u64().map(|x| x as usize)
        })
    }
    fn f64(&self, key: &str) -> Result<Option<f64>> {
        self.typed(key, "a number", Value::as_f64)
    }
    fn bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "true or false", Value::as_bool)
    }
    fn str(&self, key: &str) -> Result<Option<&'a str>> {
        self.typed(key, "a string", Value::as_str)
    }
    fn usize_or(&mut self, key: &str, default: usize) -> Result<usize> {
        Ok(match self.usize(key)? {
            Some(x) => x,
            None => {
                self.defaults.insert(key.into(), default.into());
                default
            }
        })
    }
    fn f64_or(&mut self, key: &str, default: f64) -> Result<f64> {
        Ok(match self.f64(key)? {
            Some(x) => x,
            None => {
                self.defaults.insert(key.into(), default.into());
                default
            }
        })
    }
    fn token_ids(&self, key: &str) -> Result<Option<Vec<u32>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_u64()
                        .map(|x| x as u32)
                        .ok_or_else(|| bad_field(self.at, key, x, "token ids"))
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(v) => v
                .as_u64()
                .map(|x| Some(vec![x as u32]))
                .ok_or_else(|| bad_field(self.at, key, v, "a token id or a list of them")),
        }
    }
}

fn object<'a>(f: &Fields<'a>, key: &str) -> Result<Option<&'a Map<String, Value>>> {
    match f.get(key) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(v) => Err(bad_field(f.at, key, v, "an object")),
    }
}

/// transformers' `get_mscale` of YaRN.
fn yarn_mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * scale.ln() + 1.0
    }
}

/// The RoPE settings of a config: `(rope_theta, scaling)`, from transformers 5's
/// `rope_parameters` or 4.x's `rope_theta` + `rope_scaling`.
fn read_rope(
    f: &mut Fields,
    d: &super::arch::TypeDefaults,
    max_position_embeddings: usize,
) -> Result<(f64, Option<RopeScaling>)> {
    let top_theta = f.f64("rope_theta")?;
    // transformers 5 gives a top-level `original_max_position_embeddings` priority (llama3, yarn).
    let top_original = f.usize("original_max_position_embeddings")?;
    let params = object(f, "rope_parameters")?;
    let scaling = object(f, "rope_scaling")?;
    if let Some(p) = params {
        if p.values().any(|v| v.is_object()) {
            return Err(Error::model(
                "config.json: `rope_parameters` per layer type is not supported (Llama/Mistral use one set)",
            ));
        }
    }
    // transformers 5 writes only `rope_parameters`; a config carrying both must say the same.
    if let (Some(p), Some(s)) = (params, scaling) {
        let strip = |m: &Map<String, Value>| {
            let mut m = m.clone();
            m.remove("rope_theta");
            if let Some(t) = m.remove("type") {
                m.entry("rope_type").or_insert(t);
            }
            m
        };
        if strip(p) != strip(s) {
            return Err(Error::model(format!(
                "config.json: `rope_parameters` {} and `rope_scaling` {} disagree",
                Value::Object(p.clone()),
                Value::Object(s.clone())
            )));
        }
    }
    let (src_name, src) = match (params, scaling) {
        (Some(p), _) => ("rope_parameters.", Some(p)),
        (None, Some(s)) => ("rope_scaling.", Some(s)),
        (None, None) => ("", None),
    };
    let empty = Map::new();
    let r = Fields::new(src.unwrap_or(&empty), src_name);
    let theta = match (r.f64("rope_theta")?, top_theta) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::model(format!(
                "config.json: `rope_parameters.rope_theta` {a} and `rope_theta` {b} disagree"
            )))
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => {
            f.defaults.insert("rope_theta".into(), d.rope_theta.into());
            d.rope_theta
        }
    };
    let rope_type = match (r.str("rope_type")?, r.str("type")?) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::model(format!(
                "config.json: `{src_name}rope_type` {a:?} and `{src_name}type` {b:?} disagree"
            )))
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => {
            let other = r.obj.keys().any(|k| k != "rope_theta");
            if other {
                return Err(Error::model(format!(
                    "config.json: `{}` has no rope_type",
                    src_name.trim_end_matches('.')
                )));
            }
            "default"
        }
    };
    let allowed: &[&str] = match rope_type {
        "default" => &[],
        "linear" => &["factor"],
        "dynamic" => &["factor", "original_max_position_embeddings"],
        "yarn" => &[
            "factor",
            "attention_factor",
            "beta_fast",
            "beta_slow",
            "original_max_position_embeddings",
            "mscale",
            "mscale_all_dim",
            "truncate",
        ],
        "llama3" => &[
            "factor",
            "low_freq_factor",
            "high_freq_factor",
            "original_max_position_embeddings",
        ],
        other => {
            return Err(Error::model(format!(
                "config.json: RoPE type `{other}` is not supported (supported: default, linear, dynamic, yarn, llama3)"
            )))
        }
    };
    for k in r.obj.keys() {
        let common = ["rope_type", "type", "rope_theta", "partial_rotary_factor"];
        if !common.contains(&k.as_str()) && !allowed.contains(&k.as_str()) {
            return Err(Error::model(format!(
                "config.json: `{src_name}{k}` is not a parameter of RoPE type `{rope_type}`"
            )));
        }
    }
    if let Some(p) = r.f64("partial_rotary_factor")? {
        if p != 1.0 {
            return Err(Error::model(format!(
                "config.json: `{src_name}partial_rotary_factor` = {p}: partial rotary embeddings are not supported"
            )));
        }
    }
    let need = |k: &str| -> Result<f64> {
        r.f64(k)?.ok_or_else(|| {
            Error::model(format!(
                "config.json: RoPE type `{rope_type}` needs `{src_name}{k}`"
            ))
        })
    };
    let factor_ok = |x: f64| -> Result<f64> {
        if x.is_finite() && x > 0.0 {
            Ok(x)
        } else {
            Err(Error::model(format!(
                "config.json: `{src_name}factor` = {x} must be a positive number"
            )))
        }
    };
    let scaling = match rope_type {
        "default" => None,
        "linear" => Some(RopeScaling::Linear {
            factor: factor_ok(need("factor")?)?,
        }),
        "dynamic" => {
            let original = r
                .usize("original_max_position_embeddings")?
                .unwrap_or(max_position_embeddings);
            if original < max_position_embeddings {
                return Err(Error::model(format!(
                    "config.json: dynamic RoPE scaling beyond original_max_position_embeddings ({original} < max_position_embeddings {max_position_embeddings}) is not supported"
                )));
            }
            Some(RopeScaling::Dynamic {
                factor: factor_ok(need("factor")?)?,
                original_max_position_embeddings: original,
            })
        }
        "yarn" => {
            let factor = factor_ok(need("factor")?)?;
            let original = top_original
                .or(r.usize("original_max_position_embeddings")?)
                .unwrap_or(max_position_embeddings);
            let attention_factor = match r.f64("attention_factor")? {
                Some(a) => a,
                None => match (r.f64("mscale")?, r.f64("mscale_all_dim")?) {
                    (Some(m), Some(a)) if m != 0.0 && a != 0.0 => {
                        yarn_mscale(factor, m) / yarn_mscale(factor, a)
                    }
                    _ => yarn_mscale(factor, 1.0),
                },
            };
            Some(RopeScaling::Yarn(YarnRopeScaling {
                factor,
                original_max_position_embeddings: original,
                beta_fast: r.f64("beta_fast")?.filter(|&b| b != 0.0).unwrap_or(32.0),
                beta_slow: r.f64("beta_slow")?.filter(|&b| b != 0.0).unwrap_or(1.0),
                attention_factor,
                truncate: r.bool("truncate")?.unwrap_or(true),
            }))
        }
        "llama3" => {
            let original = top_original.or(r.usize("original_max_position_embeddings")?).ok_or_else(|| {
                Error::model(format!(
                    "config.json: RoPE type `llama3` needs `{src_name}original_max_position_embeddings`"
                ))
            })?;
            let (low, high) = (need("low_freq_factor")?, need("high_freq_factor")?);
            if low >= high {
                return Err(Error::model(format!(
                    "config.json: llama3 RoPE needs low_freq_factor < high_freq_factor, got {low} and {high}"
                )));
            }
            Some(RopeScaling::Llama3(Llama3RopeScaling {
                factor: factor_ok(need("factor")?)?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: original,
            }))
        }
        _ => unreachable!("rope types are checked above"),
    };
    Ok((theta, scaling))
}

impl LlamaConfig {
    pub fn from_hf_json(text: &str) -> Result<Self> {
        let root: Value =
            serde_json::from_str(text).map_err(|e| Error::model(format!("config.json: {e}")))?;
        let root = root
            .as_object()
            .ok_or_else(|| Error::model("config.json: not a JSON object"))?;
        let top = Fields::new(root, "");
        // Multimodal wrappers keep the text model's fields in `text_config`.
        let (obj, at) = match object(&top, "text_config")? {
            Some(t) => (t, "text_config."),
            None => (root, ""),
        };
        let mut f = Fields::new(obj, at);
        let model_type = f.str("model_type")?.or(top.str("model_type")?);
        let arch = match top.get("architectures") {
            None => None,
            Some(Value::Array(a)) => match a.first() {
                None => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(v) => return Err(bad_field("", "architectures", v, "a list of names")),
            },
            Some(v) => return Err(bad_field("", "architectures", v, "a list of names")),
        };
        let Some(family) = super::arch::from_hf(model_type, arch.as_deref()) else {
            return Err(Error::model(format!(
                "unsupported architecture `{}` (model_type {:?}); supported: {}",
                arch.as_deref().unwrap_or("?"),
                model_type.unwrap_or("?"),
                super::arch::names(|a| a.hf_class)
            )));
        };
        let d = &family.defaults;
        let architecture = arch.unwrap_or_else(|| family.hf_class.into());
        if let Some(act) = f.str("hidden_act")? {
            if act != "silu" {
                return Err(Error::model(format!(
                    "config.json: `{at}hidden_act` = {act:?}; only silu is supported"
                )));
            }
        }
        for bias in ["attention_bias", "mlp_bias"] {
            if f.bool(bias)? == Some(true) {
                return Err(Error::model(format!(
                    "config.json: `{at}{bias}` = true; biases are not supported"
                )));
            }
        }
        let hidden_size = f.usize_or("hidden_size", d.hidden_size)?;
        let intermediate_size = f.usize_or("intermediate_size", d.intermediate_size)?;
        let num_hidden_layers = f.usize_or("num_hidden_layers", d.num_hidden_layers)?;
        let heads = f.usize_or("num_attention_heads", d.num_attention_heads)?;
        let kv = f.usize_or(
            "num_key_value_heads",
            d.num_key_value_heads.unwrap_or(heads),
        )?;
        if heads == 0 || kv == 0 || heads % kv != 0 {
            return Err(Error::model(format!(
                "config.json: {heads} attention heads cannot share {kv} key/value heads"
            )));
        }
        let head_dim = match f.usize("head_dim")? {
            Some(h) => h,
            None => hidden_size / heads,
        };
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(Error::model(format!(
                "config.json: head_dim {head_dim} must be even and positive"
            )));
        }
        let rms_norm_eps = f.f64_or("rms_norm_eps", d.rms_norm_eps)?;
        // TASKS_SPEC §1.3 step 4: the first of n_positions, max_position_embeddings, n_ctx.
        let max_len = match (
            f.usize("n_positions")?,
            f.usize("max_position_embeddings")?,
            f.usize("n_ctx")?,
        ) {
            (Some(x), _, _) | (None, Some(x), _) | (None, None, Some(x)) => x,
            (None, None, None) => {
                f.defaults.insert(
                    "max_position_embeddings".into(),
                    d.max_position_embeddings.into(),
                );
                d.max_position_embeddings
            }
        };
        let max_pos = f
            .usize("max_position_embeddings")?
            .unwrap_or(d.max_position_embeddings);
        let (rope_theta, rope_scaling) = read_rope(&mut f, d, max_pos)?;
        let vocab_size = f.usize_or("vocab_size", d.vocab_size)?;
        // transformers ties by the text config's flag (`get_text_config().tie_word_embeddings`).
        let tie_word_embeddings = match f.bool("tie_word_embeddings")? {
            Some(t) => t,
            None => {
                f.defaults
                    .insert("tie_word_embeddings".into(), false.into());
                false
            }
        };
        // Mistral's window: 4096 when the key is missing, none when it is null. Llama has none.
        let sliding_window = if !family.sliding_window {
            None
        } else if obj.contains_key("sliding_window") {
            f.usize("sliding_window")?
        } else {
            f.defaults
                .insert("sliding_window".into(), d.sliding_window.into());
            d.sliding_window
        };
        let bos_token_id = match f
            .token_ids("bos_token_id")?
            .or(top.token_ids("bos_token_id")?)
        {
            Some(v) => v.first().copied(),
            None => Some(d.bos_token_id),
        };
        let eos_token_ids = f
            .token_ids("eos_token_id")?
            .or(top.token_ids("eos_token_id")?)
            .unwrap_or_else(|| vec![d.eos_token_id]);
        let config_dtype = match (
            f.str("dtype")?,
            f.str("torch_dtype")?,
            top.str("dtype")?,
            top.str("torch_dtype")?,
        ) {
            (Some(a), ..)
            | (None, Some(a), ..)
            | (None, None, Some(a), _)
            | (None, None, None, Some(a)) => Some(a.to_string()),
            _ => None,
        };
        if let Some(dt) = &config_dtype {
            if !["float32", "float16", "bfloat16", "auto"].contains(&dt.as_str()) {
                return Err(Error::model(format!(
                    "config.json: dtype {dt:?} is not float32, float16 or bfloat16"
                )));
            }
        }
        Ok(Self {
            architecture,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim,
            rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings: max_len,
            vocab_size,
            tie_word_embeddings,
            sliding_window,
            bos_token_id,
            eos_token_ids,
            defaults: f.defaults,
            config_dtype,
        })
    }

    /// What the fingerprint records about the config: RoPE, defaults applied, saved dtype.
    pub fn describe(&self) -> Value {
        let rope = match &self.rope_scaling {
            None => serde_json::json!({"rope_type": "default", "rope_theta": self.rope_theta}),
            Some(RopeScaling::Linear { factor }) => {
                serde_json::json!({"rope_type": "linear", "rope_theta": self.rope_theta, "factor": factor})
            }
            Some(RopeScaling::Dynamic {
                factor,
                original_max_position_embeddings,
            }) => serde_json::json!({"rope_type": "dynamic", "rope_theta": self.rope_theta,
                "factor": factor, "original_max_position_embeddings": original_max_position_embeddings}),
            Some(RopeScaling::Yarn(y)) => {
                serde_json::json!({"rope_type": "yarn", "rope_theta": self.rope_theta,
                "factor": y.factor, "original_max_position_embeddings": y.original_max_position_embeddings,
                "beta_fast": y.beta_fast, "beta_slow": y.beta_slow, "attention_factor": y.attention_factor,
                "truncate": y.truncate})
            }
            Some(RopeScaling::Llama3(s)) => {
                serde_json::json!({"rope_type": "llama3", "rope_theta": self.rope_theta,
                "factor": s.factor, "low_freq_factor": s.low_freq_factor, "high_freq_factor": s.high_freq_factor,
                "original_max_position_embeddings": s.original_max_position_embeddings})
            }
        };
        serde_json::json!({
            "rope": rope,
            "sliding_window": self.sliding_window,
            "defaults_applied": self.defaults,
            "saved_dtype": self.config_dtype,
        })
    }

    /// The hyper-parameters of a GGUF file, as llama.cpp's loader reads them: every key that
    /// changes the numbers must be present with an integer (or float) value; the only defaults
    /// are llama.cpp's own — `head_count_kv` = `head_count`, `key_length` = `embedding_length` /
    /// `head_count`, `rope.freq_base` = 10000, `vocab_size` = the number of tokens. Values are
    /// range-checked by [`super::validate`].
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let arch = md_str(ct, "general.architecture")?;
        if super::arch::from_gguf(&arch).is_none() {
            return Err(Error::model(format!(
                "unsupported GGUF architecture `{arch}`; supported: {}",
                super::arch::names(|a| a.gguf)
            )));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let opt = |k: &str| md_uint(ct, &key(k));
        let req = |k: &str| {
            opt(k)?
                .ok_or_else(|| Error::model(format!("GGUF metadata key `{}` is missing", key(k))))
        };
        if let Some(n) = opt("expert_count")?.filter(|&n| n > 0) {
            return Err(Error::model(format!(
                "GGUF `{}` = {n}: mixture-of-experts models are not supported",
                key("expert_count")
            )));
        }
        let heads = req("attention.head_count")?;
        let hidden = req("embedding_length")?;
        for (k, v) in [
            ("attention.head_count", heads),
            ("embedding_length", hidden),
        ] {
            if v == 0 {
                return Err(Error::model(format!("GGUF `{}` = 0", key(k))));
            }
        }
        let vocab = match opt("vocab_size")? {
            Some(v) => v,
            None => match ct.metadata.get("tokenizer.ggml.tokens") {
                Some(gguf_file::Value::Array(a)) => a.len(),
                Some(_) => {
                    return Err(Error::model(
                        "GGUF metadata key `tokenizer.ggml.tokens` is not an array",
                    ))
                }
                None => {
                    return Err(Error::model(format!(
                        "GGUF has neither `{}` nor `tokenizer.ggml.tokens`: the vocabulary size is unknown",
                        key("vocab_size")
                    )))
                }
            },
        };
        let kv_heads = opt("attention.head_count_kv")?.unwrap_or(heads);
        if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(Error::model(format!(
                "GGUF `{}` = {heads} is not a multiple of `{}` = {kv_heads}",
                key("attention.head_count"),
                key("attention.head_count_kv")
            )));
        }
        let head_dim = opt("attention.key_length")?.unwrap_or(hidden / heads);
        if head_dim == 0 {
            return Err(Error::model(format!(
                "GGUF head dimension 0 (`{}`, or `embedding_length` / `attention.head_count`)",
                key("attention.key_length")
            )));
        }
        if let Some(v) = opt("attention.value_length")?.filter(|&v| v != head_dim) {
            return Err(Error::model(format!(
                "GGUF `{}` = {v} differs from the key length {head_dim}; not supported",
                key("attention.value_length")
            )));
        }
        if let Some(r) = opt("rope.dimension_count")?.filter(|&r| r != head_dim) {
            return Err(Error::model(format!(
                "GGUF `{}` = {r}, but the head dimension is {head_dim}: partial rotary embeddings are not supported",
                key("rope.dimension_count")
            )));
        }
        let eps_key = key("attention.layer_norm_rms_epsilon");
        Ok(Self {
            architecture: arch.clone(),
            hidden_size: hidden,
            intermediate_size: req("feed_forward_length")?,
            num_hidden_layers: req("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            rms_norm_eps: md_float(ct, &eps_key)?
                .ok_or_else(|| Error::model(format!("GGUF metadata key `{eps_key}` is missing")))?,
            rope_theta: md_float(ct, &key("rope.freq_base"))?.unwrap_or(10_000.0),
            rope_scaling: gguf_rope_scaling(ct, &arch)?,
            max_position_embeddings: req("context_length")?,
            vocab_size: vocab,
            tie_word_embeddings: !ct.tensor_infos.contains_key(&OUTPUT.gguf_name(None)),
            sliding_window: opt("attention.sliding_window")?,
            bos_token_id: md_uint(ct, "tokenizer.ggml.bos_token_id")?.map(|x| x as u32),
            eos_token_ids: md_uint(ct, "tokenizer.ggml.eos_token_id")?
                .map(|x| vec![x as u32])
                .unwrap_or_default(),
            defaults: Map::new(),
            config_dtype: None,
        })
    }

    /// The config.json a Hugging Face `LlamaForCausalLM` of this shape would have.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "architectures": [LLAMA.hf_class],
            "model_type": LLAMA.model_type,
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
            // transformers' Llama ignores `sliding_window`; its Mistral applies it.
            v["architectures"] = serde_json::json!([MISTRAL.hf_class]);
            v["model_type"] = MISTRAL.model_type.into();
            v["sliding_window"] = w.into();
        }
        if self.rope_scaling.is_some() {
            let mut r = self.describe()["rope"].clone();
            if let Some(m) = r.as_object_mut() {
                m.remove("rope_theta");
            }
            v["rope_scaling"] = r;
        }
        v
    }

    /// RoPE inverse frequencies with the configured scaling applied (transformers'
    /// `ROPE_INIT_FUNCTIONS`).
    pub fn inv_freq(&self) -> Vec<f32> {
        let d = self.head_dim;
        let base: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / self.rope_theta.powf((2 * i) as f64 / d as f64))
            .collect();
        let scaled: Vec<f64> = match &self.rope_scaling {
            None | Some(RopeScaling::Dynamic { .. }) => base,
            Some(RopeScaling::Linear { factor }) => base.into_iter().map(|f| f / factor).collect(),
            Some(RopeScaling::Yarn(y)) => {
                let dim = d as f64;
                let correction = |rotations: f64| {
                    dim * (y.original_max_position_embeddings as f64
                        / (rotations * 2.0 * std::f64::consts::PI))
                        .ln()
                        / (2.0 * self.rope_theta.ln())
                };
                let (mut low, mut high) = (correction(y.beta_fast), correction(y.beta_slow));
                if y.truncate {
                    low = low.floor();
                    high = high.ceil();
                }
                let low = low.max(0.0);
                let mut high = high.min(dim - 1.0);
                if low == high {
                    high += 0.001;
                }
                base.into_iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                        let extrapolation = 1.0 - ramp;
                        f / y.factor * (1.0 - extrapolation) + f * extrapolation
                    })
                    .collect()
            }
            Some(RopeScaling::Llama3(s)) => {
                let old = s.original_max_position_embeddings as f64;
                let low_wavelen = old / s.low_freq_factor;
                let high_wavelen = old / s.high_freq_factor;
                base.into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / s.factor
                        } else {
                            let smooth = (old / wavelen - s.low_freq_factor)
                                / (s.high_freq_factor - s.low_freq_factor);
                            (1.0 - smooth) * f / s.factor + smooth * f
                        }
                    })
                    .collect()
            }
        };
        scaled.into_iter().map(|x| x as f32).collect()
    }

    /// The factor cos and sin are multiplied by (YaRN's attention scaling; 1 otherwise).
    pub fn rope_attention_factor(&self) -> f64 {
        match &self.rope_scaling {
            Some(RopeScaling::Yarn(y)) => y.attention_factor,
            _ => 1.0,
        }
    }

    /// The scaling as llama.cpp stores it for the llama architecture: a `rope_freqs` vector of
    /// per-frequency divisors (None for the default frequencies). YaRN has no such form.
    pub fn rope_freq_divisors(&self) -> Result<Option<Vec<f32>>> {
        match &self.rope_scaling {
            None | Some(RopeScaling::Dynamic { .. }) => Ok(None),
            Some(RopeScaling::Yarn(_)) => Err(Error::model(
                "YaRN RoPE scaling cannot be written as a llama GGUF rope_freqs vector",
            )),
            Some(_) => {
                let plain = LlamaConfig {
                    rope_scaling: None,
                    ..self.clone()
                };
                Ok(Some(
                    plain
                        .inv_freq()
                        .iter()
                        .zip(self.inv_freq())
                        .map(|(b, s)| b / s)
                        .collect(),
                ))
            }
        }
    }
}

/// `{arch}.rope.scaling.type`: none or linear (llama.cpp's other types are refused).
fn gguf_rope_scaling(ct: &gguf_file::Content, arch: &str) -> Result<Option<RopeScaling>> {
    let key = format!("{arch}.rope.scaling.type");
    if !ct.metadata.contains_key(&key) {
        return Ok(None);
    }
    match md_str(ct, &key)?.as_str() {
        "none" => Ok(None),
        "linear" => {
            let factor = md_f64(ct, &format!("{arch}.rope.scaling.factor"))?;
            if factor == 1.0 || factor == 0.0 {
                Ok(None)
            } else if factor.is_finite() && factor > 0.0 {
                Ok(Some(RopeScaling::Linear { factor }))
            } else {
                Err(Error::model(format!(
                    "GGUF `{arch}.rope.scaling.factor` = {factor}"
                )))
            }
        }
        other => Err(Error::model(format!(
            "GGUF RoPE scaling type `{other}` is not supported (supported: none, linear)"
        ))),
    }
}

pub(crate) fn md_str(ct: &gguf_file::Content, key: &str) -> Result<String> {
    ct.metadata
        .get(key)
        .ok_or_else(|| Error::model(format!("GGUF metadata key `{key}` is missing")))?
        .to_string()
        .cloned()
        .map_err(|_| Error::model(format!("GGUF metadata key `{key}` is not a string")))
}

pub(crate) fn md_usize(ct: &gguf_file::Content, key: &str) -> Result<usize> {
    md_uint(ct, key)?.ok_or_else(|| Error::model(format!("GGUF metadata key `{key}` is missing")))
}

/// An integer metadata value (any integer type, not negative, within `u32` — llama.cpp stores
/// these as `u32`), `None` when the key is missing; any other type is an error.
pub(crate) fn md_uint(ct: &gguf_file::Content, key: &str) -> Result<Option<usize>> {
    use gguf_file::Value as V;
    let Some(v) = ct.metadata.get(key) else {
        return Ok(None);
    };
    let n: Option<i128> = match v {
        V::U8(x) => Some(*x as i128),
        V::I8(x) => Some(*x as i128),
        V::U16(x) => Some(*x as i128),
        V::I16(x) => Some(*x as i128),
        V::U32(x) => Some(*x as i128),
        V::I32(x) => Some(*x as i128),
        V::U64(x) => Some(*x as i128),
        V::I64(x) => Some(*x as i128),
        _ => None,
    };
    match n {
        Some(n) if (0..=u32::MAX as i128).contains(&n) => Ok(Some(n as usize)),
        Some(n) => Err(Error::model(format!(
            "GGUF metadata key `{key}` = {n} is out of range"
        ))),
        None => Err(Error::model(format!(
            "GGUF metadata key `{key}` is a {:?}, not an integer",
            v.value_type()
        ))),
    }
}

pub(crate) fn md_f64(ct: &gguf_file::Content, key: &str) -> Result<f64> {
    md_float(ct, key)?.ok_or_else(|| Error::model(format!("GGUF metadata key `{key}` is missing")))
}

/// A float metadata value (f32 or f64), `None` when the key is missing; any other type is an
/// error.
pub(crate) fn md_float(ct: &gguf_file::Content, key: &str) -> Result<Option<f64>> {
    match ct.metadata.get(key) {
        None => Ok(None),
        Some(gguf_file::Value::F32(x)) => Ok(Some(*x as f64)),
        Some(gguf_file::Value::F64(x)) => Ok(Some(*x)),
        Some(v) => Err(Error::model(format!(
            "GGUF metadata key `{key}` is a {:?}, not a float",
            v.value_type()
        ))),
    }
}
