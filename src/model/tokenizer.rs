//! Tokenizers: a `tokenizer.json` through the `tokenizers` crate, or one built from GGUF
//! metadata (byte-level BPE with the pre-tokenizer that `tokenizer.ggml.pre` names). An unknown
//! pre-tokenizer is an error, never a guess: llama.cpp and the original tokenizer.json differ from
//! a guessed one on digits and whitespace.
use crate::error::{Error, Result};
use candle_core::quantized::gguf_file;
use std::path::Path;
use tokenizers::{
    decoders::byte_level::ByteLevel as ByteLevelDecoder,
    models::bpe::{Vocab, BPE},
    pre_tokenizers::{
        byte_level::ByteLevel,
        digits::Digits,
        sequence::Sequence,
        split::{Split, SplitPattern},
        PreTokenizerWrapper,
    },
    tokenizer::SplitDelimiterBehavior,
    AddedToken, Tokenizer,
};

/// `tokenizer.ggml.pre` values this crate can build, with what each means.
pub const SUPPORTED_PRE: &[&str] = &["smollm", "gpt-2", "llama-bpe", "llama3", "qwen2"];

pub(crate) const REGEX_LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
pub(crate) const REGEX_QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

pub fn from_file(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path).map_err(|e| Error::file(path, format!("cannot load tokenizer: {e}")))
}

fn split_regex(re: &str) -> Result<PreTokenizerWrapper> {
    Ok(Split::new(
        SplitPattern::Regex(re.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| Error::Tokenizer(e.to_string()))?
    .into())
}

/// The pre-tokenizer for a `tokenizer.ggml.pre` name, as in the model's original tokenizer.json
/// and llama.cpp; `None` for names this crate does not know.
fn pre_tokenizer(pre: &str) -> Result<Option<(PreTokenizerWrapper, bool)>> {
    let byte_level = |use_regex| ByteLevel::new(false, true, use_regex);
    Ok(Some(match pre {
        // SmolLM / SmolLM2: every digit on its own, then the GPT-2 byte-level regex.
        "smollm" => (
            Sequence::new(vec![Digits::new(true).into(), byte_level(true).into()]).into(),
            false,
        ),
        "gpt-2" => (byte_level(true).into(), false),
        "llama-bpe" | "llama3" => (
            Sequence::new(vec![split_regex(REGEX_LLAMA3)?, byte_level(false).into()]).into(),
            true,
        ),
        "qwen2" => (
            Sequence::new(vec![split_regex(REGEX_QWEN2)?, byte_level(false).into()]).into(),
            false,
        ),
        _ => return Ok(None),
    }))
}

fn strings(ct: &gguf_file::Content, key: &str) -> Result<Vec<String>> {
    let v = ct
        .metadata
        .get(key)
        .ok_or_else(|| Error::Tokenizer(format!("GGUF metadata key `{key}` is missing")))?;
    let arr = v
        .to_vec()
        .map_err(|_| Error::Tokenizer(format!("GGUF metadata key `{key}` is not an array")))?;
    arr.iter()
        .map(|x| {
            x.to_string()
                .cloned()
                .map_err(|_| Error::Tokenizer(format!("`{key}` holds a non-string element")))
        })
        .collect()
}

/// Build the tokenizer from `tokenizer.ggml.*` metadata.
pub fn from_gguf(ct: &gguf_file::Content) -> Result<Tokenizer> {
    let model = super::config::md_str(ct, "tokenizer.ggml.model")
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    if model != "gpt2" {
        return Err(Error::Tokenizer(format!(
            "GGUF tokenizer model `{model}` cannot be rebuilt from metadata (only byte-level BPE, `gpt2`); pass the model's tokenizer.json with --tokenizer"
        )));
    }
    let pre =
        super::config::md_str(ct, "tokenizer.ggml.pre").unwrap_or_else(|_| "<missing>".into());
    let Some((pre_tok, ignore_merges)) = pre_tokenizer(&pre)? else {
        return Err(Error::Tokenizer(format!(
            "unknown tokenizer.ggml.pre `{pre}` (known: {}); pass the model's tokenizer.json with --tokenizer",
            SUPPORTED_PRE.join(", ")
        )));
    };
    let tokens = strings(ct, "tokenizer.ggml.tokens")?;
    let merges = strings(ct, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| Error::Tokenizer(format!("invalid merge `{m}`")))
        })
        .collect::<Result<Vec<_>>>()?;
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(pre_tok));
    tok.with_decoder(Some(ByteLevelDecoder::new(true, true, true)));
    // Control tokens (type 3) are special; user-defined ones (type 4) are added tokens.
    let types: Vec<i64> = match ct
        .metadata
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
    {
        Some(arr) => arr
            .iter()
            .map(|x| {
                x.to_i32()
                    .map(|v| v as i64)
                    .or_else(|_| x.to_u32().map(|v| v as i64))
                    .unwrap_or(1)
            })
            .collect(),
        None => vec![1; tokens.len()],
    };
    let mut special = vec![];
    let mut added = vec![];
    for (t, ty) in tokens.iter().zip(types) {
        match ty {
            3 => special.push(AddedToken::from(t.clone(), true).normalized(false)),
            4 => added.push(AddedToken::from(t.clone(), false).normalized(false)),
            _ => {}
        }
    }
    tok.add_special_tokens(&special);
    tok.add_tokens(&added);
    Ok(tok)
}

/// Encode without special tokens (no BOS), as the reference harness does.
pub fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tok
        .encode_fast(text, false)
        .map_err(|e| Error::Tokenizer(e.to_string()))?
        .get_ids()
        .to_vec())
}

pub fn decode(tok: &Tokenizer, ids: &[u32], skip_special: bool) -> Result<String> {
    tok.decode(ids, skip_special)
        .map_err(|e| Error::Tokenizer(e.to_string()))
}
