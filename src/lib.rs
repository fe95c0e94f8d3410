//! hermes-eval: evaluate chat LLMs the way the Nous Research Hermes model cards do.
//!
//! Data flows one way, and the modules follow it:
//!
//! ```text
//! tasks/*.toml ─▶ tasks (Task) ─▶ data (rows) ─▶ doc (Doc: requests, chat messages)
//!   ─▶ engine (tokenize per TASKS_SPEC §1.3, chat template, cache, scheduling)
//!   ─▶ model (one interface, a file per backend: log-likelihoods / generations)
//!   ─▶ tasks' scorers (Score per doc) ─▶ metrics ─▶ report (card tables, results JSON, samples)
//! ```
//!
//! `run` orchestrates a run (several models, comparison gate), `shard` splits one across
//! machines and merges it back; `cli` only parses arguments.
pub mod awq;
pub mod bench;
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
pub mod limits;
pub mod lock;
pub mod metrics;
pub mod model;
pub mod progress;
pub mod py;
pub mod quantize;
pub mod report;
pub mod run;
pub mod shard;
pub mod tasks;
