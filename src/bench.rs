//! `hermes-eval bench`: throughput of one model on one task, as JSON: documents/s, request
//! tokens/s, computed tokens/s (each position the model runs once: shared prefixes once, no
//! padding), achieved GFLOP/s against this machine's f32 GEMM peak (a short probe), the kernel
//! that ran, the CPU features detected, peak memory.
use crate::data::DataSource;
use crate::engine::{encode_pair, evaluate, EngineOptions, RequestCache};
use crate::error::{Error, Result};
use crate::model::OpenOptions;
use crate::progress::Progress;
use crate::report;
use crate::tasks::Registry;
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

/// The CPU features the kernels select on, as detected at run time.
fn cpu_features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut v = vec![];
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$(if std::is_x86_feature_detected!($f) { v.push($f); })*};
        }
        probe!(
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vnni",
            "avxvnni"
        );
    }
    v
}

/// This machine's f32 matrix-product rate in GFLOP/s with the run's threads: the best of a
/// few ~30 ms rounds of a `[256 × 1024] · [1024 × 1024]` candle matmul (the f32 path's GEMM;
/// ~10 products a round). Short, so that it adds little to the CPU time of the process that
/// `scripts/bench-peers.sh` compares (~0.2 CPU-seconds on 2 threads).
pub fn gemm_peak_gflops() -> Result<f64> {
    let (m, k, n) = (256usize, 1024usize, 1024usize);
    let a = Tensor::ones((m, k), candle_core::DType::F32, &Device::Cpu)?;
    let b = Tensor::ones((k, n), candle_core::DType::F32, &Device::Cpu)?;
    a.matmul(&b)?; // warm-up (thread pool, pages)
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let mut iters = 0usize;
        while t.elapsed().as_secs_f64() < 0.03 {
            a.matmul(&b)?;
            iters += 1;
        }
        let rate = 2.0 * (m * k * n * iters) as f64 / t.elapsed().as_secs_f64() / 1e9;
        best = best.max(rate);
    }
    Ok(best)
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
    // What the backend computes, counted per document (its requests share their context).
    let mut work: Option<crate::model::Work> = None;
    for d in &docs {
        let reqs = d
            .requests
            .iter()
            .map(|r| encode_pair(model.tokenizer(), r, None))
            .collect::<Result<Vec<_>>>()?;
        tokens += reqs
            .iter()
            .map(|t| t.context.len() + t.continuation.len())
            .sum::<usize>();
        if let Some(w) = model.work(&reqs) {
            let acc = work.get_or_insert_with(|| crate::model::Work {
                kernel: w.kernel.clone(),
                ..Default::default()
            });
            acc.computed_tokens += w.computed_tokens;
            acc.flops += w.flops;
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
    let peak = gemm_peak_gflops()?;
    let achieved = work.as_ref().map(|w| w.flops / secs / 1e9);
    let metrics: Vec<_> = run.scores.iter().map(|s| s.metrics.clone()).collect();
    let acc = report::aggregate(task, &metrics);
    let v = serde_json::json!({
        "task": task.name, "documents": n, "seconds": secs,
        "documents_per_s": n as f64 / secs,
        "request_tokens_per_s": tokens as f64 / secs,
        "request_tokens": tokens,
        "computed_tokens": work.as_ref().map(|w| w.computed_tokens),
        "computed_tokens_per_s": work.as_ref().map(|w| w.computed_tokens as f64 / secs),
        "gflop": work.as_ref().map(|w| w.flops / 1e9),
        "achieved_gflops": achieved,
        "peak_gflops_f32_gemm_probe": peak,
        "share_of_peak": achieved.map(|a| a / peak),
        "kernel": work.as_ref().map(|w| w.kernel.clone()),
        "cpu_features": cpu_features(),
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
