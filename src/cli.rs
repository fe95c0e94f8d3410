//! Command-line interface: parse (clap), validate, dispatch. Errors surface as `anyhow` chains.
use crate::data::DataSource;
use crate::engine::{evaluate, RequestCache};
use crate::error::Error;
use crate::model::candle_lm::CandleLm;
use crate::model::load::{LoadOptions, QuantMode};
use crate::model::LanguageModel;
use crate::report;
use crate::tasks::{Registry, Task};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "hermes-eval",
    version,
    about = "Evaluate chat LLMs the way the Nous Research Hermes model cards do"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run log-likelihood (and greedy) tasks and print the model-card tables.
    Run(RunArgs),
    /// List tasks and suites with versions, datasets and metrics.
    List(TasksDirArg),
    /// Check every task file; prints each problem on one line.
    Validate(TasksDirArg),
    /// Rebuild the tables and averages from saved samples, without the model.
    Report {
        /// A results directory (samples_*.jsonl) or one samples file.
        path: PathBuf,
        #[command(flatten)]
        tasks: TasksDirArg,
    },
    /// Export a GGUF model as a Hugging Face directory (f32 safetensors, config, tokenizer).
    Export { gguf: PathBuf, out: PathBuf },
    /// Measure throughput (documents/s, tokens/s, peak memory) and write JSON.
    Bench(BenchArgs),
    /// Function-calling evaluation (Hermes <tools>/<tool_call> format).
    Fc {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        args: crate::fc::FcArgs,
    },
    /// Compare two runs per task with paired tests; a CI gate (exit 0 pass, 1 regression, 2 error).
    Compare(crate::compare::CompareArgs),
    /// Write a re-quantized GGUF (q8_0, q4_0, q4_1, q4_k, q5_k, q6_k) with candle's quantizers.
    Quantize(crate::quantize::QuantizeArgs),
    /// Print the token ids of each input line (of --file, or stdin) as JSON, with the tokenizer
    /// the engine uses (no BOS, as log-likelihood requests are encoded).
    Tokenize {
        /// A .gguf file, a Hugging Face model directory, or a hub id.
        #[arg(long)]
        model: String,
        /// tokenizer.json to use instead of the model's.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Read the lines from this file instead of stdin.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// JSON-mode / schema-compliance evaluation.
    Json {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        args: crate::fc::JsonArgs,
    },
}

#[derive(Args, Clone)]
struct TasksDirArg {
    /// Load task files from this directory instead of the built-in ones.
    #[arg(long)]
    tasks_dir: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct ModelArgs {
    /// A .gguf file, a Hugging Face model directory, or a hub id (org/name or org/name/file.gguf).
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub opts: ModelOpts,
}

/// How a model is loaded and run (shared by every command that loads one).
#[derive(Args, Clone)]
pub struct ModelOpts {
    /// Compute GGUF weights dequantized to f32 instead of llama.cpp's quantized arithmetic.
    #[arg(long)]
    pub dequantize: bool,
    /// dtype for dense safetensors weights: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// tokenizer.json to use instead of the model's (required for SentencePiece GGUFs).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args)]
struct RunArgs {
    /// A .gguf file, a Hugging Face model directory, or a hub id. Repeat it to evaluate several
    /// variants in one command: the first is the baseline, each later one is compared with it.
    #[arg(long, required = true)]
    model: Vec<String>,
    #[command(flatten)]
    model_opts: ModelOpts,
    /// A suite: gpt4all, agieval, bigbench, truthfulqa or nous (all four).
    #[arg(long)]
    suite: Option<String>,
    /// Comma-separated task names (globs allowed).
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// Only the first N documents of each task, in dataset order.
    #[arg(long)]
    limit: Option<usize>,
    /// Continuation rows per forward pass.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Output directory (default: reports/<model-name>/).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Local dataset mirror laid out like the hub (datasets/<org>/<name>/<config>/<split>-*.parquet).
    #[arg(long, env = "HERMES_EVAL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    tasks_dir: TasksDirArg,
    /// Recompute every request even if it is in the request cache.
    #[arg(long)]
    no_cache: bool,
    /// With several --model: fail (exit 1) when a task metric of a later model drops by more
    /// than this many points below the first model's and the drop is significant at --alpha.
    #[arg(long, value_name = "POINTS")]
    max_drop: Option<f64>,
    /// With several --model: the same gate on suite averages.
    #[arg(long, value_name = "POINTS")]
    max_avg_drop: Option<f64>,
    /// With several --model: significance level of the paired tests.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, default_value = "hellaswag")]
    task: String,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[arg(long, env = "HERMES_EVAL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Where to write the JSON result.
    #[arg(long, default_value = "reports/bench.json")]
    json: PathBuf,
}

pub fn main() -> Result<i32> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(a) => run(a),
        Cmd::List(t) => {
            print!("{}", registry(&t)?.listing());
            Ok(0)
        }
        Cmd::Validate(t) => {
            let problems = crate::tasks::validate(t.tasks_dir.as_deref())?;
            for p in &problems {
                println!("{p}");
            }
            if problems.is_empty() {
                println!("all task files are valid");
                Ok(0)
            } else {
                Ok(1)
            }
        }
        Cmd::Report { path, tasks } => {
            let reg = registry(&tasks)?;
            let results = report::rescore(&path, &reg)?;
            print!("{}", report::render_report(&reg, &results));
            Ok(0)
        }
        Cmd::Export { gguf, out } => {
            crate::model::export::gguf_to_hf(&gguf, &out)?;
            println!("wrote {}", out.display());
            Ok(0)
        }
        Cmd::Bench(b) => bench(b),
        Cmd::Compare(c) => match crate::compare::run_compare(&c) {
            Ok(code) => Ok(code),
            Err(e) => {
                eprintln!("hermes-eval: error: {e:#}");
                Ok(2)
            }
        },
        Cmd::Quantize(q) => crate::quantize::run_quantize(&q).map(|_| 0),
        Cmd::Fc { model, args } => fc(model, args),
        Cmd::Json { model, args } => json(model, args),
        Cmd::Tokenize {
            model,
            tokenizer,
            file,
        } => tokenize(&model, tokenizer, file.as_deref()),
    }
}

fn tokenize(model: &str, tokenizer: Option<PathBuf>, file: Option<&Path>) -> Result<i32> {
    let opts = LoadOptions {
        tokenizer,
        ..LoadOptions::default()
    };
    let tok = crate::model::load::load_tokenizer(model, &opts)
        .with_context(|| format!("cannot load the tokenizer of `{model}`"))?;
    let out = std::io::stdout().lock();
    match file {
        Some(f) => {
            let r = std::fs::File::open(f).with_context(|| format!("{}", f.display()))?;
            crate::model::tokenizer::tokenize_lines(&tok, std::io::BufReader::new(r), out)?
        }
        None => crate::model::tokenizer::tokenize_lines(&tok, std::io::stdin().lock(), out)?,
    };
    Ok(0)
}

fn registry(t: &TasksDirArg) -> Result<Registry> {
    Ok(match &t.tasks_dir {
        Some(d) => Registry::from_dir(d)?,
        None => Registry::builtin()?,
    })
}

fn set_threads(n: Option<usize>) {
    let n = n.unwrap_or_else(num_cpus::get).max(1);
    // candle's gemm reads RAYON_NUM_THREADS; our kernels use the global rayon pool.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
}

pub fn load_model(m: &ModelArgs) -> Result<CandleLm> {
    load_model_with(&m.model, &m.opts)
}

fn load_model_with(spec: &str, m: &ModelOpts) -> Result<CandleLm> {
    set_threads(m.threads);
    let dtype = match m.dtype.as_str() {
        "f32" => candle_core::DType::F32,
        "f16" => candle_core::DType::F16,
        "bf16" => candle_core::DType::BF16,
        other => bail!("--dtype {other}: expected f32, f16 or bf16"),
    };
    let opts = LoadOptions {
        quant_mode: if m.dequantize {
            QuantMode::Dequantize
        } else {
            QuantMode::Native
        },
        dtype,
        tokenizer: m.tokenizer.clone(),
    };
    let spin = spinner(&format!("loading {spec}"));
    let t = Instant::now();
    let model =
        CandleLm::load(spec, &opts).with_context(|| format!("cannot load model `{spec}`"))?;
    spin.finish_and_clear();
    eprintln!(
        "loaded {} ({}) in {:.1}s",
        model.name,
        model.fingerprint["format"].as_str().unwrap_or("?"),
        t.elapsed().as_secs_f64()
    );
    Ok(model)
}

fn spinner(msg: &str) -> ProgressBar {
    let pb = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}

/// A progress bar with ETA on a terminal; plain lines (every ~10 %) otherwise.
struct Progress {
    bar: ProgressBar,
    label: String,
    total: usize,
    plain: bool,
    last: usize,
    start: Instant,
}

impl Progress {
    fn new(label: &str, total: usize) -> Self {
        let plain = !std::io::stderr().is_terminal();
        let bar = if plain {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total as u64)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>24} [{bar:30}] {pos}/{len} docs  {per_sec}  ETA {eta}",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        bar.set_message(label.to_string());
        Self {
            bar,
            label: label.into(),
            total,
            plain,
            last: 0,
            start: Instant::now(),
        }
    }
    fn set(&mut self, done: usize) {
        self.bar.set_position(done as u64);
        if self.plain
            && (done == self.total
                || done * 10 / self.total.max(1) > self.last * 10 / self.total.max(1))
        {
            let rate = done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
            let eta = (self.total - done) as f64 / rate.max(1e-9);
            eprintln!(
                "{}: {done}/{} docs ({rate:.1} docs/s, ETA {eta:.0}s)",
                self.label, self.total
            );
        }
        self.last = done;
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn install_ctrlc() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if s.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: finishing the current document and saving finished work (Ctrl-C again to quit now)");
    });
    stop
}

fn run(a: RunArgs) -> Result<i32> {
    if a.suite.is_none() && a.tasks.is_empty() {
        bail!("name what to run: --suite gpt4all|agieval|bigbench|truthfulqa|nous or --tasks a,b");
    }
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let multi = a.model.len() > 1;
    if !multi && (a.max_drop.is_some() || a.max_avg_drop.is_some()) {
        bail!("--max-drop / --max-avg-drop compare models: give at least two --model");
    }
    if !(a.alpha > 0.0 && a.alpha < 1.0) {
        bail!("--alpha must be in (0, 1), got {}", a.alpha);
    }
    let reg = registry(&a.tasks_dir)?;
    let tasks: Vec<&Task> = reg.resolve(a.suite.as_deref(), &a.tasks)?;
    let data = DataSource::new(a.data_dir.clone());
    // Load every task's documents before any model, so a data problem fails fast.
    let mut all_docs = vec![];
    for t in &tasks {
        let pb = spinner(&format!("loading data for {}", t.name));
        let docs = t.load_docs(&data, a.limit)?;
        pb.finish_and_clear();
        all_docs.push(docs);
    }
    let stop = install_ctrlc();
    let root = a.output.clone().unwrap_or_else(|| PathBuf::from("reports"));
    let mut dirs: Vec<PathBuf> = vec![];
    for spec in &a.model {
        let mut model = load_model_with(spec, &a.model_opts)?;
        model.batch_size = a.batch_size;
        let out = match (&a.output, multi) {
            (Some(dir), false) => dir.clone(),
            _ => {
                // Several variants may share a file name; keep their directories apart.
                let base = sanitize(model.name());
                let mut out = root.join(&base);
                let mut k = 2;
                while dirs.contains(&out) {
                    out = root.join(format!("{base}-{k}"));
                    k += 1;
                }
                out
            }
        };
        if multi {
            eprintln!("== {spec} -> {}", out.display());
        }
        let finished = run_model(&a, &reg, &tasks, &all_docs, &mut model, &out, &stop)?;
        if !finished {
            return Err(Error::Interrupted.into());
        }
        dirs.push(out);
    }
    if !multi {
        return Ok(0);
    }
    // Exit codes as `compare`: 0 pass, 1 regression, 2 when the runs cannot be compared.
    match compare_variants(&a, &dirs, &root.join("comparison")) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("hermes-eval: error: {e:#}");
            Ok(2)
        }
    }
}

/// Evaluate one model on every task and write its results into `out`. Returns false when the
/// run was interrupted (the finished documents are written and cached).
fn run_model(
    a: &RunArgs,
    reg: &Registry,
    tasks: &[&Task],
    all_docs: &[Vec<crate::doc::Doc>],
    model: &mut CandleLm,
    out: &Path,
    stop: &AtomicBool,
) -> Result<bool> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut cache = if a.no_cache {
        RequestCache::disabled()
    } else {
        RequestCache::open(&out.join("cache"), &model.fingerprint())?
    };
    let mut results = vec![];
    let mut done_tasks = vec![];
    let mut interrupted = false;
    let t0 = Instant::now();
    for (task, docs) in tasks.iter().zip(all_docs) {
        let mut prog = Progress::new(&task.name, docs.len());
        let run = evaluate(model, task, docs.clone(), &mut cache, stop, |d| prog.set(d))?;
        prog.finish();
        if !run.docs.is_empty() {
            let path = report::write_samples_jsonl(
                out,
                task,
                &run.docs,
                &run.lls,
                &run.generations,
                &run.metrics,
            )?;
            if run.partial {
                eprintln!(
                    "{}: {} documents scored before the interruption, kept in {}",
                    task.name,
                    run.docs.len(),
                    path.display()
                );
            }
        }
        if run.partial {
            interrupted = true;
            break;
        }
        results.push(report::aggregate(task, &run.metrics));
        done_tasks.push(*task);
    }
    if !results.is_empty() {
        let config = serde_json::json!({
            "suite": a.suite, "tasks": tasks.iter().map(|t| &t.name).collect::<Vec<_>>(), "limit": a.limit,
            "batch_size": a.batch_size, "num_fewshot": 0, "data_dir": a.data_dir,
            "hermes_eval_version": env!("CARGO_PKG_VERSION"), "elapsed_s": t0.elapsed().as_secs_f64(),
            "request_cache_hits": cache.hits,
        });
        let rj =
            report::write_results_json(out, &model.fingerprint(), &config, &results, &done_tasks)?;
        let text = report::render_report(reg, &results);
        std::fs::write(out.join("report.md"), &text)?;
        print!("{text}");
        eprintln!(
            "wrote {} and report.md in {}",
            rj.file_name().unwrap().to_string_lossy(),
            out.display()
        );
    }
    if interrupted {
        if let Some(p) = cache.path() {
            eprintln!(
                "finished requests are cached in {}; run the same command again to resume",
                p.display()
            );
        }
    }
    Ok(!interrupted)
}

/// Compare every later variant with the first (paired tests per task), write one comparison
/// (markdown with a section per variant, JSON, one chart per variant) and gate on regressions.
fn compare_variants(a: &RunArgs, dirs: &[PathBuf], out: &Path) -> Result<i32> {
    use crate::compare::{self, plot, report as crep, CompareOptions};
    let opts = CompareOptions {
        alpha: a.alpha,
        max_drop: a.max_drop,
        max_avg_drop: a.max_avg_drop,
        resamples: 10_000,
        seed: 1234,
    };
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut md = String::new();
    let mut all = vec![];
    let mut regressions = 0;
    for (i, cand) in dirs.iter().enumerate().skip(1) {
        let cmp = compare::compare(&dirs[0], cand, &opts)?;
        println!("{}", crep::render_table(&cmp));
        md.push_str(&crep::render_markdown(&cmp));
        md.push('\n');
        plot::write_svg(&cmp, &out.join(format!("comparison-{i}.svg")))?;
        regressions += cmp.regressions();
        all.push(cmp);
    }
    std::fs::write(out.join("comparison.md"), md)?;
    let json = serde_json::json!({
        "baseline": dirs[0], "candidates": &dirs[1..], "regressions": regressions, "comparisons": all,
    });
    std::fs::write(
        out.join("comparison.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    eprintln!(
        "wrote comparison.md, comparison.json and {} chart(s) in {}",
        dirs.len() - 1,
        out.display()
    );
    if regressions > 0 {
        println!(
            "FAIL: {regressions} regression(s) (drop beyond the threshold and significant at alpha = {})",
            a.alpha
        );
        Ok(1)
    } else {
        println!("PASS");
        Ok(0)
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

fn bench(b: BenchArgs) -> Result<i32> {
    let reg = Registry::builtin()?;
    let task = reg
        .task(&b.task)
        .with_context(|| format!("unknown task `{}`", b.task))?;
    let docs = task.load_docs(&DataSource::new(b.data_dir.clone()), Some(b.limit))?;
    let mut model = load_model(&b.model)?;
    model.batch_size = b.batch_size;
    let mut tokens = 0usize;
    for d in &docs {
        for r in &d.requests {
            let t = crate::engine::encode_pair(model.tokenizer(), r, None)?;
            tokens += t.context.len() + t.continuation.len();
        }
    }
    let n = docs.len();
    let stop = AtomicBool::new(false);
    let t = Instant::now();
    let mut prog = Progress::new(&format!("bench {}", task.name), n);
    let run = evaluate(
        &mut model,
        task,
        docs,
        &mut RequestCache::disabled(),
        &stop,
        |d| prog.set(d),
    )?;
    prog.finish();
    let secs = t.elapsed().as_secs_f64();
    let acc = report::aggregate(task, &run.metrics);
    let v = serde_json::json!({
        "task": task.name, "documents": n, "seconds": secs,
        "documents_per_s": n as f64 / secs,
        "request_tokens_per_s": tokens as f64 / secs,
        "request_tokens": tokens,
        "batch_size": b.batch_size,
        "threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "peak_rss_mb": peak_rss_mb(),
        "model": model.fingerprint(),
        "metrics": acc.metrics.iter().map(|(m, v, s)| serde_json::json!({"metric": m, "value": v, "stderr": s})).collect::<Vec<_>>(),
    });
    if let Some(dir) = b.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&b.json, serde_json::to_string_pretty(&v)?)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}

fn chat_template(
    model: &CandleLm,
    override_file: Option<&Path>,
) -> Result<crate::chat::ChatTemplate> {
    let eos = model.eos_token.clone().unwrap_or_default();
    let bos = model
        .llama
        .cfg
        .bos_token_id
        .and_then(|i| model.tokenizer.id_to_token(i))
        .unwrap_or_default();
    let from_model = match &model.chat_template {
        Some(serde_json::Value::String(s)) => Some(crate::chat::ChatTemplate::from_string(
            s.clone(),
            &bos,
            &eos,
        )),
        Some(v) => crate::chat::ChatTemplate::from_tokenizer_config(
            &serde_json::json!({"chat_template": v, "bos_token": bos, "eos_token": eos}),
        )?,
        None => None,
    };
    Ok(crate::fc::select_chat_template(
        override_file,
        from_model,
        &bos,
        &eos,
    )?)
}

/// Write a function-calling / JSON report (default `reports/<model>/`) and print its summary.
fn write_fc_report(
    rep: &crate::fc::FcReport,
    output: Option<&Path>,
    model_name: &str,
) -> Result<i32> {
    let out = output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("reports").join(sanitize(model_name)));
    let files = rep.write(&out)?;
    print!("{}", rep.summary_markdown());
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    eprintln!("wrote {}", names.join(", "));
    Ok(0)
}

/// The model and chat template of `fc` / `json`, batching generation by `--batch-size`.
fn load_chat_model(
    m: &ModelArgs,
    gen: &crate::fc::GenArgs,
) -> Result<(CandleLm, crate::chat::ChatTemplate)> {
    let mut model = load_model(m)?;
    model.batch_size = gen.batch_size.max(1);
    let chat = chat_template(&model, gen.chat_template.as_deref())?;
    Ok((model, chat))
}

fn fc(m: ModelArgs, args: crate::fc::FcArgs) -> Result<i32> {
    let (task, samples) = args.load_samples()?;
    let (mut model, chat) = load_chat_model(&m, &args.gen)?;
    let mut prog = Progress::new(&task, samples.len());
    let rep = crate::fc::run_fc_named(
        &mut model,
        &chat,
        &samples,
        &args.options(),
        &task,
        |d, _| prog.set(d),
    )?;
    prog.finish();
    write_fc_report(&rep, args.output.as_deref(), model.name())
}

fn json(m: ModelArgs, args: crate::fc::JsonArgs) -> Result<i32> {
    let (task, kind, samples) = args.load_samples()?;
    let (mut model, chat) = load_chat_model(&m, &args.gen)?;
    let mut prog = Progress::new(&task, samples.len());
    let rep = crate::fc::run_json_named(
        &mut model,
        &chat,
        &samples,
        kind,
        &args.options(),
        &task,
        |d, _| prog.set(d),
    )?;
    prog.finish();
    write_fc_report(&rep, args.output.as_deref(), model.name())
}
