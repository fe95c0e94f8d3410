//! Orchestration of a run: resolve the tasks, load their documents, open each model through
//! [`crate::model::open`], evaluate every task with the engine, write the results (lm-eval
//! schema) and the card report, and with several models compare every later one with the first
//! as a CI gate. `cli.rs` only parses arguments into a [`RunPlan`].
use crate::chat::ChatTemplate;
use crate::data::DataSource;
use crate::doc::Doc;
use crate::engine::{evaluate, EngineOptions, RequestCache};
use crate::error::{Error, Result};
use crate::lock::DirLock;
use crate::model::{self, LanguageModel, OpenOptions};
use crate::progress::{spinner, Progress};
use crate::report;
use crate::tasks::{Registry, Task};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Overrides of chat tasks' judge settings (recorded in the results and in every sample).
#[derive(Debug, Clone, Default)]
pub struct ChatOverrides {
    pub parser: Option<crate::fc::ParserMode>,
    pub schema_order: Option<crate::fc::SchemaOrder>,
    /// A chat template file used instead of the model's own.
    pub chat_template: Option<PathBuf>,
    /// `Some(false)`: prompts of tasks that allow it (IFEval) are sent as raw text.
    pub apply_chat_template: Option<bool>,
}

/// Everything a run needs, already validated by the CLI.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Model specs; the first is the baseline of the comparison when there are several.
    pub models: Vec<String>,
    pub open: OpenOptions,
    /// Worker threads (default: all cores).
    pub threads: Option<usize>,
    pub suite: Option<String>,
    pub tasks: Vec<String>,
    pub limit: Option<usize>,
    /// Document order before `limit` (dataset, or the card harness's shuffle).
    pub doc_order: crate::data::DocOrder,
    pub engine: EngineOptions,
    pub chat: ChatOverrides,
    pub output: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub no_cache: bool,
    pub gate: Gate,
    /// Evaluate only this shard of every task's documents (`--shard i/n`; see [`crate::shard`]).
    pub shard: Option<crate::shard::Shard>,
    /// Put the run beside this model card (a built-in name or a card file) when it finishes.
    pub card: Option<String>,
}

/// The CI gate of a several-model run.
#[derive(Debug, Clone)]
pub struct Gate {
    pub max_drop: Option<f64>,
    pub max_avg_drop: Option<f64>,
    pub alpha: f64,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            max_drop: None,
            max_avg_drop: None,
            alpha: 0.05,
        }
    }
}

/// Use `n` worker threads (all cores by default) for our kernels and candle's.
pub fn set_threads(n: Option<usize>) -> Result<()> {
    let cores = num_cpus::get().max(1);
    let n = n.unwrap_or(cores);
    if n == 0 || n > 4 * cores.max(64) {
        return Err(Error::model(format!(
            "--threads {n}: expected 1 to {} on this machine",
            4 * cores.max(64)
        )));
    }
    // candle's gemm reads RAYON_NUM_THREADS; our kernels use the global rayon pool.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    // candle's element-wise operations run on a second pool of its own, whose idle workers
    // spin 25,000 times before they park: while rayon's threads compute a product they took
    // ~15 % of the f32 path's CPU time on 2 cores. A short spin keeps its hand-offs quick.
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "1000");
    }
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    Ok(())
}

/// Open a model with a spinner and a one-line report of what was loaded.
pub fn open_model(spec: &str, opts: &OpenOptions) -> Result<Box<dyn LanguageModel>> {
    let spin = spinner(&format!("loading {spec}"));
    let t = Instant::now();
    let m = model::open(spec, opts).map_err(|e| match e {
        // Already names the file (the model's, or a file in its directory).
        Error::File { .. } => Error::model(format!("cannot load {e}")),
        e => Error::model(format!("cannot load `{spec}`: {e}")),
    });
    spin.finish_and_clear();
    let m = m?;
    eprintln!(
        "loaded {} ({}, {}) in {:.1}s",
        m.name(),
        m.identity().backend,
        m.identity().format,
        t.elapsed().as_secs_f64()
    );
    Ok(m)
}

/// The chat template a run uses: the override file, else the model's own, else ChatML.
pub fn chat_template_for(
    model: &dyn LanguageModel,
    override_file: Option<&Path>,
) -> Result<ChatTemplate> {
    let own = model.chat_template()?;
    let eos = own
        .as_ref()
        .map(|t| t.eos_token.clone())
        .or_else(|| {
            crate::engine::eos_ids(model)
                .first()
                .and_then(|&i| model.tokenizer().id_to_token(i))
        })
        .unwrap_or_default();
    let bos = own
        .as_ref()
        .map(|t| t.bos_token.clone())
        .unwrap_or_default();
    crate::fc::select_chat_template(override_file, own, &bos, &eos)
}

/// A directory-safe form of a model name.
pub fn sanitize(s: &str) -> String {
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

/// Run the plan: evaluate every model, write its outputs, compare and gate. Returns the exit
/// code: 0 done (or pass), 1 regression, 2 when several runs cannot be compared.
pub fn run(plan: &RunPlan, reg: &Registry, stop: &AtomicBool) -> Result<i32> {
    let tasks: Vec<Task> = reg
        .resolve(plan.suite.as_deref(), &plan.tasks)?
        .into_iter()
        .map(|t| {
            t.with_overrides(
                plan.chat.parser,
                plan.chat.schema_order,
                plan.chat.apply_chat_template,
            )
        })
        .collect::<Result<_>>()?;
    if plan.limit == Some(0) {
        return Err(Error::task("-", "--limit 0 selects no documents"));
    }
    let multi = plan.models.len() > 1;
    // One writer per output directory, refused before any data or model is loaded when the
    // directory is known now (one model with --output); otherwise each model's directory is
    // locked when it is chosen.
    let early_lock = match (&plan.output, multi) {
        (Some(dir), false) => Some(DirLock::acquire(dir, "run")?),
        _ => None,
    };
    let data = DataSource::new(plan.data_dir.clone());
    // Load every task's documents before any model, so a data problem fails fast.
    let mut all_docs = vec![];
    for t in &tasks {
        let pb = spinner(&format!("loading data for {}", t.name));
        let docs = t.load_selected(
            &data,
            &crate::data::DocSelection::new(plan.doc_order, plan.limit),
        );
        pb.finish_and_clear();
        let docs = docs?;
        if docs.is_empty() {
            return Err(Error::task(&t.name, "the dataset has no documents"));
        }
        all_docs.push(docs);
    }
    set_threads(plan.threads)?;
    if multi && plan.shard.is_some() {
        return Err(Error::model(
            "--shard runs one model: shard each variant separately, merge, then `compare`",
        ));
    }
    let root = plan
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports"));
    let mut dirs: Vec<PathBuf> = vec![];
    let needs_scores = all_docs.iter().flatten().any(|d| !d.requests.is_empty());
    for spec in &plan.models {
        let mut model = open_model(spec, &plan.open)?;
        if let Some(why) = model.scoring_refusal().filter(|_| needs_scores) {
            return Err(Error::model(why));
        }
        let out = match (&plan.output, multi) {
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
        let _lock = match &early_lock {
            Some(_) => None,
            None => Some(DirLock::acquire(&out, "run")?),
        };
        let finished = run_model(plan, reg, &tasks, &all_docs, model.as_mut(), &out, stop)?;
        if !finished {
            return Err(Error::Interrupted);
        }
        dirs.push(out);
    }
    if !multi {
        return Ok(0);
    }
    // Exit codes as `compare`: 0 pass, 1 regression, 2 when the runs cannot be compared.
    let cmp_dir = root.join("comparison");
    let _lock = DirLock::acquire(&cmp_dir, "run")?;
    match compare_variants(&plan.gate, &dirs, &cmp_dir) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("hermes-eval: error: {e}");
            Ok(2)
        }
    }
}

/// Evaluate one model on every task and write its results into `out`. Returns false when the
/// run was interrupted (the finished documents are written and cached).
fn run_model(
    plan: &RunPlan,
    reg: &Registry,
    tasks: &[Task],
    all_docs: &[Vec<Doc>],
    model: &mut dyn LanguageModel,
    out: &Path,
    stop: &AtomicBool,
) -> Result<bool> {
    std::fs::create_dir_all(out).map_err(|e| Error::file(out, e))?;
    let mut cache = if plan.no_cache {
        RequestCache::disabled()
    } else {
        RequestCache::open(&out.join("cache"), model.identity())?
    };
    if cache.skipped > 0 {
        eprintln!(
            "request cache {}: skipped {} of {} lines (torn, not a record, or failing its checksum); their requests are computed again",
            cache.path().map_or(String::new(), |p| p.display().to_string()),
            cache.skipped,
            cache.skipped + cache.loaded
        );
    }
    let needs_chat = all_docs.iter().flatten().any(|d| d.chat.is_some());
    let chat = chat_template_for(model, plan.chat.chat_template.as_deref())?;
    let mut config = serde_json::json!({
        "suite": plan.suite, "tasks": tasks.iter().map(|t| &t.name).collect::<Vec<_>>(),
        "limit": plan.limit, "doc_order": plan.doc_order, "engine": plan.engine, "num_fewshot": 0,
        "data_dir": plan.data_dir, "hermes_eval_version": env!("CARGO_PKG_VERSION"),
        "elapsed_s": 0.0, "request_cache_hits": 0, "request_cache_skipped": cache.skipped,
    });
    if needs_chat {
        config["chat_template"] = serde_json::json!({
            "source": chat.source, "sha256": chat.sha256(),
        });
    }
    // A shard evaluates its documents of every task; the others are left to the other shards.
    let mut shard_tasks = vec![];
    let selected: Vec<Vec<Doc>> = match plan.shard {
        None => all_docs.to_vec(),
        Some(sh) => {
            crate::shard::clear_manifest(out)?;
            let mut sel = vec![];
            for (task, docs) in tasks.iter().zip(all_docs) {
                let tokens =
                    crate::engine::doc_token_counts(model, task, docs, &chat, &plan.engine)?;
                let owner = crate::shard::assign(&tokens, sh.count);
                let mine: Vec<usize> = (0..docs.len()).filter(|&i| owner[i] == sh.index).collect();
                shard_tasks.push(crate::shard::ShardTask {
                    name: task.name.clone(),
                    hash: task.hash(),
                    plan_docs: docs.iter().map(|d| d.id).collect(),
                    docs: mine.iter().map(|&i| docs[i].id).collect(),
                    tokens: mine.iter().map(|&i| tokens[i]).sum(),
                });
                eprintln!(
                    "shard {sh}: {}: {} of {} documents ({} of {} tokens)",
                    task.name,
                    mine.len(),
                    docs.len(),
                    shard_tasks.last().map_or(0, |t| t.tokens),
                    tokens.iter().sum::<usize>()
                );
                sel.push(mine.iter().map(|&i| docs[i].clone()).collect());
            }
            sel
        }
    };
    let mut results = vec![];
    let mut done_tasks = vec![];
    let mut interrupted = false;
    let t0 = Instant::now();
    for (task, docs) in tasks.iter().zip(selected) {
        let mut prog = Progress::new(&task.name, docs.len());
        let run = evaluate(
            model,
            task,
            docs,
            &mut cache,
            &chat,
            &plan.engine,
            stop,
            |d| prog.set(d),
        )?;
        prog.finish();
        if !run.docs.is_empty() || plan.shard.is_some() {
            let path =
                report::write_samples_jsonl(out, task, &run.docs, &run.responses, &run.scores)?;
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
        let metrics: Vec<_> = run.scores.iter().map(|s| s.metrics.clone()).collect();
        results.push(report::aggregate(task, &metrics));
        done_tasks.push(task);
    }
    config["elapsed_s"] = serde_json::json!(t0.elapsed().as_secs_f64());
    config["request_cache_hits"] = serde_json::json!(cache.hits);
    match plan.shard {
        Some(sh) if !interrupted => {
            let doc_refs: Vec<(&Task, &[Doc])> = tasks
                .iter()
                .zip(all_docs)
                .map(|(t, d)| (t, &d[..]))
                .collect();
            let manifest = crate::shard::Manifest {
                hermes_eval_version: env!("CARGO_PKG_VERSION").into(),
                plan_hash: crate::shard::plan_hash(&doc_refs, sh.count, model.identity(), &config),
                shard: sh,
                model: model_record(model),
                identity: model.identity().clone(),
                config: config.clone(),
                overrides: crate::shard::Overrides {
                    parser: plan.chat.parser,
                    schema_order: plan.chat.schema_order,
                    apply_chat_template: plan.chat.apply_chat_template,
                },
                tasks: shard_tasks,
            };
            let path = crate::shard::write_manifest(out, &manifest)?;
            eprintln!(
                "shard {sh} finished: samples and {}; `hermes-eval merge` the {} shard directories for the results",
                path.display(),
                sh.count
            );
        }
        Some(_) => {}
        None if !results.is_empty() => {
            write_outputs(
                out,
                reg,
                &model_record(model),
                &config,
                &results,
                &done_tasks,
                plan.card.as_deref(),
            )?;
        }
        None => {}
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

/// Write what a run leaves besides its samples: `results_<ts>.json` (lm-eval schema),
/// `report.md` (the card tables, also printed) and `report.html`; with a model card, the run
/// beside it too (`card.md`, and report.html with the card's columns).
pub fn write_outputs(
    out: &Path,
    reg: &Registry,
    model: &serde_json::Value,
    config: &serde_json::Value,
    results: &[report::TaskResult],
    tasks: &[&Task],
    card: Option<&str>,
) -> Result<()> {
    let rj = report::write_results_json(out, model, config, results, tasks)?;
    let text = report::render_report(reg, results);
    report::write_atomic(&out.join("report.md"), text.as_bytes())?;
    print!("{text}");
    match card {
        Some(c) => {
            report::card::report_outputs(out, reg, results, Some(c))?;
        }
        None => {
            report::html::write_run_html(out, reg, results, None)?;
        }
    }
    eprintln!(
        "wrote {} and report.md in {}",
        rj.file_name().unwrap_or_default().to_string_lossy(),
        out.display()
    );
    Ok(())
}

/// What the results record about the model: its name, identity and load details.
pub fn model_record(model: &dyn LanguageModel) -> serde_json::Value {
    let mut v = serde_json::json!({
        "name": model.name(),
        "identity": model.identity(),
    });
    if let (Some(o), serde_json::Value::Object(d)) = (v.as_object_mut(), model.details()) {
        for (k, x) in d {
            o.entry(k).or_insert(x);
        }
    }
    v
}

/// Compare every later variant with the first (paired tests per task), write one comparison
/// (markdown with a section per variant, JSON, one chart per variant) and gate on regressions.
fn compare_variants(gate: &Gate, dirs: &[PathBuf], out: &Path) -> Result<i32> {
    use crate::compare::{self, plot, report as crep, CompareOptions};
    let opts = CompareOptions {
        alpha: gate.alpha,
        max_drop: gate.max_drop,
        max_avg_drop: gate.max_avg_drop,
        resamples: 10_000,
        seed: 1234,
    };
    std::fs::create_dir_all(out).map_err(|e| Error::file(out, e))?;
    let mut md = String::new();
    let mut all = vec![];
    let mut regressions = 0;
    let other = |e: anyhow::Error| Error::model(format!("{e:#}"));
    for (i, cand) in dirs.iter().enumerate().skip(1) {
        let cmp = compare::compare(&dirs[0], cand, &opts)?;
        println!("{}", crep::render_table(&cmp));
        md.push_str(&crep::render_markdown(&cmp));
        md.push('\n');
        plot::write_svg(&cmp, &out.join(format!("comparison-{i}.svg"))).map_err(other)?;
        regressions += cmp.regressions();
        all.push(cmp);
    }
    std::fs::write(out.join("comparison.md"), md).map_err(|e| Error::file(out, e))?;
    let json = serde_json::json!({
        "baseline": dirs[0], "candidates": &dirs[1..], "regressions": regressions, "comparisons": all,
    });
    std::fs::write(
        out.join("comparison.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )
    .map_err(|e| Error::file(out, e))?;
    eprintln!(
        "wrote comparison.md, comparison.json and {} chart(s) in {}",
        dirs.len() - 1,
        out.display()
    );
    if regressions > 0 {
        println!(
            "FAIL: {regressions} regression(s) (drop beyond the threshold and significant at alpha = {})",
            gate.alpha
        );
        Ok(1)
    } else {
        println!("PASS");
        Ok(0)
    }
}
