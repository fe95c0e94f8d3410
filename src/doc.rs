//! The one normalised document type every benchmark is turned into, and the one per-document
//! score every scorer returns. Everything after the data layer sees only `Doc`.
use crate::chat::Message;
use crate::fc::{FcSample, JsonSample};
use serde::Serialize;
use std::collections::BTreeMap;

/// A log-likelihood request as strings, exactly as the reference harness builds it
/// (`context`, `continuation` with its leading space). Tokenization (TASKS_SPEC §1.3) happens in
/// the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoglikRequest {
    pub context: String,
    pub continuation: String,
}

/// A generation request on a raw prompt (BigBench exact_str_match): greedy from the unstripped
/// context (TASKS_SPEC §1.4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenRequest {
    pub context: String,
    /// Stop strings (the EOS string is always a stop).
    pub until: Vec<String>,
    pub max_new_tokens: usize,
}

/// A chat document: messages the engine renders through the model's chat template, and what the
/// completion is judged against (tools + expected calls, or schema + expected object).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChatDoc {
    /// Function calling: system prompt with `<tools>`, judged on `<tool_call>` blocks.
    ToolCalls(FcSample),
    /// JSON mode / schema compliance: judged against the schema (and the expected object).
    Json(JsonSample),
    /// Any other chat prompt judged by a named scorer from the row (IFEval).
    Prompt { messages: Vec<Message> },
}

impl ChatDoc {
    pub fn messages(&self) -> &[Message] {
        match self {
            ChatDoc::ToolCalls(s) => &s.messages,
            ChatDoc::Json(s) => &s.messages,
            ChatDoc::Prompt { messages } => messages,
        }
    }
}

/// A chat generation request: the conversation and its decoding limits.
#[derive(Debug, Clone, Serialize)]
pub struct ChatRequest {
    pub doc: ChatDoc,
    pub max_new_tokens: usize,
}

/// One evaluation document.
#[derive(Debug, Clone, Serialize)]
pub struct Doc {
    /// Position in evaluation order (`doc_id`): the row index in dataset order, the position in
    /// the shuffled list with `--doc-order harness`.
    pub id: usize,
    /// Index of the row in its split (equal to `id` unless `--doc-order harness`).
    #[serde(default)]
    pub src_index: usize,
    /// The dataset row as read (for the samples file and doc hashes).
    pub row: serde_json::Value,
    /// Choice strings without the leading space (acc_norm divides by their length in chars).
    pub choices: Vec<String>,
    /// Gold choice indices (AGIEval may list several; most tasks have one).
    pub gold: Vec<usize>,
    /// Log-likelihood requests in the order the scorer expects.
    pub requests: Vec<LoglikRequest>,
    /// Optional raw-prompt generation request, scored after the log-likelihood ones.
    pub generation: Option<GenRequest>,
    /// Optional chat generation request (function calling, JSON mode, IFEval).
    pub chat: Option<ChatRequest>,
    /// The target as lm-evaluation-harness prints it in samples (`target`).
    pub target: String,
}

/// What the model returned for one log-likelihood request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Loglik {
    /// Sum of the continuation tokens' log-probabilities.
    pub logprob: f64,
    /// Whether every continuation token was the argmax.
    pub is_greedy: bool,
    /// The same sum in f64 arithmetic throughout, where the backend has it (the candle backends,
    /// whose `logprob` is torch's float32 sum: see `model::torch_sum`). Metrics use `logprob`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprob_f64: Option<f64>,
}

/// What the model produced for one document: log-likelihoods of its requests and the decoded
/// completion of its generation (raw or chat), if any.
#[derive(Debug, Clone, Default)]
pub struct Responses {
    pub lls: Vec<Loglik>,
    /// The completion, stop strings cut (raw generation) or as decoded (chat).
    pub generation: Option<String>,
    /// Chat: the rendered prompt as decoded from its tokens (special tokens kept).
    pub prompt: Option<String>,
    /// Chat: the template's EOS token (the assistant message ends there).
    pub eos_token: Option<String>,
}

/// One document's score: its metrics, the extracted answer and, when it failed, why
/// (inspect_ai's `Score`). Every scorer returns one.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Score {
    pub metrics: BTreeMap<String, f64>,
    /// The answer extracted from the model's output: the chosen index for multiple choice, the
    /// post-processed string for exact match, the parsed calls / object for chat tasks.
    pub answer: serde_json::Value,
    /// Why the document failed (`None` when it passed or the task has no such notion).
    pub reason: Option<String>,
    /// Judge details (chat tasks): extraction, parsing, each failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}
