//! Function-calling and JSON-mode evaluation (TASKS_SPEC §7–8): prompts, assistant extraction,
//! tool-call parsing (card XML parser and later regex parser), judging with Python `==`
//! semantics, BFCL possible-answer matching, JSON-schema validation, runners and reports.
pub mod bfcl;
pub mod data;
pub mod judge;
pub mod parse;
pub mod prompt;
pub mod pyeq;
pub mod run;
pub mod xml;

pub use data::{FcSample, FcTarget, JsonEvalKind, JsonSample};
pub use judge::{Failure, FailureReason};
pub use parse::ParserMode;
pub use prompt::SchemaOrder;
pub use run::{
    run_fc, run_fc_named, run_json, run_json_named, score_fc, score_json, select_chat_template,
    FcArgs, FcOptions, FcReport, GenArgs, JsonArgs, SampleRecord,
};
