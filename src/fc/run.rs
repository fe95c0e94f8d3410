//! Runners: render → tokenize → greedy generate (batched) → decode → extract → parse → judge,
//! plus re-scoring of a saved completion without a model.
//!
//! Determinism: the reference samples with temperature 0.1 and no seed (TASKS_SPEC §7.3); this
//! port decodes **greedily** by default, and with `--temperature` samples from a generator seeded
//! per prompt by `--seed`, so runs are reproducible either way.
use super::bfcl;
use super::data::{FcSample, FcTarget, JsonEvalKind, JsonSample};
use super::judge::{self, Failure, FailureReason};
use super::parse::{
    extract_assistant, parse_tool_calls, ExtractError, ParseError, ParseOutcome, ParserMode,
};
use super::prompt::SchemaOrder;
use super::pyeq::{json_loads, literal_eval, PyValue};
use crate::chat::ChatTemplate;
use crate::error::{Error, Result};
use crate::model::{GenOptions, LanguageModel};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options of a function-calling / JSON-mode run.
#[derive(Debug, Clone, Serialize)]
pub struct FcOptions {
    pub batch_size: usize,
    pub max_new_tokens: usize,
    pub parser: ParserMode,
    pub schema_order: SchemaOrder,
    /// 0 = greedy.
    pub temperature: f64,
    pub seed: u64,
}

impl Default for FcOptions {
    fn default() -> Self {
        FcOptions {
            batch_size: 8,
            max_new_tokens: 512,
            parser: ParserMode::Xml,
            schema_order: SchemaOrder::V1,
            temperature: 0.0,
            seed: 0,
        }
    }
}

/// One judged sample (inspect_ai-style: what was extracted and why it failed).
#[derive(Debug, Clone, Serialize)]
pub struct SampleRecord {
    pub id: String,
    pub prompt: String,
    pub completion: String,
    /// Assistant message after §7.4 extraction (`None` when extraction failed).
    pub assistant: Option<String>,
    /// Parsed tool calls (function calling) or the parsed object (JSON mode).
    pub parsed: Vec<PyValue>,
    /// Parsed through the `ast.literal_eval` fallback.
    pub lenient: bool,
    pub passed: bool,
    /// Primary failure reason (the first one found).
    pub reason: Option<FailureReason>,
    pub failures: Vec<Failure>,
    /// JSON mode: whether the output validated against the schema (§8 step 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_valid: Option<bool>,
}

impl SampleRecord {
    /// A record not judged yet: nothing extracted or parsed, not passed.
    fn unjudged(id: &str, prompt: &str, completion: &str, schema_valid: Option<bool>) -> Self {
        SampleRecord {
            id: id.to_string(),
            prompt: prompt.to_string(),
            completion: completion.to_string(),
            assistant: None,
            parsed: Vec::new(),
            lenient: false,
            passed: false,
            reason: None,
            failures: Vec::new(),
            schema_valid,
        }
    }
}

/// Result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct FcReport {
    pub task: String,
    /// Metric name as the reference logs it (`function-calling eval (pass@1)`, …).
    pub metric: String,
    pub n: usize,
    pub passed: usize,
    pub pass_rate: f64,
    /// Samples whose calls needed the Python-literal fallback.
    pub lenient: usize,
    /// JSON mode: samples whose output validated against the schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_valid: Option<usize>,
    pub failure_reasons: BTreeMap<FailureReason, usize>,
    pub chat_template_sha256: String,
    pub options: FcOptions,
    #[serde(skip)]
    pub records: Vec<SampleRecord>,
}

impl FcReport {
    fn build(
        task: &str,
        metric: &str,
        records: Vec<SampleRecord>,
        chat: &ChatTemplate,
        opts: &FcOptions,
    ) -> Self {
        let n = records.len();
        let passed = records.iter().filter(|r| r.passed).count();
        let mut failure_reasons = BTreeMap::new();
        for r in &records {
            if let Some(reason) = r.reason {
                *failure_reasons.entry(reason).or_insert(0) += 1;
            }
        }
        let sv = records.iter().filter(|r| r.schema_valid.is_some()).count();
        FcReport {
            task: task.to_string(),
            metric: metric.to_string(),
            n,
            passed,
            pass_rate: if n == 0 {
                0.0
            } else {
                passed as f64 / n as f64
            },
            lenient: records.iter().filter(|r| r.lenient).count(),
            schema_valid: (sv > 0).then(|| {
                records
                    .iter()
                    .filter(|r| r.schema_valid == Some(true))
                    .count()
            }),
            failure_reasons,
            chat_template_sha256: chat.sha256(),
            options: opts.clone(),
            records,
        }
    }

    /// Per-sample records, one JSON object a line.
    pub fn samples_jsonl(&self) -> String {
        let mut s = String::new();
        for r in &self.records {
            s.push_str(&serde_json::to_string(r).expect("serialisable"));
            s.push('\n');
        }
        s
    }

    pub fn summary_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("serialisable")
    }

    /// Markdown summary: score line, then the failure-reason table.
    pub fn summary_markdown(&self) -> String {
        let mut s = format!(
            "| task | metric | n | passed | score |\n|---|---|---:|---:|---:|\n| {} | {} | {} | {} | {:.2}% |\n",
            self.task,
            self.metric,
            self.n,
            self.passed,
            100.0 * self.pass_rate
        );
        s.push_str(&format!(
            "\nlenient (Python-literal) parses: {}\n",
            self.lenient
        ));
        if let Some(v) = self.schema_valid {
            s.push_str(&format!("schema-valid outputs: {v}/{}\n", self.n));
        }
        if !self.failure_reasons.is_empty() {
            s.push_str("\n| failure reason | samples |\n|---|---:|\n");
            for (k, v) in &self.failure_reasons {
                s.push_str(&format!("| {} | {v} |\n", k.as_str()));
            }
        }
        s
    }

    /// Write `samples_<task>.jsonl`, `summary_<task>.json` and `summary_<task>.md` under `dir`.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
        let files = [
            (
                dir.join(format!("samples_{}.jsonl", self.task)),
                self.samples_jsonl(),
            ),
            (
                dir.join(format!("summary_{}.json", self.task)),
                serde_json::to_string_pretty(&self.summary_json())?,
            ),
            (
                dir.join(format!("summary_{}.md", self.task)),
                self.summary_markdown(),
            ),
        ];
        let mut out = Vec::new();
        for (p, text) in files {
            std::fs::write(&p, text).map_err(|e| Error::file(&p, e))?;
            out.push(p);
        }
        Ok(out)
    }
}

fn parse_failure(out: &ParseOutcome) -> Option<Failure> {
    match &out.error {
        Some(ParseError::MalformedXml(e)) => {
            return Some(Failure::new(FailureReason::MalformedXml, e.clone()))
        }
        Some(ParseError::EmptyToolCall) => {
            return Some(Failure::new(
                FailureReason::EmptyToolCall,
                "empty <tool_call>",
            ))
        }
        None => {}
    }
    if out.calls.is_empty() {
        if out.blocks == 0 {
            return Some(Failure::new(
                FailureReason::NoToolCall,
                "no <tool_call> block",
            ));
        }
        let detail = out
            .skipped
            .first()
            .map(|s| s.json_error.clone())
            .unwrap_or_default();
        return Some(Failure::new(FailureReason::MalformedJson, detail));
    }
    None
}

fn extract_failure(e: ExtractError) -> Failure {
    Failure::new(
        FailureReason::NoAssistantMessage,
        match e {
            ExtractError::NoMatch => "no '>assistant' marker in the decoded text",
            ExtractError::GrouplessMatch => {
                "extraction regex matched a group-less alternative ('<\\' or 'im_start\\')"
            }
        },
    )
}

/// Judge one function-calling sample from the decoded text (prompt + completion, special tokens
/// kept), as the reference does.
pub fn score_fc(
    sample: &FcSample,
    prompt: &str,
    completion: &str,
    eos_token: Option<&str>,
    parser: ParserMode,
) -> SampleRecord {
    let mut rec = SampleRecord::unjudged(&sample.id, prompt, completion, None);
    let decoded = format!("{prompt}{completion}");
    let msg = match extract_assistant(&decoded, eos_token) {
        Ok(m) => m,
        Err(e) => {
            // BFCL irrelevance: no message means no call.
            if let FcTarget::Bfcl { category, .. } = &sample.target {
                if bfcl::checker_kind(category) == bfcl::CheckerKind::Irrelevance {
                    rec.passed = true;
                    return rec;
                }
            }
            rec.failures.push(extract_failure(e));
            rec.reason = Some(FailureReason::NoAssistantMessage);
            return rec;
        }
    };
    let out = parse_tool_calls(&msg, parser);
    rec.assistant = Some(msg);
    rec.parsed = out.values();
    rec.lenient = out.lenient();
    let fails = match &sample.target {
        FcTarget::Nous { tools, expected } => match parse_failure(&out) {
            Some(f) => vec![f],
            None => judge::judge_nous_calls(&rec.parsed, expected, tools),
        },
        FcTarget::Bfcl {
            category,
            functions,
            ground_truth,
        } => {
            let kind = bfcl::checker_kind(category);
            let pf = parse_failure(&out);
            let no_call = pf
                .as_ref()
                .is_some_and(|f| f.reason == FailureReason::NoToolCall);
            match (kind, pf) {
                // irrelevance: any undecodable output counts as "no call" (gorilla: decode error = pass)
                (bfcl::CheckerKind::Irrelevance, Some(_)) => vec![],
                (bfcl::CheckerKind::Relevance, Some(f)) if !no_call => vec![f],
                (bfcl::CheckerKind::Relevance, Some(_)) => {
                    vec![Failure::new(FailureReason::NoToolCall, "no call made")]
                }
                (_, Some(f)) => vec![f],
                (_, None) => match bfcl::to_calls(&rec.parsed) {
                    Err(f) => vec![f],
                    Ok(calls) => bfcl::judge_bfcl(category, functions, &calls, ground_truth)
                        .err()
                        .into_iter()
                        .collect(),
                },
            }
        }
    };
    rec.reason = fails.first().map(|f| f.reason);
    rec.passed = fails.is_empty();
    rec.failures = fails;
    rec
}

/// Judge one JSON-mode sample from the decoded text (§8).
pub fn score_json(
    sample: &JsonSample,
    prompt: &str,
    completion: &str,
    eos_token: Option<&str>,
) -> SampleRecord {
    let mut rec = SampleRecord::unjudged(&sample.id, prompt, completion, Some(false));
    let fail = |rec: &mut SampleRecord, f: Failure| {
        rec.reason = Some(f.reason);
        rec.failures.push(f);
    };
    let msg = match extract_assistant(&format!("{prompt}{completion}"), eos_token) {
        Ok(m) => m,
        Err(e) => {
            fail(&mut rec, extract_failure(e));
            return rec;
        }
    };
    rec.assistant = Some(msg.clone());
    let value = match json_loads(&msg) {
        Ok(v) => v,
        Err(je) => match literal_eval(&msg) {
            Ok(v) => {
                rec.lenient = true;
                v
            }
            Err(_) => {
                fail(&mut rec, Failure::new(FailureReason::MalformedOutput, je));
                return rec;
            }
        },
    };
    rec.parsed = vec![value.clone()];
    let schema: serde_json::Value = match serde_json::from_str(&sample.schema) {
        Ok(s) => s,
        Err(e) => {
            fail(
                &mut rec,
                Failure::new(FailureReason::InvalidSchema, e.to_string()),
            );
            return rec;
        }
    };
    if let Err(f) = judge::validate_json_schema(&value, &schema) {
        fail(&mut rec, f);
        return rec;
    }
    rec.schema_valid = Some(true);
    match &sample.expected {
        None => rec.passed = true, // schema compliance
        Some(exp) => {
            if matches!(value, PyValue::List(_)) {
                fail(
                    &mut rec,
                    Failure::new(FailureReason::NotAnObject, "output is a list"),
                );
                return rec;
            }
            match judge::json_exact_match(&value, exp) {
                Ok(()) => rec.passed = true,
                Err(f) => fail(&mut rec, f),
            }
        }
    }
    rec
}

/// Render, tokenize and generate for every conversation; returns (prompt text, completion text).
fn generate_all(
    model: &mut dyn LanguageModel,
    chat: &ChatTemplate,
    convs: &[&[crate::chat::Message]],
    opts: &FcOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<(String, String)>> {
    let tok = model.tokenizer().clone();
    let mut stop_tokens: Vec<u32> = Vec::new();
    for s in ["<|im_end|>", chat.eos_token.as_str()] {
        if let Some(id) = tok.token_to_id(s).filter(|_| !s.is_empty()) {
            if !stop_tokens.contains(&id) {
                stop_tokens.push(id);
            }
        }
    }
    let gen = GenOptions {
        max_new_tokens: opts.max_new_tokens,
        stop_tokens,
        stop_strings: Vec::new(),
        temperature: opts.temperature,
        seed: opts.seed,
    };
    let mut out = Vec::with_capacity(convs.len());
    progress(0, convs.len());
    for chunk in convs.chunks(opts.batch_size.max(1)) {
        let mut texts = Vec::new();
        let mut ids = Vec::new();
        for m in chunk {
            let text = chat.render(m, None, true)?;
            let enc = tok
                .encode(text.as_str(), false)
                .map_err(|e| Error::Tokenizer(e.to_string()))?;
            ids.push(enc.get_ids().to_vec());
            texts.push(text);
        }
        let gens = model.generate(&ids, &gen)?;
        if gens.len() != ids.len() {
            return Err(Error::model(format!(
                "generate returned {} outputs for {} prompts",
                gens.len(),
                ids.len()
            )));
        }
        for ((p_ids, g), text) in ids.iter().zip(gens).zip(texts) {
            // Decode the full sequence with special tokens kept (§7.3) and split it at the
            // decoded prompt so the record keeps prompt and completion apart.
            let mut all = p_ids.clone();
            all.extend_from_slice(&g);
            let full = tok
                .decode(&all, false)
                .map_err(|e| Error::Tokenizer(e.to_string()))?;
            let p_dec = tok
                .decode(p_ids, false)
                .map_err(|e| Error::Tokenizer(e.to_string()))?;
            let (p, c) = match full.strip_prefix(p_dec.as_str()) {
                Some(rest) => (p_dec.clone(), rest.to_string()),
                None => (
                    text,
                    tok.decode(&g, false)
                        .map_err(|e| Error::Tokenizer(e.to_string()))?,
                ),
            };
            out.push((p, c));
        }
        progress(out.len(), convs.len());
    }
    Ok(out)
}

/// Run the function-calling eval (Nous func-calling-eval rules or BFCL matching per sample).
pub fn run_fc(
    model: &mut dyn LanguageModel,
    chat: &ChatTemplate,
    samples: &[FcSample],
    opts: &FcOptions,
    progress: impl FnMut(usize, usize),
) -> Result<FcReport> {
    run_fc_named(model, chat, samples, opts, "func-calling-eval", progress)
}

/// [`run_fc`] with the task name used in the report and file names.
pub fn run_fc_named(
    model: &mut dyn LanguageModel,
    chat: &ChatTemplate,
    samples: &[FcSample],
    opts: &FcOptions,
    task: &str,
    progress: impl FnMut(usize, usize),
) -> Result<FcReport> {
    let convs: Vec<&[crate::chat::Message]> =
        samples.iter().map(|s| s.messages.as_slice()).collect();
    let texts = generate_all(model, chat, &convs, opts, progress)?;
    let eos = Some(chat.eos_token.as_str()).filter(|e| !e.is_empty());
    let records = samples
        .iter()
        .zip(&texts)
        .map(|(s, (p, c))| score_fc(s, p, c, eos, opts.parser))
        .collect();
    let metric = if samples
        .iter()
        .any(|s| matches!(s.target, FcTarget::Bfcl { .. }))
    {
        "bfcl ast accuracy (Hermes prompt)"
    } else {
        "function-calling eval (pass@1)"
    };
    Ok(FcReport::build(task, metric, records, chat, opts))
}

/// Run a JSON evaluation. `kind` decides the metric name: JSON-mode accuracy and schema compliance
/// are never reported under the same name.
pub fn run_json(
    model: &mut dyn LanguageModel,
    chat: &ChatTemplate,
    samples: &[JsonSample],
    kind: JsonEvalKind,
    opts: &FcOptions,
    progress: impl FnMut(usize, usize),
) -> Result<FcReport> {
    let task = match kind {
        JsonEvalKind::JsonModeEval => "json-mode-eval",
        JsonEvalKind::MaskbenchSubstitutePrompt => "json-mode-eval-maskbench-substitute",
        JsonEvalKind::SchemaCompliance => "schema-compliance",
    };
    run_json_named(model, chat, samples, kind, opts, task, progress)
}

/// [`run_json`] with the task name used in the report and file names.
pub fn run_json_named(
    model: &mut dyn LanguageModel,
    chat: &ChatTemplate,
    samples: &[JsonSample],
    kind: JsonEvalKind,
    opts: &FcOptions,
    task: &str,
    progress: impl FnMut(usize, usize),
) -> Result<FcReport> {
    let convs: Vec<&[crate::chat::Message]> =
        samples.iter().map(|s| s.messages.as_slice()).collect();
    let texts = generate_all(model, chat, &convs, opts, progress)?;
    let eos = Some(chat.eos_token.as_str()).filter(|e| !e.is_empty());
    let records = samples
        .iter()
        .zip(&texts)
        .map(|(s, (p, c))| score_json(s, p, c, eos))
        .collect();
    let metric = match kind {
        JsonEvalKind::JsonModeEval => "json-mode eval (pass@1)",
        JsonEvalKind::MaskbenchSubstitutePrompt => "json-mode eval (pass@1, SUBSTITUTE prompts)",
        JsonEvalKind::SchemaCompliance => "schema compliance (share of valid outputs)",
    };
    Ok(FcReport::build(task, metric, records, chat, opts))
}

/// `hermes-eval fc` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct FcArgs {
    /// Dataset id: NousResearch/func-calling-eval or gorilla-llm/Berkeley-Function-Calling-Leaderboard.
    #[arg(long, default_value = super::data::NOUS_FC)]
    pub dataset: String,
    /// BFCL category (simple, multiple, parallel, parallel_multiple, live_*, irrelevance, …).
    #[arg(long)]
    pub category: Option<String>,
    /// BFCL version directory (v4, v3, v3-release-70b6a4a2); default: newest present.
    #[arg(long)]
    pub bfcl_version: Option<String>,
    #[command(flatten)]
    pub gen: GenArgs,
    /// Tool-call parser: xml (card version) or regex (later version).
    #[arg(long, value_enum, default_value_t = ParserMode::Xml)]
    pub parser: ParserMode,
    /// Key order of the FunctionCall schema in the system prompt (pydantic v1 or v2).
    #[arg(long, value_enum, default_value_t = SchemaOrder::V1)]
    pub schema_order: SchemaOrder,
    /// Output directory for samples and summaries.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// `hermes-eval json` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct JsonArgs {
    /// NousResearch/json-mode-eval, guidance-ai/jsonschemabench/json-mode-eval-from-maskbench
    /// (substitute prompts) or guidance-ai/jsonschemabench (schema compliance).
    #[arg(long, default_value = super::data::NOUS_JSON)]
    pub dataset: String,
    /// JSONSchemaBench subset (Github_trivial, Github_easy, Github_medium, Github_hard, Glaiveai2K).
    #[arg(long)]
    pub subset: Option<String>,
    #[command(flatten)]
    pub gen: GenArgs,
    /// Output directory for samples and summaries.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// Data and generation options shared by `fc` and `json`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenArgs {
    /// Local mirror of the hub (layout of shared/hub).
    #[arg(long, env = "HERMES_EVAL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Evaluate only the first N samples.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 512)]
    pub max_new_tokens: usize,
    /// Chat template file overriding the model's own.
    #[arg(long)]
    pub chat_template: Option<PathBuf>,
    /// Sampling temperature; 0 (the default) decodes greedily. The published evaluator samples
    /// at 0.1 without a seed; here a sample is reproducible from --seed.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Seed of sampling (used when --temperature > 0).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl GenArgs {
    fn options(&self) -> FcOptions {
        FcOptions {
            batch_size: self.batch_size,
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature,
            seed: self.seed,
            ..FcOptions::default()
        }
    }
}

impl FcArgs {
    pub fn options(&self) -> FcOptions {
        FcOptions {
            parser: self.parser,
            schema_order: self.schema_order,
            ..self.gen.options()
        }
    }
}

impl JsonArgs {
    pub fn options(&self) -> FcOptions {
        self.gen.options()
    }
}

impl FcArgs {
    /// Resolve the dataset in the mirror (`--data-dir` / `$HERMES_EVAL_DATA_DIR`), apply
    /// `--limit`. Returns (task name, samples).
    pub fn load_samples(&self) -> Result<(String, Vec<FcSample>)> {
        let dir = super::data::data_dir(self.gen.data_dir.as_deref())?;
        let (task, mut s) = super::data::load_fc_dataset(
            &self.dataset,
            self.category.as_deref(),
            self.bfcl_version.as_deref(),
            &dir,
            self.schema_order,
        )?;
        if let Some(n) = self.gen.limit {
            s.truncate(n);
        }
        Ok((task, s))
    }
}

impl JsonArgs {
    /// Resolve the dataset in the mirror, apply `--limit`. Returns (task name, kind, samples).
    pub fn load_samples(&self) -> Result<(String, JsonEvalKind, Vec<JsonSample>)> {
        let dir = super::data::data_dir(self.gen.data_dir.as_deref())?;
        let (task, kind, mut s) =
            super::data::load_json_dataset(&self.dataset, self.subset.as_deref(), &dir)?;
        if let Some(n) = self.gen.limit {
            s.truncate(n);
        }
        Ok((task, kind, s))
    }
}

/// The chat template to use: the override file if given, else the model's own (from
/// tokenizer_config.json or GGUF, passed by the caller), else ChatML.
pub fn select_chat_template(
    override_file: Option<&Path>,
    model_template: Option<ChatTemplate>,
    bos_token: &str,
    eos_token: &str,
) -> Result<ChatTemplate> {
    match (override_file, model_template) {
        (Some(p), _) => ChatTemplate::from_file(p, bos_token, eos_token),
        (None, Some(t)) => Ok(t),
        (None, None) => Ok(ChatTemplate::chatml(eos_token)),
    }
}
