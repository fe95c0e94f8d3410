//! Model validation before anything is computed: the hyper-parameters are sane, and the file
//! holds exactly the tensors they imply — each once, with the implied shape and a dtype allowed for
//! its role, nothing left over (llama.cpp's loader: "wrong number of tensors"). The readers
//! ([`super::gguf`], safetensors) have already bounded every size by the file; after this the
//! forward pass can trust every shape, so candle's shape checks never fire on a model file.
use super::arch::{TensorName, EMBED, LAYER_TENSORS, OUTPUT, OUTPUT_NORM, ROPE_FREQS};
use super::config::LlamaConfig;
use candle_core::quantized::gguf_file::Content;
use std::collections::{BTreeMap, BTreeSet};

/// The role of a tensor, which decides the dtypes it may have.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Kind {
    /// A norm or RoPE factors: 1-D, float, never quantized.
    Vector,
    /// A weight matrix: float or (GGUF) a quantized weight type.
    Matrix,
    /// AWQ's packed 4-bit words (`qweight`, `qzeros`): int32.
    Packed,
    /// AWQ's group scales: float.
    Scales,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Vector => "norm vector",
            Kind::Matrix => "weight matrix",
            Kind::Packed => "packed AWQ tensor",
            Kind::Scales => "AWQ scales tensor",
        }
    }
}

/// One tensor the model needs.
pub struct Spec {
    pub name: String,
    /// Row-major (rows, columns) for a matrix; one entry for a vector.
    pub shape: Vec<usize>,
    /// Which hyper-parameters the shape comes from, for the error message.
    pub from: &'static str,
    pub kind: Kind,
    /// The output head: its absence means tied embeddings.
    pub optional: bool,
}

/// The sanity checks on hyper-parameters that every format shares. `at` names the file's
/// vocabulary for the keys (`llama.` for GGUF, `config.json: ` for Hugging Face).
pub fn hparams(c: &LlamaConfig, names: &HparamNames) -> Result<(), String> {
    let pos = |v: usize, k: &str| {
        if v == 0 {
            Err(format!("{k} is 0"))
        } else {
            Ok(())
        }
    };
    pos(c.hidden_size, names.hidden)?;
    pos(c.intermediate_size, names.ffn)?;
    pos(c.num_hidden_layers, names.layers)?;
    pos(c.num_attention_heads, names.heads)?;
    pos(c.num_key_value_heads, names.kv_heads)?;
    pos(c.vocab_size, names.vocab)?;
    pos(c.max_position_embeddings, names.context)?;
    if !c.num_attention_heads.is_multiple_of(c.num_key_value_heads) {
        return Err(format!(
            "{} = {} is not a multiple of {} = {}",
            names.heads, c.num_attention_heads, names.kv_heads, c.num_key_value_heads
        ));
    }
    if c.head_dim == 0 || !c.head_dim.is_multiple_of(2) {
        return Err(format!(
            "the head dimension {} ({}) must be even and positive",
            c.head_dim, names.head_dim
        ));
    }
    if c.num_attention_heads.checked_mul(c.head_dim).is_none() {
        return Err(format!("{} × head dimension overflows", names.heads));
    }
    if !(c.rms_norm_eps.is_finite() && c.rms_norm_eps > 0.0 && c.rms_norm_eps < 1.0) {
        return Err(format!(
            "{} = {} (must be a number between 0 and 1)",
            names.eps, c.rms_norm_eps
        ));
    }
    if !(c.rope_theta.is_finite() && c.rope_theta > 1.0) {
        return Err(format!(
            "{} = {} (must be a finite number above 1)",
            names.theta, c.rope_theta
        ));
    }
    if c.sliding_window == Some(0) {
        return Err("the sliding window is 0".into());
    }
    for (what, id) in c
        .bos_token_id
        .iter()
        .map(|b| ("bos", b))
        .chain(c.eos_token_ids.iter().map(|e| ("eos", e)))
    {
        if *id as usize >= c.vocab_size {
            return Err(format!(
                "the {what} token id {id} is outside the vocabulary of {}",
                c.vocab_size
            ));
        }
    }
    Ok(())
}

/// How each format names the hyper-parameters, for messages.
pub struct HparamNames {
    pub hidden: &'static str,
    pub ffn: &'static str,
    pub layers: &'static str,
    pub heads: &'static str,
    pub kv_heads: &'static str,
    pub head_dim: &'static str,
    pub vocab: &'static str,
    pub context: &'static str,
    pub eps: &'static str,
    pub theta: &'static str,
}

pub const GGUF_NAMES: HparamNames = HparamNames {
    hidden: "`embedding_length`",
    ffn: "`feed_forward_length`",
    layers: "`block_count`",
    heads: "`attention.head_count`",
    kv_heads: "`attention.head_count_kv`",
    head_dim: "`attention.key_length`",
    vocab: "the vocabulary size",
    context: "`context_length`",
    eps: "`attention.layer_norm_rms_epsilon`",
    theta: "`rope.freq_base`",
};

pub const HF_NAMES: HparamNames = HparamNames {
    hidden: "`hidden_size`",
    ffn: "`intermediate_size`",
    layers: "`num_hidden_layers`",
    heads: "`num_attention_heads`",
    kv_heads: "`num_key_value_heads`",
    head_dim: "`head_dim`",
    vocab: "`vocab_size`",
    context: "`max_position_embeddings`",
    eps: "`rms_norm_eps`",
    theta: "`rope_theta`",
};

/// The tensors of a Llama-family model with these hyper-parameters, named by `name` (checked by
/// [`hparams`] first, so the products cannot overflow).
pub fn llama_tensors(
    c: &LlamaConfig,
    name: &dyn Fn(&TensorName, Option<usize>) -> String,
) -> Vec<Spec> {
    let (h, ff, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
    let q = c.num_attention_heads * c.head_dim;
    let kv = c.num_key_value_heads * c.head_dim;
    let spec = |t: &TensorName, layer, shape: Vec<usize>, from| Spec {
        name: name(t, layer),
        kind: if shape.len() == 1 {
            Kind::Vector
        } else {
            Kind::Matrix
        },
        shape,
        from,
        optional: false,
    };
    let mut out = vec![spec(&EMBED, None, vec![v, h], "vocabulary × embedding")];
    for i in 0..c.num_hidden_layers {
        let [attn_norm, wq, wk, wv, wo, ffn_norm, gate, up, down] = &LAYER_TENSORS;
        out.push(spec(attn_norm, Some(i), vec![h], "embedding"));
        out.push(spec(wq, Some(i), vec![q, h], "heads·head_dim × embedding"));
        out.push(spec(
            wk,
            Some(i),
            vec![kv, h],
            "kv_heads·head_dim × embedding",
        ));
        out.push(spec(
            wv,
            Some(i),
            vec![kv, h],
            "kv_heads·head_dim × embedding",
        ));
        out.push(spec(wo, Some(i), vec![h, q], "embedding × heads·head_dim"));
        out.push(spec(ffn_norm, Some(i), vec![h], "embedding"));
        out.push(spec(gate, Some(i), vec![ff, h], "feed_forward × embedding"));
        out.push(spec(up, Some(i), vec![ff, h], "feed_forward × embedding"));
        out.push(spec(down, Some(i), vec![h, ff], "embedding × feed_forward"));
    }
    out.push(spec(&OUTPUT_NORM, None, vec![h], "embedding"));
    out.push(Spec {
        optional: true,
        ..spec(&OUTPUT, None, vec![v, h], "vocabulary × embedding")
    });
    out
}

/// A tensor as a file holds it.
pub struct Found {
    pub shape: Vec<usize>,
    pub dtype: String,
}

/// Every spec present once with its shape, nothing else but `extra_ok` names; `dtype_ok` says
/// whether a dtype may serve a role.
pub fn match_tensors(
    specs: &[Spec],
    found: &BTreeMap<String, Found>,
    extra_ok: &dyn Fn(&str) -> bool,
    dtype_ok: &dyn Fn(&str, Kind) -> bool,
) -> Result<(), String> {
    let mut used = BTreeSet::new();
    for s in specs {
        let Some(f) = found.get(&s.name) else {
            if s.optional {
                continue;
            }
            return Err(format!("tensor `{}` is missing", s.name));
        };
        used.insert(s.name.as_str());
        if f.shape != s.shape {
            return Err(format!(
                "tensor `{}` has shape {:?}; the hyper-parameters ({}) imply {:?}",
                s.name, f.shape, s.from, s.shape
            ));
        }
        if !dtype_ok(&f.dtype, s.kind) {
            return Err(format!(
                "tensor `{}` is stored as {}, which is not allowed for a {}",
                s.name,
                f.dtype,
                s.kind.describe()
            ));
        }
    }
    if let Some(extra) = found
        .keys()
        .find(|n| !used.contains(n.as_str()) && !extra_ok(n))
    {
        return Err(format!(
            "tensor `{extra}` is not used by this model ({} tensors expected, the file has {})",
            used.len(),
            found.len()
        ));
    }
    Ok(())
}

/// The layer count bounded by the tensors there are (9 a layer) before anything is enumerated, so
/// a count of 10^9 is refused at once.
fn layers_fit(c: &LlamaConfig, key: &str, tensors: usize) -> Result<(), String> {
    if c.num_hidden_layers > tensors / LAYER_TENSORS.len() {
        return Err(format!(
            "{key} = {} needs {} layer tensors; the weights have {tensors} tensors in all",
            c.num_hidden_layers,
            c.num_hidden_layers.saturating_mul(LAYER_TENSORS.len()),
        ));
    }
    Ok(())
}

/// A GGUF model: hyper-parameters, then every tensor.
pub fn gguf(ct: &Content, c: &LlamaConfig) -> Result<(), String> {
    let arch = c.architecture.as_str();
    hparams(c, &GGUF_NAMES).map_err(|e| format!("{arch}: {e}"))?;
    layers_fit(c, &format!("`{arch}.block_count`"), ct.tensor_infos.len())?;
    let mut specs = llama_tensors(c, &|t, l| t.gguf_name(l));
    specs.push(Spec {
        name: ROPE_FREQS.into(),
        shape: vec![c.head_dim / 2],
        from: "head_dim / 2",
        kind: Kind::Vector,
        optional: true,
    });
    let found: BTreeMap<String, Found> = ct
        .tensor_infos
        .iter()
        .map(|(n, i)| {
            (
                n.clone(),
                Found {
                    shape: i.shape.dims().to_vec(),
                    dtype: format!("{:?}", i.ggml_dtype),
                },
            )
        })
        .collect();
    let dtype_ok = |d: &str, k: Kind| {
        let float = ["F32", "F16", "BF16"].contains(&d);
        float || k == Kind::Matrix && QUANTIZED_WEIGHTS.contains(&d)
    };
    match_tensors(&specs, &found, &|_| false, &dtype_ok)
}

/// The quantized weight types a matrix may have (not Q8_1 or Q8_K: those are activation types).
const QUANTIZED_WEIGHTS: &[&str] = &[
    "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2K", "Q3K", "Q4K", "Q5K", "Q6K",
];

/// A Hugging Face model: hyper-parameters, then every tensor of the text model. `prefix` is where
/// the text model's tensors start; tensors outside it (a vision tower beside it in a multimodal
/// wrapper) are left alone only when `wrapper` says config.json has a `text_config`. `awq`: the
/// group size when linear layers may be AWQ-packed (`.qweight`, `.qzeros`, `.scales`).
pub fn hf(
    c: &LlamaConfig,
    found: &BTreeMap<String, Found>,
    prefix: &str,
    wrapper: bool,
    awq: Option<usize>,
) -> Result<(), String> {
    hparams(c, &HF_NAMES).map_err(|e| format!("config.json: {e}"))?;
    layers_fit(c, "config.json: `num_hidden_layers`", found.len())?;
    let mut specs = Vec::new();
    for s in llama_tensors(c, &|t, l| t.hf_name(prefix, l)) {
        let stem = s
            .name
            .strip_suffix(".weight")
            .unwrap_or(&s.name)
            .to_string();
        let packed = format!("{stem}.qweight");
        match awq {
            Some(g) if s.kind == Kind::Matrix && found.contains_key(&packed) => {
                let (out, inp) = (s.shape[0], s.shape[1]);
                if !out.is_multiple_of(8) || g == 0 || !inp.is_multiple_of(g) {
                    return Err(format!(
                        "AWQ tensor `{stem}`: a {out}×{inp} matrix cannot be packed in 8s with group size {g}"
                    ));
                }
                let (o8, groups) = (out / 8, inp / g);
                for (part, shape, kind) in [
                    ("qweight", vec![inp, o8], Kind::Packed),
                    ("qzeros", vec![groups, o8], Kind::Packed),
                    ("scales", vec![groups, out], Kind::Scales),
                ] {
                    specs.push(Spec {
                        name: format!("{stem}.{part}"),
                        shape,
                        from: "AWQ packing of the matrix",
                        kind,
                        optional: false,
                    });
                }
            }
            _ => specs.push(s),
        }
    }
    // The head may sit beside a wrapper's text model under either name (see the loader).
    let head = OUTPUT.hf_name(super::arch::HF_PREFIX, None);
    let head_at = specs
        .iter()
        .position(|s| s.name == OUTPUT.hf_name(prefix, None));
    if let Some(i) = head_at {
        // Untied, the head must be there (transformers would start it from random weights).
        specs[i].optional = c.tie_word_embeddings;
        if !found.contains_key(&specs[i].name) && found.contains_key(&head) {
            specs[i].name = head.clone();
        }
    }
    let outer = prefix.strip_suffix(super::arch::HF_PREFIX).unwrap_or("");
    let extra_ok = |n: &str| {
        // Old checkpoints keep the RoPE buffer; transformers recomputes it.
        n.ends_with(".self_attn.rotary_emb.inv_freq")
            || wrapper && !n.starts_with(prefix) && !n.starts_with(&format!("{outer}lm_head"))
    };
    let dtype_ok = |d: &str, k: Kind| match k {
        Kind::Vector | Kind::Matrix | Kind::Scales => ["F32", "F16", "BF16"].contains(&d),
        Kind::Packed => ["I32", "U32"].contains(&d),
    };
    match_tensors(&specs, found, &extra_ok, &dtype_ok)
}
