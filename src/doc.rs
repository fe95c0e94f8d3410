//! The one normalised document type every benchmark is turned into. Everything after the data
//! layer sees only `Doc`.
use serde::{Deserialize, Serialize};

/// A log-likelihood request as strings, exactly as the reference harness builds it
/// (`context`, `continuation` with its leading space). Tokenization (TASKS_SPEC §1.3) happens in
/// the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoglikRequest {
    pub context: String,
    pub continuation: String,
}

/// A greedy-generation request (BigBench exact_str_match, function calling).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenRequest {
    pub context: String,
    /// Stop strings (the EOS string is always a stop).
    pub until: Vec<String>,
    pub max_new_tokens: usize,
}

/// One evaluation document.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Optional generation request, scored after the log-likelihood ones.
    pub generation: Option<GenRequest>,
    /// The target as lm-evaluation-harness prints it in samples (`target`).
    pub target: String,
}

/// What the model returned for one log-likelihood request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Loglik {
    /// Sum of the continuation tokens' log-probabilities.
    pub logprob: f64,
    /// Whether every continuation token was the argmax.
    pub is_greedy: bool,
}
