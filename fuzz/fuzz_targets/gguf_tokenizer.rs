//! The tokenizer rebuilt from GGUF metadata (SentencePiece and byte-level BPE), on structured
//! metadata: vocabularies, scores, token types, merges, special ids of any shape.
#![no_main]
use arbitrary::Arbitrary;
use candle_core::quantized::gguf_file::{Content, Value, VersionedMagic};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

#[derive(Arbitrary, Debug)]
struct Input {
    spm: bool,
    pre: u8,
    tokens: Vec<String>,
    scores: Option<Vec<f32>>,
    types: Option<Vec<i32>>,
    merges: Option<Vec<String>>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    add_bos: Option<bool>,
    add_space_prefix: Option<bool>,
    text: String,
}

const PRE: &[&str] = &["smollm", "gpt-2", "llama-bpe", "qwen2", "starcoder", "refact", "command-r", "default", "bogus"];

fuzz_target!(|i: Input| {
    if i.tokens.len() > 2048 || i.text.len() > 256 {
        return;
    }
    let mut md = HashMap::new();
    let s = |x: &str| Value::String(x.to_string());
    md.insert("tokenizer.ggml.model".into(), s(if i.spm { "llama" } else { "gpt2" }));
    md.insert("tokenizer.ggml.pre".into(), s(PRE[i.pre as usize % PRE.len()]));
    md.insert(
        "tokenizer.ggml.tokens".into(),
        Value::Array(i.tokens.iter().map(|t| s(t)).collect()),
    );
    if let Some(sc) = &i.scores {
        md.insert("tokenizer.ggml.scores".into(), Value::Array(sc.iter().map(|&x| Value::F32(x)).collect()));
    }
    if let Some(t) = &i.types {
        md.insert("tokenizer.ggml.token_type".into(), Value::Array(t.iter().map(|&x| Value::I32(x)).collect()));
    }
    if let Some(m) = &i.merges {
        md.insert("tokenizer.ggml.merges".into(), Value::Array(m.iter().map(|t| s(t)).collect()));
    }
    for (k, v) in [
        ("tokenizer.ggml.bos_token_id", i.bos),
        ("tokenizer.ggml.eos_token_id", i.eos),
        ("tokenizer.ggml.unknown_token_id", i.unk),
    ] {
        if let Some(v) = v {
            md.insert(k.into(), Value::U32(v));
        }
    }
    if let Some(b) = i.add_bos {
        md.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(b));
    }
    if let Some(b) = i.add_space_prefix {
        md.insert("tokenizer.ggml.add_space_prefix".into(), Value::Bool(b));
    }
    let ct = Content {
        magic: VersionedMagic::GgufV3,
        metadata: md,
        tensor_infos: HashMap::new(),
        tensor_data_offset: 0,
    };
    if let Ok(tok) = hermes_eval::model::tokenizer::from_gguf(&ct) {
        if let Ok(enc) = tok.encode(i.text.as_str(), true) {
            let _ = tok.decode(enc.get_ids(), false);
        }
    }
});
