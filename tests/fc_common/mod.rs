//! Shared test helpers: a byte-level BPE tokenizer built in code, the fixtures, and chat tasks
//! run through the one pipeline with recorded completions (`replay:`).
#![allow(dead_code)]
use std::path::{Path, PathBuf};

pub const SPECIALS: &[&str] = &["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>"];

/// Byte-level BPE with the 256 byte symbols and no merges, plus ChatML special tokens.
pub fn byte_tokenizer() -> tokenizers::Tokenizer {
    hermes_eval::model::scripted::byte_tokenizer_with(SPECIALS).unwrap()
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fc")
        .join(name)
}

/// The hub mirror, if present.
pub fn hub() -> Option<PathBuf> {
    let p = std::env::var_os("HERMES_EVAL_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/hub"));
    p.join("datasets").is_dir().then_some(p)
}

/// A mirror holding the fixture rows as `datasets/<dataset>/train.jsonl`.
pub fn fixture_mirror(dir: &Path, dataset: &str, fixture_name: &str) -> PathBuf {
    let d = dir.join("datasets").join(dataset);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(fixture(fixture_name), d.join("train.jsonl")).unwrap();
    dir.to_path_buf()
}

/// Run chat task `name` on the documents of `mirror` through the engine, answering each
/// document with `reply(doc)` through the replay backend. Returns the engine's run.
pub fn run_chat_task(
    name: &str,
    mirror: &Path,
    parser: Option<hermes_eval::fc::ParserMode>,
    reply: impl Fn(&hermes_eval::doc::Doc) -> String,
) -> hermes_eval::engine::TaskRun {
    use hermes_eval::engine::{evaluate, EngineOptions, RequestCache};
    let reg = hermes_eval::tasks::Registry::builtin().unwrap();
    let task = reg
        .task(name)
        .unwrap()
        .with_overrides(parser, None, None)
        .unwrap();
    let docs = task
        .load_docs(
            &hermes_eval::data::DataSource::mirror_only(mirror.to_path_buf()),
            None,
        )
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("answers.jsonl");
    let lines: Vec<String> = docs
        .iter()
        .map(|d| {
            serde_json::json!({"task": name, "doc_id": d.id, "completion": reply(d)}).to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let mut model =
        hermes_eval::model::open(&format!("replay:{}", file.display()), &Default::default())
            .unwrap();
    let chat = hermes_eval::run::chat_template_for(model.as_ref(), None).unwrap();
    let opts = EngineOptions {
        batch_size: 64,
        max_new_tokens: Some(1 << 16),
        ..EngineOptions::default()
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    evaluate(
        model.as_mut(),
        &task,
        docs,
        &mut RequestCache::disabled(),
        &chat,
        &opts,
        &stop,
        |_| {},
    )
    .unwrap()
}

/// The documents of a run that failed, with their reasons.
pub fn failures(run: &hermes_eval::engine::TaskRun) -> Vec<(usize, Option<String>)> {
    run.scores
        .iter()
        .zip(&run.docs)
        .filter(|(s, _)| s.metrics.values().any(|v| *v == 0.0))
        .map(|(s, d)| (d.id, s.reason.clone()))
        .collect()
}

pub fn passed(run: &hermes_eval::engine::TaskRun) -> usize {
    run.scores
        .iter()
        .filter(|s| s.metrics.values().all(|v| *v == 1.0))
        .count()
}
