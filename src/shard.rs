//! Sharded runs: `run … --shard i/n` evaluates a deterministic 1/n of every task's documents and
//! writes its samples with a manifest (`shard.json`); `merge` checks that the shards belong to
//! one plan and cover every document exactly once, and writes the results, samples and card
//! tables exactly as one unsharded run would.
//!
//! The split is made from the full ordered plan (after `--doc-order` and `--limit`): whole
//! documents, balanced by the tokens each one puts through the model (longest first, each to
//! the shard with the fewest tokens so far; ties to the lower shard and the earlier document).
//! It depends only on the plan and the tokenizer, so every machine computes the same split.
use crate::doc::Doc;
use crate::error::{Error, Result};
use crate::model::ModelIdentity;
use crate::report::{self, TaskResult};
use crate::tasks::{Registry, Task};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// The manifest's file name in a shard's output directory.
pub const MANIFEST: &str = "shard.json";

/// Shard `index` of `count` (`--shard 0/3` is the first of three).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("`{s}`: expected i/n with 0 <= i < n, e.g. 0/3");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard of every document: longest first (ties: earlier first), each to the shard with the
/// fewest tokens so far (ties: the lower shard).
pub fn assign(tokens: &[usize], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..tokens.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(tokens[i]), i));
    let mut load = vec![0usize; count.max(1)];
    let mut owner = vec![0usize; tokens.len()];
    for i in order {
        let s = (0..load.len()).min_by_key(|&s| (load[s], s)).unwrap_or(0);
        owner[i] = s;
        load[s] += tokens[i];
    }
    owner
}

/// One task of a shard: every document of the plan, and which of them this shard scored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardTask {
    pub name: String,
    /// sha256 of the task definition as run (overrides applied).
    pub hash: String,
    /// Every document of the plan (doc ids, plan order).
    pub plan_docs: Vec<usize>,
    /// The documents of this shard (doc ids, plan order).
    pub docs: Vec<usize>,
    /// Tokens of this shard's documents (what the split balanced).
    pub tokens: usize,
}

/// `shard.json`: what `merge` needs besides the samples.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub hermes_eval_version: String,
    /// sha256 of everything that decides the split and the numbers: tasks and their documents,
    /// the shard count, the tokenizer, the engine's generation options and the chat template.
    pub plan_hash: String,
    pub shard: Shard,
    /// The model as an unsharded run records it in the results.
    pub model: Value,
    pub identity: ModelIdentity,
    /// The results' `config` block as an unsharded run writes it.
    pub config: Value,
    pub overrides: Overrides,
    pub tasks: Vec<ShardTask>,
}

/// The chat judge overrides of the run (re-applied to the tasks by `merge`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Overrides {
    pub parser: Option<crate::fc::ParserMode>,
    pub schema_order: Option<crate::fc::SchemaOrder>,
    #[serde(default)]
    pub apply_chat_template: Option<bool>,
}

/// The plan hash of a sharded run (see [`Manifest::plan_hash`]).
pub fn plan_hash(
    tasks: &[(&Task, &[Doc])],
    count: usize,
    identity: &ModelIdentity,
    config: &Value,
) -> String {
    let tasks: Vec<Value> = tasks
        .iter()
        .map(|(t, docs)| {
            serde_json::json!({
                "task": t.name, "hash": t.hash(),
                "docs": docs.iter().map(|d| (d.id, d.src_index, report::doc_hash(&d.row))).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut config = config.clone();
    if let Some(o) = config.as_object_mut() {
        // What may differ between the shards of one plan without changing a number.
        for k in [
            "elapsed_s",
            "request_cache_hits",
            "request_cache_skipped",
            "data_dir",
        ] {
            o.remove(k);
        }
        if let Some(e) = o.get_mut("engine").and_then(|e| e.as_object_mut()) {
            e.remove("batch_size");
            e.remove("window");
        }
    }
    let v = serde_json::json!({
        "tasks": tasks, "count": count, "tokenizer": identity.tokenizer_sha256, "config": config,
    });
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

/// Write the manifest of a finished shard.
pub fn write_manifest(dir: &Path, m: &Manifest) -> Result<PathBuf> {
    let path = dir.join(MANIFEST);
    std::fs::write(&path, serde_json::to_string_pretty(m)? + "\n")
        .map_err(|e| Error::file(&path, e))?;
    Ok(path)
}

/// Remove a manifest left by an earlier run in `dir` (a shard is marked finished only when its
/// manifest is written at the end).
pub fn clear_manifest(dir: &Path) -> Result<()> {
    match std::fs::remove_file(dir.join(MANIFEST)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::file(dir.join(MANIFEST), e))
        }
        _ => Ok(()),
    }
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::NotFound {
            "no shard manifest: not the output of a finished `run --shard i/n`".to_string()
        } else {
            e.to_string()
        };
        Error::file(&path, why)
    })?;
    serde_json::from_str(&text).map_err(|e| Error::file(&path, format!("bad shard manifest: {e}")))
}

/// The newest samples file of `task` in `dir`, as raw JSON lines keyed by doc id.
fn read_samples(dir: &Path, task: &str) -> Result<BTreeMap<usize, (String, Value)>> {
    let path = report::latest_samples(dir, task)?
        .ok_or_else(|| Error::file(dir, format!("no samples of task {task}")))?;
    let f = std::fs::File::open(&path).map_err(|e| Error::file(&path, e))?;
    let mut out = BTreeMap::new();
    for (ln, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| Error::file(&path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |m: &str| Error::file(&path, format!("line {}: {m}", ln + 1));
        let v: Value = serde_json::from_str(&line).map_err(|e| bad(&e.to_string()))?;
        let id = v["doc_id"].as_u64().ok_or_else(|| bad("no doc_id"))? as usize;
        if out.insert(id, (line, v)).is_some() {
            return Err(bad(&format!("document {id} twice")));
        }
    }
    Ok(out)
}

/// `hermes-eval merge`: check the shards and write the run they make up into `out`.
pub fn merge(dirs: &[PathBuf], out: &Path, reg: &Registry) -> Result<()> {
    let err = |m: String| Error::Merge(m);
    if dirs.is_empty() {
        return Err(err("name the shard directories".into()));
    }
    let _lock = crate::lock::DirLock::acquire(out, "merge")?;
    let manifests: Vec<Manifest> = dirs
        .iter()
        .map(|d| read_manifest(d))
        .collect::<Result<_>>()?;
    let first = &manifests[0];
    let count = first.shard.count;
    let mut seen: Vec<Option<&Path>> = vec![None; count];
    for (m, dir) in manifests.iter().zip(dirs) {
        if m.plan_hash != first.plan_hash || m.shard.count != count {
            return Err(err(format!(
                "{} is shard {} of another plan than {} (plan {} vs {}): shards must come from the same command with the same --shard count",
                dir.display(), m.shard, dirs[0].display(), short(&m.plan_hash), short(&first.plan_hash)
            )));
        }
        let (a, b) = (&m.identity, &first.identity);
        if (
            &a.backend,
            &a.format,
            &a.weights_sha256,
            &a.tokenizer_sha256,
        ) != (
            &b.backend,
            &b.format,
            &b.weights_sha256,
            &b.tokenizer_sha256,
        ) {
            return Err(err(format!(
                "{} was scored by another model than {}",
                dir.display(),
                dirs[0].display()
            )));
        }
        if a.compute != b.compute {
            eprintln!(
                "note: {} computed with `{}`, {} with `{}`",
                dirs[0].display(),
                b.compute,
                dir.display(),
                a.compute
            );
        }
        if let Some(prev) = seen[m.shard.index] {
            return Err(err(format!(
                "shard {} given twice ({} and {})",
                m.shard,
                prev.display(),
                dir.display()
            )));
        }
        seen[m.shard.index] = Some(dir);
    }
    let missing: Vec<String> = (0..count)
        .filter(|&i| seen[i].is_none())
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(err(format!("missing shard(s) {}", missing.join(", "))));
    }

    // Shard 0 speaks for the plan (its model record and config, as an unsharded run writes them).
    let mut order: Vec<usize> = (0..manifests.len()).collect();
    order.sort_by_key(|&i| manifests[i].shard.index);
    let dirs: Vec<&PathBuf> = order.iter().map(|&i| &dirs[i]).collect();
    let manifests: Vec<&Manifest> = order.iter().map(|&i| &manifests[i]).collect();
    let first = manifests[0];
    // Everything is checked before anything is written.
    let mut texts: Vec<String> = vec![];
    let mut tasks: Vec<Task> = vec![];
    let mut results: Vec<TaskResult> = vec![];
    for (ti, st) in first.tasks.iter().enumerate() {
        let task = reg
            .task(&st.name)
            .ok_or_else(|| err(format!("unknown task `{}`", st.name)))?
            .with_overrides(
                first.overrides.parser,
                first.overrides.schema_order,
                first.overrides.apply_chat_template,
            )?;
        if task.hash() != st.hash {
            return Err(err(format!(
                "task {} changed since the shards were run (definition hash differs)",
                st.name
            )));
        }
        // Every document of the plan exactly once, from the shard that owns it.
        let mut lines: BTreeMap<usize, (String, Value)> = BTreeMap::new();
        for (m, dir) in manifests.iter().zip(&dirs) {
            let mt = m
                .tasks
                .get(ti)
                .filter(|t| t.name == st.name)
                .ok_or_else(|| err(format!("{}: no task {}", dir.display(), st.name)))?;
            let mut samples = read_samples(dir, &st.name)?;
            for id in &mt.docs {
                let line = samples.remove(id).ok_or_else(|| {
                    err(format!(
                        "{}: task {}: document {id} of shard {} has no sample (rerun the shard)",
                        dir.display(),
                        st.name,
                        m.shard
                    ))
                })?;
                if lines.insert(*id, line).is_some() {
                    return Err(err(format!(
                        "task {}: document {id} is in two shards",
                        st.name
                    )));
                }
            }
        }
        let plan: Vec<usize> = st.plan_docs.clone();
        if lines.len() != plan.len() || plan.iter().any(|id| !lines.contains_key(id)) {
            return Err(err(format!(
                "task {}: the shards cover {} of the plan's {} documents",
                st.name,
                lines.len(),
                plan.len()
            )));
        }
        // The task's metrics and the weights its aggregations need; every one must be there.
        let mut metric_names = task.metric_names();
        if task.def.aggregation.values().any(|a| a == "flatten_mean") {
            metric_names.push("num_instructions".into());
        }
        let mut text = String::new();
        let mut per_doc = Vec::with_capacity(plan.len());
        for id in &plan {
            let (line, v) = &lines[id];
            text.push_str(line);
            text.push('\n');
            let mut metrics = BTreeMap::new();
            for m in &metric_names {
                // Samples write a NaN metric as "N/A" (lm-eval's form).
                let x = match &v[m] {
                    Value::String(s) if s == "N/A" => f64::NAN,
                    x => x.as_f64().ok_or_else(|| {
                        err(format!(
                            "task {}: document {id}: its sample has no number `{m}`",
                            st.name
                        ))
                    })?,
                };
                metrics.insert(m.clone(), x);
            }
            per_doc.push(metrics);
        }
        texts.push(text);
        results.push(report::aggregate(&task, &per_doc));
        tasks.push(task);
    }
    let mut config = first.config.clone();
    for key in ["elapsed_s", "request_cache_hits", "request_cache_skipped"] {
        let total: f64 = manifests
            .iter()
            .map(|m| m.config[key].as_f64().unwrap_or(0.0))
            .sum();
        config[key] = if key == "elapsed_s" {
            serde_json::json!(total)
        } else {
            serde_json::json!(total as u64)
        };
    }
    std::fs::create_dir_all(out).map_err(|e| Error::file(out, e))?;
    for (task, text) in tasks.iter().zip(&texts) {
        let path = out.join(format!(
            "samples_{}_{}.jsonl",
            task.name,
            report::timestamp()
        ));
        report::write_atomic(&path, text.as_bytes())?;
    }
    let refs: Vec<&Task> = tasks.iter().collect();
    crate::run::write_outputs(out, reg, &first.model, &config, &results, &refs, None)?;
    Ok(())
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_i_of_n() {
        assert_eq!("1/3".parse::<Shard>(), Ok(Shard { index: 1, count: 3 }));
        for bad in ["3/3", "0/0", "1", "a/2", "-1/2", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn assignment_is_balanced_whole_and_deterministic() {
        let tokens = [50, 10, 10, 30, 20, 40, 5, 5];
        let owner = assign(&tokens, 3);
        assert_eq!(owner, assign(&tokens, 3));
        let mut load = [0; 3];
        for (i, &s) in owner.iter().enumerate() {
            load[s] += tokens[i];
        }
        // 170 tokens: LPT gives 60/55/55.
        assert_eq!(load.iter().sum::<usize>(), 170);
        assert!(
            load.iter().max().unwrap() - load.iter().min().unwrap() <= 10,
            "{load:?}"
        );
        assert!(assign(&[1, 1], 1).iter().all(|&s| s == 0));
        // More shards than documents: some shards are empty, nobody is lost.
        let o = assign(&[3, 2], 4);
        assert_eq!(o, vec![0, 1]);
    }
}
