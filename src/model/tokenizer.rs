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
pub const SUPPORTED_PRE: &[&str] = &[
    "smollm",
    "starcoder",
    "refact",
    "command-r",
    "gpt-2",
    "llama-bpe",
    "llama3",
    "qwen2",
];

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
        // starcoder, refact and command-r: llama.cpp runs the same two regexes as for smollm.
        "smollm" | "starcoder" | "refact" | "command-r" => (
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

/// GGUF token types (llama.cpp `llama_token_type`).
const TYPE_UNKNOWN: i64 = 2;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;

fn token_types(ct: &gguf_file::Content, n: usize) -> Result<Vec<i64>> {
    let Some(v) = ct.metadata.get("tokenizer.ggml.token_type") else {
        return Ok(vec![1; n]);
    };
    let arr = v
        .to_vec()
        .map_err(|_| Error::Tokenizer("`tokenizer.ggml.token_type` is not an array".into()))?;
    if arr.len() != n {
        return Err(Error::Tokenizer(format!(
            "`tokenizer.ggml.token_type` has {} entries for {n} tokens",
            arr.len()
        )));
    }
    arr.iter()
        .map(|x| {
            x.to_i32()
                .map(|v| v as i64)
                .or_else(|_| x.to_u32().map(|v| v as i64))
                .map_err(|_| {
                    Error::Tokenizer("`tokenizer.ggml.token_type` holds a non-integer".into())
                })
        })
        .collect()
}

fn md_bool(ct: &gguf_file::Content, key: &str) -> Result<Option<bool>> {
    match ct.metadata.get(key) {
        None => Ok(None),
        Some(v) => v
            .to_bool()
            .map(Some)
            .map_err(|_| Error::Tokenizer(format!("GGUF metadata key `{key}` is not a bool"))),
    }
}

/// Tokens llama.cpp matches in text: control and unknown tokens as special tokens (matched only
/// when special tokens are parsed), user-defined ones as added tokens (always matched).
fn add_gguf_special_tokens(tok: &mut Tokenizer, tokens: &[String], types: &[i64]) {
    let mut special = vec![];
    let mut added = vec![];
    for (t, &ty) in tokens.iter().zip(types) {
        match ty {
            TYPE_CONTROL | TYPE_UNKNOWN => {
                special.push(AddedToken::from(t.clone(), true).normalized(false))
            }
            TYPE_USER_DEFINED => added.push(AddedToken::from(t.clone(), false).normalized(false)),
            _ => {}
        }
    }
    tok.add_special_tokens(&special);
    tok.add_tokens(&added);
}

/// Build the tokenizer from `tokenizer.ggml.*` metadata: byte-level BPE (`gpt2`, with the
/// pre-tokenizer `tokenizer.ggml.pre` names) or SentencePiece (`llama`). Special tokens in the
/// text are matched (as llama.cpp does with `parse_special`); call
/// `set_encode_special_tokens(true)` for llama.cpp's `parse_special = false`.
pub fn from_gguf(ct: &gguf_file::Content) -> Result<Tokenizer> {
    let model = super::config::md_str(ct, "tokenizer.ggml.model")
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    match model.as_str() {
        "gpt2" => bpe_from_gguf(ct),
        "llama" => spm_from_gguf(ct),
        other => Err(Error::Tokenizer(format!(
            "GGUF tokenizer model `{other}` cannot be rebuilt from metadata (supported: gpt2 = byte-level BPE, llama = SentencePiece); pass the model's tokenizer.json with --tokenizer"
        ))),
    }
}

/// SentencePiece as llama.cpp runs it (`llm_tokenizer_spm`): the text (after special tokens are
/// split off) gets a `▁` prefix when `add_space_prefix` (default true), spaces become `▁`, and
/// adjacent pieces merge while their concatenation is a token, highest score first; characters
/// without a token fall back to `<0xXX>` byte tokens. As a BPE whose merges are every split of
/// every token into two tokens, ranked by the token's score.
fn spm_from_gguf(ct: &gguf_file::Content) -> Result<Tokenizer> {
    use tokenizers::decoders::{
        byte_fallback::ByteFallback, fuse::Fuse, sequence::Sequence as DecoderSequence,
        strip::Strip,
    };
    use tokenizers::normalizers::{Prepend, Replace, Sequence as NormSequence};
    let tokens = strings(ct, "tokenizer.ggml.tokens")?;
    let n = tokens.len();
    let scores: Vec<f32> = match ct.metadata.get("tokenizer.ggml.scores") {
        None => return Err(Error::Tokenizer("GGUF metadata key `tokenizer.ggml.scores` is missing (needed by a SentencePiece vocabulary)".into())),
        Some(v) => v
            .to_vec()
            .map_err(|_| Error::Tokenizer("`tokenizer.ggml.scores` is not an array".into()))?
            .iter()
            .map(|x| {
                x.to_f32()
                    .map_err(|_| Error::Tokenizer("`tokenizer.ggml.scores` holds a non-float".into()))
            })
            .collect::<Result<_>>()?,
    };
    if scores.len() != n {
        return Err(Error::Tokenizer(format!(
            "`tokenizer.ggml.scores` has {} entries for {n} tokens",
            scores.len()
        )));
    }
    let types = token_types(ct, n)?;
    let mut vocab: Vocab = Vocab::with_capacity(n);
    for (i, t) in tokens.iter().enumerate() {
        // llama.cpp keeps the first id of a duplicated piece.
        vocab.entry(t.clone()).or_insert(i as u32);
    }
    // Every split of a token into two tokens is a merge ranked by the token's score (higher
    // first; equal scores: lower id first, then the shorter left part).
    let mut ranked: Vec<(f32, u32, usize, String, String)> = vec![];
    for (i, t) in tokens.iter().enumerate() {
        if vocab.get(t) != Some(&(i as u32)) {
            continue;
        }
        for (cut, _) in t.char_indices().skip(1) {
            let (l, r) = t.split_at(cut);
            if vocab.contains_key(l) && vocab.contains_key(r) {
                ranked.push((scores[i], i as u32, cut, l.to_string(), r.to_string()));
            }
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let merges: Vec<(String, String)> = ranked.into_iter().map(|(_, _, _, l, r)| (l, r)).collect();
    let unk = super::config::md_usize(ct, "tokenizer.ggml.unknown_token_id")
        .ok()
        .and_then(|i| tokens.get(i).cloned())
        .or_else(|| {
            types
                .iter()
                .position(|&t| t == TYPE_UNKNOWN)
                .map(|i| tokens[i].clone())
        });
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(u) = unk {
        builder = builder.unk_token(u);
    }
    let bpe = builder
        .build()
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    let mut tok = Tokenizer::new(bpe);
    let add_space_prefix = md_bool(ct, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let replace = Replace::new(" ", "\u{2581}").map_err(|e| Error::Tokenizer(e.to_string()))?;
    if add_space_prefix {
        tok.with_normalizer(Some(NormSequence::new(vec![
            Prepend::new("\u{2581}".into()).into(),
            replace.into(),
        ])));
    } else {
        tok.with_normalizer(Some(replace));
    }
    let unescape = tokenizers::decoders::DecoderWrapper::Replace(
        Replace::new("\u{2581}", " ").map_err(|e| Error::Tokenizer(e.to_string()))?,
    );
    let mut decoders = vec![unescape, ByteFallback::new().into(), Fuse::new().into()];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tok.with_decoder(Some(DecoderSequence::new(decoders)));
    add_gguf_special_tokens(&mut tok, &tokens, &types);
    Ok(tok)
}

fn bpe_from_gguf(ct: &gguf_file::Content) -> Result<Tokenizer> {
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
    let types = token_types(ct, tokens.len())?;
    add_gguf_special_tokens(&mut tok, &tokens, &types);
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

/// `hermes-eval tokenize`: one JSON object per input line, `{"text": line, "ids": [...]}`, with
/// the ids [`encode`] gives (what the engine scores: no BOS). The line's `\n` (and a `\r`
/// before it) is not part of the text.
pub fn tokenize_lines(
    tok: &Tokenizer,
    input: impl std::io::BufRead,
    mut out: impl std::io::Write,
) -> Result<usize> {
    let mut n = 0;
    for line in input.lines() {
        let line = line?;
        let text = line.strip_suffix('\r').unwrap_or(&line);
        let ids = encode(tok, text)?;
        serde_json::to_writer(&mut out, &serde_json::json!({"text": text, "ids": ids}))?;
        writeln!(out)?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}
