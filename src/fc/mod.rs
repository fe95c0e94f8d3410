//! Function-calling and JSON-mode evaluation (TASKS_SPEC §7–8): prompts, assistant extraction,
//! tool-call parsing (card XML parser and later regex parser), judging with Python `==`
//! semantics, BFCL possible-answer matching, JSON-schema validation. The tasks that use them are
//! task files (`tasks/func_calling_eval.toml`, `bfcl_*.toml`, `json_mode_eval.toml`, …) run by the
//! one engine.
pub mod bfcl;
pub mod data;
pub mod judge;
pub mod parse;
pub mod prompt;
pub mod score;
pub mod xml;

pub use data::{FcSample, FcTarget, JsonEvalKind, JsonSample};
pub use judge::{Failure, FailureReason};
pub use parse::ParserMode;
pub use prompt::SchemaOrder;
pub use score::{score_fc, score_json, select_chat_template, SampleRecord};
