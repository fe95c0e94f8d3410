//! Dataset readers for function calling and JSON mode, from local files laid out like the hub
//! mirror (`<data_dir>/datasets/<org>/<name>/…`, see shared/hub/MANIFEST.md).
use super::prompt::{
    fc_system_prompt, json_system_prompt, json_system_prompt_raw, SchemaOrder,
    GENERIC_JSON_USER_TURN,
};
use crate::chat::Message;
use crate::error::{Error, Result};
use crate::py::value::{json_dumps, json_loads, PyValue};
use serde::Serialize;
use std::path::{Path, PathBuf};

pub const NOUS_FC: &str = "NousResearch/func-calling-eval";
pub const NOUS_JSON: &str = "NousResearch/json-mode-eval";
pub const BFCL: &str = "gorilla-llm/Berkeley-Function-Calling-Leaderboard";
pub const MASKBENCH: &str = "guidance-ai/jsonschemabench/json-mode-eval-from-maskbench";
pub const JSONSCHEMABENCH: &str = "guidance-ai/jsonschemabench";
/// BFCL versions in the mirror, newest first.
pub const BFCL_VERSIONS: &[&str] = &["v4", "v3", "v3-release-70b6a4a2"];

/// What a function-calling sample is judged against.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FcTarget {
    /// NousResearch/func-calling-eval: §7.6 rules against `completion`, schema-checked on `tools`.
    Nous {
        tools: Vec<serde_json::Value>,
        expected: Vec<PyValue>,
    },
    /// BFCL possible-answer matching.
    Bfcl {
        category: String,
        functions: Vec<serde_json::Value>,
        ground_truth: Vec<PyValue>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct FcSample {
    pub id: String,
    pub messages: Vec<Message>,
    pub target: FcTarget,
}

/// Which JSON evaluation a sample belongs to (never mixed in one score).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonEvalKind {
    /// NousResearch/json-mode-eval rows with their own prompts (§8).
    JsonModeEval,
    /// json-mode-eval schema + completion from maskbench, with a SUBSTITUTE prompt (§8 system
    /// prompt form + generic user turn): the card's prompts are missing.
    MaskbenchSubstitutePrompt,
    /// JSONSchemaBench: schema only; score = share of outputs that parse and validate.
    SchemaCompliance,
}

#[derive(Debug, Clone, Serialize)]
pub struct JsonSample {
    pub id: String,
    pub messages: Vec<Message>,
    /// The schema text as in the row (`json.loads`ed at judge time).
    pub schema: String,
    /// Reference object; `None` in schema-compliance mode.
    pub expected: Option<PyValue>,
}

/// Rows of a `.jsonl`, `.json` (JSON Lines or one array) or `.parquet` file.
pub fn read_rows(path: &Path) -> Result<Vec<serde_json::Value>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "parquet" {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let f = std::fs::File::open(path).map_err(|e| Error::file(path, e))?;
        let r = SerializedFileReader::new(f).map_err(|e| Error::file(path, e))?;
        let mut out = Vec::new();
        for row in r.get_row_iter(None).map_err(|e| Error::file(path, e))? {
            out.push(row_to_json(&row.map_err(|e| Error::file(path, e))?));
        }
        return Ok(out);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
    let t = text.trim_start();
    if t.starts_with('[') {
        if let Ok(serde_json::Value::Array(a)) = serde_json::from_str(t) {
            return Ok(a);
        }
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::file(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}

fn field_to_json(f: &parquet::record::Field) -> serde_json::Value {
    use parquet::record::Field as F;
    use serde_json::Value as J;
    match f {
        F::Null => J::Null,
        F::Bool(b) => J::Bool(*b),
        F::Byte(x) => J::from(*x),
        F::Short(x) => J::from(*x),
        F::Int(x) => J::from(*x),
        F::Long(x) => J::from(*x),
        F::UByte(x) => J::from(*x),
        F::UShort(x) => J::from(*x),
        F::UInt(x) => J::from(*x),
        F::ULong(x) => J::from(*x),
        F::Float(x) => J::from(*x as f64),
        F::Double(x) => J::from(*x),
        F::Str(s) => J::String(s.clone()),
        F::Group(r) => row_to_json(r),
        F::ListInternal(l) => J::Array(l.elements().iter().map(field_to_json).collect()),
        F::MapInternal(m) => {
            let mut o = serde_json::Map::new();
            for (k, v) in m.entries() {
                let key = match k {
                    F::Str(s) => s.clone(),
                    other => other.to_string(),
                };
                o.insert(key, field_to_json(v));
            }
            J::Object(o)
        }
        other => J::String(other.to_string()),
    }
}

fn row_to_json(row: &parquet::record::Row) -> serde_json::Value {
    serde_json::Value::Object(
        row.get_column_iter()
            .map(|(k, v)| (k.clone(), field_to_json(v)))
            .collect(),
    )
}

fn field<'a>(
    row: &'a serde_json::Value,
    name: &str,
    ds: &str,
    i: usize,
) -> Result<&'a serde_json::Value> {
    row.get(name)
        .ok_or_else(|| Error::data(ds, format!("row {i}: missing field {name:?}")))
}

fn str_field(row: &serde_json::Value, name: &str, ds: &str, i: usize) -> Result<String> {
    match field(row, name, ds, i)? {
        serde_json::Value::String(s) => Ok(s.clone()),
        other => Ok(json_dumps(other)),
    }
}

fn messages(v: &serde_json::Value, ds: &str, i: usize) -> Result<Vec<Message>> {
    let list = match v {
        serde_json::Value::String(s) => {
            serde_json::from_str(s).map_err(|e| Error::data(ds, format!("row {i}: prompt: {e}")))?
        }
        other => other.clone(),
    };
    serde_json::from_value(list).map_err(|e| Error::data(ds, format!("row {i}: prompt: {e}")))
}

/// NousResearch/func-calling-eval rows (`prompt`, `tools`, `completion`; §7.1–7.2).
pub fn fc_samples_from_nous_rows(
    rows: &[serde_json::Value],
    order: SchemaOrder,
) -> Result<Vec<FcSample>> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let tools_s = str_field(row, "tools", NOUS_FC, i)?;
            let tools: Vec<serde_json::Value> = serde_json::from_str(&tools_s)
                .map_err(|e| Error::data(NOUS_FC, format!("row {i}: tools: {e}")))?;
            let completion = str_field(row, "completion", NOUS_FC, i)?;
            let expected = json_loads(&completion)
                .map_err(|e| Error::data(NOUS_FC, format!("row {i}: completion: {e}")))?;
            let mut msgs = vec![Message::new("system", fc_system_prompt(&tools_s, order))];
            msgs.extend(messages(field(row, "prompt", NOUS_FC, i)?, NOUS_FC, i)?);
            Ok(FcSample {
                id: i.to_string(),
                messages: msgs,
                target: FcTarget::Nous {
                    tools,
                    expected: super::judge::expected_calls(&expected),
                },
            })
        })
        .collect()
}

fn gorilla_to_openapi(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(o) => {
            let mut m = serde_json::Map::new();
            for (k, x) in o {
                let nx = if k == "type" {
                    match x.as_str() {
                        Some("dict") => "object".into(),
                        Some("float") => "number".into(),
                        Some("tuple") => "array".into(),
                        Some("any") => "string".into(),
                        _ => x.clone(),
                    }
                } else {
                    gorilla_to_openapi(x)
                };
                m.insert(k.clone(), nx);
            }
            serde_json::Value::Object(m)
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.iter().map(gorilla_to_openapi).collect())
        }
        o => o.clone(),
    }
}

/// The Hermes `tools` string for BFCL function docs: `json.dumps` of
/// `[{"type": "function", "function": doc}]` with BFCL types mapped to JSON-schema ones
/// (dict→object, float→number, tuple→array, any→string), as gorilla's Hermes handler does.
pub fn bfcl_tools_string(functions: &[serde_json::Value]) -> String {
    let tools: Vec<serde_json::Value> = functions
        .iter()
        .map(|f| serde_json::json!({"type": "function", "function": gorilla_to_openapi(f)}))
        .collect();
    json_dumps(&serde_json::Value::Array(tools))
}

/// BFCL question rows (+ possible_answer rows, absent for (ir)relevance) of one category.
/// Messages = §7.2 system prompt with the function docs + every turn's messages in order.
pub fn bfcl_samples(
    questions: &[serde_json::Value],
    answers: Option<&[serde_json::Value]>,
    category: &str,
    order: SchemaOrder,
) -> Result<Vec<FcSample>> {
    let by_id: std::collections::HashMap<String, &serde_json::Value> = answers
        .unwrap_or(&[])
        .iter()
        .filter_map(|a| Some((a.get("id")?.as_str()?.to_string(), a)))
        .collect();
    let needs_answer = !category.contains("relevance");
    questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let id = q
                .get("id")
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_string();
            let functions = field(q, "function", BFCL, i)?
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut msgs = vec![Message::new(
                "system",
                fc_system_prompt(&bfcl_tools_string(&functions), order),
            )];
            for turn in field(q, "question", BFCL, i)?
                .as_array()
                .into_iter()
                .flatten()
            {
                msgs.extend(messages(turn, BFCL, i)?);
            }
            let ground_truth = match by_id.get(&id) {
                Some(a) => field(a, "ground_truth", BFCL, i)?
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(PyValue::from_json)
                    .collect(),
                None if needs_answer => {
                    return Err(Error::data(BFCL, format!("no possible answer for {id}")))
                }
                None => Vec::new(),
            };
            Ok(FcSample {
                id,
                messages: msgs,
                target: FcTarget::Bfcl {
                    category: category.to_string(),
                    functions,
                    ground_truth,
                },
            })
        })
        .collect()
}

/// NousResearch/json-mode-eval rows (`prompt`, `completion`, `schema`; §8).
pub fn json_samples_from_nous_rows(rows: &[serde_json::Value]) -> Result<Vec<JsonSample>> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let completion = str_field(row, "completion", NOUS_JSON, i)?;
            let expected = json_loads(&completion)
                .map_err(|e| Error::data(NOUS_JSON, format!("row {i}: completion: {e}")))?;
            Ok(JsonSample {
                id: i.to_string(),
                messages: messages(field(row, "prompt", NOUS_JSON, i)?, NOUS_JSON, i)?,
                schema: str_field(row, "schema", NOUS_JSON, i)?,
                expected: Some(expected),
            })
        })
        .collect()
}

/// The substitute prompt of a schema-only row. A schema that is not JSON cannot be shown as a
/// Python dict, so the model sees the row's text as it is; the judge then fails the sample
/// (`InvalidSchema`, as `json.loads` would raise in the reference) whatever the model answers.
fn schema_prompt(schema_text: &str) -> Vec<Message> {
    let system = match serde_json::from_str::<serde_json::Value>(schema_text) {
        Ok(v) => json_system_prompt(&v),
        Err(_) => json_system_prompt_raw(schema_text),
    };
    vec![
        Message::new("system", system),
        Message::new("user", GENERIC_JSON_USER_TURN),
    ]
}

/// json-mode-eval-from-maskbench rows (`idx`, `schema`, `completion`), SUBSTITUTE prompts.
pub fn json_samples_from_maskbench(rows: &[serde_json::Value]) -> Result<Vec<JsonSample>> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let schema = str_field(row, "schema", MASKBENCH, i)?;
            let completion = field(row, "completion", MASKBENCH, i)?;
            let expected = match completion {
                serde_json::Value::String(s) => {
                    json_loads(s).map_err(|e| Error::data(MASKBENCH, format!("row {i}: {e}")))?
                }
                o => PyValue::from_json(o),
            };
            let id = row
                .get("idx")
                .map(|x| x.to_string())
                .unwrap_or_else(|| i.to_string());
            Ok(JsonSample {
                id,
                messages: schema_prompt(&schema),
                schema,
                expected: Some(expected),
            })
        })
        .collect()
}

/// JSONSchemaBench `data-jsonl/<subset>.jsonl` rows (`json_schema` = schema file text).
pub fn schema_compliance_samples(
    rows: &[serde_json::Value],
    subset: &str,
) -> Result<Vec<JsonSample>> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let text = str_field(row, "json_schema", subset, i)?;
            let id = row
                .get("source_path")
                .and_then(|x| x.as_str())
                .map(String::from)
                .unwrap_or_else(|| i.to_string());
            Ok(JsonSample {
                id,
                messages: schema_prompt(&text),
                schema: text,
                expected: None,
            })
        })
        .collect()
}

/// The data directory: the argument, else `$HERMES_EVAL_DATA_DIR`.
pub fn data_dir(arg: Option<&Path>) -> Result<PathBuf> {
    arg.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("HERMES_EVAL_DATA_DIR").map(PathBuf::from))
        .ok_or_else(|| {
            Error::data(
                "-",
                "no data directory: pass --data-dir or set HERMES_EVAL_DATA_DIR",
            )
        })
}

pub fn first_data_file(dir: &Path) -> Option<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("parquet" | "jsonl" | "json")
            ) {
                found.push(p);
            }
        }
    }
    found.sort();
    found
        .iter()
        .find(|p| p.to_string_lossy().contains("train"))
        .or(found.first())
        .cloned()
}

/// Resolved BFCL files of one category.
#[derive(Debug, Clone)]
pub struct BfclFiles {
    pub version: String,
    pub category: String,
    pub questions: PathBuf,
    pub answers: Option<PathBuf>,
}

/// BFCL files in the mirror: `category` defaults to `simple` (v4 `simple_python`), `version` to
/// the newest present.
pub fn resolve_bfcl(
    data_dir: &Path,
    category: Option<&str>,
    version: Option<&str>,
) -> Result<BfclFiles> {
    let base = data_dir.join("datasets").join(BFCL);
    let cat = category.unwrap_or("simple");
    let versions: Vec<&str> = match version {
        Some(v) => vec![v],
        None => BFCL_VERSIONS.to_vec(),
    };
    for v in versions {
        let tag = if v.starts_with("v4") { "v4" } else { "v3" };
        for c in [cat.to_string(), format!("{cat}_python")] {
            let q = base.join(v).join(format!("BFCL_{tag}_{c}.json"));
            if q.is_file() {
                let a = base
                    .join(v)
                    .join("possible_answer")
                    .join(format!("BFCL_{tag}_{c}.json"));
                return Ok(BfclFiles {
                    version: v.into(),
                    category: c,
                    questions: q,
                    answers: a.is_file().then_some(a),
                });
            }
        }
    }
    Err(Error::data(
        BFCL,
        format!("category {cat:?} not found under {}", base.display()),
    ))
}

/// Load a function-calling dataset from local files already resolved.
pub fn load_fc_files(
    dataset: &str,
    files: &[PathBuf],
    category: &str,
    order: SchemaOrder,
) -> Result<Vec<FcSample>> {
    if dataset == BFCL {
        let q = read_rows(
            files
                .first()
                .ok_or_else(|| Error::data(BFCL, "no question file"))?,
        )?;
        let a = files.get(1).map(|p| read_rows(p)).transpose()?;
        bfcl_samples(&q, a.as_deref(), category, order)
    } else {
        let mut rows = Vec::new();
        for f in files {
            rows.extend(read_rows(f)?);
        }
        fc_samples_from_nous_rows(&rows, order)
    }
}

/// Resolve in the mirror and load. Returns (task name, samples).
pub fn load_fc_dataset(
    dataset: &str,
    category: Option<&str>,
    version: Option<&str>,
    data_dir: &Path,
    order: SchemaOrder,
) -> Result<(String, Vec<FcSample>)> {
    if dataset == BFCL {
        let f = resolve_bfcl(data_dir, category, version)?;
        let mut files = vec![f.questions.clone()];
        files.extend(f.answers.clone());
        let s = load_fc_files(dataset, &files, &f.category, order)?;
        return Ok((format!("bfcl_{}_{}", f.version, f.category), s));
    }
    let dir = data_dir.join("datasets").join(dataset);
    let file = first_data_file(&dir).ok_or_else(|| {
        Error::data(
            dataset,
            format!("no .parquet/.jsonl/.json file under {}", dir.display()),
        )
    })?;
    let s = load_fc_files(dataset, &[file], "", order)?;
    Ok((dataset.rsplit('/').next().unwrap_or(dataset).to_string(), s))
}

/// Load a JSON dataset from local files already resolved.
pub fn load_json_files(
    dataset: &str,
    files: &[PathBuf],
    subset: Option<&str>,
) -> Result<(JsonEvalKind, Vec<JsonSample>)> {
    let mut rows = Vec::new();
    for f in files {
        rows.extend(read_rows(f)?);
    }
    if dataset == MASKBENCH || dataset.ends_with("json-mode-eval-from-maskbench") {
        Ok((
            JsonEvalKind::MaskbenchSubstitutePrompt,
            json_samples_from_maskbench(&rows)?,
        ))
    } else if dataset == JSONSCHEMABENCH {
        Ok((
            JsonEvalKind::SchemaCompliance,
            schema_compliance_samples(&rows, subset.unwrap_or(JSONSCHEMABENCH))?,
        ))
    } else {
        Ok((
            JsonEvalKind::JsonModeEval,
            json_samples_from_nous_rows(&rows)?,
        ))
    }
}

/// Resolve in the mirror and load. `subset` picks a JSONSchemaBench file (default Github_easy).
pub fn load_json_dataset(
    dataset: &str,
    subset: Option<&str>,
    data_dir: &Path,
) -> Result<(String, JsonEvalKind, Vec<JsonSample>)> {
    let (name, file) = if dataset == JSONSCHEMABENCH {
        let sub = subset.unwrap_or("Github_easy");
        (
            format!("schema_compliance_{sub}"),
            data_dir
                .join("datasets")
                .join(JSONSCHEMABENCH)
                .join("data-jsonl")
                .join(format!("{sub}.jsonl")),
        )
    } else if dataset == MASKBENCH || dataset.ends_with("json-mode-eval-from-maskbench") {
        (
            "json-mode-eval-from-maskbench".to_string(),
            data_dir
                .join("datasets")
                .join(MASKBENCH)
                .join("train.jsonl"),
        )
    } else {
        let dir = data_dir.join("datasets").join(dataset);
        let f = first_data_file(&dir).ok_or_else(|| {
            Error::data(
                dataset,
                format!("no .parquet/.jsonl/.json file under {}", dir.display()),
            )
        })?;
        (dataset.rsplit('/').next().unwrap_or(dataset).to_string(), f)
    };
    if !file.is_file() {
        return Err(Error::data(
            dataset,
            format!("{} not found", file.display()),
        ));
    }
    let (kind, s) = load_json_files(dataset, &[file], subset)?;
    Ok((name, kind, s))
}

/// The task `hermes-eval fc --dataset X [--category C]` runs (the commands are aliases of `run --tasks`).
pub fn fc_task(dataset: &str, category: Option<&str>) -> Result<String> {
    match (dataset, category) {
        (NOUS_FC, None) => Ok("func_calling_eval".into()),
        (BFCL, c) => {
            let c = c.unwrap_or("simple");
            Ok(format!("bfcl_{}", c.strip_suffix("_python").unwrap_or(c)))
        }
        (NOUS_FC, Some(_)) => Err(Error::data(NOUS_FC, "--category is a BFCL option")),
        (d, _) => Err(Error::data(
            d,
            format!("fc expects {NOUS_FC} or {BFCL} (other datasets: write a task file and use run --tasks)"),
        )),
    }
}

/// The task `hermes-eval json --dataset X [--subset S]` runs.
pub fn json_task(dataset: &str, subset: Option<&str>) -> Result<String> {
    match (dataset, subset) {
        (NOUS_JSON, None) => Ok("json_mode_eval".into()),
        (MASKBENCH, None) => Ok("json_mode_eval_maskbench".into()),
        (JSONSCHEMABENCH, s) => Ok(format!(
            "jsonschemabench_{}",
            s.unwrap_or("Github_easy").to_ascii_lowercase()
        )),
        (d @ (NOUS_JSON | MASKBENCH), Some(_)) => {
            Err(Error::data(d, "--subset is a JSONSchemaBench option"))
        }
        (d, _) => Err(Error::data(
            d,
            format!("json expects {NOUS_JSON}, {MASKBENCH} or {JSONSCHEMABENCH}"),
        )),
    }
}
