//! `hermes-eval quantize <HF dir>`: convert a Hugging Face Llama/Mistral directory (config.json,
//! tokenizer.json, tokenizer_config.json, single or sharded safetensors in f32/f16/bf16) straight
//! to a quantized GGUF in llama.cpp's `llama` layout, as `convert_hf_to_gguf.py` writes it:
//!
//! - tensor names `token_embd`, `blk.N.{attn_norm,attn_q,attn_k,attn_v,attn_output,ffn_norm,
//!   ffn_gate,ffn_up,ffn_down}`, `output_norm`, `output` (left out when the embeddings are tied),
//!   and `rope_freqs` for Llama 3 rope scaling (per-frequency divisors, as llama.cpp computes);
//! - Q and K rows permuted from the rotate-half layout to GGUF's interleaved one
//!   (rows `(heads, 2, head_dim/2)` → `(heads, head_dim/2, 2)`, the inverse of
//!   `model::export`'s un-permute; K with the KV head count);
//! - `llama.*` hyper-parameters, `general.file_type`, `general.quantization_version`;
//! - the tokenizer for byte-level BPE (`tokenizer.ggml.model = gpt2`): tokens (`[PADi]` for ids
//!   the tokenizer lacks), token types (added special / `<|…|>` tokens are control, other added
//!   tokens user-defined), merges, bos/eos/unk/sep/pad ids (tokenizer_config.json names looked up
//!   in `added_tokens`, then config.json `*_token_id`), add_bos/add_eos, the chat template, and
//!   `tokenizer.ggml.pre` named from the tokenizer.json pre-tokenizer structure — only the ones
//!   `model::tokenizer` rebuilds (smollm, gpt-2, llama-bpe, qwen2);
//! - or SentencePiece (`tokenizer.ggml.model = llama`, Llama 2 / Mistral): from tokenizer.model
//!   as `_create_vocab_sentencepiece` reads it (pieces, scores, types, then `added_tokens.json`
//!   and tokenizer_config.json's `added_tokens_decoder`), or from a tokenizer.json BPE with byte
//!   fallback (scores from the merge ranks, see [`scores_from_merges`]). Models llama.cpp's
//!   tokenizer cannot follow (unigram, normalization, whitespace removal, word splitting) are
//!   refused.
//!
//! The tokenizer rebuilt from the metadata must encode check texts exactly as tokenizer.json
//! does (for SentencePiece, the text between special tokens; see [`check_tokenizer`]), or
//! conversion fails.
//!
//! Tensor types follow [`crate::quantize`]'s rules: 2-D tensors go to the target (or its k-quant
//! fallback), 1-D tensors are stored F32, anything else keeps its safetensors dtype.
use crate::error::{Error, Result};
use crate::model::arch::{self, TensorName, EMBED, HF_PREFIX, LAYER_TENSORS, OUTPUT, OUTPUT_NORM};
use crate::model::config::LlamaConfig;
use crate::model::spm_model::{self, SpmModel};
use crate::model::tokenizer;
use crate::quantize::{
    check_target, file_type, first_line, matrix_target, tensor_target, write_gguf, QuantizeReport,
};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use gguf_file::Value;
use rayon::prelude::*;
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

/// Text both tokenizers must encode identically: contractions, digit runs, whitespace runs,
/// newlines, tabs, accents, CJK, emoji, code and chat markup.
const CHECK_TEXT: &str =
    "Hello world! I'm here, you're there; we'll see, they've gone, he'd say, it's OK.\n\n\
 \t  indented   line\t\twith tabs\r\nWindows line\n   \n\
3 33 333 3333 33333 1234567890 3.14159 -42 1e-5 $1,000,000.00 100%\n\
héllo naïve café Ünïcödé ß straße 日本語のテキスト 中文 한국어 Привет мир العربية 🙂🚀👩‍💻\n\
fn main() { println!(\"{}\", x[0] + y_1 * 2); } // comment <a href=\"x\">link</a>\n\
<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|><|endoftext|>";

/// Tokens `convert_hf_to_gguf.py` treats as control tokens even when not flagged special.
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| Error::file(path, format!("invalid JSON: {e}")))
}

/// A GGUF tensor to write and where it comes from.
struct Planned {
    gguf: String,
    hf: String,
    /// Permute the rows to GGUF's interleaved RoPE layout with this many heads.
    permute_heads: Option<usize>,
}

/// HF tensor names of a Llama model → GGUF names ([`crate::model::arch`]'s table). Unknown
/// tensors are an error (dropping e.g. an attention bias would silently give a different model);
/// rotary `inv_freq` buffers are skipped.
fn plan_tensors(cfg: &LlamaConfig, names: &HashSet<String>) -> Result<Vec<Planned>> {
    let mut plan = vec![];
    let mut add = |t: &TensorName, layer: Option<usize>| {
        plan.push(Planned {
            gguf: t.gguf_name(layer),
            hf: t.hf_name(HF_PREFIX, layer),
            permute_heads: t.permute_heads(cfg),
        })
    };
    add(&EMBED, None);
    for i in 0..cfg.num_hidden_layers {
        for t in &LAYER_TENSORS {
            add(t, Some(i));
        }
    }
    add(&OUTPUT_NORM, None);
    let head = OUTPUT.hf_name(HF_PREFIX, None);
    if names.contains(&head) && !cfg.tie_word_embeddings {
        add(&OUTPUT, None);
    }
    for p in &plan {
        if !names.contains(&p.hf) {
            return Err(Error::model(format!(
                "tensor `{}` is missing from the safetensors files",
                p.hf
            )));
        }
    }
    let used: HashSet<&str> = plan.iter().map(|p| p.hf.as_str()).collect();
    let mut unknown: Vec<&String> = names
        .iter()
        .filter(|n| {
            !used.contains(n.as_str()) && **n != head && !n.ends_with(".rotary_emb.inv_freq")
        })
        .collect();
    unknown.sort();
    if let Some(first) = unknown.first() {
        return Err(Error::model(format!(
            "tensor `{first}` (and {} more) has no place in a llama GGUF; only Llama/Mistral weights without biases are supported",
            unknown.len() - 1
        )));
    }
    Ok(plan)
}

/// Which `model::tokenizer` pre-tokenizer a tokenizer.json uses (its `tokenizer.ggml.pre`), from
/// the structure of `pre_tokenizer`, `normalizer` and `model`; an error for anything else.
fn identify_pre(tj: &Json) -> Result<&'static str> {
    let model = &tj["model"];
    let ty = model["type"].as_str().unwrap_or("?");
    if ty != "BPE" {
        return Err(Error::Tokenizer(format!(
            "tokenizer.json model type `{ty}` is not byte-level BPE"
        )));
    }
    if !tj["normalizer"].is_null() {
        return Err(Error::Tokenizer(format!(
            "tokenizer.json has a normalizer ({}); the GGUF byte-level BPE tokenizer has none",
            tj["normalizer"]["type"].as_str().unwrap_or("?")
        )));
    }
    let byte_level = |v: &Json, use_regex: bool| {
        v["type"] == "ByteLevel"
            && v["add_prefix_space"].as_bool() == Some(false)
            && v["use_regex"].as_bool().unwrap_or(true) == use_regex
    };
    let split = |v: &Json| -> Option<String> {
        (v["type"] == "Split"
            && v["behavior"] == "Isolated"
            && v["invert"].as_bool() == Some(false))
        .then(|| v["pattern"]["Regex"].as_str().map(String::from))
        .flatten()
    };
    let pt = &tj["pre_tokenizer"];
    let seq: Vec<Json> = if pt["type"] == "Sequence" {
        pt["pretokenizers"].as_array().cloned().unwrap_or_default()
    } else {
        vec![pt.clone()]
    };
    let pre = match seq.as_slice() {
        [b] if byte_level(b, true) => Some("gpt-2"),
        [d, b]
            if d["type"] == "Digits"
                && d["individual_digits"].as_bool() == Some(true)
                && byte_level(b, true) =>
        {
            Some("smollm")
        }
        [s, b] if byte_level(b, false) => match split(s).as_deref() {
            Some(r) if r == tokenizer::REGEX_LLAMA3 => Some("llama-bpe"),
            Some(r) if r == tokenizer::REGEX_QWEN2 => Some("qwen2"),
            _ => None,
        },
        _ => None,
    };
    let Some(pre) = pre else {
        let mut s = pt.to_string();
        if s.len() > 200 {
            s = format!("{}…", s.chars().take(200).collect::<String>());
        }
        return Err(Error::Tokenizer(format!(
            "cannot name the tokenizer.json pre-tokenizer for tokenizer.ggml.pre (known: smollm, gpt-2, llama-bpe, qwen2): {s}"
        )));
    };
    // llama.cpp ignores merges for whole-word vocabulary hits only for llama-bpe.
    let ignore_merges = model["ignore_merges"].as_bool().unwrap_or(false);
    if ignore_merges != (pre == "llama-bpe") {
        return Err(Error::Tokenizer(format!(
            "tokenizer.json pre-tokenizer looks like `{pre}` but model.ignore_merges is {ignore_merges}"
        )));
    }
    Ok(pre)
}

fn string_array(v: Vec<String>) -> Value {
    Value::Array(v.into_iter().map(Value::String).collect())
}

/// `tokenizer.*` metadata of a byte-level BPE tokenizer.json, as `convert_hf_to_gguf.py` writes it.
fn bpe_metadata(
    dir: &Path,
    tj: &Json,
    tc: &Json,
    config: &Json,
    vocab_size: usize,
) -> Result<Vec<(String, Value)>> {
    let pre = identify_pre(tj)?;
    let (by_id, added) = json_tokens(tj, vocab_size)?;
    let mut tokens = Vec::with_capacity(vocab_size);
    let mut types = Vec::with_capacity(vocab_size);
    for i in 0..vocab_size {
        match by_id.get(&i) {
            None => {
                tokens.push(format!("[PAD{i}]"));
                types.push(Value::I32(spm_model::UNUSED));
            }
            Some(t) => {
                let ty = match added.get(&i) {
                    Some(a) if a.special || looks_special(t) => spm_model::CONTROL,
                    Some(_) => spm_model::USER_DEFINED,
                    None => spm_model::NORMAL,
                };
                tokens.push(t.clone());
                types.push(Value::I32(ty));
            }
        }
    }
    let merges: Vec<String> = json_merges(tj)?
        .into_iter()
        .map(|(a, b)| format!("{a} {b}"))
        .collect();
    let mut md: Vec<(String, Value)> = vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
        ("tokenizer.ggml.tokens".into(), string_array(tokens.clone())),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        ("tokenizer.ggml.merges".into(), string_array(merges)),
        // Every pre-tokenizer identify_pre accepts has ByteLevel add_prefix_space = false.
        ("tokenizer.ggml.add_space_prefix".into(), Value::Bool(false)),
    ];
    md.extend(special_metadata(dir, tc, config, &tokens, &added)?);
    Ok(md)
}

/// An entry of tokenizer.json's `added_tokens`.
struct Added {
    special: bool,
    normalized: bool,
}

/// tokenizer.json's tokens by id (model vocabulary, then `added_tokens` over it) and its added
/// tokens; an id at or beyond config.json's `vocab_size` is an error.
fn json_tokens(
    tj: &Json,
    vocab_size: usize,
) -> Result<(BTreeMap<usize, String>, HashMap<usize, Added>)> {
    let mut by_id: BTreeMap<usize, String> = BTreeMap::new();
    let vocab = tj["model"]["vocab"]
        .as_object()
        .ok_or_else(|| Error::Tokenizer("tokenizer.json has no model.vocab".into()))?;
    for (t, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| Error::Tokenizer(format!("vocab entry `{t}` has no integer id")))?;
        by_id.insert(id as usize, t.clone());
    }
    let mut added: HashMap<usize, Added> = HashMap::new();
    for a in tj["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(content)) = (a["id"].as_u64(), a["content"].as_str()) else {
            continue;
        };
        by_id.insert(id as usize, content.to_string());
        let special = a["special"].as_bool().unwrap_or(false);
        let normalized = a["normalized"].as_bool().unwrap_or(!special);
        added.insert(
            id as usize,
            Added {
                special,
                normalized,
            },
        );
    }
    if let Some((&max, t)) = by_id.last_key_value() {
        if max >= vocab_size {
            return Err(Error::Tokenizer(format!(
                "token `{t}` has id {max}, beyond config.json vocab_size {vocab_size}"
            )));
        }
    }
    Ok((by_id, added))
}

fn json_merges(tj: &Json) -> Result<Vec<(String, String)>> {
    tj["model"]["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| match m {
            Json::String(s) => s
                .split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| Error::Tokenizer(format!("invalid merge `{s}`"))),
            Json::Array(p) if p.len() == 2 && p.iter().all(|x| x.is_string()) => Ok((
                p[0].as_str().unwrap_or_default().to_string(),
                p[1].as_str().unwrap_or_default().to_string(),
            )),
            other => Err(Error::Tokenizer(format!("invalid merge {other}"))),
        })
        .collect()
}

/// Special token ids, add_bos/add_eos and the chat template, as gguf-py's `SpecialVocab` reads
/// them: the tokenizer_config.json token name (looked up among the added tokens, then among all
/// tokens), else config.json's `<kind>_token_id`.
fn special_metadata(
    dir: &Path,
    tc: &Json,
    config: &Json,
    tokens: &[String],
    added: &HashMap<usize, Added>,
) -> Result<Vec<(String, Value)>> {
    let mut md = vec![];
    let vocab_size = tokens.len();
    for (kind, key) in [
        ("bos", "bos_token_id"),
        ("eos", "eos_token_id"),
        ("unk", "unknown_token_id"),
        ("sep", "seperator_token_id"),
        ("pad", "padding_token_id"),
    ] {
        let entry = &tc[format!("{kind}_token")];
        let content = entry.as_str().or_else(|| entry["content"].as_str());
        let from_tc = content.and_then(|c| {
            let mut ids: Vec<usize> = added.keys().copied().filter(|&i| tokens[i] == c).collect();
            ids.sort();
            ids.first()
                .copied()
                .or_else(|| tokens.iter().position(|t| t == c))
                .map(|i| i as u64)
        });
        let id = from_tc.or_else(|| config[format!("{kind}_token_id")].as_u64());
        if let Some(id) = id.filter(|&id| (id as usize) < vocab_size) {
            md.push((format!("tokenizer.ggml.{key}"), Value::U32(id as u32)));
        }
    }
    for kind in ["bos", "eos"] {
        if let Some(b) = tc[format!("add_{kind}_token")].as_bool() {
            md.push((format!("tokenizer.ggml.add_{kind}_token"), Value::Bool(b)));
        }
    }
    let jinja = dir.join("chat_template.jinja");
    match &tc["chat_template"] {
        Json::String(t) => md.push(("tokenizer.chat_template".into(), Value::String(t.clone()))),
        Json::Array(named) => {
            for t in named {
                let (Some(name), Some(tpl)) = (t["name"].as_str(), t["template"].as_str()) else {
                    continue;
                };
                let key = if name == "default" {
                    "tokenizer.chat_template".to_string()
                } else {
                    format!("tokenizer.chat_template.{name}")
                };
                md.push((key, Value::String(tpl.into())));
            }
        }
        _ if jinja.is_file() => {
            let t = std::fs::read_to_string(&jinja)
                .map_err(|e| Error::file(&jinja, format!("cannot read: {e}")))?;
            md.push(("tokenizer.chat_template".into(), Value::String(t)));
        }
        _ => {}
    }
    Ok(md)
}

/// Whether a tokenizer.json is SentencePiece-style (Llama 2 / Mistral as transformers converts
/// them): a BPE with byte fallback, or a Unigram model.
fn is_sentencepiece_json(tj: &Json) -> bool {
    let model = &tj["model"];
    model["type"] == "Unigram" || model["byte_fallback"].as_bool() == Some(true)
}

/// Whether a SentencePiece-style tokenizer.json puts `▁` in front of the text (llama.cpp's
/// `add_space_prefix`), from its normalizer or Metaspace pre-tokenizer; an error for a
/// structure llama.cpp's tokenizer cannot follow.
fn json_space_prefix(tj: &Json) -> Result<bool> {
    let flat = |v: &Json, key: &str| -> Vec<Json> {
        match v["type"].as_str() {
            None => vec![],
            Some("Sequence") => v[key].as_array().cloned().unwrap_or_default(),
            Some(_) => vec![v.clone()],
        }
    };
    let mut prefix = false;
    for n in flat(&tj["normalizer"], "normalizers") {
        match n["type"].as_str().unwrap_or("?") {
            "Prepend" if n["prepend"] == "\u{2581}" => prefix = true,
            "Replace" if n["pattern"]["String"] == " " && n["content"] == "\u{2581}" => {}
            other => {
                return Err(Error::Tokenizer(format!(
                    "tokenizer.json normalizer `{other}` ({n}) has no equivalent in llama.cpp's SentencePiece tokenizer; not converted"
                )))
            }
        }
    }
    for p in flat(&tj["pre_tokenizer"], "pretokenizers") {
        match p["type"].as_str().unwrap_or("?") {
            "Metaspace" if p["replacement"] == "\u{2581}" => {
                if p["split"].as_bool().unwrap_or(true) {
                    return Err(Error::Tokenizer(
                        "tokenizer.json Metaspace pre-tokenizer splits the text into words (split: true), which llama.cpp's SentencePiece tokenizer does not; not converted".into(),
                    ));
                }
                let scheme = p["prepend_scheme"].as_str().map(String::from).unwrap_or_else(|| {
                    // tokenizers before 0.14: add_prefix_space.
                    if p["add_prefix_space"].as_bool().unwrap_or(true) { "always" } else { "never" }.into()
                });
                prefix |= scheme != "never";
            }
            other => {
                return Err(Error::Tokenizer(format!(
                    "tokenizer.json pre-tokenizer `{other}` has no equivalent in llama.cpp's SentencePiece tokenizer; not converted"
                )))
            }
        }
    }
    Ok(prefix)
}

/// Scores that make llama.cpp's merge-by-score order equal a tokenizer.json BPE's merge order:
/// a token made by merges scores minus the rank of its first merge. (convert_hf_to_gguf.py's
/// `LlamaHfVocab` writes -1000 for every token, which llama.cpp then merges left to right — not
/// how the tokenizer.json tokenizes.) Tokens no merge makes score below every merge.
fn scores_from_merges(tokens: &[String], merges: &[(String, String)]) -> Vec<f32> {
    let unreached = -(merges.len() as f32) - 1.0;
    let mut scores: Vec<f32> = tokens
        .iter()
        .map(|t| {
            if t.chars().count() > 1 {
                unreached
            } else {
                0.0
            }
        })
        .collect();
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, t) in tokens.iter().enumerate() {
        first.entry(t.as_str()).or_insert(i);
    }
    let mut seen: HashSet<usize> = HashSet::new();
    for (rank, (a, b)) in merges.iter().enumerate() {
        if let Some(&id) = first.get(format!("{a}{b}").as_str()) {
            if seen.insert(id) {
                scores[id] = -(rank as f32);
            }
        }
    }
    scores
}

/// `tokenizer.*` metadata of a SentencePiece model (`tokenizer.ggml.model = llama`): from
/// `tokenizer.model` when the directory has one (as convert_hf_to_gguf.py's
/// `_create_vocab_sentencepiece`, with `added_tokens.json` and tokenizer_config.json's
/// `added_tokens_decoder` over it), else from a SentencePiece-style tokenizer.json.
fn spm_metadata(
    dir: &Path,
    tj: Option<&Json>,
    tc: &Json,
    config: &Json,
    vocab_size: usize,
) -> Result<Vec<(String, Value)>> {
    let spm_path = dir.join("tokenizer.model");
    let mut tokens: Vec<String>;
    let mut scores: Vec<f32>;
    let mut types: Vec<i32>;
    let mut added: HashMap<usize, Added> = HashMap::new();
    let space_prefix;
    if spm_path.is_file() {
        let m = SpmModel::read(&spm_path)?;
        if let Some(why) = m.unfaithful() {
            return Err(Error::file(
                &spm_path,
                format!("cannot convert faithfully to a llama.cpp SentencePiece vocabulary: {why}"),
            ));
        }
        if m.pieces.len() > vocab_size {
            return Err(Error::file(
                &spm_path,
                format!(
                    "{} pieces, more than config.json vocab_size {vocab_size}",
                    m.pieces.len()
                ),
            ));
        }
        tokens = (0..vocab_size).map(|i| format!("[PAD{i}]")).collect();
        scores = vec![-10000.0; vocab_size];
        types = vec![spm_model::UNUSED; vocab_size];
        for (i, (piece, score, ty)) in m.entries().enumerate() {
            tokens[i] = piece.to_string();
            scores[i] = score;
            // llama.cpp's converter turns user-defined pieces into normal ones; sentencepiece
            // matches them in the text as a whole, as llama.cpp does user-defined tokens.
            types[i] = ty;
        }
        space_prefix = m.add_dummy_prefix();
        let added_json = dir.join("added_tokens.json");
        if added_json.is_file() {
            let a = read_json(&added_json)?;
            for (t, id) in a.as_object().into_iter().flatten() {
                let Some(id) = id.as_u64().map(|i| i as usize).filter(|&i| i < vocab_size) else {
                    return Err(Error::file(
                        &added_json,
                        format!("token `{t}`: id {id} is not below vocab_size {vocab_size}"),
                    ));
                };
                tokens[id] = t.clone();
                scores[id] = -1000.0;
                types[id] = spm_model::USER_DEFINED;
            }
        }
        for (id, d) in tc["added_tokens_decoder"].as_object().into_iter().flatten() {
            let (Ok(id), Some(content)) = (id.parse::<usize>(), d["content"].as_str()) else {
                continue;
            };
            if id >= vocab_size {
                return Err(Error::Tokenizer(format!(
                    "tokenizer_config.json added token `{content}` has id {id}, beyond vocab_size {vocab_size}"
                )));
            }
            let special = d["special"].as_bool().unwrap_or(false);
            if special || looks_special(content) {
                types[id] = spm_model::CONTROL;
                tokens[id] = content.to_string();
            } else {
                types[id] = spm_model::USER_DEFINED;
                tokens[id] = content.replace('\u{2581}', " ");
            }
            scores[id] = -1000.0;
            added.insert(
                id,
                Added {
                    special,
                    normalized: false,
                },
            );
        }
    } else {
        let tj = tj.ok_or_else(|| Error::file(dir, "no tokenizer.json or tokenizer.model"))?;
        let ty = tj["model"]["type"].as_str().unwrap_or("?");
        if ty != "BPE" {
            return Err(Error::Tokenizer(format!(
                "tokenizer.json is a SentencePiece {ty} model; llama.cpp's SentencePiece tokenizer merges pieces by score, which is exact only for BPE models; not converted"
            )));
        }
        space_prefix = json_space_prefix(tj)?;
        let (by_id, json_added) = json_tokens(tj, vocab_size)?;
        added = json_added;
        let unk = tj["model"]["unk_token"].as_str();
        tokens = (0..vocab_size)
            .map(|i| {
                by_id
                    .get(&i)
                    .cloned()
                    .unwrap_or_else(|| format!("[PAD{i}]"))
            })
            .collect();
        let merges = json_merges(tj)?;
        scores = scores_from_merges(&tokens, &merges);
        types = (0..vocab_size)
            .map(|i| {
                let t = &tokens[i];
                match added.get(&i) {
                    _ if !by_id.contains_key(&i) => spm_model::UNUSED,
                    Some(a) if a.special && Some(t.as_str()) == unk => spm_model::UNKNOWN,
                    Some(a) if a.special || looks_special(t) => spm_model::CONTROL,
                    Some(_) => spm_model::USER_DEFINED,
                    None if is_byte_token(t) => spm_model::BYTE,
                    None if Some(t.as_str()) == unk => spm_model::UNKNOWN,
                    None => spm_model::NORMAL,
                }
            })
            .collect();
        for (i, a) in &added {
            if types[*i] == spm_model::USER_DEFINED && a.normalized {
                // Matched in the normalized text, where spaces are `▁`; llama.cpp matches
                // user-defined tokens in the raw text.
                tokens[*i] = tokens[*i].replace('\u{2581}', " ");
            }
            if matches!(types[*i], spm_model::CONTROL | spm_model::USER_DEFINED) {
                scores[*i] = -1000.0;
            }
        }
    }
    let mut md: Vec<(String, Value)> = vec![
        ("tokenizer.ggml.model".into(), Value::String("llama".into())),
        ("tokenizer.ggml.pre".into(), Value::String("default".into())),
        ("tokenizer.ggml.tokens".into(), string_array(tokens.clone())),
        (
            "tokenizer.ggml.scores".into(),
            Value::Array(scores.into_iter().map(Value::F32).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
    ];
    // convert_hf_to_gguf.py writes add_space_prefix from tokenizer_config.json's
    // add_prefix_space; llama.cpp's default is true, so a tokenizer without the prefix says so.
    match tc["add_prefix_space"].as_bool() {
        Some(b) => md.push(("tokenizer.ggml.add_space_prefix".into(), Value::Bool(b))),
        None if !space_prefix => {
            md.push(("tokenizer.ggml.add_space_prefix".into(), Value::Bool(false)))
        }
        None => {}
    }
    md.extend(special_metadata(dir, tc, config, &tokens, &added)?);
    Ok(md)
}

fn is_byte_token(t: &str) -> bool {
    t.len() == 6
        && t.starts_with("<0x")
        && t.ends_with('>')
        && t[3..5].chars().all(|c| c.is_ascii_hexdigit())
}

/// `tokenizer.*` metadata for the directory's tokenizer: SentencePiece (`llama`) when it has a
/// tokenizer.model (convert_hf_to_gguf.py's first choice) or a SentencePiece-style
/// tokenizer.json, else byte-level BPE (`gpt2`).
fn tokenizer_metadata(
    dir: &Path,
    tj: Option<&Json>,
    tc: &Json,
    config: &Json,
    vocab_size: usize,
) -> Result<(Vec<(String, Value)>, bool)> {
    let spm = dir.join("tokenizer.model").is_file() || tj.is_some_and(is_sentencepiece_json);
    if spm {
        return Ok((spm_metadata(dir, tj, tc, config, vocab_size)?, true));
    }
    let tj = tj.ok_or_else(|| Error::file(dir, "no tokenizer.json"))?;
    Ok((bpe_metadata(dir, tj, tc, config, vocab_size)?, false))
}

/// The tokenizer `model::tokenizer` rebuilds from `md` must encode like tokenizer.json. For a
/// SentencePiece vocabulary the text between special tokens is compared piece by piece:
/// llama.cpp puts `▁` in front of the text after every special token, a tokenizer.json with
/// Metaspace `prepend_scheme: first` only at the start; and a Metaspace pre-tokenizer adds no
/// `▁` to text that starts with a space, llama.cpp does, so such pieces are compared without
/// their leading spaces (see the README).
fn check_tokenizer(tok_json: &Path, tj: &Json, md: &[(String, Value)], spm: bool) -> Result<()> {
    let ct = gguf_file::Content {
        magic: gguf_file::VersionedMagic::GgufV3,
        metadata: md.iter().cloned().collect(),
        tensor_infos: HashMap::new(),
        tensor_data_offset: 0,
    };
    let ours = tokenizer::from_gguf(&ct)?;
    let theirs = tokenizer::from_file(tok_json)?;
    let mut texts = vec![CHECK_TEXT.to_string()];
    texts.extend(CHECK_TEXT.lines().map(|l| format!(" {l}")));
    if spm {
        let specials: Vec<String> = theirs
            .get_added_tokens_decoder()
            .values()
            .filter(|t| t.special)
            .map(|t| t.content.clone())
            .chain(["<|im_start|>".into(), "<|im_end|>".into()])
            .filter(|t| !t.is_empty())
            .collect();
        let mut pieces = vec![];
        for t in &texts {
            let mut parts = vec![t.clone()];
            for s in &specials {
                parts = parts
                    .iter()
                    .flat_map(|p| p.split(s.as_str()).map(String::from).collect::<Vec<_>>())
                    .collect();
            }
            pieces.extend(parts.into_iter().filter(|p| !p.is_empty()));
        }
        texts = pieces;
        texts.extend(SPM_CHECK.iter().map(|s| s.to_string()));
        if tj["pre_tokenizer"].to_string().contains("\"Metaspace\"") {
            texts = texts
                .iter()
                .map(|t| t.trim_start_matches(' ').to_string())
                .filter(|t| !t.is_empty())
                .collect();
        }
    }
    for t in texts {
        let (a, b) = (
            tokenizer::encode(&ours, &t)?,
            tokenizer::encode(&theirs, &t)?,
        );
        if a != b {
            let at = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            return Err(Error::Tokenizer(format!(
                "the tokenizer rebuilt from the GGUF metadata disagrees with {} at token {at} of the check text {:?}; refusing to write a GGUF that tokenizes differently",
                tok_json.display(),
                t.chars().take(40).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// More check texts for SentencePiece vocabularies: runs of spaces (the `▁▁…` pieces), bytes
/// without a piece, leading and trailing whitespace.
const SPM_CHECK: &[&str] = &[
    "  two spaces",
    "     five spaces and a tab\t.",
    "trailing   ",
    "\n\nnewlines\n",
    "a\u{0}b\u{7f}c \u{10ffff} \u{1f9ea}\u{1f9ec}",
    "Ⅷ ﬁ ㎏ Å (not normalized)",
];

/// `llama.*` and `general.*` metadata (without file type and quantization version).
fn model_metadata(dir: &Path, cfg: &LlamaConfig, vocab_size: usize) -> Vec<(String, Value)> {
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into());
    let u = |x: usize| Value::U32(x as u32);
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("general.type".into(), Value::String("model".into())),
        ("general.name".into(), Value::String(name)),
        (
            "llama.context_length".into(),
            u(cfg.max_position_embeddings),
        ),
        ("llama.embedding_length".into(), u(cfg.hidden_size)),
        ("llama.block_count".into(), u(cfg.num_hidden_layers)),
        ("llama.feed_forward_length".into(), u(cfg.intermediate_size)),
        (
            "llama.attention.head_count".into(),
            u(cfg.num_attention_heads),
        ),
        (
            "llama.attention.head_count_kv".into(),
            u(cfg.num_key_value_heads),
        ),
        (
            "llama.rope.freq_base".into(),
            Value::F32(cfg.rope_theta as f32),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(cfg.rms_norm_eps as f32),
        ),
        ("llama.rope.dimension_count".into(), u(cfg.head_dim)),
        ("llama.vocab_size".into(), u(vocab_size)),
    ];
    if cfg.head_dim * cfg.num_attention_heads != cfg.hidden_size {
        md.push(("llama.attention.key_length".into(), u(cfg.head_dim)));
        md.push(("llama.attention.value_length".into(), u(cfg.head_dim)));
    }
    // Not read by llama.cpp's llama architecture; keeps our loader's Mistral window.
    if let Some(w) = cfg.sliding_window {
        md.push(("llama.attention.sliding_window".into(), u(w)));
    }
    md
}

/// Convert the Hugging Face model directory `dir` to a GGUF with matrices in `to` (one of
/// [`crate::quantize::SUPPORTED`]).
pub fn hf_to_gguf(dir: &Path, output: &Path, to: GgmlDType) -> Result<QuantizeReport> {
    check_target(to)?;
    convert_hf(dir, output, to)
}

/// [`hf_to_gguf`] for any type candle quantizes to, also those `quantize --to` does not offer
/// (the tests use it to check the layout without quantization error).
pub fn convert_hf(dir: &Path, output: &Path, to: GgmlDType) -> Result<QuantizeReport> {
    let start = Instant::now();
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(Error::file(
            dir,
            "not a Hugging Face model directory: no config.json",
        ));
    }
    let config_text = std::fs::read_to_string(&config_path)
        .map_err(|e| Error::file(&config_path, format!("cannot read: {e}")))?;
    let cfg = LlamaConfig::from_hf_json(&config_text).map_err(|e| Error::file(&config_path, e))?;
    let rope_freqs = cfg
        .rope_freq_divisors()
        .map_err(|e| Error::file(&config_path, e))?;
    let config: Json = serde_json::from_str(&config_text)
        .map_err(|e| Error::file(&config_path, format!("invalid JSON: {e}")))?;

    let tok_path = dir.join("tokenizer.json");
    let tj = if tok_path.is_file() {
        Some(read_json(&tok_path)?)
    } else if dir.join("tokenizer.model").is_file() {
        None
    } else {
        return Err(Error::file(dir, "no tokenizer.json or tokenizer.model"));
    };
    let tc_path = dir.join("tokenizer_config.json");
    let tc = if tc_path.is_file() {
        read_json(&tc_path)?
    } else {
        Json::Null
    };
    let vocab_size = cfg.vocab_size;
    let mut metadata = model_metadata(dir, &cfg, vocab_size);
    let (tok_md, spm) =
        tokenizer_metadata(dir, tj.as_ref(), &tc, &config, vocab_size).map_err(|e| match e {
            Error::File { .. } => e,
            e => Error::file(&tok_path, e),
        })?;
    if let Some(tj) = &tj {
        check_tokenizer(&tok_path, tj, &tok_md, spm).map_err(|e| Error::file(&tok_path, e))?;
    }
    metadata.extend(tok_md);
    metadata.push((
        "general.file_type".into(),
        Value::U32(file_type(to).unwrap_or(0)),
    ));
    metadata.push(("general.quantization_version".into(), Value::U32(2)));

    let (files, index) = crate::model::load::dir_weights(dir)?;
    // SAFETY: the files are memory-mapped read-only and not modified while mapped.
    let st = unsafe { MmapedSafetensors::multi(&files) }.map_err(|e| {
        Error::model(format!(
            "invalid safetensors file ({}): {}",
            files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            first_line(&e)
        ))
    })?;
    let names: HashSet<String> = st.tensors().into_iter().map(|(n, _)| n).collect();
    // The loader's checks: every tensor once, where the index says, with the shape and dtype
    // the config implies, nothing unused.
    crate::model::load::check_hf_weights(&cfg, &files, index.as_deref(), HF_PREFIX, &config, None)?;
    let plan = plan_tensors(&cfg, &names)?;
    let has_output = plan.iter().any(|p| p.gguf == OUTPUT.gguf_name(None));

    // 0 = matrix in the target (or fallback) type, 1 = F32 vector, 2 = kept in its dtype.
    let mut converted: Vec<(String, QTensor, u8)> = plan
        .par_iter()
        .map(|p| -> Result<(String, QTensor, u8)> {
            let ctx = |e: candle_core::Error| {
                Error::model(format!("tensor `{}`: {}", p.hf, first_line(&e)))
            };
            let t = st.load(&p.hf, &Device::Cpu).map_err(ctx)?;
            let src = t.dtype();
            let ggml_src = match src {
                DType::F32 => GgmlDType::F32,
                DType::F16 => GgmlDType::F16,
                DType::BF16 => GgmlDType::BF16,
                other => {
                    return Err(Error::model(format!(
                        "tensor `{}`: dtype {other:?} (expected f32, f16 or bf16)",
                        p.hf
                    )))
                }
            };
            let mut t = t.to_dtype(DType::F32).map_err(ctx)?;
            if let Some(heads) = p.permute_heads {
                t = arch::permute_qk(&t, heads)
                    .map_err(|e| Error::model(format!("tensor `{}`: {e}", p.hf)))?;
            }
            let (ty, kind) = match t.dims() {
                [_] => (GgmlDType::F32, 1),
                [_, cols] => match matrix_target(*cols, tensor_target(&p.gguf, has_output, to)) {
                    Some(q) => (q, 0),
                    None => (ggml_src, 2),
                },
                _ => (ggml_src, 2),
            };
            let q = QTensor::quantize(&t, ty).map_err(ctx)?;
            Ok((p.gguf.clone(), q, kind))
        })
        .collect::<Result<_>>()?;
    if let Some(f) = rope_freqs {
        let n = f.len();
        let t = Tensor::from_vec(f, n, &Device::Cpu)?;
        converted.push((
            arch::ROPE_FREQS.into(),
            QTensor::quantize(&t, GgmlDType::F32)?,
            1,
        ));
    }
    write_gguf(output, metadata, &converted)?;

    let mut input_bytes = 0;
    for f in &files {
        input_bytes += std::fs::metadata(f)?.len();
    }
    QuantizeReport::new(dir, output, to, &converted, input_bytes, start)
}
