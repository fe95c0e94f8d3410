//! Tasks are data: `tasks/*.toml` (one file per task, plus `suites.toml`), rendered with
//! minijinja. What a template cannot express is a named Rust function the TOML refers to
//! (`preprocess`, `requests`, `scorer`).
mod builtins;
pub mod chat;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::data::{DataSource, DatasetRef, DocOrder, DocSelection};
use crate::doc::{Doc, GenRequest, Loglik, LoglikRequest, Responses, Score};
use crate::error::{Error, Result};
use crate::metrics;
use crate::py::text as pystr;

/// The builtin task files, embedded in the binary (name, TOML source).
pub const BUILTIN_TASK_FILES: &[(&str, &str)] = builtins::FILES;
/// The builtin suites file.
pub const BUILTIN_SUITES: &str = include_str!("../../tasks/suites.toml");

/// One task file (`tasks/<name>.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDef {
    pub name: String,
    pub version: u32,
    pub dataset: DatasetRef,
    /// Columns the templates read (checked when the parquet is opened).
    #[serde(default)]
    pub columns: Vec<String>,
    /// Named row transformation applied before the templates (`hellaswag`).
    #[serde(default)]
    pub preprocess: Option<String>,
    /// Template of the context (multiple-choice tasks).
    #[serde(default)]
    pub context: String,
    /// Expression giving the list of choice strings.
    #[serde(default)]
    pub choices: String,
    /// Template of one continuation; `choice` is the choice string.
    #[serde(default = "default_continuation")]
    pub continuation: String,
    /// Expression giving the gold index (or list of indices).
    #[serde(default)]
    pub gold: String,
    /// Expression giving the samples `target`; default: the first gold index.
    #[serde(default)]
    pub target: Option<String>,
    /// Named request builder: `multiple_choice` (one request per choice), `winogrande_partial`,
    /// `truthfulqa_mc`.
    #[serde(default = "default_requests")]
    pub requests: String,
    /// Named scorer: `multiple_choice`, `boolq`, `truthfulqa_mc`, `bigbench_mcg`.
    #[serde(default = "default_scorer")]
    pub scorer: String,
    /// Metrics in table order.
    pub metrics: Vec<String>,
    /// Optional greedy-generation request (BigBench exact_str_match).
    #[serde(default)]
    pub generation: Option<GenerationDef>,
    /// Named document builder of a chat task (`nous_fc`, `bfcl`, `nous_json`,
    /// `maskbench_json`, `jsonschemabench`): its rows become chat documents rendered through
    /// the model's chat template.
    #[serde(default)]
    pub docs: Option<String>,
    /// Settings of a chat task.
    #[serde(default)]
    pub chat: Option<ChatDef>,
    /// How a metric is aggregated over documents when not by the mean: `flatten_mean` (the
    /// per-document value is the fraction of the document's `num_instructions` items that
    /// pass; the task value is the fraction of all items, with no stderr, as lm-eval's
    /// `agg_inst_level_acc`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aggregation: BTreeMap<String, String>,
    /// Expected number of documents (for the listing).
    #[serde(default)]
    pub n: Option<usize>,
    /// A quirk worth stating in the listing.
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationDef {
    pub context: String,
    #[serde(default)]
    pub until: Vec<String>,
    pub max_new_tokens: usize,
    /// Characters kept before post-processing (BigBench: 128).
    #[serde(default)]
    pub max_chars: Option<usize>,
}

/// Settings of a chat (generative) task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatDef {
    #[serde(default = "default_chat_tokens")]
    pub max_new_tokens: usize,
    /// Tool-call parser: `xml` (the card's) or `regex` (the evaluator's later one).
    #[serde(default)]
    pub parser: crate::fc::ParserMode,
    /// Key order of the FunctionCall schema in the system prompt (`V1` pydantic v1, `V2`).
    #[serde(default)]
    pub schema_order: crate::fc::SchemaOrder,
    /// Render the prompt through the chat template (default); off, the prompt is sent as raw
    /// text (IFEval as lm-eval runs it without `--apply_chat_template`).
    #[serde(default = "yes")]
    pub apply_chat_template: bool,
}

fn default_chat_tokens() -> usize {
    512
}

impl Default for ChatDef {
    fn default() -> Self {
        ChatDef {
            max_new_tokens: default_chat_tokens(),
            parser: Default::default(),
            schema_order: Default::default(),
            apply_chat_template: true,
        }
    }
}

fn default_continuation() -> String {
    " {{ choice }}".into()
}
fn default_requests() -> String {
    "multiple_choice".into()
}
fn default_scorer() -> String {
    "multiple_choice".into()
}

const PREPROCESSORS: &[&str] = &["hellaswag"];
const REQUEST_BUILDERS: &[&str] = &["multiple_choice", "winogrande_partial", "truthfulqa_mc"];
const SCORERS: &[&str] = &[
    "multiple_choice",
    "boolq",
    "truthfulqa_mc",
    "bigbench_mcg",
    "tool_call",
    "json",
    "ifeval",
];

/// A loaded, validated task.
#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub version: u32,
    pub def: TaskDef,
    source: String,
    env: Environment<'static>,
}

fn env_for(def: &TaskDef) -> std::result::Result<Environment<'static>, String> {
    let mut env = Environment::new();
    env.set_fuel(Some(crate::limits::TASK_TEMPLATE_FUEL));
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    // `index_of(list, value)`: Python `list.index(value)` (errors when absent).
    env.add_function(
        "index_of",
        |list: minijinja::Value, item: minijinja::Value| {
            let it = list.try_iter()?;
            for (i, v) in it.enumerate() {
                if v == item {
                    return Ok(minijinja::Value::from(i));
                }
            }
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("{item} is not in list"),
            ))
        },
    );
    crate::limits::no_panic(|| env.add_template_owned("context", def.context.clone()))
        .map_err(|e| format!("context template: {e}"))?;
    crate::limits::no_panic(|| env.add_template_owned("continuation", def.continuation.clone()))
        .map_err(|e| format!("continuation template: {e}"))?;
    if let Some(g) = &def.generation {
        crate::limits::no_panic(|| env.add_template_owned("generation", g.context.clone()))
            .map_err(|e| format!("generation template: {e}"))?;
    }
    for (what, e) in [
        ("choices", Some(&def.choices).filter(|c| !c.is_empty())),
        ("gold", Some(&def.gold).filter(|g| !g.is_empty())),
        ("target", def.target.as_ref()),
    ] {
        if let Some(e) = e {
            crate::limits::no_panic(|| env.compile_expression(e).map(|_| ()))
                .map_err(|err| format!("{what} expression: {err}"))?;
        }
    }
    Ok(env)
}

fn one_line(s: impl std::fmt::Display) -> String {
    s.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl Task {
    /// Parse and check a task file. `origin` names it in errors.
    pub fn from_toml(source: &str, origin: &str) -> Result<Task> {
        let def: TaskDef = toml::from_str(source).map_err(|e| Error::file(origin, one_line(e)))?;
        let bad = |msg: String| Error::task(&def.name, format!("{msg} (in {origin})"));
        if let Some(p) = &def.preprocess {
            if !PREPROCESSORS.contains(&p.as_str()) {
                return Err(bad(format!(
                    "unknown preprocess `{p}` (known: {})",
                    PREPROCESSORS.join(", ")
                )));
            }
        }
        if !REQUEST_BUILDERS.contains(&def.requests.as_str()) {
            return Err(bad(format!(
                "unknown requests `{}` (known: {})",
                def.requests,
                REQUEST_BUILDERS.join(", ")
            )));
        }
        if !SCORERS.contains(&def.scorer.as_str()) {
            return Err(bad(format!(
                "unknown scorer `{}` (known: {})",
                def.scorer,
                SCORERS.join(", ")
            )));
        }
        let known: &[&str] = match def.scorer.as_str() {
            "multiple_choice" => &["acc", "acc_norm"],
            "boolq" => &["acc"],
            "truthfulqa_mc" => &["mc1", "mc2"],
            "tool_call" => &["acc", "ast_acc"],
            "json" => &["acc", "schema_compliance"],
            "ifeval" => &[
                "prompt_level_strict_acc",
                "inst_level_strict_acc",
                "prompt_level_loose_acc",
                "inst_level_loose_acc",
            ],
            _ => &["multiple_choice_grade", "exact_str_match"],
        };
        for m in &def.metrics {
            if !known.contains(&m.as_str()) {
                return Err(bad(format!(
                    "scorer `{}` has no metric `{m}` (it has: {})",
                    def.scorer,
                    known.join(", ")
                )));
            }
        }
        for (m, a) in &def.aggregation {
            if !def.metrics.contains(m) || !["mean", "flatten_mean"].contains(&a.as_str()) {
                return Err(bad(format!(
                    "aggregation `{m} = {a}`: expected a metric of the task and mean or flatten_mean"
                )));
            }
        }
        let chat_scorer = matches!(def.scorer.as_str(), "tool_call" | "json" | "ifeval");
        match (&def.docs, chat_scorer) {
            (Some(b), true) => {
                if !chat::BUILDERS.contains(&b.as_str()) {
                    return Err(bad(format!(
                        "unknown docs `{b}` (known: {})",
                        chat::BUILDERS.join(", ")
                    )));
                }
                if chat::scorer_of(b) != def.scorer {
                    return Err(bad(format!(
                        "docs `{b}` are scored by `{}`, not `{}`",
                        chat::scorer_of(b),
                        def.scorer
                    )));
                }
            }
            (None, true) => {
                return Err(bad(format!(
                    "scorer `{}` needs a chat document builder (`docs = ...`)",
                    def.scorer
                )))
            }
            (Some(b), false) => {
                return Err(bad(format!(
                    "docs `{b}` build chat documents: use scorer `{}`",
                    chat::scorer_of(b)
                )))
            }
            (None, false) => {
                for (what, v) in [
                    ("context", &def.context),
                    ("choices", &def.choices),
                    ("gold", &def.gold),
                ] {
                    if v.is_empty() {
                        return Err(bad(format!("missing `{what}`")));
                    }
                }
            }
        }
        if def.metrics.is_empty() {
            return Err(bad("no metrics".into()));
        }
        if def.metrics.iter().any(|m| m == "exact_str_match") && def.generation.is_none() {
            return Err(bad(
                "metric exact_str_match needs a [generation] request".into()
            ));
        }
        let env = env_for(&def).map_err(|m| bad(one_line(m)))?;
        Ok(Task {
            name: def.name.clone(),
            version: def.version,
            def,
            source: source.to_string(),
            env,
        })
    }

    /// This task with its chat judge settings overridden (`--parser`, `--schema-order`); the
    /// same task when nothing is overridden or it is not a chat task.
    pub fn with_overrides(
        &self,
        parser: Option<crate::fc::ParserMode>,
        schema_order: Option<crate::fc::SchemaOrder>,
        apply_chat_template: Option<bool>,
    ) -> Result<Task> {
        let origin = format!("task {}", self.name);
        let none = parser.is_none() && schema_order.is_none() && apply_chat_template.is_none();
        if self.def.docs.is_none() || none {
            return Ok(self.clone());
        }
        let mut def = self.def.clone();
        let mut c = def.chat.unwrap_or_default();
        if let Some(p) = parser {
            c.parser = p;
        }
        if let Some(o) = schema_order {
            c.schema_order = o;
        }
        if let Some(a) = apply_chat_template {
            c.apply_chat_template = a;
        }
        def.chat = Some(c);
        let src = toml::to_string(&def).map_err(|e| Error::task(&self.name, one_line(e)))?;
        Task::from_toml(&src, &origin)
    }

    /// Metric names in table order.
    pub fn metric_names(&self) -> Vec<String> {
        self.def.metrics.clone()
    }

    /// sha256 of the task definition (the TOML text).
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.source.as_bytes()))
    }

    /// `org/name/config/split`.
    pub fn dataset_label(&self) -> String {
        self.def.dataset.to_string()
    }

    /// The first `limit` documents in dataset order.
    pub fn load_docs(&self, data: &DataSource, limit: Option<usize>) -> Result<Vec<Doc>> {
        self.load_selected(data, &DocSelection::new(DocOrder::Dataset, limit))
    }

    /// The selected documents in evaluation order: `Doc::id` is the position in that order (the
    /// `doc_id` the card harness reports), `Doc::src_index` the row in the split. Only the
    /// selected rows are decoded.
    pub fn load_selected(&self, data: &DataSource, sel: &DocSelection) -> Result<Vec<Doc>> {
        if let Some(b) = &self.def.docs {
            // Chat datasets are small JSON files: read them whole, then select.
            let mut rows: Vec<Option<Value>> = chat::load_rows(b, &self.def.dataset, data, None)?
                .into_iter()
                .map(Some)
                .collect();
            let indices = sel.indices(rows.len());
            return indices
                .into_iter()
                .enumerate()
                .map(|(id, src)| {
                    let row = rows.get_mut(src).and_then(Option::take).ok_or_else(|| {
                        Error::task(&self.name, format!("row {src} selected twice or missing"))
                    })?;
                    let mut doc = self.build_doc(id, row)?;
                    doc.src_index = src;
                    Ok(doc)
                })
                .collect();
        }
        let total = data.num_rows(&self.def.dataset)?;
        let indices = sel.indices(total);
        let rows = data.rows_at(&self.def.dataset, &self.def.columns, &indices)?;
        indices
            .into_iter()
            .zip(rows)
            .enumerate()
            .map(|(id, (src, row))| {
                let mut doc = self.build_doc(id, row)?;
                doc.src_index = src;
                Ok(doc)
            })
            .collect()
    }

    /// Turn one dataset row into a `Doc` (requests rendered as strings).
    pub fn build_doc(&self, id: usize, row: Value) -> Result<Doc> {
        if let Some(b) = &self.def.docs {
            let def = self.def.chat.clone().unwrap_or_default();
            return chat::build_doc(b, id, row, &def, &self.def.dataset)
                .map_err(|m| Error::task(&self.name, format!("doc {id}: {}", one_line(m))));
        }
        let err = |m: String| Error::task(&self.name, format!("doc {id}: {}", one_line(m)));
        let row = match self.def.preprocess.as_deref() {
            Some("hellaswag") => preprocess_hellaswag(row).map_err(err)?,
            _ => row,
        };
        let ctx_value = minijinja::Value::from_serialize(&row);
        let render = |name: &str, ctx: &minijinja::Value| -> std::result::Result<String, String> {
            self.env
                .get_template(name)
                .and_then(|t| {
                    let what = format!("task {}: {name} template", self.name);
                    crate::limits::render_bounded(&what, &t, ctx.clone())
                })
                .map_err(|e| format!("{name} template: {e}"))
        };
        let eval = |what: &str, expr: &str| -> std::result::Result<Value, String> {
            let v = crate::limits::no_panic(|| self.env.compile_expression(expr))
                .and_then(|e| {
                    let what = format!("task {}: {what} expression", self.name);
                    crate::limits::bounded_memory(&what, || e.eval(&ctx_value))
                })
                .map_err(crate::limits::out_of_fuel)
                .map_err(|e| format!("{what} expression: {e}"))?;
            serde_json::to_value(&v).map_err(|e| format!("{what} expression: {e}"))
        };
        let context = render("context", &ctx_value).map_err(err)?;
        let choices: Vec<String> = match eval("choices", &self.def.choices).map_err(err)? {
            Value::Array(a) => a
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => Err(err(format!(
                        "choices expression: expected strings, got {other}"
                    ))),
                })
                .collect::<Result<_>>()?,
            other => {
                return Err(err(format!(
                    "choices expression: expected a list, got {other}"
                )))
            }
        };
        let gold: Vec<usize> = match eval("gold", &self.def.gold).map_err(err)? {
            Value::Number(n) if n.as_u64().is_some() => vec![n.as_u64().unwrap() as usize],
            Value::Array(a) => a
                .iter()
                .map(|v| {
                    v.as_u64()
                        .map(|x| x as usize)
                        .ok_or_else(|| err(format!("gold expression: bad index {v}")))
                })
                .collect::<Result<_>>()?,
            other => {
                return Err(err(format!(
                    "gold expression: expected an index or list, got {other}"
                )))
            }
        };
        if gold.is_empty() {
            return Err(err("gold expression: no gold index".into()));
        }
        let continuation_of = |choice: &str| -> std::result::Result<String, String> {
            let mut m = serde_json::Map::new();
            m.insert("choice".into(), Value::String(choice.to_string()));
            m.insert("doc".into(), row.clone());
            render("continuation", &minijinja::Value::from_serialize(&m))
        };
        let mut target = None;
        let requests = match self.def.requests.as_str() {
            "winogrande_partial" => {
                let (reqs, t) = winogrande_requests(&row, &choices).map_err(err)?;
                target = Some(t);
                reqs
            }
            "truthfulqa_mc" => {
                // mc1 choices then mc2 choices; `choices` already lists them in that order.
                choices
                    .iter()
                    .map(|c| {
                        Ok(LoglikRequest {
                            context: context.clone(),
                            continuation: continuation_of(c)?,
                        })
                    })
                    .collect::<std::result::Result<_, String>>()
                    .map_err(err)?
            }
            _ => choices
                .iter()
                .map(|c| {
                    Ok(LoglikRequest {
                        context: context.clone(),
                        continuation: continuation_of(c)?,
                    })
                })
                .collect::<std::result::Result<_, String>>()
                .map_err(err)?,
        };
        for &g in &gold {
            if g >= choices.len() {
                return Err(err(format!(
                    "gold index {g} out of range for {} choices",
                    choices.len()
                )));
            }
        }
        let target = match (&self.def.target, target) {
            (Some(expr), _) => match eval("target", expr).map_err(err)? {
                Value::String(s) => s,
                other => other.to_string(),
            },
            (None, Some(t)) => t,
            (None, None) => gold[0].to_string(),
        };
        let generation = match &self.def.generation {
            Some(g) => Some(GenRequest {
                context: render("generation", &ctx_value).map_err(err)?,
                until: g.until.clone(),
                max_new_tokens: g.max_new_tokens,
            }),
            None => None,
        };
        Ok(Doc {
            id,
            src_index: id,
            row,
            choices,
            gold,
            requests,
            generation,
            chat: None,
            target,
        })
    }

    /// Per-document metrics from the log-likelihoods (in request order) and the generation.
    /// Score one document from its responses (every scorer returns a [`Score`]).
    pub fn score(&self, doc: &Doc, resp: &Responses) -> Result<Score> {
        if self.def.scorer == "ifeval" {
            return chat::score_ifeval(&self.def.metrics, doc, resp)
                .map_err(|e| Error::task(&self.name, format!("doc {}: {e}", doc.id)));
        }
        if let Some(c) = &doc.chat {
            let def = self.def.chat.clone().unwrap_or_default();
            return Ok(chat::score(&self.def.metrics, &def, c, resp));
        }
        let metrics = self.process_results(doc, &resp.lls, resp.generation.as_deref())?;
        let ll: Vec<f64> = resp.lls.iter().map(|l| l.logprob).collect();
        let answer = match self.def.scorer.as_str() {
            "boolq" => serde_json::json!(if ll[1] > ll[0] { 1 } else { 0 }),
            "truthfulqa_mc" => {
                let n1 = doc.row["mc1_targets"]["choices"]
                    .as_array()
                    .map_or(ll.len(), |a| a.len().min(ll.len()));
                serde_json::json!(metrics::argmax(&ll[..n1]))
            }
            "bigbench_mcg" => {
                let pred = metrics::bigbench_argmax(&ll);
                match (&self.def.generation, resp.generation.as_deref()) {
                    (Some(g), Some(gen)) => serde_json::json!({
                        "choice": pred,
                        "generation": pystr::first_sentence_run(pystr::prefix_chars(gen, g.max_chars.unwrap_or(usize::MAX))).unwrap_or(""),
                    }),
                    _ => serde_json::json!(pred),
                }
            }
            _ => serde_json::json!(metrics::argmax(&ll)),
        };
        Ok(Score {
            metrics,
            answer,
            reason: None,
            detail: None,
        })
    }

    /// The metrics of a log-likelihood document (multiple choice, BigBench exact match).
    pub fn process_results(
        &self,
        doc: &Doc,
        lls: &[Loglik],
        generation: Option<&str>,
    ) -> Result<BTreeMap<String, f64>> {
        let err = |m: String| Error::task(&self.name, format!("doc {}: {m}", doc.id));
        if lls.len() != doc.requests.len() {
            return Err(err(format!(
                "{} log-likelihoods for {} requests",
                lls.len(),
                doc.requests.len()
            )));
        }
        if lls.is_empty() {
            return Err(err("no log-likelihood requests".into()));
        }
        let ll: Vec<f64> = lls.iter().map(|l| l.logprob).collect();
        let mut all = BTreeMap::new();
        match self.def.scorer.as_str() {
            "multiple_choice" => {
                let pred = metrics::argmax(&ll);
                all.insert("acc", if doc.gold.contains(&pred) { 1.0 } else { 0.0 });
                let pred = metrics::argmax_norm(&ll, &doc.choices);
                all.insert("acc_norm", if doc.gold.contains(&pred) { 1.0 } else { 0.0 });
            }
            "boolq" => {
                // Choices are ["no", "yes"]; "yes" only when strictly more likely (a tie says "no").
                let pred = if ll[1] > ll[0] { 1 } else { 0 };
                all.insert("acc", if doc.gold[0] == pred { 1.0 } else { 0.0 });
            }
            "truthfulqa_mc" => {
                let n1 = doc.row["mc1_targets"]["choices"]
                    .as_array()
                    .map(|a| a.len())
                    .ok_or_else(|| err("row has no mc1_targets.choices".into()))?;
                let labels = doc.row["mc2_targets"]["labels"]
                    .as_array()
                    .ok_or_else(|| err("row has no mc2_targets.labels".into()))?;
                let n_true = labels
                    .iter()
                    .position(|l| l.as_i64() == Some(0))
                    .unwrap_or(labels.len());
                all.insert(
                    "mc1",
                    if metrics::argmax(&ll[..n1]) == 0 {
                        1.0
                    } else {
                        0.0
                    },
                );
                all.insert("mc2", metrics::mc2(&ll[n1..], n_true));
            }
            _ => {
                let scores = doc.row["multiple_choice_scores"]
                    .as_array()
                    .ok_or_else(|| err("row has no multiple_choice_scores".into()))?;
                let pred = metrics::bigbench_argmax(&ll);
                let s = scores
                    .get(pred)
                    .and_then(|v| v.as_f64())
                    .ok_or_else(|| err("bad multiple_choice_scores".into()))?;
                all.insert("multiple_choice_grade", s);
                if self.def.metrics.iter().any(|m| m == "exact_str_match") {
                    let gen = generation
                        .ok_or_else(|| err("exact_str_match needs the generation".into()))?;
                    let max = self
                        .def
                        .generation
                        .as_ref()
                        .and_then(|g| g.max_chars)
                        .unwrap_or(usize::MAX);
                    let out =
                        pystr::first_sentence_run(pystr::prefix_chars(gen, max)).unwrap_or("");
                    all.insert("exact_str_match", if out == doc.target { 1.0 } else { 0.0 });
                }
            }
        }
        Ok(self
            .def
            .metrics
            .iter()
            .filter_map(|m| all.get(m.as_str()).map(|v| (m.clone(), *v)))
            .collect())
    }
}

/// HellaSwag clean-up (TASKS_SPEC §2.3): adds `query`, `choices` and `gold` to the row, like
/// lm-evaluation-harness 0.4's `process_docs`.
pub fn hellaswag_preprocess(text: &str) -> String {
    let t = pystr::strip(text);
    let t = pystr::replace(t, " [title]", ". ");
    let t = pystr::remove_bracketed(&t);
    pystr::replace(&t, "  ", " ")
}

fn preprocess_hellaswag(mut row: Value) -> std::result::Result<Value, String> {
    let s = |k: &str| {
        row[k]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("hellaswag: field `{k}` is not a string"))
    };
    let ctx = format!("{} {}", s("ctx_a")?, pystr::capitalize(&s("ctx_b")?));
    let query = hellaswag_preprocess(&format!("{}: {ctx}", s("activity_label")?));
    let endings: Vec<Value> = row["endings"]
        .as_array()
        .ok_or("hellaswag: field `endings` is not a list")?
        .iter()
        .map(|e| {
            e.as_str()
                .map(|e| Value::String(hellaswag_preprocess(e)))
                .ok_or("hellaswag: ending is not a string")
        })
        .collect::<std::result::Result<_, _>>()?;
    let gold: i64 = s("label")?
        .trim()
        .parse()
        .map_err(|_| "hellaswag: label is not an integer".to_string())?;
    let obj = row
        .as_object_mut()
        .ok_or("hellaswag: row is not an object")?;
    obj.insert("query".into(), Value::String(query));
    obj.insert("choices".into(), Value::Array(endings));
    obj.insert("gold".into(), Value::from(gold));
    Ok(row)
}

/// Winogrande partial evaluation (TASKS_SPEC §2.6): one context per option, a shared
/// continuation. Returns the requests and the target (the stripped partial target).
fn winogrande_requests(
    row: &Value,
    options: &[String],
) -> std::result::Result<(Vec<LoglikRequest>, String), String> {
    let sentence = row["sentence"]
        .as_str()
        .ok_or("winogrande: `sentence` is not a string")?;
    let answer = row["answer"]
        .as_str()
        .ok_or("winogrande: `answer` is not a string")?;
    let i = sentence
        .find('_')
        .ok_or("winogrande: sentence has no `_`")?;
    let target = pystr::strip(&sentence[i + 1..]).to_string();
    let continuation = format!(" {target}");
    let answer_opt = match answer {
        "1" => &options[0],
        "2" => &options[1],
        _ => return Err(format!("winogrande: answer `{answer}` is not 1 or 2")),
    };
    // doc_to_text = partial context of the right option; append_context drops its last "\n\n" piece.
    let doc_text = format!("{}{}", &sentence[..i], answer_opt);
    let mut pieces: Vec<&str> = doc_text.split("\n\n").collect();
    pieces.pop();
    let reqs = options
        .iter()
        .map(|o| {
            let partial = format!("{}{}", &sentence[..i], o);
            let context = if pieces.is_empty() {
                partial
            } else {
                format!("{}\n\n{}", pieces.join("\n\n"), partial)
            };
            LoglikRequest {
                context,
                continuation: continuation.clone(),
            }
        })
        .collect();
    Ok((reqs, target))
}

/// A suite (`tasks/suites.toml`) and its averaging rule (TASKS_SPEC §6).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub name: String,
    /// Heading in the report (`## GPT4All:`).
    pub title: String,
    #[serde(default)]
    pub tasks: Vec<String>,
    /// Other suites this one is made of (its average is the mean of theirs).
    #[serde(default)]
    pub includes: Vec<String>,
    /// Per task, the first of these metrics the task reports is averaged (×100).
    #[serde(default)]
    pub average: Vec<String>,
    /// Whether the report prints an `Average:` line for this suite.
    #[serde(default = "yes")]
    pub print_average: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuitesFile {
    suite: Vec<Suite>,
}

/// All tasks and suites.
#[derive(Debug)]
pub struct Registry {
    tasks: BTreeMap<String, Task>,
    suites: Vec<Suite>,
}

impl Registry {
    /// The embedded `tasks/*.toml`.
    pub fn builtin() -> Result<Registry> {
        let files: Vec<(String, String)> = BUILTIN_TASK_FILES
            .iter()
            .map(|(n, s)| (format!("tasks/{n}.toml"), s.to_string()))
            .collect();
        Self::from_sources(
            &files,
            Some(("tasks/suites.toml".into(), BUILTIN_SUITES.to_string())),
        )
    }

    /// Every `*.toml` in `dir` (`suites.toml` holds the suites).
    pub fn from_dir(dir: &Path) -> Result<Registry> {
        let (files, suites) = read_dir_sources(dir)?;
        Self::from_sources(&files, suites)
    }

    fn from_sources(
        files: &[(String, String)],
        suites: Option<(String, String)>,
    ) -> Result<Registry> {
        let errors = validate_sources(files, suites.as_ref());
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        let mut tasks = BTreeMap::new();
        for (origin, src) in resolve_includes(files) {
            let t = Task::from_toml(&src?, &origin)?;
            tasks.insert(t.name.clone(), t);
        }
        let suites = match suites {
            Some((origin, src)) => parse_suites(&src, &origin)?,
            None => Vec::new(),
        };
        Ok(Registry { tasks, suites })
    }

    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.get(name)
    }

    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values()
    }

    pub fn suites(&self) -> &[Suite] {
        &self.suites
    }

    pub fn suite(&self, name: &str) -> Option<&Suite> {
        self.suites.iter().find(|s| s.name == name)
    }

    /// Task names of a suite, includes expanded.
    pub fn suite_tasks(&self, suite: &Suite) -> Vec<String> {
        let mut out = BTreeSet::new();
        self.expand(suite, &mut out, 0);
        out.into_iter().collect()
    }

    fn expand(&self, suite: &Suite, out: &mut BTreeSet<String>, depth: usize) {
        out.extend(suite.tasks.iter().cloned());
        if depth < 8 {
            for inc in &suite.includes {
                if let Some(s) = self.suite(inc) {
                    self.expand(s, out, depth + 1);
                }
            }
        }
    }

    /// The tasks of `suite` plus the named tasks (`*` and `?` globs allowed), sorted by name.
    pub fn resolve(&self, suite: Option<&str>, tasks: &[String]) -> Result<Vec<&Task>> {
        let mut names = BTreeSet::new();
        if let Some(s) = suite {
            let su = self.suite(s).ok_or_else(|| {
                let known: Vec<&str> = self.suites.iter().map(|s| s.name.as_str()).collect();
                Error::task(s, format!("no such suite (known: {})", known.join(", ")))
            })?;
            names.extend(self.suite_tasks(su));
        }
        for pat in tasks
            .iter()
            .flat_map(|t| t.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            if let Some(su) = self.suite(pat) {
                names.extend(self.suite_tasks(su));
                continue;
            }
            let hits: Vec<&String> = self.tasks.keys().filter(|n| glob_match(pat, n)).collect();
            if hits.is_empty() {
                return Err(Error::task(
                    pat,
                    "no such task or suite (see `hermes-eval list`)",
                ));
            }
            names.extend(hits.into_iter().cloned());
        }
        names
            .iter()
            .map(|n| {
                self.tasks
                    .get(n)
                    .ok_or_else(|| Error::task(n, "suite names an unknown task"))
            })
            .collect()
    }

    /// Suites touched by `tasks`, for report grouping: every suite without includes that shares a
    /// task, then composite suites that are fully covered.
    pub fn suites_for(&self, tasks: &[&Task]) -> Vec<&Suite> {
        let have: BTreeSet<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        let mut out: Vec<&Suite> = self
            .suites
            .iter()
            .filter(|s| s.includes.is_empty() && s.tasks.iter().any(|t| have.contains(t.as_str())))
            .collect();
        out.extend(self.suites.iter().filter(|s| {
            !s.includes.is_empty()
                && self
                    .suite_tasks(s)
                    .iter()
                    .all(|t| have.contains(t.as_str()))
        }));
        out
    }

    /// Suite names a task belongs to (directly or through includes).
    pub fn suites_of(&self, task: &str) -> Vec<&str> {
        self.suites
            .iter()
            .filter(|s| self.suite_tasks(s).iter().any(|t| t == task))
            .map(|s| s.name.as_str())
            .collect()
    }

    /// A plain-text listing of tasks and suites.
    pub fn listing(&self) -> String {
        let mut out = String::from("Tasks:\n");
        for t in self.tasks.values() {
            out.push_str(&format!(
                "  {:<48} v{}  suites={:<14} dataset={}  metrics={}  n={}\n",
                t.name,
                t.version,
                self.suites_of(&t.name).join(","),
                t.dataset_label(),
                t.metric_names().join(","),
                t.def.n.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
            ));
            if let Some(note) = &t.def.note {
                out.push_str(&format!("      note: {}\n", one_line(note)));
            }
        }
        out.push_str("Suites:\n");
        for s in &self.suites {
            let rule = if !s.includes.is_empty() {
                format!("mean of suite averages ({})", s.includes.join(", "))
            } else if s.average.is_empty() {
                "no average".into()
            } else {
                format!("100 × mean of first of [{}]", s.average.join(", "))
            };
            out.push_str(&format!(
                "  {:<10} {} tasks; average: {}{}\n",
                s.name,
                self.suite_tasks(s).len(),
                rule,
                if s.print_average {
                    ""
                } else {
                    " (not printed)"
                }
            ));
        }
        out
    }
}

/// `*` / `?` wildcard match in O(len(pat) × len(name)) at worst (the classic greedy matcher
/// that backtracks only to the last `*`), so no pattern can make it exponential.
fn glob_match(pat: &str, name: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    while i < p.len() && p[i] == '*' {
        i += 1;
    }
    i == p.len()
}

fn parse_suites(src: &str, origin: &str) -> Result<Vec<Suite>> {
    let f: SuitesFile = toml::from_str(src).map_err(|e| Error::file(origin, one_line(e)))?;
    Ok(f.suite)
}

/// (origin, TOML source) pairs of the task files, and the suites file if present.
type Sources = (Vec<(String, String)>, Option<(String, String)>);

fn read_dir_sources(dir: &Path) -> Result<Sources> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| Error::file(dir, format!("cannot read tasks directory: {e}")))?;
    let mut paths: Vec<_> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut files = Vec::new();
    let mut suites = None;
    for p in paths {
        let src = std::fs::read_to_string(&p).map_err(|e| Error::file(&p, e))?;
        if p.file_name().is_some_and(|n| n == "suites.toml") {
            suites = Some((p.display().to_string(), src));
        } else {
            files.push((p.display().to_string(), src));
        }
    }
    Ok((files, suites))
}

fn merge_tables(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_tables(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Resolve `include = "<task>"` (as lm-eval's yaml `include`): the named task file's settings,
/// overridden key by key (tables merged) by the including file. Returns each file's source with
/// its includes applied, or the error of that file.
fn resolve_includes(files: &[(String, String)]) -> Vec<(String, Result<String>)> {
    let tables: Vec<std::result::Result<toml::Table, String>> = files
        .iter()
        .map(|(_, src)| toml::from_str::<toml::Table>(src).map_err(one_line))
        .collect();
    let by_name: BTreeMap<String, usize> = tables
        .iter()
        .enumerate()
        .filter_map(|(i, t)| Some((t.as_ref().ok()?.get("name")?.as_str()?.to_string(), i)))
        .collect();
    let resolve = |i: usize| -> Result<String> {
        let origin = &files[i].0;
        let mut chain = vec![i];
        let mut layers = vec![];
        let mut cur = i;
        loop {
            let t = tables[cur]
                .clone()
                .map_err(|e| Error::file(&files[cur].0, e))?;
            let inc = t.get("include").cloned();
            layers.push(t);
            let Some(inc) = inc else { break };
            let name = inc
                .as_str()
                .ok_or_else(|| Error::file(origin, "`include` must name a task"))?;
            cur = *by_name
                .get(name)
                .ok_or_else(|| Error::file(origin, format!("includes unknown task `{name}`")))?;
            if chain.contains(&cur) || chain.len() > 8 {
                return Err(Error::file(
                    origin,
                    format!("include cycle through `{name}`"),
                ));
            }
            chain.push(cur);
        }
        if layers.len() == 1 {
            return Ok(files[i].1.clone());
        }
        let mut merged = layers.pop().unwrap_or_default();
        while let Some(over) = layers.pop() {
            merge_tables(&mut merged, over);
        }
        merged.remove("include");
        toml::to_string(&merged).map_err(|e| Error::file(origin, one_line(e)))
    };
    (0..files.len())
        .map(|i| (files[i].0.clone(), resolve(i)))
        .collect()
}

/// Check every task file and the suites; returns all errors (empty = valid).
fn validate_sources(files: &[(String, String)], suites: Option<&(String, String)>) -> Vec<Error> {
    let mut errors = Vec::new();
    let mut names = BTreeMap::new();
    let resolved = resolve_includes(files);
    let mut ok = vec![];
    for (origin, src) in resolved {
        match src {
            Ok(s) => ok.push((origin, s)),
            Err(e) => errors.push(e),
        }
    }
    for (origin, src) in &ok {
        match Task::from_toml(src, origin) {
            Ok(t) => {
                if let Some(prev) = names.insert(t.name.clone(), origin.clone()) {
                    errors.push(Error::task(
                        &t.name,
                        format!("defined twice ({prev} and {origin})"),
                    ));
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if let Some((origin, src)) = suites {
        match parse_suites(src, origin) {
            Ok(suites) => {
                let suite_names: BTreeSet<&str> = suites.iter().map(|s| s.name.as_str()).collect();
                for s in &suites {
                    for t in &s.tasks {
                        if !names.contains_key(t) {
                            errors.push(Error::task(
                                &s.name,
                                format!("suite names unknown task `{t}` (in {origin})"),
                            ));
                        }
                    }
                    for i in &s.includes {
                        if !suite_names.contains(i.as_str()) {
                            errors.push(Error::task(
                                &s.name,
                                format!("suite includes unknown suite `{i}` (in {origin})"),
                            ));
                        }
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    errors
}

/// `hermes-eval validate`: load every task file (builtin when `dir` is None) and return every
/// error, one line each.
pub fn validate(dir: Option<&Path>) -> Result<Vec<String>> {
    let (files, suites) = match dir {
        Some(d) => read_dir_sources(d)?,
        None => (
            BUILTIN_TASK_FILES
                .iter()
                .map(|(n, s)| (format!("tasks/{n}.toml"), s.to_string()))
                .collect(),
            Some(("tasks/suites.toml".to_string(), BUILTIN_SUITES.to_string())),
        ),
    };
    Ok(validate_sources(&files, suites.as_ref())
        .into_iter()
        .map(|e| e.to_string())
        .collect())
}

#[cfg(test)]
mod tests;
