//! Shared test helpers: a byte-level BPE tokenizer built in code and a scripted model.
#![allow(dead_code)]
use hermes_eval::doc::Loglik;
use hermes_eval::error::Result;
use hermes_eval::model::{GenOptions, LanguageModel, TokenRequest};
use std::collections::VecDeque;
use std::path::PathBuf;

pub const SPECIALS: &[&str] = &["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>"];

/// Byte-level BPE with the 256 byte symbols and no merges, plus ChatML special tokens.
pub fn byte_tokenizer() -> tokenizers::Tokenizer {
    let mut alphabet: Vec<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
        .into_iter()
        .collect();
    alphabet.sort();
    let vocab: serde_json::Map<String, serde_json::Value> = alphabet
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), serde_json::json!(i)))
        .collect();
    let added: Vec<serde_json::Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({"id": 256 + i, "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": []}
    });
    tokenizers::Tokenizer::from_bytes(serde_json::to_vec(&json).unwrap()).unwrap()
}

/// Returns the given texts, in order, as generations (encoded with the real tokenizer).
pub struct ScriptedModel {
    pub tok: tokenizers::Tokenizer,
    pub replies: VecDeque<String>,
    pub prompts_seen: Vec<Vec<u32>>,
}

impl ScriptedModel {
    pub fn new(replies: Vec<String>) -> Self {
        ScriptedModel {
            tok: byte_tokenizer(),
            replies: replies.into(),
            prompts_seen: Vec::new(),
        }
    }
}

impl LanguageModel for ScriptedModel {
    fn name(&self) -> &str {
        "scripted"
    }
    fn tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.tok
    }
    fn max_length(&self) -> usize {
        1 << 20
    }
    fn loglikelihood(&mut self, _group: &[TokenRequest]) -> Result<Vec<Loglik>> {
        unimplemented!()
    }
    fn generate(&mut self, prompts: &[Vec<u32>], opts: &GenOptions) -> Result<Vec<Vec<u32>>> {
        let mut out = Vec::new();
        for p in prompts {
            self.prompts_seen.push(p.clone());
            let text = self.replies.pop_front().expect("scripted reply");
            let mut ids = self
                .tok
                .encode(text.as_str(), false)
                .unwrap()
                .get_ids()
                .to_vec();
            if let Some(pos) = ids.iter().position(|t| opts.stop_tokens.contains(t)) {
                ids.truncate(pos);
            }
            ids.truncate(opts.max_new_tokens);
            out.push(ids);
        }
        Ok(out)
    }
    fn fingerprint(&self) -> serde_json::Value {
        serde_json::json!({"model": "scripted"})
    }
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fc")
        .join(name)
}

/// The hub mirror, if present.
pub fn hub() -> Option<PathBuf> {
    let p = std::env::var_os("HERMES_EVAL_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/hub"));
    p.join("datasets").is_dir().then_some(p)
}
