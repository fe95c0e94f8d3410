//! Chat tasks (function calling, JSON mode): the named document builders a task file's
//! `docs = "..."` refers to, and the scorers `tool_call` / `json` (TASKS_SPEC §7–§8).
//!
//! A builder reads the dataset's rows from the local mirror (BFCL questions joined with their
//! possible answers) and turns each row into one chat [`Doc`]; the engine renders its messages
//! through the model's chat template and generates; the scorer judges the completion.
use serde_json::Value;

use super::ChatDef;
use crate::data::{DataSource, DatasetRef};
use crate::doc::{ChatDoc, ChatRequest, Doc, Responses, Score};
use crate::error::{Error, Result};
use crate::fc::{self, data as fcdata};

/// The document builders and the scorer each one's documents need.
pub const BUILDERS: &[&str] = &[
    "nous_fc",
    "bfcl",
    "nous_json",
    "maskbench_json",
    "jsonschemabench",
    "ifeval",
];

pub fn scorer_of(builder: &str) -> &'static str {
    match builder {
        "nous_fc" | "bfcl" => "tool_call",
        "ifeval" => "ifeval",
        _ => "json",
    }
}

fn mirror<'a>(data: &'a DataSource, ds: &DatasetRef) -> Result<&'a std::path::Path> {
    data.mirror().ok_or_else(|| {
        Error::data(
            ds.to_string(),
            "function-calling and JSON-mode datasets are read from a local mirror: pass --data-dir \
             (or set HERMES_EVAL_DATA_DIR) to a directory laid out datasets/<org>/<name>/...",
        )
    })
}

/// The rows of a chat task, in dataset order, the first `limit` only.
pub fn load_rows(
    builder: &str,
    ds: &DatasetRef,
    data: &DataSource,
    limit: Option<usize>,
) -> Result<Vec<Value>> {
    let root = mirror(data, ds)?;
    let take = |mut rows: Vec<Value>| {
        if let Some(n) = limit {
            rows.truncate(n);
        }
        rows
    };
    let file = |p: std::path::PathBuf| -> Result<std::path::PathBuf> {
        if p.is_file() {
            Ok(p)
        } else {
            Err(Error::data(
                ds.to_string(),
                format!("{} not found", p.display()),
            ))
        }
    };
    match builder {
        "bfcl" => {
            let f = fcdata::resolve_bfcl(root, Some(&ds.config), Some(&ds.split))?;
            let questions = take(fcdata::read_rows(&f.questions)?);
            let answers = match &f.answers {
                Some(a) => fcdata::read_rows(a)?,
                None => vec![],
            };
            let by_id: std::collections::HashMap<String, Value> = answers
                .into_iter()
                .filter_map(|a| Some((a.get("id")?.as_str()?.to_string(), a)))
                .collect();
            Ok(questions
                .into_iter()
                .map(|mut q| {
                    let id = q
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    if let Some(o) = q.as_object_mut() {
                        o.insert("bfcl_category".into(), Value::String(f.category.clone()));
                        if let Some(a) = by_id.get(&id) {
                            o.insert("possible_answer".into(), a.clone());
                        }
                    }
                    q
                })
                .collect())
        }
        "jsonschemabench" => {
            let p = root
                .join("datasets")
                .join(&ds.path)
                .join("data-jsonl")
                .join(format!("{}.jsonl", ds.config));
            Ok(take(fcdata::read_rows(&file(p)?)?))
        }
        "maskbench_json" => {
            let p = root
                .join("datasets")
                .join(&ds.path)
                .join(&ds.config)
                .join(format!("{}.jsonl", ds.split));
            Ok(take(fcdata::read_rows(&file(p)?)?))
        }
        _ => {
            let dir = root.join("datasets").join(&ds.path);
            let f = fcdata::first_data_file(&dir).ok_or_else(|| {
                Error::data(
                    ds.to_string(),
                    format!("no .parquet/.jsonl/.json file under {}", dir.display()),
                )
            })?;
            Ok(take(fcdata::read_rows(&f)?))
        }
    }
}

fn one<T>(mut v: Vec<T>) -> std::result::Result<T, String> {
    v.pop().ok_or_else(|| "row gave no sample".to_string())
}

/// One row → one chat document.
pub fn build_doc(
    builder: &str,
    id: usize,
    row: Value,
    def: &ChatDef,
    ds: &DatasetRef,
) -> std::result::Result<Doc, String> {
    let rows = std::slice::from_ref(&row);
    let e = |e: Error| e.to_string();
    if builder == "ifeval" {
        return ifeval_doc(id, row, def);
    }
    let (chat, target) = match builder {
        "nous_fc" | "bfcl" => {
            let mut s = if builder == "bfcl" {
                let category = row
                    .get("bfcl_category")
                    .and_then(Value::as_str)
                    .unwrap_or(&ds.config)
                    .to_string();
                let answers: Vec<Value> = row.get("possible_answer").cloned().into_iter().collect();
                one(
                    fcdata::bfcl_samples(rows, Some(&answers), &category, def.schema_order)
                        .map_err(e)?,
                )?
            } else {
                let mut s =
                    one(fcdata::fc_samples_from_nous_rows(rows, def.schema_order).map_err(e)?)?;
                s.id = id.to_string();
                s
            };
            let target = match &s.target {
                fc::FcTarget::Nous { expected, .. } => {
                    Value::Array(expected.iter().map(|v| v.to_json()).collect())
                }
                fc::FcTarget::Bfcl { ground_truth, .. } => {
                    Value::Array(ground_truth.iter().map(|v| v.to_json()).collect())
                }
            };
            if s.id.is_empty() {
                s.id = id.to_string();
            }
            (ChatDoc::ToolCalls(s), target)
        }
        _ => {
            let mut s = match builder {
                "nous_json" => one(fcdata::json_samples_from_nous_rows(rows).map_err(e)?)?,
                "maskbench_json" => one(fcdata::json_samples_from_maskbench(rows).map_err(e)?)?,
                _ => one(fcdata::schema_compliance_samples(rows, &ds.config).map_err(e)?)?,
            };
            if builder == "nous_json" {
                s.id = id.to_string();
            }
            let target = s
                .expected
                .as_ref()
                .map(|v| v.to_json())
                .unwrap_or(Value::Null);
            (ChatDoc::Json(s), target)
        }
    };
    let chat = ChatRequest {
        doc: chat,
        max_new_tokens: def.max_new_tokens,
    };
    let target = match target {
        Value::Null => String::new(),
        v => v.to_string(),
    };
    Ok(generative_doc(id, row, Some(chat), None, target))
}

/// A document of a generative task: no multiple-choice requests, one chat or raw generation.
fn generative_doc(
    id: usize,
    row: Value,
    chat: Option<ChatRequest>,
    generation: Option<crate::doc::GenRequest>,
    target: String,
) -> Doc {
    Doc {
        id,
        src_index: id,
        row,
        choices: vec![],
        gold: vec![],
        requests: vec![],
        generation,
        chat,
        target,
    }
}

/// An IFEval row: the prompt as the user turn (through the chat template), or as raw text
/// with `apply_chat_template = false`; greedy, the task's new-token budget, EOS the only stop.
fn ifeval_doc(id: usize, row: Value, def: &ChatDef) -> std::result::Result<Doc, String> {
    // Parse the instructions now, so a malformed row fails before any generation.
    let p = crate::ifeval::Prompt::from_row(&row).map_err(|e| e.to_string())?;
    let (chat, generation) = if def.apply_chat_template {
        let messages = vec![crate::chat::Message::new("user", p.prompt.clone())];
        let chat = ChatRequest {
            doc: ChatDoc::Prompt { messages },
            max_new_tokens: def.max_new_tokens,
        };
        (Some(chat), None)
    } else {
        let g = crate::doc::GenRequest {
            context: p.prompt.clone(),
            until: vec![],
            max_new_tokens: def.max_new_tokens,
        };
        (None, Some(g))
    };
    Ok(generative_doc(id, row, chat, generation, String::new()))
}

/// IFEval's per-document metrics (TaskDef::aggregation `flatten_mean` for the instruction-level
/// ones), the instructions followed (strict) as the answer, the first failed one as the reason
/// and the whole verdict as the judge's detail.
pub fn score_ifeval(metrics: &[String], doc: &Doc, resp: &Responses) -> Result<Score> {
    let response = resp.generation.as_deref().unwrap_or("");
    let v = crate::ifeval::judge(&doc.row, response)?;
    let n = v.instructions.len() as f64;
    let b = |x: bool| if x { 1.0 } else { 0.0 };
    let frac = |f: fn(&crate::ifeval::InstructionVerdict) -> bool| {
        v.instructions.iter().filter(|i| f(i)).count() as f64 / n.max(1.0)
    };
    let mut out: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    for m in metrics {
        let x = match m.as_str() {
            "prompt_level_strict_acc" => b(v.prompt_strict),
            "prompt_level_loose_acc" => b(v.prompt_loose),
            "inst_level_strict_acc" => frac(|i| i.strict),
            "inst_level_loose_acc" => frac(|i| i.loose),
            _ => continue,
        };
        out.insert(m.clone(), x);
    }
    out.insert("num_instructions".into(), n);
    Ok(Score {
        metrics: out,
        answer: Value::Array(
            v.instructions
                .iter()
                .filter(|i| i.strict)
                .map(|i| Value::String(i.id.clone()))
                .collect(),
        ),
        reason: v.failure().map(|(id, why)| format!("{id}: {why}")),
        detail: Some(serde_json::to_value(&v)?),
    })
}

/// Judge a chat document's completion; every metric the task lists gets the pass/fail value.
pub fn score(metrics: &[String], def: &ChatDef, chat: &ChatRequest, resp: &Responses) -> Score {
    let prompt = resp.prompt.as_deref().unwrap_or("");
    let completion = resp.generation.as_deref().unwrap_or("");
    let eos = resp.eos_token.as_deref();
    let rec = match &chat.doc {
        ChatDoc::ToolCalls(s) => fc::score_fc(s, prompt, completion, eos, def.parser),
        ChatDoc::Json(s) => fc::score_json(s, prompt, completion, eos),
        ChatDoc::Prompt { .. } => {
            return Score {
                reason: Some("no scorer for plain chat prompts".into()),
                ..Score::default()
            }
        }
    };
    let pass = if rec.passed { 1.0 } else { 0.0 };
    let parsed: Vec<Value> = rec.parsed.iter().map(|v| v.to_json()).collect();
    Score {
        metrics: metrics.iter().map(|m| (m.clone(), pass)).collect(),
        answer: Value::Array(parsed),
        reason: rec.reason.map(|r| r.as_str().to_string()),
        detail: Some(serde_json::json!({
            "assistant": rec.assistant,
            "lenient": rec.lenient,
            "schema_valid": rec.schema_valid,
            "failures": rec.failures,
            "parser": def.parser,
        })),
    }
}
