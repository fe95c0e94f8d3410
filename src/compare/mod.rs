//! `hermes-eval compare`: is a quantized (or otherwise changed) variant really worse than its
//! baseline, or is the difference noise?
//!
//! Both inputs are run directories in the lm-evaluation-harness 0.4 layout ([`load`]). For every
//! task and metric present in both, the report shows both values, the difference in points (×100)
//! and a paired test on the per-document outcomes matched by `doc_id` ([`stats`]): McNemar for
//! 0/1 metrics, a seeded paired bootstrap for continuous ones (mc2). Documents must be the same:
//! the `doc_id` sets must be equal and the `doc_hash`es must agree, otherwise the comparison is
//! refused. Agreement statistics: the share of documents whose predicted choice (argmax of the
//! per-request log-likelihoods in `filtered_resps`; BoolQ and Winogrande have two choices, so a
//! change there is a flip) changed, and the mean |Δ log-likelihood| per request.
//!
//! **The gate.** A task metric *regresses* iff the candidate is below the baseline by more than
//! `--max-drop` points **and** the paired test rejects equality at `--alpha`
//! (p < alpha). Suite averages (TASKS_SPEC §6: GPT4All = mean of acc_norm-else-acc, AGIEval =
//! acc_norm, BigBench = multiple_choice_grade; ×100, over the tasks present in both runs) regress
//! iff they drop by more than `--max-avg-drop` points **and** a paired z-test on the average
//! (tasks independent, per-task standard error of the mean paired difference) has p < alpha.
//! Without `--max-drop` / `--max-avg-drop` the corresponding gate is off and compare only
//! reports. A task without per-document samples in one of the runs falls back to an unpaired
//! z-test on the stderrs of the results files (conservative; a note says so); without stderrs
//! either it cannot be tested and never regresses. Exit codes of [`run_compare`]: 0 pass, 1 regression, 2 usage or data error.
pub mod load;
pub mod plot;
pub mod report;
pub mod stats;

use crate::error::{Error, Result};
use load::{RunDir, Sample};
use serde::Serialize;
use stats::TestResult;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options of [`compare`].
#[derive(Debug, Clone, Serialize)]
pub struct CompareOptions {
    /// Significance level of the paired tests.
    pub alpha: f64,
    /// Per-task gate in points (×100); `None` = report only.
    pub max_drop: Option<f64>,
    /// Suite-average gate in points; `None` = report only.
    pub max_avg_drop: Option<f64>,
    /// Bootstrap resamples for continuous metrics.
    pub resamples: usize,
    pub seed: u64,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            alpha: 0.05,
            max_drop: None,
            max_avg_drop: None,
            resamples: 10_000,
            seed: 1234,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricComparison {
    pub task: String,
    pub metric: String,
    /// The metric the suite rule uses for this task (shown in the chart).
    pub primary: bool,
    pub baseline: f64,
    pub candidate: f64,
    pub baseline_stderr: Option<f64>,
    pub candidate_stderr: Option<f64>,
    /// (candidate − baseline) × 100.
    pub delta_points: f64,
    /// Documents in the paired test.
    pub n_docs: Option<usize>,
    pub test: Option<TestResult>,
    pub significant: bool,
    pub regression: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskAgreement {
    pub task: String,
    pub n_docs: usize,
    pub n_requests: usize,
    /// Share of documents whose argmax choice changed.
    pub changed_choice: f64,
    /// Mean |Δ log-likelihood| per request.
    pub mean_abs_delta_loglik: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SuiteComparison {
    pub suite: String,
    pub rule: String,
    pub tasks: Vec<String>,
    /// Averages in points (×100).
    pub baseline: f64,
    pub candidate: f64,
    pub delta_points: f64,
    /// Paired z-test on the average; `None` when a task lacks samples.
    pub p_value: Option<f64>,
    pub regression: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub baseline_dir: PathBuf,
    pub candidate_dir: PathBuf,
    pub baseline_results: PathBuf,
    pub candidate_results: PathBuf,
    pub baseline_model: Option<String>,
    pub candidate_model: Option<String>,
    pub options: CompareOptions,
    pub metrics: Vec<MetricComparison>,
    pub agreement: Vec<TaskAgreement>,
    pub suites: Vec<SuiteComparison>,
    pub only_in_baseline: Vec<String>,
    pub only_in_candidate: Vec<String>,
    pub notes: Vec<String>,
}

impl Comparison {
    /// Task metrics and suite averages that regressed.
    pub fn regressions(&self) -> usize {
        self.metrics.iter().filter(|m| m.regression).count()
            + self.suites.iter().filter(|s| s.regression).count()
    }
}

/// The metric a task contributes to its suite average, in order of preference.
pub fn primary_metric<'a>(
    task: &str,
    metrics: impl IntoIterator<Item = &'a String> + Clone,
) -> Option<String> {
    let has = |m: &str| metrics.clone().into_iter().any(|x| x == m);
    let order: &[&str] = if task.starts_with("bigbench_") {
        &["multiple_choice_grade", "exact_str_match"]
    } else if task.starts_with("truthfulqa") {
        &["mc2", "mc1"]
    } else {
        &[
            "acc_norm",
            "acc",
            "multiple_choice_grade",
            "mc2",
            "mc1",
            "exact_str_match",
        ]
    };
    order
        .iter()
        .find(|m| has(m))
        .map(|m| m.to_string())
        .or_else(|| metrics.into_iter().next().cloned())
}

/// Load both run directories and compare them.
pub fn compare(
    baseline_dir: &Path,
    candidate_dir: &Path,
    opts: &CompareOptions,
) -> Result<Comparison> {
    let base = load::load_run(baseline_dir)?;
    let cand = load::load_run(candidate_dir)?;
    compare_runs(&base, &cand, opts)
}

/// Compare two loaded runs.
pub fn compare_runs(base: &RunDir, cand: &RunDir, opts: &CompareOptions) -> Result<Comparison> {
    let only_in_baseline: Vec<String> = base
        .tasks
        .keys()
        .filter(|t| !cand.tasks.contains_key(*t))
        .cloned()
        .collect();
    let only_in_candidate: Vec<String> = cand
        .tasks
        .keys()
        .filter(|t| !base.tasks.contains_key(*t))
        .cloned()
        .collect();
    let common: Vec<&String> = base
        .tasks
        .keys()
        .filter(|t| cand.tasks.contains_key(*t))
        .collect();
    if common.is_empty() {
        return Err(Error::file(
            &cand.results_file,
            format!(
                "no task in common with the baseline {}",
                base.results_file.display()
            ),
        ));
    }
    let mut notes = Vec::new();
    let mut metrics = Vec::new();
    let mut agreement = Vec::new();
    // Per task and metric: per-doc paired differences, for the suite z-test.
    let mut diffs: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();

    for task in common {
        let (bt, ct) = (&base.tasks[task], &cand.tasks[task]);
        let paired = match (&bt.samples, &ct.samples) {
            (Some(bs), Some(cs)) => {
                check_same_documents(task, bs, cs)?;
                Some((bs, cs))
            }
            _ => {
                let which = match (&bt.samples, &ct.samples) {
                    (None, None) => "either run (a group entry?)",
                    (None, _) => "the baseline",
                    _ => "the candidate",
                };
                notes.push(format!(
                    "{task}: no samples file in {which}: unpaired z-test on the reported stderrs (conservative), no agreement statistics"
                ));
                None
            }
        };
        let names: Vec<&String> = bt
            .metrics
            .keys()
            .filter(|m| ct.metrics.contains_key(*m))
            .collect();
        let primary = primary_metric(task, names.iter().copied());
        for metric in names {
            let (bv, cv) = (&bt.metrics[metric], &ct.metrics[metric]);
            let mut test = None;
            let mut n_docs = None;
            let (mut b_se, mut c_se) = (bv.stderr, cv.stderr);
            if let Some((bs, cs)) = paired {
                let bx: Option<Vec<f64>> =
                    bs.iter().map(|s| s.metrics.get(metric).copied()).collect();
                let cx: Option<Vec<f64>> =
                    cs.iter().map(|s| s.metrics.get(metric).copied()).collect();
                match (bx, cx) {
                    (Some(bx), Some(cx)) => {
                        let binary = bx.iter().chain(&cx).all(|&v| v == 0.0 || v == 1.0);
                        test = Some(if binary {
                            stats::mcnemar_paired(&bx, &cx)
                        } else {
                            stats::paired_bootstrap(&bx, &cx, opts.resamples, opts.seed)
                        });
                        n_docs = Some(bx.len());
                        // Results files without stderr: use mean_stderr of the samples.
                        b_se = b_se.or_else(|| Some(stats::mean_stderr(&bx).1).filter(|x| x.is_finite()));
                        c_se = c_se.or_else(|| Some(stats::mean_stderr(&cx).1).filter(|x| x.is_finite()));
                        diffs.insert((task.clone(), metric.clone()), cx.iter().zip(&bx).map(|(c, b)| c - b).collect());
                    }
                    _ => notes.push(format!("{task}/{metric}: per-document values missing in the samples: not tested, not gated")),
                }
            }
            if paired.is_none() {
                if let (Some(sb), Some(sc)) = (bv.stderr, cv.stderr) {
                    test = Some(stats::unpaired_z(bv.value, sb, cv.value, sc));
                }
            }
            let delta_points = (cv.value - bv.value) * 100.0;
            let significant = test.as_ref().is_some_and(|t| t.p_value < opts.alpha);
            let regression = significant && opts.max_drop.is_some_and(|d| delta_points < -d);
            metrics.push(MetricComparison {
                task: task.clone(),
                metric: metric.clone(),
                primary: primary.as_deref() == Some(metric.as_str()),
                baseline: bv.value,
                candidate: cv.value,
                baseline_stderr: b_se,
                candidate_stderr: c_se,
                delta_points,
                n_docs,
                test,
                significant,
                regression,
            });
        }
        if let Some((bs, cs)) = paired {
            match agreement_stats(task, bs, cs) {
                Some(a) => agreement.push(a),
                None => notes.push(format!("{task}: no per-request log-likelihoods in the samples: no agreement statistics")),
            }
        }
    }

    let suites = suite_averages(base, cand, &diffs, opts);
    Ok(Comparison {
        baseline_dir: base.dir.clone(),
        candidate_dir: cand.dir.clone(),
        baseline_results: base.results_file.clone(),
        candidate_results: cand.results_file.clone(),
        baseline_model: base.model_name.clone(),
        candidate_model: cand.model_name.clone(),
        options: opts.clone(),
        metrics,
        agreement,
        suites,
        only_in_baseline,
        only_in_candidate,
        notes,
    })
}

/// Refuse to pair different document sets (different `--limit`, different data revision).
fn check_same_documents(task: &str, bs: &[Sample], cs: &[Sample]) -> Result<()> {
    let (mut i, mut j) = (0, 0);
    while i < bs.len() || j < cs.len() {
        match (bs.get(i), cs.get(j)) {
            (Some(b), Some(c)) if b.doc_id == c.doc_id => {
                if let (Some(hb), Some(hc)) = (&b.doc_hash, &c.doc_hash) {
                    if hb != hc {
                        return Err(Error::task(
                            task,
                            format!(
                                "doc_id {} has doc_hash {} in the baseline but {} in the candidate: not the same document set",
                                b.doc_id,
                                short(hb),
                                short(hc)
                            ),
                        ));
                    }
                }
                i += 1;
                j += 1;
            }
            (b, c) => {
                let (id, side) = match (b, c) {
                    (Some(b), Some(c)) if b.doc_id < c.doc_id => (b.doc_id, "baseline"),
                    (Some(_), Some(c)) => (c.doc_id, "candidate"),
                    (Some(b), None) => (b.doc_id, "baseline"),
                    (None, Some(c)) => (c.doc_id, "candidate"),
                    (None, None) => unreachable!(),
                };
                return Err(Error::task(
                    task,
                    format!(
                        "different document sets (baseline {} docs, candidate {}; doc_id {id} only in the {side}): were the runs made with different --limit?",
                        bs.len(),
                        cs.len()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

/// First index of the maximum (ties to the first, like `np.argmax`).
fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

fn agreement_stats(task: &str, bs: &[Sample], cs: &[Sample]) -> Option<TaskAgreement> {
    let (mut changed, mut n_req, mut abs_sum) = (0usize, 0usize, 0.0);
    for (b, c) in bs.iter().zip(cs) {
        if b.logliks.is_empty() || b.logliks.len() != c.logliks.len() {
            return None;
        }
        if argmax(&b.logliks) != argmax(&c.logliks) {
            changed += 1;
        }
        n_req += b.logliks.len();
        abs_sum += b
            .logliks
            .iter()
            .zip(&c.logliks)
            .map(|(x, y)| (x - y).abs())
            .sum::<f64>();
    }
    if bs.is_empty() {
        return None;
    }
    Some(TaskAgreement {
        task: task.to_string(),
        n_docs: bs.len(),
        n_requests: n_req,
        changed_choice: changed as f64 / bs.len() as f64,
        mean_abs_delta_loglik: abs_sum / n_req as f64,
    })
}

/// The GPT4All task list (TASKS_SPEC §2).
pub const GPT4ALL_TASKS: [&str; 7] = [
    "arc_challenge",
    "arc_easy",
    "boolq",
    "hellaswag",
    "openbookqa",
    "piqa",
    "winogrande",
];

/// A suite average (TASKS_SPEC §6): which tasks belong to it and which metric each contributes
/// (the first of `metrics` that both runs have).
struct SuiteRule {
    name: &'static str,
    rule: &'static str,
    member: fn(&str) -> bool,
    metrics: &'static [&'static str],
}

const SUITES: [SuiteRule; 3] = [
    SuiteRule {
        name: "GPT4All",
        rule: "mean of acc_norm (else acc)",
        member: |t| GPT4ALL_TASKS.contains(&t),
        metrics: &["acc_norm", "acc"],
    },
    SuiteRule {
        name: "AGIEval",
        rule: "mean of acc_norm",
        member: |t| t.starts_with("agieval_"),
        metrics: &["acc_norm"],
    },
    SuiteRule {
        name: "BigBench",
        rule: "mean of multiple_choice_grade",
        member: |t| t.starts_with("bigbench_"),
        metrics: &["multiple_choice_grade"],
    },
];

fn suite_averages(
    base: &RunDir,
    cand: &RunDir,
    diffs: &BTreeMap<(String, String), Vec<f64>>,
    opts: &CompareOptions,
) -> Vec<SuiteComparison> {
    let mut out = Vec::new();
    for SuiteRule {
        name,
        rule,
        member,
        metrics,
    } in SUITES
    {
        let mut tasks = Vec::new();
        let (mut sb, mut sc, mut var) = (0.0, 0.0, 0.0);
        let mut testable = true;
        for (task, bt) in &base.tasks {
            let Some(ct) = cand.tasks.get(task) else {
                continue;
            };
            if !member(task) {
                continue;
            }
            let has = |m: &str| bt.metrics.contains_key(m) && ct.metrics.contains_key(m);
            let Some(&metric) = metrics.iter().find(|m| has(m)) else {
                continue;
            };
            sb += bt.metrics[metric].value;
            sc += ct.metrics[metric].value;
            match diffs.get(&(task.clone(), metric.to_string())) {
                Some(d) if !d.is_empty() => {
                    let (_, se) = stats::mean_stderr(d);
                    var += if se.is_finite() { se * se } else { 0.0 };
                }
                _ => testable = false,
            }
            tasks.push(task.clone());
        }
        if tasks.is_empty() {
            continue;
        }
        let k = tasks.len() as f64;
        let (baseline, candidate) = (sb / k * 100.0, sc / k * 100.0);
        let delta_points = candidate - baseline;
        let p_value = testable.then(|| {
            let se = var.sqrt() / k * 100.0;
            if se == 0.0 {
                if delta_points.abs() < 1e-9 {
                    1.0
                } else {
                    0.0
                }
            } else {
                stats::z_test_p(delta_points / se)
            }
        });
        let regression = p_value.is_some_and(|p| p < opts.alpha)
            && opts.max_avg_drop.is_some_and(|d| delta_points < -d);
        out.push(SuiteComparison {
            suite: name.to_string(),
            rule: rule.to_string(),
            tasks,
            baseline,
            candidate,
            delta_points,
            p_value,
            regression,
        });
    }
    out
}

/// Arguments of `hermes-eval compare`.
#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    /// Baseline run directory (results_<timestamp>.json + samples_<task>_<timestamp>.jsonl).
    pub baseline: PathBuf,
    /// Candidate run directory (e.g. the quantized variant).
    pub candidate: PathBuf,
    /// Fail when a task metric drops by more than this many points (×100) and the drop is
    /// significant at --alpha. Without it, per-task results are only reported.
    #[arg(long, value_name = "POINTS")]
    pub max_drop: Option<f64>,
    /// Fail when a suite average (GPT4All, AGIEval, BigBench) drops by more than this many points
    /// and the drop is significant at --alpha.
    #[arg(long, value_name = "POINTS")]
    pub max_avg_drop: Option<f64>,
    /// Significance level of the paired tests.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Seed of the paired bootstrap.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Bootstrap resamples for continuous metrics (mc2).
    #[arg(long, default_value_t = 10_000)]
    pub resamples: usize,
    /// Where comparison.md, comparison.json and comparison.svg go (default: the candidate dir).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Do not write comparison.svg.
    #[arg(long)]
    pub no_plot: bool,
}

/// Run `hermes-eval compare`; returns the exit code (0 pass, 1 regression, 2 usage/data error).
/// Errors are printed to stderr as one line; the `Result` is `Err` only if stdout cannot be
/// written.
pub fn run_compare(args: &CompareArgs) -> anyhow::Result<i32> {
    match run_compare_inner(args) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("hermes-eval: error: {e:#}");
            Ok(2)
        }
    }
}

fn run_compare_inner(args: &CompareArgs) -> anyhow::Result<i32> {
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        anyhow::bail!("--alpha must be in (0, 1), got {}", args.alpha);
    }
    for (flag, v) in [
        ("--max-drop", args.max_drop),
        ("--max-avg-drop", args.max_avg_drop),
    ] {
        if let Some(v) = v {
            if !(v >= 0.0 && v.is_finite()) {
                anyhow::bail!("{flag} must be a non-negative number of points, got {v}");
            }
        }
    }
    let opts = CompareOptions {
        alpha: args.alpha,
        max_drop: args.max_drop,
        max_avg_drop: args.max_avg_drop,
        resamples: args.resamples,
        seed: args.seed,
    };
    let cmp = compare(&args.baseline, &args.candidate, &opts)?;
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| args.candidate.clone());
    std::fs::create_dir_all(&out)
        .map_err(|e| anyhow::anyhow!("{}: cannot create output directory: {e}", out.display()))?;
    println!("{}", report::render_table(&cmp));
    std::fs::write(out.join("comparison.md"), report::render_markdown(&cmp))?;
    std::fs::write(
        out.join("comparison.html"),
        crate::report::html::comparison_html(&cmp),
    )?;
    std::fs::write(
        out.join("comparison.json"),
        serde_json::to_string_pretty(&cmp)? + "\n",
    )?;
    if !args.no_plot {
        plot::write_svg(&cmp, &out.join("comparison.svg"))?;
    }
    println!(
        "wrote comparison.md, comparison.html, comparison.json{} to {}",
        if args.no_plot { "" } else { ", comparison.svg" },
        out.display()
    );
    let n = cmp.regressions();
    if n > 0 {
        println!(
            "FAIL: {n} regression(s) (drop beyond the threshold and significant at alpha = {})",
            opts.alpha
        );
        Ok(1)
    } else {
        if opts.max_drop.is_none() && opts.max_avg_drop.is_none() {
            println!("PASS (no gate: pass --max-drop / --max-avg-drop to fail on regressions)");
        } else {
            println!("PASS");
        }
        Ok(0)
    }
}
