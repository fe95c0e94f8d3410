//! Aggregation, the card tables (lm-eval 0.3 `make_table`), suite averages, and outputs in
//! lm-evaluation-harness 0.4's schema (`results_<ts>.json`, `samples_<task>_<ts>.jsonl`).
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::doc::{Doc, Loglik, Responses, Score};
use crate::error::{Error, Result};
use crate::metrics;
use crate::tasks::{Registry, Suite, Task};

pub mod card;
pub mod html;

/// One task's aggregated metrics: (name, value, stderr) in table order.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskResult {
    pub task: String,
    pub version: u32,
    pub n: usize,
    pub metrics: Vec<(String, f64, f64)>,
}

impl TaskResult {
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.0 == name).map(|m| m.1)
    }
}

/// Mean of each metric over the docs, stderr = sample std (n−1) / √n.
pub fn aggregate(task: &Task, per_doc: &[BTreeMap<String, f64>]) -> TaskResult {
    let metrics = task
        .metric_names()
        .into_iter()
        .map(|m| {
            if task.def.aggregation.get(&m).map(String::as_str) == Some("flatten_mean") {
                // Every item of every document counts once (lm-eval's agg_inst_level_acc).
                let (mut pass, mut items) = (0.0, 0.0);
                for d in per_doc {
                    if let (Some(x), Some(n)) = (d.get(&m), d.get("num_instructions")) {
                        pass += (x * n).round();
                        items += n;
                    }
                }
                return (m, pass / items, f64::NAN);
            }
            let xs: Vec<f64> = per_doc.iter().filter_map(|d| d.get(&m).copied()).collect();
            let (v, se) = (metrics::mean(&xs), metrics::mean_stderr(&xs));
            (m, v, se)
        })
        .collect();
    TaskResult {
        task: task.name.clone(),
        version: task.version,
        n: per_doc.len(),
        metrics,
    }
}

/// Four decimals, `nan` for NaN (Python's `"%.4f" % x`).
pub(crate) fn pct4(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else {
        format!("{x:.4}")
    }
}

/// The card markdown table, byte for byte as lm-eval 0.3's `make_table` (pytablewriter) prints it.
pub fn card_table(results: &[TaskResult]) -> String {
    let mut sorted: Vec<&TaskResult> = results.iter().collect();
    sorted.sort_by(|a, b| a.task.cmp(&b.task));
    let header = ["Task", "Version", "Metric", "Value", "", "Stderr"];
    let numeric = [false, true, false, true, false, true];
    let mut rows: Vec<[String; 6]> = Vec::new();
    for r in sorted {
        for (i, (m, v, se)) in r.metrics.iter().enumerate() {
            let (task, version) = if i == 0 {
                (r.task.clone(), r.version.to_string())
            } else {
                (String::new(), String::new())
            };
            rows.push([task, version, m.clone(), pct4(*v), "±".into(), pct4(*se)]);
        }
    }
    let width = |c: usize| {
        rows.iter()
            .map(|r| r[c].chars().count())
            .chain([header[c].chars().count(), 3])
            .max()
            .unwrap_or(3)
    };
    let widths: Vec<usize> = (0..6).map(width).collect();
    let mut out = String::from("|");
    for c in 0..6 {
        let pad = widths[c] - header[c].chars().count();
        out.push_str(&format!(
            "{}{}{}|",
            " ".repeat(pad / 2),
            header[c],
            " ".repeat(pad - pad / 2)
        ));
    }
    out.push_str("\n|");
    for c in 0..6 {
        if numeric[c] {
            out.push_str(&format!("{}:|", "-".repeat(widths[c] - 1)));
        } else {
            out.push_str(&format!("{}|", "-".repeat(widths[c])));
        }
    }
    out.push('\n');
    for r in &rows {
        out.push('|');
        for c in 0..6 {
            let pad = " ".repeat(widths[c] - r[c].chars().count());
            if numeric[c] {
                out.push_str(&format!("{pad}{}|", r[c]));
            } else {
                out.push_str(&format!("{}{pad}|", r[c]));
            }
        }
        out.push('\n');
    }
    out
}

/// A leaf suite's average in percent (TASKS_SPEC §6): per task the first of `suite.average` it
/// reports; None if a task is missing or the suite has no rule (or is composite: see
/// [`suite_average_in`]).
pub fn suite_average(suite: &Suite, results: &[TaskResult]) -> Option<f64> {
    if suite.average.is_empty() || suite.tasks.is_empty() {
        return None;
    }
    let mut vals = Vec::new();
    for t in &suite.tasks {
        let r = results.iter().find(|r| &r.task == t)?;
        vals.push(suite.average.iter().find_map(|m| r.metric(m))?);
    }
    Some(100.0 * metrics::mean(&vals))
}

/// Like [`suite_average`], also for composite suites (mean of the included suites' averages).
pub fn suite_average_in(registry: &Registry, suite: &Suite, results: &[TaskResult]) -> Option<f64> {
    if suite.includes.is_empty() {
        return suite_average(suite, results);
    }
    let vals: Option<Vec<f64>> = suite
        .includes
        .iter()
        .map(|s| {
            registry
                .suite(s)
                .and_then(|s| suite_average_in(registry, s, results))
        })
        .collect();
    vals.map(|v| metrics::mean(&v))
}

/// The `Average: xx.xx` line as printed on the cards.
pub fn average_line(avg: f64) -> String {
    format!("Average: {avg:.2}")
}

/// Per suite: `## Title:`, the table in a code fence, and the `Average:` line (card layout).
/// Tasks in no suite are listed under `## Other:`.
pub fn render_report(registry: &Registry, results: &[TaskResult]) -> String {
    let tasks: Vec<&Task> = results
        .iter()
        .filter_map(|r| registry.task(&r.task))
        .collect();
    let mut out = String::new();
    let mut covered = std::collections::BTreeSet::new();
    for suite in registry.suites_for(&tasks) {
        if suite.includes.is_empty() {
            let rs: Vec<TaskResult> = results
                .iter()
                .filter(|r| suite.tasks.contains(&r.task))
                .cloned()
                .collect();
            covered.extend(rs.iter().map(|r| r.task.clone()));
            out.push_str(&format!(
                "## {}:\n```\n{}```\n",
                suite.title,
                card_table(&rs)
            ));
            if suite.print_average {
                if let Some(a) = suite_average(suite, results) {
                    out.push_str(&average_line(a));
                    out.push('\n');
                }
            }
            out.push('\n');
        } else if let Some(a) = suite_average_in(registry, suite, results) {
            out.push_str(&format!("## {}:\n{}\n\n", suite.title, average_line(a)));
        }
    }
    let rest: Vec<TaskResult> = results
        .iter()
        .filter(|r| !covered.contains(&r.task))
        .cloned()
        .collect();
    if !rest.is_empty() {
        out.push_str(&format!("## Other:\n```\n{}```\n\n", card_table(&rest)));
    }
    out
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// lm-eval 0.4's doc hash: sha256 of `json.dumps(doc, indent=2, default=str, ensure_ascii=False)`.
pub fn doc_hash(row: &Value) -> String {
    sha256_hex(&serde_json::to_string_pretty(row).unwrap_or_default())
}

/// lm-eval 0.4 style timestamp (`2024-05-01T12-30-45.123456`).
pub fn timestamp() -> String {
    chrono::Local::now()
        .format("%Y-%m-%dT%H-%M-%S%.6f")
        .to_string()
}

fn metric_key(m: &str) -> (String, String) {
    (format!("{m},none"), format!("{m}_stderr,none"))
}

fn json_f64(x: f64) -> Value {
    serde_json::Number::from_f64(x)
        .map(Value::Number)
        .unwrap_or(Value::String("N/A".into()))
}

/// Write `results_<timestamp>.json` (lm-eval 0.4 schema plus our `model` fingerprint).
pub fn write_results_json(
    dir: &Path,
    model_fingerprint: &Value,
    config: &Value,
    results: &[TaskResult],
    tasks: &[&Task],
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    let mut res = Map::new();
    let mut versions = Map::new();
    let mut nshot = Map::new();
    let mut configs = Map::new();
    let mut hashes = Map::new();
    let mut nsamples = Map::new();
    for r in results {
        let mut m = Map::new();
        m.insert("alias".into(), Value::String(r.task.clone()));
        for (name, v, se) in &r.metrics {
            let (k, ks) = metric_key(name);
            m.insert(k, json_f64(*v));
            m.insert(ks, json_f64(*se));
        }
        res.insert(r.task.clone(), Value::Object(m));
        versions.insert(r.task.clone(), json!(r.version));
        nshot.insert(r.task.clone(), json!(0));
        let task = tasks.iter().find(|t| t.name == r.task);
        let original = task.and_then(|t| t.def.n).unwrap_or(r.n);
        nsamples.insert(
            r.task.clone(),
            json!({"original": original, "effective": r.n}),
        );
        if let Some(t) = task {
            hashes.insert(r.task.clone(), json!(t.hash()));
            configs.insert(
                r.task.clone(),
                json!({
                    "task": t.name,
                    "dataset_path": t.def.dataset.path,
                    "dataset_name": t.def.dataset.config,
                    "test_split": t.def.dataset.split,
                    "output_type": if t.def.docs.is_some() { "generate_until" } else if t.def.generation.is_some() { "loglikelihood+generate_until" } else { "multiple_choice" },
                    "metric_list": t.metric_names().iter().map(|m| json!({"metric": m, "aggregation": "mean", "higher_is_better": true})).collect::<Vec<_>>(),
                    "num_fewshot": 0,
                    "metadata": {"version": t.version},
                    "definition": t.def,
                }),
            );
        }
    }
    let model_name = model_fingerprint
        .get("name")
        .or_else(|| model_fingerprint.get("source"))
        .cloned()
        .unwrap_or(Value::String(String::new()));
    let ts = timestamp();
    let out = json!({
        "results": res,
        "versions": versions,
        "n-shot": nshot,
        "configs": configs,
        "config": config,
        "task_hashes": hashes,
        "n-samples": nsamples,
        "model_name": model_name,
        "model": model_fingerprint,
        "date": ts,
    });
    let path = dir.join(format!("results_{ts}.json"));
    write_atomic(
        &path,
        (serde_json::to_string_pretty(&out)? + "\n").as_bytes(),
    )?;
    Ok(path)
}

/// Write `samples_<task>_<timestamp>.jsonl`: one line per doc in lm-eval 0.4's layout, plus a
/// `generation` key so that `rescore` can rebuild every metric.
pub fn write_samples_jsonl(
    dir: &Path,
    task: &Task,
    docs: &[Doc],
    responses: &[Responses],
    scores: &[Score],
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    let path = dir.join(format!("samples_{}_{}.jsonl", task.name, timestamp()));
    // Written beside under a hidden name and renamed when complete: a kill never leaves a torn
    // samples file for `report`, `compare` or `merge` to read.
    let tmp = tmp_path(&path);
    let f = std::fs::File::create(&tmp).map_err(|e| Error::file(&tmp, e))?;
    let mut w = std::io::BufWriter::new(f);
    let empty = Responses::default();
    for (i, doc) in docs.iter().enumerate() {
        let resp = responses.get(i).unwrap_or(&empty);
        let l = &resp.lls;
        let gen = resp.generation.clone();
        let mut arguments: Vec<Value> = doc
            .requests
            .iter()
            .map(|r| json!([r.context, r.continuation]))
            .collect();
        let mut resps: Vec<Value> = l
            .iter()
            .map(|x| json!([[x.logprob, x.is_greedy]]))
            .collect();
        let mut filtered: Vec<Value> = l.iter().map(|x| json!([x.logprob, x.is_greedy])).collect();
        if let Some(g) = &doc.generation {
            arguments
                .push(json!([g.context, {"until": g.until, "max_gen_toks": g.max_new_tokens}]));
            resps.push(json!([gen]));
            filtered.push(json!(gen));
        }
        if let Some(c) = &doc.chat {
            arguments.push(json!([resp.prompt, {"max_gen_toks": c.max_new_tokens, "messages": c.doc.messages()}]));
            resps.push(json!([gen]));
            filtered.push(json!(gen));
        }
        let mut line = Map::new();
        line.insert("doc_id".into(), json!(doc.id));
        line.insert("src_index".into(), json!(doc.src_index));
        line.insert("doc".into(), doc.row.clone());
        line.insert("target".into(), json!(doc.target));
        line.insert("arguments".into(), Value::Array(arguments));
        line.insert("resps".into(), Value::Array(resps));
        line.insert("filtered_resps".into(), Value::Array(filtered));
        line.insert("generation".into(), json!(gen));
        if doc.chat.is_some() {
            line.insert(
                "chat".into(),
                json!({"prompt": resp.prompt, "eos_token": resp.eos_token}),
            );
        }
        if l.iter().any(|x| x.logprob_f64.is_some()) {
            // The f64 sums beside lm-eval's float32 ones (`resps`), one per request.
            let f64s: Vec<Option<f64>> = l.iter().map(|x| x.logprob_f64).collect();
            line.insert("loglik_f64".into(), json!(f64s));
        }
        if let Some(sc) = scores.get(i) {
            for (k, v) in &sc.metrics {
                line.insert(k.clone(), json_f64(*v));
            }
            line.insert("answer".into(), sc.answer.clone());
            line.insert("reason".into(), json!(sc.reason));
            if let Some(d) = &sc.detail {
                line.insert("judge".into(), d.clone());
            }
        }
        line.insert("doc_hash".into(), json!(doc_hash(&doc.row)));
        let prompt = doc
            .requests
            .first()
            .map(|r| r.context.as_str())
            .or(doc.generation.as_ref().map(|g| g.context.as_str()))
            .or(resp.prompt.as_deref())
            .unwrap_or("");
        line.insert("prompt_hash".into(), json!(sha256_hex(prompt)));
        line.insert("target_hash".into(), json!(sha256_hex(&doc.target)));
        writeln!(w, "{}", serde_json::to_string(&Value::Object(line))?)
            .map_err(|e| Error::file(&path, e))?;
    }
    w.flush().map_err(|e| Error::file(&tmp, e))?;
    drop(w);
    std::fs::rename(&tmp, &path).map_err(|e| Error::file(&path, e))?;
    Ok(path)
}

/// The hidden name a file is written under before it is renamed into place.
fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

/// Write `bytes` to `path` all at once or not at all (a kill leaves the old file or none).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).map_err(|e| Error::file(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::file(path, e))
}

pub(crate) fn samples_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::file(dir, e))?;
    let mut by_task: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut names: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    names.sort();
    for p in names {
        if let Some(task) = samples_task_name(&p) {
            by_task.insert(task, p);
        }
    }
    Ok(by_task.into_iter().collect())
}

/// The newest `samples_<task>_<timestamp>.jsonl` of `task` in `dir`.
pub fn latest_samples(dir: &Path, task: &str) -> Result<Option<PathBuf>> {
    Ok(samples_files(dir)?
        .into_iter()
        .find(|(t, _)| t == task)
        .map(|(_, p)| p))
}

fn samples_task_name(p: &Path) -> Option<String> {
    let n = p.file_name()?.to_str()?;
    let stem = n.strip_prefix("samples_")?.strip_suffix(".jsonl")?;
    Some(stem.rsplit_once('_')?.0.to_string())
}

/// `hermes-eval report`: rebuild the task results from saved samples (a directory or one
/// samples file) without the model.
pub fn rescore(dir_or_samples: &Path, registry: &Registry) -> Result<Vec<TaskResult>> {
    let files = if dir_or_samples.is_dir() {
        samples_files(dir_or_samples)?
    } else {
        let t = samples_task_name(dir_or_samples).ok_or_else(|| {
            Error::file(
                dir_or_samples,
                "not a samples_<task>_<timestamp>.jsonl file",
            )
        })?;
        vec![(t, dir_or_samples.to_path_buf())]
    };
    if files.is_empty() {
        return Err(Error::file(
            dir_or_samples,
            "no samples_<task>_<timestamp>.jsonl files",
        ));
    }
    let mut out = Vec::new();
    for (name, path) in files {
        let task = registry
            .task(&name)
            .ok_or_else(|| Error::file(&path, format!("unknown task `{name}`")))?;
        let f = std::fs::File::open(&path).map_err(|e| Error::file(&path, e))?;
        let mut per_doc = Vec::new();
        for (ln, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| Error::file(&path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |m: String| Error::file(&path, format!("line {}: {m}", ln + 1));
            let v: Value = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
            let id = v["doc_id"]
                .as_u64()
                .ok_or_else(|| bad("no doc_id".into()))? as usize;
            let parser = v["judge"]["parser"]
                .as_str()
                .and_then(|p| <crate::fc::ParserMode as clap::ValueEnum>::from_str(p, true).ok());
            let overridden;
            let task = if parser.is_some() {
                overridden = task.with_overrides(parser, None, None)?;
                &overridden
            } else {
                task
            };
            let doc = task.build_doc(id, v["doc"].clone())?;
            let filtered = v["filtered_resps"]
                .as_array()
                .ok_or_else(|| bad("no filtered_resps".into()))?;
            let lls: Vec<Loglik> = filtered
                .iter()
                .take(doc.requests.len())
                .enumerate()
                .map(|(j, r)| {
                    Ok(Loglik {
                        logprob: r[0]
                            .as_f64()
                            .ok_or_else(|| bad("bad log-likelihood".into()))?,
                        is_greedy: r[1].as_bool().unwrap_or(false),
                        logprob_f64: v["loglik_f64"][j].as_f64(),
                    })
                })
                .collect::<Result<_>>()?;
            let resp = Responses {
                lls,
                generation: v["generation"].as_str().map(str::to_string),
                prompt: v["chat"]["prompt"].as_str().map(str::to_string),
                eos_token: v["chat"]["eos_token"].as_str().map(str::to_string),
            };
            per_doc.push(task.score(&doc, &resp)?.metrics);
        }
        out.push(aggregate(task, &per_doc));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
