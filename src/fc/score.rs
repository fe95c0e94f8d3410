//! Judges of one completion: extract the assistant message → parse → judge (function calling,
//! TASKS_SPEC §7) or validate / compare (JSON mode, §8). The engine generates (the chat tasks'
//! scorers in `tasks::chat` call these), so a saved completion is re-judged without a model.
//!
//! Determinism: the reference samples with temperature 0.1 and no seed (TASKS_SPEC §7.3); the
//! engine decodes **greedily** by default, and with `--temperature` samples from a generator
//! seeded per prompt by `--seed`, so runs are reproducible either way.
use super::bfcl;
use super::data::{FcSample, FcTarget, JsonSample};
use super::judge::{self, Failure, FailureReason};
use super::parse::{
    extract_assistant, parse_tool_calls, ExtractError, ParseError, ParseOutcome, ParserMode,
};
use crate::chat::ChatTemplate;
use crate::error::Result;
use crate::py::value::{json_loads, literal_eval, PyValue};
use serde::Serialize;
use std::path::Path;

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
