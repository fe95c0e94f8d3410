//! The engine: tokenize requests exactly as TASKS_SPEC §1.3, schedule them through the model
//! (one document's choices at a time, so their shared context is computed once), and collect
//! per-document results.
use crate::doc::LoglikRequest;
use crate::error::Result;
use crate::model::{tokenizer::encode, TokenRequest};

/// Python's `str.isspace` for one character (Rust's `is_whitespace` lacks U+001C..U+001F).
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// TASKS_SPEC §1.3 steps 1–3: move the context's trailing whitespace into the continuation,
/// encode context and context+continuation without special tokens (no BOS), and take the
/// continuation as the joint encoding after the context's token count.
pub fn encode_pair(tok: &tokenizers::Tokenizer, req: &LoglikRequest, eos: Option<u32>) -> Result<TokenRequest> {
    if req.context.is_empty() {
        return Ok(TokenRequest { context: eos.into_iter().collect(), continuation: encode(tok, &req.continuation)? });
    }
    let trimmed = req.context.trim_end_matches(py_isspace);
    let moved = &req.context[trimmed.len()..];
    let continuation = format!("{moved}{}", req.continuation);
    let whole = encode(tok, &format!("{trimmed}{continuation}"))?;
    let ctx = encode(tok, trimmed)?;
    let n = ctx.len().min(whole.len());
    Ok(TokenRequest { context: whole[..n].to_vec(), continuation: whole[n..].to_vec() })
}
