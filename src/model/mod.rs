//! Model backends behind one narrow interface: log-likelihoods of token continuations and
//! generation, plus what the engine needs to know about a model (tokenizer, chat template, EOS
//! ids, a typed identity). [`open`] picks the backend from the model spec; each backend is one
//! file:
//!
//! - [`candle_lm`]: our own Llama/Mistral forward pass in process (GGUF, safetensors, hub ids);
//! - [`scripted`]: no weights: deterministic outputs for tests of the pipeline (`scripted:`),
//!   or recorded completions judged by the same scorers (`replay:<file.jsonl>`);
//! - [`server`]: an OpenAI-compatible `/v1/completions` server (vLLM, SGLang, llama-cpp-python;
//!   llama.cpp's llama-server for generation only), chosen by [`OpenOptions::server`].
//!
//! Adding a backend is one new file and one arm in [`open`].
use crate::chat::ChatTemplate;
use crate::doc::Loglik;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// A tokenized log-likelihood request (TASKS_SPEC §1.3 already applied: no BOS, whitespace moved).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenRequest {
    pub context: Vec<u32>,
    pub continuation: Vec<u32>,
}

/// The arithmetic a backend does for a batch of log-likelihood requests, as it computes them
/// (shared prefixes once, no padding): for `hermes-eval bench`'s computed tokens/s and GFLOP/s.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Work {
    /// Token positions run through the model, each once.
    pub computed_tokens: usize,
    /// Floating-point (or integer multiply-add) operations: 2 per multiply-add of the matmuls,
    /// the attention products and the output head at the scored positions.
    pub flops: f64,
    /// The matmul kernel that ran, as selected at run time (e.g. `q4_1×q8_1 avx2+fma`).
    pub kernel: String,
}

/// Options of generation: greedy by default, sampling when `temperature > 0`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GenOptions {
    pub max_new_tokens: usize,
    /// Token ids that end generation (EOS, `<|im_end|>`).
    pub stop_tokens: Vec<u32>,
    /// Strings that end generation once they appear in the decoded continuation.
    pub stop_strings: Vec<String>,
    /// 0 = greedy (argmax). Above 0, tokens are sampled from softmax(logits / temperature).
    pub temperature: f64,
    /// Seed of sampling. Each prompt's generator is seeded from this seed and the prompt's
    /// tokens, so a sample does not depend on what it is batched with.
    pub seed: u64,
}

/// One generation request as the backend sees it: the prompt's token ids and where it comes
/// from (task and document), for backends that answer from records.
#[derive(Debug, Clone, PartialEq)]
pub struct GenPrompt {
    pub ids: Vec<u32>,
    pub task: String,
    pub doc_id: usize,
}

/// What identifies the numbers a model produces: the backend, its weights (or server), how they
/// are computed and the tokenizer. The request cache is keyed by all of it, and the results
/// record it, so two models that differ in any field never share cached answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// `candle`, `scripted`, `server`, …
    pub backend: String,
    /// `gguf`, `safetensors`, `awq`, `openai-completions`, …
    pub format: String,
    /// sha256 of every weight file (empty for backends without local weights).
    pub weights_sha256: Vec<String>,
    /// How the numbers are computed (dtype, llama.cpp arithmetic, server identity).
    pub compute: String,
    /// sha256 of the tokenizer's serialized form.
    pub tokenizer_sha256: String,
}

impl ModelIdentity {
    /// Hex sha256 over every field: the request cache's model key.
    pub fn cache_key(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

/// sha256 of a tokenizer's JSON form (what decides the token ids).
pub fn tokenizer_sha256(tok: &tokenizers::Tokenizer) -> String {
    hex::encode(Sha256::digest(
        tok.to_string(false).unwrap_or_default().as_bytes(),
    ))
}

pub trait LanguageModel {
    /// Short name used for report directories (`reports/<name>/`).
    fn name(&self) -> &str;
    fn tokenizer(&self) -> &tokenizers::Tokenizer;
    /// Maximum input length in tokens (TASKS_SPEC §1.3 step 4).
    fn max_length(&self) -> usize;
    /// Score a batch of requests, possibly of many documents. The engine orders them so that
    /// requests sharing a context are adjacent, and bounds the batch by `--batch-size`; the
    /// backend computes a shared prefix once. The result of a request never depends on the
    /// other requests of the batch.
    fn loglikelihood(&mut self, requests: &[TokenRequest]) -> Result<Vec<Loglik>>;
    /// Generation for each prompt (greedy unless `opts.temperature > 0`), batched; returns the
    /// generated token ids (stop token excluded). A prompt's output does not depend on the other
    /// prompts of the call.
    fn generate(&mut self, prompts: &[GenPrompt], opts: &GenOptions) -> Result<Vec<Vec<u32>>>;
    /// Token ids that end a generation (EOS, end of turn).
    fn eos_token_ids(&self) -> Vec<u32>;
    /// The model's own chat template, if it ships one (the engine falls back to ChatML).
    fn chat_template(&self) -> Result<Option<ChatTemplate>>;
    /// What the cache key and the results record.
    fn identity(&self) -> &ModelIdentity;
    /// Everything else worth recording about what was loaded (paths, architecture, types).
    fn details(&self) -> serde_json::Value;
    /// Why this model cannot score log-likelihood requests, when it cannot (a server without
    /// prompt log-probabilities). The run refuses such a model before any work when a selected
    /// task needs scores; generation tasks still run.
    fn scoring_refusal(&self) -> Option<String> {
        None
    }
    /// What scoring `requests` computes, where the backend knows (in-process models).
    fn work(&self, _requests: &[TokenRequest]) -> Option<Work> {
        None
    }
}

/// How a model is loaded and run (the options every backend may read).
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Compute GGUF weights dequantized to f32 instead of llama.cpp's quantized arithmetic.
    pub dequantize: bool,
    /// dtype for dense safetensors weights.
    pub dtype: candle_core::DType,
    /// tokenizer to use instead of the model's own (with `server`: the model's tokenizer, a
    /// tokenizer.json, model directory or .gguf, required).
    pub tokenizer: Option<PathBuf>,
    /// Score and generate through these OpenAI-compatible servers; the model spec is then the
    /// served model name.
    pub server: Option<server::ServerOptions>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            dequantize: false,
            dtype: candle_core::DType::F32,
            tokenizer: None,
            server: None,
        }
    }
}

/// Open the model a spec names: with `opts.server`, the served model of that name; else
/// `scripted:` (the deterministic test model), `replay:<file>` (recorded completions), else a
/// `.gguf` file, a Hugging Face directory or a hub id for the in-process candle backend.
pub fn open(spec: &str, opts: &OpenOptions) -> Result<Box<dyn LanguageModel>> {
    if let Some(s) = &opts.server {
        let tok = opts.tokenizer.as_deref().ok_or_else(|| {
            Error::model(
                "--server needs --tokenizer (the model's tokenizer.json, model directory or \
                 .gguf): requests are tokenized here, not by the server",
            )
        })?;
        return Ok(Box::new(server::ServerLm::open(spec, s, tok)?));
    }
    if let Some(rest) = spec.strip_prefix("scripted:") {
        return Ok(Box::new(scripted::ScriptedLm::open(rest, false)?));
    }
    if let Some(rest) = spec.strip_prefix("replay:") {
        return Ok(Box::new(scripted::ScriptedLm::open(rest, true)?));
    }
    if spec.is_empty() {
        return Err(Error::model("empty model spec"));
    }
    Ok(Box::new(candle_lm::CandleLm::open(spec, opts)?))
}

pub mod arch;
mod arith;
pub mod candle_lm;
pub mod config;
pub mod export;
pub mod ggml;
pub mod gguf;
pub mod llama;
pub mod load;
mod qgroup;
pub mod qmatmul;
pub mod scripted;
pub mod server;
pub mod spm_model;
pub mod tokenizer;
pub mod torch_sum;
pub mod validate;
