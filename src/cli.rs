//! Command-line interface: parse (clap), validate, dispatch to the library. Errors surface as
//! `anyhow` chains. No orchestration lives here: `run`, `fc` and `json` build a
//! [`RunPlan`](crate::run::RunPlan) and hand it to [`crate::run::run`].
use crate::engine::EngineOptions;
use crate::fc::data as fcdata;
use crate::fc::{ParserMode, SchemaOrder};
use crate::model::server::{PromptMode, ServerOptions};
use crate::model::OpenOptions;
use crate::report;
use crate::run::{ChatOverrides, Gate, RunPlan};
use crate::tasks::Registry;
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
    /// Run tasks (log-likelihood, generation, function calling, JSON mode) and print the
    /// model-card tables.
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
        /// Put the run beside a model card: a built-in card name or a card file (cards/*.toml).
        #[arg(long)]
        card: Option<String>,
    },
    /// Export a GGUF model as a Hugging Face directory (f32 safetensors, config, tokenizer).
    Export { gguf: PathBuf, out: PathBuf },
    /// Measure throughput (documents/s, tokens/s, peak memory) and write JSON.
    Bench(BenchArgs),
    /// Function-calling evaluation (Hermes <tools>/<tool_call> format): `run --tasks` on the
    /// task of the dataset (func_calling_eval, bfcl_<category>).
    Fc(FcArgs),
    /// JSON-mode / schema-compliance evaluation: `run --tasks` on the task of the dataset
    /// (json_mode_eval, json_mode_eval_maskbench, jsonschemabench_<subset>).
    Json(JsonArgs),
    /// Combine the output directories of `run --shard 0/n` … `--shard n-1/n` into the results,
    /// samples and tables one unsharded run writes. Refuses shards of different plans, missing
    /// or duplicated shards.
    Merge {
        /// The shard output directories.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// Where to write the merged run.
        #[arg(long)]
        output: PathBuf,
        #[command(flatten)]
        tasks: TasksDirArg,
    },
    /// Compare two runs per task with paired tests; a CI gate (exit 0 pass, 1 regression, 2 error).
    Compare(crate::compare::CompareArgs),
    /// Write a re-quantized GGUF (q8_0, q4_0, q4_1, q4_k, q5_k, q6_k) with candle's quantizers, or a dequantized one (f32, f16)
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
}

#[derive(Args, Clone)]
struct TasksDirArg {
    /// Load task files from this directory instead of the built-in ones.
    #[arg(long)]
    tasks_dir: Option<PathBuf>,
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
    /// tokenizer.json to use instead of the model's (for GGUF vocabularies not rebuilt from metadata).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl ModelOpts {
    fn open_options(&self) -> Result<OpenOptions> {
        let dtype = match self.dtype.as_str() {
            "f32" => candle_core::DType::F32,
            "f16" => candle_core::DType::F16,
            "bf16" => candle_core::DType::BF16,
            other => bail!("--dtype {other}: expected f32, f16 or bf16"),
        };
        Ok(OpenOptions {
            dequantize: self.dequantize,
            dtype,
            tokenizer: self.tokenizer.clone(),
            server: None,
        })
    }
}

/// Scoring through OpenAI-compatible servers instead of loading the model (shared by `run`,
/// `fc` and `json`).
#[derive(Args, Clone)]
struct ServerArgs {
    /// Score and generate through an OpenAI-compatible `/v1/completions` server
    /// (`http://host:8000/v1`: vLLM, SGLang, llama-cpp-python; llama-server generates only)
    /// instead of loading the model: --model is then the served model name and --tokenizer the
    /// model's tokenizer (tokenizer.json, model directory or .gguf). Repeat it to spread one run
    /// over several servers.
    #[arg(long = "server", value_name = "URL")]
    urls: Vec<String>,
    /// With --server: requests in flight per server (raise --batch-size to at least
    /// servers x concurrency x --server-batch to keep them all busy).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// With --server: prompts per request body on servers that take a list (vLLM, SGLang).
    #[arg(long, default_value_t = 8)]
    server_batch: usize,
    /// With --server: seconds one HTTP request may take before it counts as failed (and is retried).
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS")]
    timeout: f64,
    /// With --server: retries of a request after a connection error, timeout, HTTP 429 or 5xx
    /// (never after another 4xx).
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// With --server: seconds before the first retry; doubles each time (at most 30 s).
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    retry_backoff: f64,
    /// With --server: token-id prompts, or text prompts checked against the server's tokens
    /// (llama-cpp-python takes text only); auto picks what the probe shows works.
    #[arg(long, value_enum, default_value_t = PromptMode::Auto)]
    prompt_mode: PromptMode,
}

impl ServerArgs {
    fn options(&self) -> Result<Option<ServerOptions>> {
        if self.urls.is_empty() {
            return Ok(None);
        }
        if self.concurrency == 0 || self.server_batch == 0 {
            bail!("--concurrency and --server-batch must be at least 1");
        }
        if !(self.timeout > 0.0 && self.timeout.is_finite()) {
            bail!("--timeout must be a positive number of seconds");
        }
        if !(self.retry_backoff >= 0.0 && self.retry_backoff.is_finite()) {
            bail!("--retry-backoff must be a non-negative number of seconds");
        }
        Ok(Some(ServerOptions {
            urls: self.urls.clone(),
            concurrency: self.concurrency,
            batch: self.server_batch,
            timeout: std::time::Duration::from_secs_f64(self.timeout),
            retries: self.retries,
            backoff: std::time::Duration::from_secs_f64(self.retry_backoff),
            prompt_mode: self.prompt_mode,
            ..ServerOptions::default()
        }))
    }
}

/// Everything a run takes besides what to run (shared by `run`, `fc` and `json`).
#[derive(Args, Clone)]
struct CommonArgs {
    /// A .gguf file, a Hugging Face model directory, a hub id, `replay:<completions.jsonl>`
    /// or `scripted:` (with --server: the served model name). Repeat it to evaluate several
    /// variants in one command: the first is the baseline, each later one is compared with it.
    #[arg(long, required = true)]
    model: Vec<String>,
    #[command(flatten)]
    model_opts: ModelOpts,
    #[command(flatten)]
    server: ServerArgs,
    /// Only the first N documents of each task, in --doc-order.
    #[arg(long)]
    limit: Option<usize>,
    /// Document order before --limit: `dataset`, or `harness` (the card harness's
    /// random.Random(42) shuffle, so --limit N picks the harness's --limit N documents).
    #[arg(long, default_value = "dataset", value_name = "dataset|harness")]
    doc_order: crate::data::DocOrder,
    /// Requests per model call, for every task and backend: log-likelihood requests (of many
    /// documents; a document's requests share their context) or generation prompts decoded
    /// together. Results do not depend on it.
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
    /// Chat tasks: sampling temperature; 0 (the default) decodes greedily. The published
    /// evaluator samples at 0.1 without a seed; here a sample is reproducible from --seed.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Chat tasks: seed of sampling (used when --temperature > 0).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Chat tasks: maximum new tokens (default: the task's, 512 for function calling / JSON).
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Chat template file used instead of the model's own.
    #[arg(long)]
    chat_template: Option<PathBuf>,
    /// IFEval: send each prompt as raw text instead of through the chat template (lm-eval
    /// without --apply_chat_template). The results' task definition records which.
    #[arg(long)]
    no_chat_template: bool,
    /// Function-calling tasks: tool-call parser, xml (card version) or regex (later version).
    #[arg(long, value_enum)]
    parser: Option<ParserMode>,
    /// Function-calling tasks: key order of the FunctionCall schema in the system prompt.
    #[arg(long, value_enum)]
    schema_order: Option<SchemaOrder>,
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
    /// Evaluate shard i of n: a deterministic 1/n of every task's documents (whole documents,
    /// balanced by tokens, from the plan after --limit). Writes samples and shard.json; combine
    /// the n output directories with `hermes-eval merge`.
    #[arg(long, value_name = "i/n")]
    shard: Option<crate::shard::Shard>,
    /// When the run finishes, put it beside a model card (a built-in card name, e.g.
    /// hermes-2-pro-mistral-7b, or a card file): prints and writes card.md, as `report --card`.
    #[arg(long)]
    card: Option<String>,
}

#[derive(Args)]
struct RunArgs {
    /// A suite: gpt4all, agieval, bigbench, truthfulqa, nous (the four), fc, bfcl, jsonschemabench.
    #[arg(long)]
    suite: Option<String>,
    /// Comma-separated task names (globs allowed).
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct FcArgs {
    /// Dataset id: NousResearch/func-calling-eval or gorilla-llm/Berkeley-Function-Calling-Leaderboard.
    #[arg(long, default_value = fcdata::NOUS_FC)]
    dataset: String,
    /// BFCL category (simple, multiple, parallel, parallel_multiple, live_*, irrelevance, …).
    #[arg(long)]
    category: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct JsonArgs {
    /// NousResearch/json-mode-eval, guidance-ai/jsonschemabench/json-mode-eval-from-maskbench
    /// (substitute prompts) or guidance-ai/jsonschemabench (schema compliance).
    #[arg(long, default_value = fcdata::NOUS_JSON)]
    dataset: String,
    /// JSONSchemaBench subset (Github_trivial, Github_easy, Github_medium, Github_hard, Glaiveai2K).
    #[arg(long)]
    subset: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct BenchArgs {
    /// A .gguf file, a Hugging Face model directory or a hub id.
    #[arg(long)]
    model: String,
    #[command(flatten)]
    model_opts: ModelOpts,
    #[arg(long, default_value = "hellaswag")]
    task: String,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Requests per model call (as `run --batch-size`).
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
        Cmd::Run(a) => {
            if a.suite.is_none() && a.tasks.iter().all(|t| t.trim().is_empty()) {
                bail!("name what to run: --suite gpt4all|agieval|bigbench|truthfulqa|nous|fc or --tasks a,b");
            }
            run_plan(a.suite, a.tasks, a.common)
        }
        Cmd::Fc(a) => {
            let task = fcdata::fc_task(&a.dataset, a.category.as_deref())?;
            run_plan(None, vec![task], a.common)
        }
        Cmd::Json(a) => {
            let task = fcdata::json_task(&a.dataset, a.subset.as_deref())?;
            run_plan(None, vec![task], a.common)
        }
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
        Cmd::Report { path, tasks, card } => {
            let reg = registry(&tasks)?;
            // `report` rewrites report.md and report.html: not while a run writes the directory.
            let _lock = match path.is_dir() {
                true => Some(crate::lock::DirLock::acquire(&path, "report")?),
                false => None,
            };
            let results = report::rescore(&path, &reg)?;
            print!("{}", report::render_report(&reg, &results));
            report::card::report_outputs(&path, &reg, &results, card.as_deref())?;
            Ok(0)
        }
        Cmd::Merge {
            shards,
            output,
            tasks,
        } => {
            crate::shard::merge(&shards, &output, &registry(&tasks)?)?;
            Ok(0)
        }
        Cmd::Export { gguf, out } => {
            crate::model::export::gguf_to_hf(&gguf, &out)?;
            println!("wrote {}", out.display());
            Ok(0)
        }
        Cmd::Bench(b) => {
            if b.batch_size == 0 || b.limit == 0 {
                bail!("--batch-size and --limit must be at least 1");
            }
            crate::run::set_threads(b.model_opts.threads)?;
            let v = crate::bench::bench(
                &b.model,
                &b.model_opts.open_options()?,
                &b.task,
                b.limit,
                b.batch_size,
                b.data_dir.clone(),
                &b.json,
            )?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
        Cmd::Compare(c) => match crate::compare::run_compare(&c) {
            Ok(code) => Ok(code),
            Err(e) => {
                eprintln!("hermes-eval: error: {e:#}");
                Ok(2)
            }
        },
        Cmd::Quantize(q) => crate::quantize::run_quantize(&q).map(|_| 0),
        Cmd::Tokenize {
            model,
            tokenizer,
            file,
        } => tokenize(&model, tokenizer, file.as_deref()),
    }
}

fn tokenize(model: &str, tokenizer: Option<PathBuf>, file: Option<&Path>) -> Result<i32> {
    let opts = crate::model::load::LoadOptions {
        tokenizer,
        ..Default::default()
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

fn install_ctrlc() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if s.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: finishing the current batch and saving finished work (Ctrl-C again to quit now)");
    });
    stop
}

fn run_plan(suite: Option<String>, tasks: Vec<String>, a: CommonArgs) -> Result<i32> {
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if a.limit == Some(0) {
        bail!("--limit must be at least 1");
    }
    let multi = a.model.len() > 1;
    if !multi && (a.max_drop.is_some() || a.max_avg_drop.is_some()) {
        bail!("--max-drop / --max-avg-drop compare models: give at least two --model");
    }
    if !(a.alpha > 0.0 && a.alpha < 1.0) {
        bail!("--alpha must be in (0, 1), got {}", a.alpha);
    }
    if !(a.temperature >= 0.0 && a.temperature.is_finite()) {
        bail!(
            "--temperature must be a non-negative number, got {}",
            a.temperature
        );
    }
    let reg = registry(&a.tasks_dir)?;
    if let Some(c) = &a.card {
        // A misspelt card fails before the run, not after it.
        report::card::Card::load(c)?;
    }
    let mut open = a.model_opts.open_options()?;
    open.server = a.server.options()?;
    if open.server.is_some() && open.tokenizer.is_none() {
        bail!("--server needs --tokenizer (the model's tokenizer.json, model directory or .gguf): requests are tokenized here, not by the server");
    }
    let plan = RunPlan {
        models: a.model.clone(),
        open,
        threads: a.model_opts.threads,
        suite,
        tasks: tasks.into_iter().filter(|t| !t.trim().is_empty()).collect(),
        limit: a.limit,
        doc_order: a.doc_order,
        engine: EngineOptions {
            batch_size: a.batch_size,
            temperature: a.temperature,
            seed: a.seed,
            max_new_tokens: a.max_new_tokens,
            ..EngineOptions::default()
        },
        chat: ChatOverrides {
            parser: a.parser,
            schema_order: a.schema_order,
            chat_template: a.chat_template.clone(),
            apply_chat_template: a.no_chat_template.then_some(false),
        },
        output: a.output.clone(),
        data_dir: a.data_dir.clone(),
        no_cache: a.no_cache,
        gate: Gate {
            max_drop: a.max_drop,
            max_avg_drop: a.max_avg_drop,
            alpha: a.alpha,
        },
        shard: a.shard,
        card: a.card.clone(),
    };
    let stop = install_ctrlc();
    Ok(crate::run::run(&plan, &reg, &stop)?)
}
