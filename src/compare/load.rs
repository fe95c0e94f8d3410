//! Reading an lm-evaluation-harness 0.4 run directory: the newest `results_<timestamp>.json` and,
//! per task, `samples_<task>_<timestamp>.jsonl`.
use crate::error::{Error, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One aggregate metric of a task as printed in the results file.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValue {
    pub value: f64,
    pub stderr: Option<f64>,
}

/// One line of a samples file, reduced to what comparison needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub doc_id: i64,
    pub doc_hash: Option<String>,
    /// Per-document metric values (`acc`, `acc_norm`, `mc2`, ...); booleans count as 0/1.
    pub metrics: BTreeMap<String, f64>,
    /// Log-likelihood per request from `filtered_resps` (else `resps`); empty for generation.
    pub logliks: Vec<f64>,
}

#[derive(Debug, Clone)]
pub struct TaskRun {
    pub metrics: BTreeMap<String, MetricValue>,
    /// Samples sorted by `doc_id`; `None` when no samples file was found.
    pub samples: Option<Vec<Sample>>,
    pub samples_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct RunDir {
    pub dir: PathBuf,
    pub results_file: PathBuf,
    pub model_name: Option<String>,
    /// The `model` fingerprint object, if any.
    pub model: Option<Value>,
    pub tasks: BTreeMap<String, TaskRun>,
}

/// The newest results file of a directory. Timestamps in lm-eval names sort lexicographically
/// (`2024-05-01T12-34-56.123456`), so the greatest file name is the newest.
pub fn newest_results_file(dir: &Path) -> Result<PathBuf> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| Error::file(dir, format!("cannot read run directory: {e}")))?;
    let mut best: Option<String> = None;
    for entry in rd {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with("results_")
            && name.ends_with(".json")
            && best.as_ref().is_none_or(|b| name > *b)
        {
            best = Some(name);
        }
    }
    match best {
        Some(b) => Ok(dir.join(b)),
        None => Err(Error::file(
            dir,
            "no results_<timestamp>.json in this directory (is it a run directory?)",
        )),
    }
}

/// `samples_<task>_<timestamp>.jsonl` for `task`: the one with the results file's timestamp if
/// present, else the newest. The remainder after `samples_<task>_` must start with a digit, so
/// `arc` does not pick up `samples_arc_easy_…`.
pub fn find_samples_file(dir: &Path, task: &str, timestamp: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("samples_{task}_");
    let mut cands: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix(&prefix) {
            if name.ends_with(".jsonl") && rest.starts_with(|c: char| c.is_ascii_digit()) {
                cands.push(name);
            }
        }
    }
    let exact = format!("{prefix}{timestamp}.jsonl");
    if cands.contains(&exact) {
        return Ok(Some(dir.join(exact)));
    }
    cands.sort();
    Ok(cands.pop().map(|n| dir.join(n)))
}

pub fn load_run(dir: &Path) -> Result<RunDir> {
    let results_file = newest_results_file(dir)?;
    let text = std::fs::read_to_string(&results_file)?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| Error::file(&results_file, format!("invalid JSON: {e}")))?;
    let results = json
        .get("results")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::file(&results_file, "no \"results\" object"))?;
    let fname = results_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let timestamp = fname
        .trim_start_matches("results_")
        .trim_end_matches(".json")
        .to_string();

    let mut tasks = BTreeMap::new();
    for (task, obj) in results {
        let Some(obj) = obj.as_object() else { continue };
        let metrics = parse_metrics(obj);
        if let Some((k, _)) = metrics.iter().find(|(_, m)| m.value.is_nan()) {
            return Err(Error::file(
                &results_file,
                format!(
                    "task {task}: metric `{k}` is NaN; a run with NaN results cannot be compared"
                ),
            ));
        }
        if metrics.is_empty() {
            continue;
        }
        let samples_file = find_samples_file(dir, task, &timestamp)?;
        let samples = match &samples_file {
            Some(p) => Some(read_samples(p)?),
            None => None,
        };
        tasks.insert(
            task.clone(),
            TaskRun {
                metrics,
                samples,
                samples_file,
            },
        );
    }
    Ok(RunDir {
        dir: dir.to_path_buf(),
        results_file,
        model_name: json
            .get("model_name")
            .and_then(Value::as_str)
            .map(str::to_string),
        model: json.get("model").cloned(),
        tasks,
    })
}

/// `{"acc,none": v, "acc_stderr,none": s, "alias": ..}` → metric → (value, stderr). Only the
/// `none` filter keeps the bare metric name; other filters are kept as `metric,filter`.
fn parse_metrics(obj: &serde_json::Map<String, Value>) -> BTreeMap<String, MetricValue> {
    let key_name = |k: &str| -> String {
        match k.split_once(',') {
            Some((m, "none")) | Some((m, "")) => m.to_string(),
            Some((m, f)) => format!("{m},{f}"),
            None => k.to_string(),
        }
    };
    let mut values = BTreeMap::new();
    let mut stderrs = BTreeMap::new();
    for (k, v) in obj {
        let Some(x) = number(v) else { continue };
        let name = key_name(k);
        let (metric, filter) = match name.split_once(',') {
            Some((m, f)) => (m.to_string(), Some(f.to_string())),
            None => (name.clone(), None),
        };
        if let Some(base) = metric.strip_suffix("_stderr") {
            let base = match &filter {
                Some(f) => format!("{base},{f}"),
                None => base.to_string(),
            };
            stderrs.insert(base, x);
        } else {
            values.insert(name, x);
        }
    }
    values
        .into_iter()
        .map(|(k, value)| {
            let stderr = stderrs.get(&k).copied().filter(|s| s.is_finite());
            (k, MetricValue { value, stderr })
        })
        .collect()
}

/// A number, a numeric string (`"-23.54"`) or a boolean (`true`, `"False"`) as f64.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => match s.as_str() {
            "True" | "true" => Some(1.0),
            "False" | "false" => Some(0.0),
            s => s.trim().parse().ok(),
        },
        _ => None,
    }
}

/// The log-likelihood of one request: `[ll, greedy]`, `[[ll, greedy]]` (lm-eval `resps`),
/// numbers or strings.
fn request_loglik(v: &Value) -> Option<f64> {
    match v {
        Value::Array(a) => match a.first()? {
            inner @ Value::Array(_) => request_loglik(inner),
            first => match first {
                Value::Number(_) | Value::String(_) => number(first),
                _ => None,
            },
        },
        Value::Number(_) => number(v),
        _ => None,
    }
}

pub fn read_samples(path: &Path) -> Result<Vec<Sample>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("line {}", i + 1);
        let v: Value = serde_json::from_str(line)
            .map_err(|e| Error::file(path, format!("{}: invalid JSON: {e}", at())))?;
        let obj = v
            .as_object()
            .ok_or_else(|| Error::file(path, format!("{}: not a JSON object", at())))?;
        let doc_id = obj
            .get("doc_id")
            .and_then(|d| {
                d.as_i64()
                    .or_else(|| d.as_str().and_then(|s| s.parse().ok()))
            })
            .ok_or_else(|| Error::file(path, format!("{}: missing integer doc_id", at())))?;
        let doc_hash = obj
            .get("doc_hash")
            .and_then(Value::as_str)
            .map(str::to_string);
        // lm-eval writes one line per (document, filter) for tasks with several filters; their
        // per-doc metrics are named `metric,filter` here, like the aggregate keys.
        let filter = obj
            .get("filter")
            .and_then(Value::as_str)
            .filter(|f| !f.is_empty() && *f != "none")
            .map(str::to_string);
        let name = |k: &str| match &filter {
            Some(f) => format!("{k},{f}"),
            None => k.to_string(),
        };
        let mut metrics = BTreeMap::new();
        const NOT_METRICS: [&str; 10] = [
            "doc_id",
            "doc",
            "doc_hash",
            "prompt_hash",
            "target_hash",
            "target",
            "arguments",
            "resps",
            "filtered_resps",
            "filter",
        ];
        for (k, v) in obj {
            if NOT_METRICS.contains(&k.as_str()) {
                continue;
            }
            if let (Value::Number(_) | Value::Bool(_), Some(x)) = (v, number(v)) {
                metrics.insert(name(k), x);
            }
        }
        // lm-eval also nests per-doc metrics under "metrics" in some versions: accept both.
        if let Some(m) = obj.get("metrics").and_then(Value::as_object) {
            for (k, v) in m {
                if let Some(x) = number(v) {
                    metrics.entry(name(k)).or_insert(x);
                }
            }
        }
        metrics.remove("metrics");
        if let Some((k, _)) = metrics.iter().find(|(_, x)| x.is_nan()) {
            return Err(Error::file(
                path,
                format!(
                    "{}: `{k}` is NaN; a run with NaN samples cannot be compared",
                    at()
                ),
            ));
        }
        let resps = obj.get("filtered_resps").or_else(|| obj.get("resps"));
        let logliks = match resps.and_then(Value::as_array) {
            Some(list) => {
                let lls: Option<Vec<f64>> = list.iter().map(request_loglik).collect();
                lls.unwrap_or_default()
            }
            None => Vec::new(),
        };
        if let Some(r) = logliks.iter().position(|x| x.is_nan()) {
            return Err(Error::file(
                path,
                format!(
                    "{}: the log-likelihood of request {r} is NaN; a run with NaN samples cannot be compared",
                    at()
                ),
            ));
        }
        let sample = Sample {
            doc_id,
            doc_hash,
            metrics,
            logliks,
        };
        out.push((sample, filter));
    }
    // Stable sort: lines of one document stay in file order.
    out.sort_by_key(|(s, _)| s.doc_id);
    let mut merged: Vec<Sample> = Vec::with_capacity(out.len());
    let mut filters_seen: Vec<Option<String>> = Vec::new();
    for (s, f) in out {
        match merged.last_mut() {
            Some(last) if last.doc_id == s.doc_id => {
                if filters_seen.contains(&f) {
                    return Err(Error::file(
                        path,
                        format!("doc_id {} appears twice", s.doc_id),
                    ));
                }
                filters_seen.push(f.clone());
                last.metrics.extend(s.metrics);
                // The log-likelihoods of the unfiltered line win.
                if f.is_none() || last.logliks.is_empty() {
                    last.logliks = s.logliks;
                }
            }
            _ => {
                filters_seen = vec![f];
                merged.push(s);
            }
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_lm_eval_keys() {
        let obj = json!({"acc,none": 0.5, "acc_stderr,none": 0.1, "acc_norm,none": 0.6, "alias": "arc", "acc_stderr,strict": "N/A"});
        let m = parse_metrics(obj.as_object().unwrap());
        assert_eq!(
            m["acc"],
            MetricValue {
                value: 0.5,
                stderr: Some(0.1)
            }
        );
        assert_eq!(
            m["acc_norm"],
            MetricValue {
                value: 0.6,
                stderr: None
            }
        );
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn several_filters_per_document_are_merged() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("samples_gsm_2026.jsonl");
        std::fs::write(
            &p,
            concat!(
                r#"{"doc_id": 1, "filter": "strict-match", "exact_match": 1.0, "filtered_resps": ["4"]}"#,
                "\n",
                r#"{"doc_id": 0, "filter": "strict-match", "exact_match": 0.0}"#,
                "\n",
                r#"{"doc_id": 1, "filter": "flexible-extract", "exact_match": 0.0}"#,
                "\n",
            ),
        )
        .unwrap();
        let s = read_samples(&p).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].metrics["exact_match,strict-match"], 1.0);
        assert_eq!(s[1].metrics["exact_match,flexible-extract"], 0.0);
        assert!(s[1].logliks.is_empty());
        std::fs::write(
            &p,
            "{\"doc_id\": 3, \"acc\": 1}\n{\"doc_id\": 3, \"acc\": 0}\n",
        )
        .unwrap();
        let e = read_samples(&p).unwrap_err().to_string();
        assert!(e.contains("doc_id 3 appears twice"), "{e}");
    }

    #[test]
    fn request_logliks_in_both_spellings() {
        assert_eq!(request_loglik(&json!(["-23.54", "False"])), Some(-23.54));
        assert_eq!(request_loglik(&json!([-1.5, true])), Some(-1.5));
        assert_eq!(request_loglik(&json!([["-2.0", "True"]])), Some(-2.0));
        assert_eq!(request_loglik(&json!(["some generated text"])), None);
    }
}
