//! hermes-eval: evaluate chat LLMs the way the Nous Research Hermes model cards do.
//!
//! Data flows one way, and the modules follow it:
//!
//! ```text
//! tasks/*.toml ─▶ tasks (TaskDef) ─▶ data (rows) ─▶ doc (Doc + string requests)
//!   ─▶ engine (tokenize per TASKS_SPEC §1.3, schedule) ─▶ model (log-likelihoods)
//!   ─▶ metrics (per-doc scores, aggregation) ─▶ report (card tables, results JSON, samples)
//! ```
pub mod awq;
pub mod chat;
pub mod cli;
pub mod compare;
pub mod convert;
pub mod data;
pub mod doc;
pub mod engine;
pub mod error;
pub mod fc;
pub mod ifeval;
pub mod metrics;
pub mod model;
pub mod pystr;
pub mod quantize;
pub mod report;
pub mod tasks;
