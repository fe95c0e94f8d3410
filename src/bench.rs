//! `hermes-eval bench`: throughput of one model on one task (documents/s, request tokens/s,
//! peak memory), as JSON.
use crate::data::DataSource;
use crate::engine::{encode_pair, evaluate, EngineOptions, RequestCache};
use crate::error::{Error, Result};
use crate::model::OpenOptions;
use crate::progress::Progress;
use crate::report;
use crate::tasks::Registry;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

/// Score the first `limit` documents of `task` without the request cache and write the
/// measurement to `json`.
pub fn bench(
    spec: &str,
    open: &OpenOptions,
    task: &str,
    limit: usize,
    batch_size: usize,
    data_dir: Option<PathBuf>,
    json: &Path,
) -> Result<serde_json::Value> {
    let reg = Registry::builtin()?;
    let task = reg
        .task(task)
        .ok_or_else(|| Error::task(task, "unknown task"))?;
    let docs = task.load_docs(&DataSource::new(data_dir), Some(limit))?;
    let mut model = crate::run::open_model(spec, open)?;
    let mut tokens = 0usize;
    for d in &docs {
        for r in &d.requests {
            let t = encode_pair(model.tokenizer(), r, None)?;
            tokens += t.context.len() + t.continuation.len();
        }
    }
    let chat = crate::run::chat_template_for(model.as_ref(), None)?;
    let n = docs.len();
    let stop = AtomicBool::new(false);
    let opts = EngineOptions {
        batch_size,
        ..EngineOptions::default()
    };
    let t = Instant::now();
    let mut prog = Progress::new(&format!("bench {}", task.name), n);
    let run = evaluate(
        model.as_mut(),
        task,
        docs,
        &mut RequestCache::disabled(),
        &chat,
        &opts,
        &stop,
        |d| prog.set(d),
    )?;
    prog.finish();
    let secs = t.elapsed().as_secs_f64();
    let metrics: Vec<_> = run.scores.iter().map(|s| s.metrics.clone()).collect();
    let acc = report::aggregate(task, &metrics);
    let v = serde_json::json!({
        "task": task.name, "documents": n, "seconds": secs,
        "documents_per_s": n as f64 / secs,
        "request_tokens_per_s": tokens as f64 / secs,
        "request_tokens": tokens,
        "batch_size": batch_size,
        "threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "peak_rss_mb": peak_rss_mb(),
        "model": crate::run::model_record(model.as_ref()),
        "metrics": acc.metrics.iter().map(|(m, v, s)| serde_json::json!({"metric": m, "value": v, "stderr": s})).collect::<Vec<_>>(),
    });
    if let Some(dir) = json.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    }
    std::fs::write(json, serde_json::to_string_pretty(&v)?).map_err(|e| Error::file(json, e))?;
    Ok(v)
}
