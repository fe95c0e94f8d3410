//! Model backends behind one narrow interface: log-likelihoods of token continuations and greedy
//! generation. Backends: candle Llama/Mistral on safetensors (f32/f16/bf16) and on GGUF
//! (quantized weights × 8-bit activations like llama.cpp, or dequantized to f32).
use crate::doc::Loglik;
use crate::error::Result;

/// A tokenized log-likelihood request (TASKS_SPEC §1.3 already applied: no BOS, whitespace moved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub context: Vec<u32>,
    pub continuation: Vec<u32>,
}

/// Options of generation: greedy by default, sampling when `temperature > 0`.
#[derive(Debug, Clone, Default)]
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

pub trait LanguageModel {
    /// Short name used for report directories (`reports/<name>/`).
    fn name(&self) -> &str;
    fn tokenizer(&self) -> &tokenizers::Tokenizer;
    /// Maximum input length in tokens (TASKS_SPEC §1.3 step 4).
    fn max_length(&self) -> usize;
    /// Score one group of requests. Requests of a group usually share a context (one document's
    /// choices); the backend computes that shared prefix once. The result of a request never
    /// depends on the other requests of its group.
    fn loglikelihood(&mut self, group: &[TokenRequest]) -> Result<Vec<Loglik>>;
    /// Generation for each prompt (greedy unless `opts.temperature > 0`), batched; returns the
    /// generated token ids (stop token excluded). A prompt's output does not depend on the other
    /// prompts of the call.
    fn generate(&mut self, prompts: &[Vec<u32>], opts: &GenOptions) -> Result<Vec<Vec<u32>>>;
    /// What was loaded: source, sha256 of the weights, dtype, compute path.
    fn fingerprint(&self) -> serde_json::Value;
}

pub mod candle_lm;
pub mod config;
pub mod export;
pub mod ggml;
pub mod llama;
pub mod load;
pub mod qmatmul;
pub mod tokenizer;
pub mod torch_sum;
