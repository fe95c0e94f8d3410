//! The scripted model: a backend with no weights, for running the whole pipeline in tests and
//! for judging completions made elsewhere.
//!
//! - `scripted:` — log-likelihoods are a deterministic function of the request's token ids (a
//!   hash), and a generation is the fixed text `scripted`. Useful only to exercise the engine.
//! - `replay:<file.jsonl>` — generation requests are answered from recorded completions, one
//!   JSON object per line: `{"task": ..., "doc_id": <index in dataset order>, "completion": ...}`.
//!   Log-likelihood tasks are refused.
//!
//! The tokenizer is byte-level (the 256 byte symbols, no merges) with the ChatML and common
//! end-of-text tokens as special tokens, so any text round-trips exactly.
use super::{GenOptions, GenPrompt, LanguageModel, ModelIdentity, TokenRequest};
use crate::chat::ChatTemplate;
use crate::doc::Loglik;
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// Special tokens of the built-in tokenizer, after the 256 byte symbols.
pub const SPECIALS: &[&str] = &["<|im_start|>", "<|im_end|>", "<|endoftext|>"];

/// Byte-level BPE with the 256 byte symbols and no merges, plus [`SPECIALS`].
pub fn byte_tokenizer() -> Result<tokenizers::Tokenizer> {
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
    tokenizers::Tokenizer::from_bytes(serde_json::to_vec(&json)?)
        .map_err(|e| Error::Tokenizer(e.to_string()))
}

pub struct ScriptedLm {
    tok: tokenizers::Tokenizer,
    name: String,
    /// (task, doc_id) → completion, for `replay:`.
    replies: Option<HashMap<(String, usize), String>>,
    identity: ModelIdentity,
    source: String,
}

impl ScriptedLm {
    /// `scripted:` (rest empty) or `replay:<file>` (rest = the file, `replay` = true).
    pub fn open(rest: &str, replay: bool) -> Result<Self> {
        let tok = byte_tokenizer()?;
        let (replies, sha, name) = if replay {
            let path = Path::new(rest);
            let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
            let mut map = HashMap::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let bad = |m: &str| Error::file(path, format!("line {}: {m}", i + 1));
                let v: serde_json::Value =
                    serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
                let task = v["task"].as_str().ok_or_else(|| bad("no `task` string"))?;
                let doc = v["doc_id"]
                    .as_u64()
                    .ok_or_else(|| bad("no `doc_id` integer"))?;
                let c = v["completion"]
                    .as_str()
                    .ok_or_else(|| bad("no `completion` string"))?;
                if map
                    .insert((task.to_string(), doc as usize), c.to_string())
                    .is_some()
                {
                    return Err(bad(&format!("second completion for {task} doc {doc}")));
                }
            }
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "replay".into());
            (
                Some(map),
                hex::encode(Sha256::digest(text.as_bytes())),
                format!("replay-{stem}"),
            )
        } else {
            if !rest.is_empty() {
                return Err(Error::model(format!(
                    "scripted: takes no argument, got `{rest}`"
                )));
            }
            (None, String::new(), "scripted".to_string())
        };
        let identity = ModelIdentity {
            backend: if replay { "replay" } else { "scripted" }.into(),
            format: if replay { "completions-jsonl" } else { "none" }.into(),
            weights_sha256: if replay { vec![sha] } else { vec![] },
            compute: "recorded or scripted outputs (not a language model)".into(),
            tokenizer_sha256: super::tokenizer_sha256(&tok),
        };
        Ok(ScriptedLm {
            tok,
            name,
            replies,
            identity,
            source: rest.to_string(),
        })
    }
}

fn hash_of(r: &TokenRequest) -> u64 {
    let mut h = Sha256::new();
    for t in r.context.iter().chain([&u32::MAX]).chain(&r.continuation) {
        h.update(t.to_le_bytes());
    }
    let d = h.finalize();
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

impl LanguageModel for ScriptedLm {
    fn name(&self) -> &str {
        &self.name
    }
    fn tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.tok
    }
    fn max_length(&self) -> usize {
        1 << 20
    }
    fn loglikelihood(&mut self, requests: &[TokenRequest]) -> Result<Vec<Loglik>> {
        if self.replies.is_some() {
            return Err(Error::model(
                "replay answers generation requests only: log-likelihood tasks need a model \
                 (--model <gguf|dir|hub id>) or a server",
            ));
        }
        Ok(requests
            .iter()
            .map(|r| {
                let h = hash_of(r);
                Loglik {
                    logprob: -((h % 10_000) as f64) / 1000.0 - r.continuation.len() as f64,
                    is_greedy: h.is_multiple_of(7),
                    logprob_f64: None,
                }
            })
            .collect())
    }
    fn generate(&mut self, prompts: &[GenPrompt], opts: &GenOptions) -> Result<Vec<Vec<u32>>> {
        prompts
            .iter()
            .map(|p| {
                let text = match &self.replies {
                    None => "scripted".to_string(),
                    Some(m) => m.get(&(p.task.clone(), p.doc_id)).cloned().ok_or_else(|| {
                        Error::model(format!(
                            "replay {}: no completion for task {} doc {}",
                            self.source, p.task, p.doc_id
                        ))
                    })?,
                };
                let mut ids = super::tokenizer::encode(&self.tok, &text)?;
                if let Some(pos) = ids.iter().position(|t| opts.stop_tokens.contains(t)) {
                    ids.truncate(pos);
                }
                ids.truncate(opts.max_new_tokens);
                Ok(ids)
            })
            .collect()
    }
    fn eos_token_ids(&self) -> Vec<u32> {
        self.tok.token_to_id("<|im_end|>").into_iter().collect()
    }
    fn chat_template(&self) -> Result<Option<ChatTemplate>> {
        Ok(None)
    }
    fn identity(&self) -> &ModelIdentity {
        &self.identity
    }
    fn details(&self) -> serde_json::Value {
        serde_json::json!({"source": self.source, "name": self.name})
    }
}
